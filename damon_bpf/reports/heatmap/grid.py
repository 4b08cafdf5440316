"""The heatmap's grid: what each panel shows (accesses, or one CPU / thread / access kind), and each
cell's heat as damo computes it: every region of every snapshot adds ``rate x overlapping time x
overlapping bytes``, divided by the cell's time x bytes, so a cell holds the mean rate over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import Columns, chunks, columns, source_ids
from damon_bpf.reports.common import comm_of, in_time, ppid_of, process_line, select_target
from damon_bpf.reports.heatmap.axis import AddressAxis, auto_axis, linear_axis, mapping_names, time_edges
from damon_bpf.reports.spread import bin_masses_each

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
    rate: Callable[[Columns], np.ndarray]  # per-region rate per second in snapshots joined (or in one)


def _share_of(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return np.divide(part, whole, out=np.zeros(len(whole)), where=whole > 0)


def _panels(rec: TargetRecord, snaps: Sequence[Snapshot], by: str | None) -> list[_Panel]:
    """Every panel in one unit, DAMON's access rate (Hz): a CPU's, thread's or kind's panel is each region's
    rate times that source's share of the region's reports, so the panels of a view add up to the whole."""
    per_s = 1e6 / rec.aggr_us

    def hz(s: Columns) -> np.ndarray:
        return s.nr_accesses * per_s

    if by is None:
        return [_Panel("accesses", "Hz", hz)]
    if by == "rw":
        return [_Panel("reads", "Hz", lambda s: hz(s) * _share_of(s.reads, s.nr_reports)),
                _Panel("writes", "Hz", lambda s: hz(s) * _share_of(s.writes, s.nr_reports))]
    if by not in ("cpu", "tid"):
        raise UsageError(f"cannot break a heatmap down by {by!r}; use cpu, tid or rw")
    source = "by_cpu" if by == "cpu" else "by_tid"
    totals = dict.fromkeys(source_ids(snaps, source), 0)   # first seen first: that breaks ties below
    for part in chunks(snaps, 16):
        for ident, counts in getattr(columns(part, [source], names=False), source).items():
            totals[ident] += int(counts.sum())
    if not totals:
        raise UsageError(f"the record holds no per-{by} counts in this time range")
    busiest = sorted(sorted(totals, key=lambda i: -totals[i])[:MAX_PANELS])

    def rate(ident: int) -> Callable[[Columns], np.ndarray]:
        def per_region(s: Columns) -> np.ndarray:
            counts = (s.by_cpu if by == "cpu" else s.by_tid).get(ident)
            return np.zeros(s.nr_regions) if counts is None else hz(s) * _share_of(counts, s.nr_reports)
        return per_region

    label = "cpu" if by == "cpu" else "thread"
    return [_Panel(f"{label} {i}", "Hz", rate(i)) for i in busiest]


def _grids(snaps: Sequence[Snapshot], panels: list[_Panel], axis: AddressAxis, edges: np.ndarray,
           sources: list[str]) -> list[np.ndarray]:
    lo, hi = np.array(axis.lo, dtype=np.float64), np.array(axis.hi, dtype=np.float64)
    cols = len(edges) - 1
    unit = int(edges[1] - edges[0])
    # per column, what covered each row (bytes x ns) and each panel's rate x bytes x ns, added up snapshot by
    # snapshot in the record's order (np.add.at adds in the order given: the sums round as they always did)
    sums = np.zeros((cols, 1 + len(panels), axis.rows))
    for part in chunks(snaps, 4 * len(sums[0]), 6 * sums[0].size):   # what bin_masses_each holds
        joined = columns(part, sources, names=False)
        size = (joined.end - joined.start).astype(np.float64)  # rate x bytes, for every panel at once
        masses = bin_masses_each(joined.start, joined.end, joined.bounds,
                                 np.stack([size] + [p.rate(joined) * size for p in panels]), lo, hi)
        snap, col, overlap = _cells(joined, edges)
        np.add.at(sums, col, overlap[:, None, None] * masses[snap])
    area = unit * (hi - lo)[:, None]
    cover, *heats = np.ascontiguousarray(sums.transpose(1, 2, 0))   # rows x columns, as a grid is laid out
    return [np.where(cover > 0, heat / area, np.nan) for heat in heats]


def _cells(joined: Columns, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (snapshot, column) a snapshot overlaps, snapshot by snapshot, and how long (ns); a snapshot of no
    time, or outside the columns, has none."""
    cols, t0, unit = len(edges) - 1, int(edges[0]), int(edges[1] - edges[0])
    first = np.maximum(0, (joined.start_ns - t0) // unit)
    last = np.minimum(cols - 1, (joined.end_ns - 1 - t0) // unit)
    many = np.where((joined.end_ns > joined.start_ns) & (first <= last), last - first + 1, 0)
    snap = np.repeat(np.arange(len(many)), many)
    col = first[snap] + np.arange(len(snap)) - np.repeat(np.cumsum(many) - many, many)
    overlap = np.minimum(joined.end_ns[snap], edges[col + 1]) - np.maximum(joined.start_ns[snap], edges[col])
    return snap, col, overlap


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
    grids = _grids(snaps, panels, axis, edges, ["by_cpu" if by == "cpu" else "by_tid"] if by in ("cpu", "tid") else [])
    return [Heatmap(p.name, p.unit, grid, axis, edges, rec.snapshots[0].start_ns, rec.target_id,
                    rec.pid, comm_of(rec), ppid_of(rec)) for p, grid in zip(panels, grids)]
