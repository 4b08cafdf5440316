"""The record file: zlib-compressed JSON in damo's schema, so ``damo report`` reads it too.

Each target is one damo ``DamonRecord``. Our extra data rides along under ``"damon_bpf"`` keys, which
damo ignores: per region the raw report count, reads/writes and non-zero per-CPU / per-thread counts;
per record the target pid and ``TargetRecord.meta`` (accounting, source, filters, host, ...).

``model`` holds the data model, ``encode`` the JSON text, ``stream`` the zlib segments and bounded
inflation, ``writer`` the crash-safe incremental writer, ``schema`` and ``reader`` the streaming reader,
``columnfile`` the columnar side file `record` writes beside the record, which the reader takes while it matches.
"""

from damon_bpf.recordfile.model import TargetRecord
from damon_bpf.recordfile.reader import read_record
from damon_bpf.recordfile.writer import RecordWriter, write_record

__all__ = ["TargetRecord", "RecordWriter", "write_record", "read_record"]
