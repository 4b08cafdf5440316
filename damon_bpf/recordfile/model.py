"""The record file's data model (what reports, live and the sources use) and its value limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from damon_bpf.core.snapshot import Snapshot

MAX_ADDR = 2**64 - 1  # Snapshot addresses are uint64
MAX_COUNT = 2**53  # counts above this cannot be exact in a float; no real recording gets near
MAX_NS = 2**63 - 1
MAX_US = 2**40  # ~12 days, far beyond any sensible interval


@dataclass
class TargetRecord:
    """One monitored target: its intervals, its snapshots, and damon-bpf's own metadata."""

    target_id: int
    pid: int | None
    sample_us: int
    aggr_us: int
    update_us: int
    snapshots: Sequence[Snapshot] = field(default_factory=list)   # read_record: a snapshots.Snapshots
    meta: dict = field(default_factory=dict)
    # Set only by read_record(path, snapshot=N), which keeps one snapshot: how many the record held (the kept
    # one is snapshot N of those) and when the first began (a report's time origin).
    nr_in_file: int | None = None
    origin_ns: int | None = None


class BadRecord(Exception):
    """A problem with a record file's content; the message says where and what. The reader turns it into
    RecordFileError with the path."""
