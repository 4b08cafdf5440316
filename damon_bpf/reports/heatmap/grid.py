"""The heatmap's grid: what each panel shows (accesses, or one CPU / thread / access kind), and each
cell's heat as damo computes it: every region of every snapshot adds ``rate x overlapping time x
overlapping bytes``, divided by the cell's time x bytes, so a cell holds the mean rate over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import bin_masses, comm_of, in_time, ppid_of, process_line, select_target
from damon_bpf.reports.heatmap.axis import AddressAxis, auto_axis, linear_axis, mapping_names, time_edges

MAX_PANELS = 8  # --by cpu/tid: the busiest ones; more would be unreadable side by side


@dataclass
class Heatmap:
    """``grid[row, col]``: rate in ``unit`` over the cell (its mean, or the hottest finer row's);
    row 0 is the lowest address."""

    name: str
    unit: str
    grid: np.ndarray
    axis: AddressAxis
    time_edges_ns: np.ndarray
    origin_ns: int  # the record's first snapshot start; times are shown relative to it
    target_id: int
    pid: int | None
    comm: str | None = None
    ppid: int | None = None

    @property
    def who(self) -> str:
        return process_line(self.target_id, self.pid, self.comm, self.ppid)


@dataclass
class _Panel:
    name: str
    unit: str
    rate: Callable[[Snapshot], np.ndarray]  # per-region rate per second in one snapshot


def _share_of(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return np.divide(part, whole, out=np.zeros(len(whole)), where=whole > 0)


def _panels(rec: TargetRecord, snaps: list[Snapshot], by: str | None) -> list[_Panel]:
    """Every panel in one unit, DAMON's access rate (Hz): a CPU's, thread's or kind's panel is each region's
    rate times that source's share of the region's reports, so the panels of a view add up to the whole."""
    per_s = 1e6 / rec.aggr_us

    def hz(s: Snapshot) -> np.ndarray:
        return s.nr_accesses * per_s

    if by is None:
        return [_Panel("accesses", "Hz", hz)]
    if by == "rw":
        return [_Panel("reads", "Hz", lambda s: hz(s) * _share_of(s.reads, s.nr_reports)),
                _Panel("writes", "Hz", lambda s: hz(s) * _share_of(s.writes, s.nr_reports))]
    if by not in ("cpu", "tid"):
        raise UsageError(f"cannot break a heatmap down by {by!r}; use cpu, tid or rw")
    totals: dict[int, int] = {}
    for s in snaps:
        for ident, counts in (s.by_cpu if by == "cpu" else s.by_tid).items():
            totals[ident] = totals.get(ident, 0) + int(counts.sum())
    if not totals:
        raise UsageError(f"the record holds no per-{by} counts in this time range")
    busiest = sorted(sorted(totals, key=lambda i: -totals[i])[:MAX_PANELS])

    def rate(ident: int) -> Callable[[Snapshot], np.ndarray]:
        def per_region(s: Snapshot) -> np.ndarray:
            counts = (s.by_cpu if by == "cpu" else s.by_tid).get(ident)
            return np.zeros(s.nr_regions) if counts is None else hz(s) * _share_of(counts, s.nr_reports)
        return per_region

    label = "cpu" if by == "cpu" else "thread"
    return [_Panel(f"{label} {i}", "Hz", rate(i)) for i in busiest]


def _grids(snaps: list[Snapshot], panels: list[_Panel], axis: AddressAxis,
           edges: np.ndarray) -> list[np.ndarray]:
    lo, hi = np.array(axis.lo, dtype=np.float64), np.array(axis.hi, dtype=np.float64)
    cols = len(edges) - 1
    t0, unit = int(edges[0]), int(edges[1] - edges[0])
    heats = [np.zeros((axis.rows, cols)) for _ in panels]
    cover = np.zeros((axis.rows, cols))
    for s in snaps:
        first, last = max(0, (s.start_ns - t0) // unit), min(cols - 1, (s.end_ns - 1 - t0) // unit)
        if s.end_ns <= s.start_ns or first > last:
            continue
        size = (s.end - s.start).astype(np.float64)  # rate x bytes, for every panel at once
        covered, *masses = bin_masses(s.start, s.end, [size] + [p.rate(s) * size for p in panels],
                                      lo, hi)
        for k in range(first, last + 1):
            overlap = min(s.end_ns, int(edges[k + 1])) - max(s.start_ns, int(edges[k]))
            cover[:, k] += overlap * covered
            for heat, mass in zip(heats, masses):
                heat[:, k] += overlap * mass
    area = unit * (hi - lo)[:, None]
    return [np.where(cover > 0, heat / area, np.nan) for heat in heats]


def mean_heatmaps(records: list[TargetRecord], by: str | None, resol: tuple[int, int],
                  address_range: tuple[int, int] | None, time_range: tuple[int, int] | None,
                  target_id: int | None) -> list[Heatmap]:
    """One heatmap per panel on shared axes, each cell the mean rate over it (damo's heatmap)."""
    rows, cols = resol
    rec = select_target(records, target_id)
    if not rec.snapshots:
        raise UsageError(f"target {rec.target_id} has no snapshots")
    edges = time_edges(rec, cols, time_range)
    rel = (int(edges[0]) - rec.snapshots[0].start_ns, int(edges[-1]) - rec.snapshots[0].start_ns)
    snaps = in_time(rec, rel)
    axis = (linear_axis(*address_range, rows) if address_range is not None
            else auto_axis(snaps, rows))
    axis.names = mapping_names(snaps, axis)
    panels = _panels(rec, snaps, by)
    return [Heatmap(p.name, p.unit, grid, axis, edges, rec.snapshots[0].start_ns, rec.target_id,
                    rec.pid, comm_of(rec), ppid_of(rec)) for p, grid in zip(panels, _grids(snaps, panels, axis, edges))]
