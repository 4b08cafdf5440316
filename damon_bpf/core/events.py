"""Access reports reduced to the columns the aggregator needs, and the buffer of those not yet placed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """What a report's ``write`` column holds, as the core reads it (any other value counts as UNKNOWN)."""

    READ = 0
    WRITE = 1
    UNKNOWN = 2   # the source cannot tell (perf-fault)


# The core's input: a structured array with these columns (more are ignored); ``time_ns`` on CLOCK_MONOTONIC,
# ``write`` a Kind. Sources adapt their records to it (damon_bpf.recorder.core_reports for the BPF record).
REPORT_COLUMNS = ("addr", "time_ns", "cpu", "tid", "write")


@dataclass
class Events:
    """Parallel arrays, one entry per report. ``sample`` is the report's sample-interval index."""

    addr: np.ndarray
    sample: np.ndarray
    cpu: np.ndarray
    tid: np.ndarray
    write: np.ndarray
    ip: np.ndarray

    @classmethod
    def from_records(cls, records: np.ndarray, start_ns: int, sample_ns: int) -> "Events":
        """The REPORT_COLUMNS of ``records``; times before ``start_ns`` get negative samples."""
        rel = records["time_ns"].astype(np.int64) - np.int64(start_ns)
        return cls(
            np.ascontiguousarray(records["addr"], np.uint64),
            rel // np.int64(sample_ns),
            np.ascontiguousarray(records["cpu"]),
            np.ascontiguousarray(records["tid"]),
            np.ascontiguousarray(records["write"]),
            np.ascontiguousarray(records["ip"], np.uint64),
        )

    def __len__(self) -> int:
        return len(self.addr)

    def take(self, which: np.ndarray | slice) -> "Events":
        """The reports selected by a boolean mask, an index array or a slice."""
        return Events(*(getattr(self, f)[which] for f in _COLUMNS))

    @staticmethod
    def concat(parts: list["Events"]) -> "Events":
        if len(parts) == 1:
            return parts[0]
        return Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in _COLUMNS))


_COLUMNS = ("addr", "sample", "cpu", "tid", "write", "ip")


def _chunk(ev: Events) -> tuple[int, int, Events]:
    return int(ev.sample.min()), int(ev.sample.max()), ev


_MAX_CHUNKS = 16
EMPTY = Events(np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.uint32),
               np.empty(0, np.uint32), np.empty(0, np.uint8), np.empty(0, np.uint64))


class Pending:
    """Reports waiting for their sample interval to close. Each chunk remembers its sample
    range, so taking the closed samples touches only chunks that straddle the boundary."""

    def __init__(self) -> None:
        self._chunks: list[tuple[int, int, Events]] = []

    def __len__(self) -> int:
        return sum(len(ev) for _, _, ev in self._chunks)

    def last_sample(self) -> int:
        """The latest sample index waiting (-1 when none)."""
        return max((hi for _, hi, _ in self._chunks), default=-1)

    def retire_ips(self, value: int) -> None:
        """Every waiting report's ip becomes ``value`` (its process exec'd: see core.ipcounts.BEFORE_EXEC)."""
        for _, _, ev in self._chunks:
            ev.ip = np.full_like(ev.ip, value)

    def add(self, ev: Events) -> None:
        if len(ev):
            self._chunks.append(_chunk(ev))

    def take_before(self, sample: int) -> Events:
        """Remove and return every report whose sample index is below ``sample``."""
        ready, keep = [], []
        for lo, hi, ev in self._chunks:
            if hi < sample:
                ready.append(ev)
            elif lo >= sample:
                keep.append((lo, hi, ev))
            else:
                early = ev.sample < sample
                ready.append(ev.take(early))
                keep.append(_chunk(ev.take(~early)))
        if len(keep) > _MAX_CHUNKS:  # reports far ahead of the clock: keep the loop above short
            keep = [_chunk(Events.concat([ev for _, _, ev in keep]))]
        self._chunks = keep
        return Events.concat(ready) if ready else EMPTY
