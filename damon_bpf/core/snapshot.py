"""What one aggregation interval produces: every region with its counters and attribution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Snapshot:
    """Regions of one target at the end of one aggregation interval.

    All arrays have one entry per region, in address order. ``age`` counts aggregation
    intervals (DAMON's ``age.aggr_intervals``). ``nr_reports`` is the raw number of access
    reports that fell in the region during the aggregation; ``writes`` and ``reads`` split it
    (reports whose kind is unknown are ``nr_reports - writes - reads``); ``by_cpu`` and
    ``by_tid`` map a CPU number / thread id to that source's report count per region.
    ``mappings`` (None: not known) gives per region the ``(name, kind)`` of the mappings it covers
    (core.mappings), as the target's last layout read named them. ``footprint`` (None: not known) is the
    process's resident and proportional set sizes in bytes (RSS, PSS) as last read at most a second or so
    before the snapshot closed.
    """

    start_ns: int
    end_ns: int
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray
    nr_reports: np.ndarray
    writes: np.ndarray
    reads: np.ndarray
    by_cpu: dict[int, np.ndarray] = field(default_factory=dict)
    by_tid: dict[int, np.ndarray] = field(default_factory=dict)
    mappings: list[list[tuple[str, str]]] | None = None
    footprint: tuple[int, int] | None = None
    # (region index, ip, count) of the aggregation's reports (core.ipcounts), and per region its functions
    # named from them, {name: reports} (the recorder names them; a record file stores only the names)
    ips: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    functions: list[dict[str, int]] | None = None

    @property
    def nr_regions(self) -> int:
        return len(self.start)

    @property
    def sizes(self) -> np.ndarray:
        return (self.end - self.start).astype(np.uint64)
