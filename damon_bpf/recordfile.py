"""The record file: zlib-compressed JSON in damo's schema, so ``damo report`` reads it too.

Each target is one damo ``DamonRecord``. Our extra data rides along under ``"damon_bpf"`` keys, which
damo ignores: per region the raw report count, reads/writes and non-zero per-CPU / per-thread counts;
per record the target pid and ``TargetRecord.meta`` (accounting, source, filters, host, ...).

Writing is incremental and crash safe: every flush writes a complete file to a temporary name and
renames it over the old one. The JSON text of snapshots already flushed is never re-encoded or
re-compressed: each flush compresses only the new snapshots into an independent raw-deflate segment
ending on a sync point, and the file is stitched from the cached segments (see ``_Piece``).
"""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError

__all__ = ["TargetRecord", "RecordWriter", "write_record", "read_record"]

_ZLIB_HEADER = b"\x78\x9c"  # what `file` calls "zlib compressed data" (damo detects the format that way)
_ADLER_BASE = 65521
_MAX_ADDR = 2**64 - 1  # Snapshot addresses are uint64
_MAX_COUNT = 2**53  # counts above this cannot be exact in a float; no real recording gets near
_MAX_NS = 2**63 - 1
_MAX_US = 2**40  # ~12 days, far beyond any sensible interval
# A flush never takes more than 1/_FLUSH_COST_RATIO of the wall time (see RecordWriter.maybe_flush).
_FLUSH_COST_RATIO = 50


@dataclass
class TargetRecord:
    """One monitored target: its intervals, its snapshots, and damon-bpf's own metadata."""

    target_id: int
    pid: int | None
    sample_us: int
    aggr_us: int
    update_us: int
    snapshots: list[Snapshot] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Encoding


def _attribution_json(ids: Iterable[int], counts: dict[int, np.ndarray], nr: int) -> list[str]:
    """Per region, a JSON object of the non-zero counts of each cpu/tid (``{"3": 7}``)."""
    ids = sorted(ids)
    if not ids:
        return ["{}"] * nr
    matrix = np.stack([np.asarray(counts[i]) for i in ids], axis=1)  # regions x ids
    parts: list[list[str]] = [[] for _ in range(nr)]
    for region, col in zip(*np.nonzero(matrix)):
        parts[region].append(f'"{ids[col]}":{int(matrix[region, col])}')
    return ["{" + ",".join(p) + "}" for p in parts]


def _check_snapshot(s: Snapshot) -> None:
    """Refuse to write what read_record would refuse to read: a bad file is worse than an error."""
    n = len(s.start)
    arrays = [s.end, s.nr_accesses, s.age, s.nr_reports, s.writes, s.reads,
              *s.by_cpu.values(), *s.by_tid.values()]
    if any(len(a) != n for a in arrays):
        raise ValueError("snapshot arrays differ in length")
    if not 0 <= s.start_ns <= s.end_ns <= _MAX_NS:
        raise ValueError(f"snapshot time [{s.start_ns}, {s.end_ns}] is not a valid interval")
    if n == 0:
        return
    start = np.asarray(s.start, dtype=np.uint64)
    end = np.asarray(s.end, dtype=np.uint64)
    if np.any(start >= end) or np.any(start[1:] < end[:-1]):
        raise ValueError("snapshot regions are empty, unsorted or overlapping")
    if any(np.any(np.asarray(a) < 0) for a in arrays[1:]):
        raise ValueError("snapshot counters must not be negative")
    if np.any(np.asarray(s.writes) + np.asarray(s.reads) > np.asarray(s.nr_reports)):
        raise ValueError("snapshot writes + reads exceed nr_reports")


def _snapshot_json(s: Snapshot, aggr_us: int) -> str:
    """One snapshot as compact JSON in damo's schema. Hand-formatted: ~3x faster than json.dumps."""
    n = len(s.start)
    cpus = _attribution_json(s.by_cpu, s.by_cpu, n)
    tids = _attribution_json(s.by_tid, s.by_tid, n)
    cols = (np.asarray(a).tolist() for a in (s.start, s.end, s.nr_accesses, s.age, s.nr_reports,
                                            s.writes, s.reads))
    regions = ",".join(
        f'{{"start":{a},"end":{b},"nr_accesses":{{"samples":{n_acc}}},'
        f'"age":{{"usec":{age * aggr_us},"aggr_intervals":{age}}},'
        f'"damon_bpf":{{"reports":{rep},"writes":{w},"reads":{r},"cpus":{c},"tids":{t}}}}}'
        for a, b, n_acc, age, rep, w, r, c, t in zip(*cols, cpus, tids))
    return f'{{"start_time":{int(s.start_ns)},"end_time":{int(s.end_ns)},"regions":[{regions}]}}'


def _record_head(rec: TargetRecord) -> str:
    intervals = {"sample_us": int(rec.sample_us), "aggr_us": int(rec.aggr_us),
                 "ops_update_us": int(rec.update_us)}
    return f'{{"target_id":{int(rec.target_id)},"intervals":{json.dumps(intervals)},"snapshots":['


def _jsonable(v: Any) -> Any:
    """Meta as strict JSON: numpy values as numbers, NaN/inf as null, anything odd as a string.
    A flush must never fail (or write a file strict readers reject) because of a meta value."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _record_tail(pid: int | None, meta: dict) -> str:
    ours = json.dumps({"version": 1, "pid": None if pid is None else int(pid),
                       "meta": _jsonable(meta)}, allow_nan=False)
    return f'],"damon_bpf":{ours}}}'


# ---------------------------------------------------------------------------------------------
# zlib stream stitching


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from adler(A), adler(B) and len(B); zlib's adler32_combine (not in Python)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem
    return (sum1 % _ADLER_BASE) | ((sum2 % _ADLER_BASE) << 16)


@dataclass
class _Piece:
    """Compressed text that can be concatenated with others into one zlib stream.

    Each piece is a raw deflate stream started from an empty window and ended with Z_SYNC_FLUSH
    (byte aligned, not final), so pieces can be laid end to end; only the very last piece of a
    file is ended with Z_FINISH. The zlib trailer is the Adler-32 of all the text, which we get
    by combining the pieces' checksums without touching the text again.
    """

    data: bytes
    adler: int
    length: int

    @classmethod
    def of(cls, text: str, final: bool = False) -> "_Piece":
        raw = text.encode()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = comp.compress(raw) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        return cls(data, zlib.adler32(raw), len(raw))


@dataclass
class _TargetState:
    record: TargetRecord
    head: str
    segments: list[bytes] = field(default_factory=list)
    adler: int = 1  # Adler-32 of the concatenated snapshot text of all segments
    length: int = 0
    nr_snapshots: int = 0
    pending: list[Snapshot] = field(default_factory=list)

    def encode_pending(self) -> None:
        """Compress the pending snapshots into one new segment (cheap: new data only)."""
        if not self.pending:
            return
        aggr_us = self.record.aggr_us
        texts = [_snapshot_json(s, aggr_us) for s in self.pending]
        text = ("," if self.nr_snapshots else "") + ",".join(texts)
        piece = _Piece.of(text)
        self.segments.append(piece.data)
        self.adler = _adler32_combine(self.adler, piece.adler, piece.length)
        self.length += piece.length
        self.nr_snapshots += len(self.pending)
        self.pending = []


def _file_chunks(targets: list[_TargetState]) -> list[bytes]:
    """The whole file as a list of byte chunks: zlib header, pieces, Adler-32 trailer."""
    if not targets:
        last = _Piece.of("[]", final=True)
        return [_ZLIB_HEADER, last.data, last.adler.to_bytes(4, "big")]
    chunks = [_ZLIB_HEADER]
    adler = 1
    for idx, t in enumerate(targets):
        final = idx == len(targets) - 1
        head = _Piece.of(("[" if idx == 0 else ",") + t.head)
        tail = _Piece.of(_record_tail(t.record.pid, t.record.meta) + ("]" if final else ""),
                         final=final)
        chunks.append(head.data)
        chunks.extend(t.segments)
        chunks.append(tail.data)
        adler = _adler32_combine(adler, head.adler, head.length)
        adler = _adler32_combine(adler, t.adler, t.length)
        adler = _adler32_combine(adler, tail.adler, tail.length)
    chunks.append(adler.to_bytes(4, "big"))
    return chunks


_TEMP_SUFFIX = ".tmp"


def _temp_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def _atomic_write(path: str, chunks: list[bytes]) -> None:
    """Write to a temp file in the same directory, fsync, rename: readers see old or new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    # mkstemp creates the file 0600: recordings can reveal what a program does
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename itself durable; failure here leaves a complete file either way.
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# Writer


class RecordWriter:
    """Writes a record file incrementally; every flush leaves a complete, readable file.

    ``maybe_flush`` flushes once ``flush_interval_s`` has passed, but never spends more than
    1/50 of the wall time flushing: when a flush gets slow (huge file, slow disk) the interval
    stretches to 50x the last flush's cost.
    """

    def __init__(self, path: str, flush_interval_s: float = 2.0) -> None:
        self.path = os.fspath(path)
        self.flush_interval_s = flush_interval_s
        self.last_flush_cost_s = 0.0
        self._targets: dict[int, _TargetState] = {}
        self._last_flush_s = time.monotonic()
        self._closed = False
        self._check_writable()

    def _check_writable(self) -> None:
        if os.path.isdir(self.path):
            raise RecordFileError(f"cannot write record file {self.path}: it is a directory")
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".damon-bpf-probe.")
        except OSError as err:
            raise RecordFileError(
                f"cannot write record file {self.path}: {err.strerror or err} ({directory})") from None
        os.close(fd)
        os.unlink(probe)
        # A writer killed mid-flush (kill -9, power loss) leaves its temp file behind.
        stale = glob.escape(os.path.join(directory, _temp_prefix(self.path))) + "*" + _TEMP_SUFFIX
        for name in glob.glob(stale):
            try:
                os.unlink(name)
            except OSError:
                pass

    def add_target(self, record: TargetRecord) -> None:
        if record.target_id in self._targets:
            raise ValueError(f"target {record.target_id} added twice")
        for snap in record.snapshots:
            _check_snapshot(snap)
        state = _TargetState(record=TargetRecord(
            record.target_id, record.pid, record.sample_us, record.aggr_us, record.update_us,
            [], dict(record.meta)), head=_record_head(record))
        state.pending.extend(record.snapshots)
        self._targets[record.target_id] = state

    def add_snapshots(self, target_id: int, snapshots: Iterable[Snapshot]) -> None:
        """Queue snapshots for the next flush. A malformed one raises ValueError here, before
        anything is queued, so one bad snapshot can never wedge every later flush."""
        state = self._target(target_id)
        snapshots = list(snapshots)
        for snap in snapshots:
            _check_snapshot(snap)
        state.pending.extend(snapshots)

    def update_meta(self, target_id: int, meta: dict) -> None:
        """Merge ``meta`` into the target's meta (top-level keys); written at the next flush."""
        self._target(target_id).record.meta.update(meta)

    def _target(self, target_id: int) -> _TargetState:
        try:
            return self._targets[target_id]
        except KeyError:
            raise ValueError(f"unknown target {target_id}; call add_target first") from None

    def maybe_flush(self, now_s: float | None = None) -> bool:
        """Flush if the flush interval has passed; returns whether it flushed."""
        now = time.monotonic() if now_s is None else now_s
        interval = max(self.flush_interval_s, _FLUSH_COST_RATIO * self.last_flush_cost_s)
        if now - self._last_flush_s < interval:
            return False
        try:
            self.flush()
        finally:
            self._last_flush_s = now  # on the caller's clock; a failed flush waits a full interval too
        return True

    def flush(self) -> None:
        """Write everything added so far. On failure the previous file stays and nothing is lost
        from memory: the next flush retries."""
        begin = time.monotonic()
        states = list(self._targets.values())
        for state in states:
            state.encode_pending()
        try:
            _atomic_write(self.path, _file_chunks(states))
        except OSError as err:
            raise RecordFileError(
                f"cannot write record file {self.path}: {err.strerror or err}; "
                "the file still holds the previous flush") from None
        finally:
            self._last_flush_s = time.monotonic()
            self.last_flush_cost_s = self._last_flush_s - begin

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_record(path: str, records: list[TargetRecord]) -> None:
    """Write ``records`` to ``path`` atomically (temp file, fsync, rename; mode 0600)."""
    writer = RecordWriter(path)
    for record in records:
        writer.add_target(record)
    writer.close()


# ---------------------------------------------------------------------------------------------
# Reader


class _Bad(Exception):
    """A schema problem; the message says where and what. Becomes RecordFileError with the path."""


def _reject_constant(name: str) -> Any:
    raise _Bad(f"holds {name}, which is not a valid number")


def _load_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise _Bad("no such file") from None
    except IsADirectoryError:
        raise _Bad("is a directory, not a record file") from None
    except OSError as err:
        raise _Bad(f"cannot read: {err.strerror or err}") from None
    if not raw.strip():
        raise _Bad("is empty")
    if raw.lstrip()[:1] in (b"[", b"{"):  # plain JSON: damo's `json` format
        data = raw
    else:
        data = _decompress(raw)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Bad(f"is not UTF-8 text after decompression (byte {err.start})") from None


def _decompress(raw: bytes) -> bytes:
    dec = zlib.decompressobj()
    try:
        data = dec.decompress(raw)
    except zlib.error:
        raise _Bad("is not a record file (neither zlib-compressed nor plain JSON)") from None
    except MemoryError:
        raise _Bad("decompresses to more data than fits in memory") from None
    if not dec.eof:
        raise _Bad("is truncated (the compressed stream ends early; was the recorder killed "
                   "while writing a file that was not its own?)")
    if dec.unused_data:
        raise _Bad(f"has {len(dec.unused_data)} bytes of garbage after the compressed data")
    return data


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise _Bad(f"is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise _Bad("is not a record: JSON nested too deeply") from None


def _obj(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise _Bad(f"{where} must be a JSON object, not {_kind(v)}")
    return v


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list):
        raise _Bad(f"{where} must be a JSON list, not {_kind(v)}")
    return v


def _int(v: Any, where: str, lo: int = 0, hi: int = _MAX_COUNT) -> int:
    # bool is an int subclass; a float like 3.0 is accepted only if integral (damo writes ints).
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{where} must be an integer, not {_kind(v)}")
    if not lo <= v <= hi:
        raise _Bad(f"{where} = {v} is out of range [{lo}, {hi}]")
    return v


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", float: "a non-integral number"}.get(type(v), type(v).__name__)


def _key(obj: dict, key: str, where: str) -> Any:
    if key not in obj:
        raise _Bad(f"{where} has no \"{key}\"")
    return obj[key]


def _attribution(v: Any, where: str, ids: Callable[[str], int]) -> dict[int, int]:
    out = {}
    for k, n in _obj(v, where).items():
        try:
            ident = ids(k)
        except ValueError:
            raise _Bad(f"{where} has key {k!r}, not a number") from None
        out[ident] = _int(n, f"{where}[{k}]")
    return out


def _cpu_id(k: str) -> int:
    v = int(k)
    if not 0 <= v < 2**20:
        raise ValueError
    return v


def _tid_id(k: str) -> int:
    v = int(k)
    if not 0 <= v < 2**32:
        raise ValueError
    return v


def _region(r: Any, where: str, aggr_us: int) -> tuple:
    r = _obj(r, where)
    start = _int(_key(r, "start", where), f"{where} start", 0, _MAX_ADDR)
    end = _int(_key(r, "end", where), f"{where} end", 0, _MAX_ADDR)
    if end <= start:
        raise _Bad(f"{where} ends before it starts ([{start:#x}, {end:#x}))")
    acc = _obj(_key(r, "nr_accesses", where), f"{where} nr_accesses")
    samples = _int(_key(acc, "samples", f"{where} nr_accesses"), f"{where} nr_accesses.samples")
    age_kv = _obj(_key(r, "age", where), f"{where} age")
    age = age_kv.get("aggr_intervals")
    if age is None:  # damo may keep only usec; convert like damo's add_unset_unit
        usec = _int(_key(age_kv, "usec", f"{where} age"), f"{where} age.usec", 0, _MAX_NS)
        age = usec // aggr_us
    age = _int(age, f"{where} age.aggr_intervals")
    ours = _obj(r.get("damon_bpf", {}), f"{where} damon_bpf")
    reports = _int(ours.get("reports", 0), f"{where} damon_bpf.reports")
    writes = _int(ours.get("writes", 0), f"{where} damon_bpf.writes")
    reads = _int(ours.get("reads", 0), f"{where} damon_bpf.reads")
    if writes + reads > reports:
        raise _Bad(f"{where} has more reads + writes ({writes + reads}) than reports ({reports})")
    cpus = _attribution(ours.get("cpus", {}), f"{where} damon_bpf.cpus", _cpu_id)
    tids = _attribution(ours.get("tids", {}), f"{where} damon_bpf.tids", _tid_id)
    return start, end, samples, age, reports, writes, reads, cpus, tids


def _snapshot(s: Any, where: str, aggr_us: int) -> Snapshot | None:
    try:
        return _fast_snapshot(s)
    except Exception:  # anything unusual: the careful reader says exactly what and where
        return _checked_snapshot(s, where, aggr_us)


_EMPTY: dict = {}


def _fast_snapshot(s: Any) -> Snapshot:
    """A well-formed snapshot, read in bulk and checked with numpy (~10x faster than region by
    region). Raises on anything it does not accept, which is at least everything the careful
    reader rejects; integral floats, null ages and damo's fake snapshot also go the careful way."""
    regs = s["regions"]
    start_ns, end_ns = s["start_time"], s["end_time"]
    start = [r["start"] for r in regs]
    end = [r["end"] for r in regs]
    samples = [r["nr_accesses"]["samples"] for r in regs]
    age = [r["age"]["aggr_intervals"] for r in regs]
    ours = [r.get("damon_bpf", _EMPTY) for r in regs]
    reports = [o.get("reports", 0) for o in ours]
    writes = [o.get("writes", 0) for o in ours]
    reads = [o.get("reads", 0) for o in ours]
    if type(regs) is not list or any(type(r) is not dict for r in regs) or \
            {type(v) for v in (start_ns, end_ns, *start, *end, *samples, *age, *reports, *writes,
                               *reads)} - {int}:
        raise TypeError
    n = len(regs)
    first, last = np.array(start, dtype=np.uint64), np.array(end, dtype=np.uint64)  # or Overflow
    counts = np.array([samples, age, reports, writes, reads], dtype=np.int64).reshape(5, n)
    if not 0 <= start_ns <= end_ns <= _MAX_NS:
        raise ValueError
    if n and (np.any(first >= last) or np.any(first[1:] < last[:-1]) or counts.min() < 0
              or counts.max() > _MAX_COUNT or np.any(counts[3] + counts[4] > counts[2])):
        raise ValueError
    return Snapshot(start_ns, end_ns, first, last, counts[0], counts[1], counts[2], counts[3],
                    counts[4], _fast_by([o.get("cpus", _EMPTY) for o in ours], n, 2**20),
                    _fast_by([o.get("tids", _EMPTY) for o in ours], n, 2**32))


def _fast_by(per_region: list, n: int, limit: int) -> dict[int, np.ndarray]:
    ids, where, vals = [], [], []
    for i, d in enumerate(per_region):
        if type(d) is not dict:
            raise TypeError
        for k, v in d.items():
            ids.append(int(k))
            where.append(i)
            vals.append(v)
    if {type(v) for v in vals} - {int}:
        raise TypeError
    idents, counts = np.array(ids, dtype=np.int64), np.array(vals, dtype=np.int64)
    if len(ids) and (idents.min() < 0 or idents.max() >= limit or counts.min() < 0
                     or counts.max() > _MAX_COUNT):
        raise ValueError
    uniq, row = np.unique(idents, return_inverse=True)
    matrix = np.zeros((len(uniq), n), dtype=np.int64)
    matrix[row, np.array(where, dtype=np.int64)] = counts
    return {int(u): matrix[j] for j, u in enumerate(uniq)}


def _checked_snapshot(s: Any, where: str, aggr_us: int) -> Snapshot | None:
    s = _obj(s, where)
    start_ns = _int(_key(s, "start_time", where), f"{where} start_time", 0, _MAX_NS)
    end_ns = _int(_key(s, "end_time", where), f"{where} end_time", 0, _MAX_NS)
    if end_ns < start_ns:
        raise _Bad(f"{where} ends ({end_ns} ns) before it starts ({start_ns} ns)")
    raw_regions = _list(_key(s, "regions", where), f"{where} regions")
    if _is_damo_fake(raw_regions):
        return None
    rows = [_region(r, f"{where} region {i}", aggr_us) for i, r in enumerate(raw_regions)]
    for i in range(1, len(rows)):
        if rows[i][0] < rows[i - 1][1]:
            raise _Bad(f"{where} region {i} overlaps or precedes region {i - 1}")
    return _to_snapshot(start_ns, end_ns, rows)


def _is_damo_fake(regions: list) -> bool:
    """damo appends a [0, 0) region with -1 counters to single-snapshot records; skip it like damo."""
    if len(regions) != 1 or not isinstance(regions[0], dict):
        return False
    r = regions[0]
    return (r.get("start") == 0 and r.get("end") == 0
            and isinstance(r.get("nr_accesses"), dict) and r["nr_accesses"].get("samples") == -1)


def _to_snapshot(start_ns: int, end_ns: int, rows: list[tuple]) -> Snapshot:
    n = len(rows)
    cols = list(zip(*rows)) if rows else [()] * 9

    def counts(col: int) -> np.ndarray:
        return np.array(cols[col], dtype=np.int64).reshape(n)

    def by(col: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for i, d in enumerate(cols[col]):
            for ident, v in d.items():
                out.setdefault(ident, np.zeros(n, dtype=np.int64))[i] = v
        return dict(sorted(out.items()))

    return Snapshot(
        start_ns=start_ns, end_ns=end_ns,
        start=np.array(cols[0], dtype=np.uint64).reshape(n),
        end=np.array(cols[1], dtype=np.uint64).reshape(n),
        nr_accesses=counts(2), age=counts(3), nr_reports=counts(4), writes=counts(5),
        reads=counts(6), by_cpu=by(7), by_tid=by(8))


def _record(rec: Any, where: str) -> TargetRecord:
    rec = _obj(rec, where)
    target_id = _int(_key(rec, "target_id", where), f"{where} target_id", 0, 2**31)
    iv = _obj(_key(rec, "intervals", where), f"{where} intervals")
    sample_us = _int(_key(iv, "sample_us", f"{where} intervals"), f"{where} sample_us", 1, _MAX_US)
    aggr_us = _int(_key(iv, "aggr_us", f"{where} intervals"), f"{where} aggr_us", 1, _MAX_US)
    update_us = _int(iv.get("ops_update_us", 0), f"{where} ops_update_us", 0, _MAX_US)
    ours = _obj(rec.get("damon_bpf", {}), f"{where} damon_bpf")
    pid = ours.get("pid")
    if pid is not None:
        pid = _int(pid, f"{where} damon_bpf.pid", 0, 2**32)
    meta = _obj(ours.get("meta", {}), f"{where} damon_bpf.meta")
    snaps = _list(_key(rec, "snapshots", where), f"{where} snapshots")
    parsed = (_snapshot(s, f"{where} snapshot {i}", aggr_us) for i, s in enumerate(snaps))
    return TargetRecord(target_id, pid, sample_us, aggr_us, update_us,
                        [s for s in parsed if s is not None], meta)


def read_record(path: str) -> list[TargetRecord]:
    """Read a record file (ours or damo's JSON/compressed JSON). Any problem -> RecordFileError."""
    path = os.fspath(path)
    try:
        doc = _parse_json(_load_text(path))
        records = [_record(r, f"record {i}") for i, r in enumerate(_list(doc, "the top level"))]
    except _Bad as err:
        raise RecordFileError(f"record file {path}: {err}") from None
    except MemoryError:
        raise RecordFileError(f"record file {path}: too large to load into memory") from None
    return records
