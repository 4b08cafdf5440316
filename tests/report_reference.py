"""The reports' per-snapshot code as it was before it was done over many snapshots at once (reports/columns.py,
reports/spread.py): the tests check that the fast paths give exactly (bit for bit) what this gives."""

from __future__ import annotations

from typing import Callable

import numpy as np

from damon_bpf.core.mappings import region_label
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.breakdown import Breakdown, RegionShare, _share
from damon_bpf.reports.common import bin_masses, comm_of, percentile, pick_snapshot, ppid_of, select_target
from damon_bpf.reports.dirty_rate import dirty_bytes
from damon_bpf.reports.heatmap.axis import AddressAxis
from damon_bpf.reports.heatmap.grid import MAX_PANELS, _Panel, _share_of
from damon_bpf.reports.wss import DEFAULT_PERCENTILES, WssReport


def breakdown(records: list[TargetRecord], top: int = 10, snapshot: int = -1,
              time_range: tuple[int, int] | None = None,
              target_id: int | None = None) -> Breakdown:
    """The ``top`` hottest regions of snapshot ``snapshot``'s layout with their report shares."""
    rec = select_target(records, target_id)
    layout = pick_snapshot(rec, snapshot)
    snaps = [s for s in in_time(rec, time_range) if s.nr_regions]
    lo, hi = layout.start.astype(np.float64), layout.end.astype(np.float64)
    cpu_ids = sorted({c for s in snaps for c in s.by_cpu})
    tid_ids = sorted({t for s in snaps for t in s.by_tid})
    row: dict[tuple[str, int | str], int] = {("cpu", c): 4 + i for i, c in enumerate(cpu_ids)}
    row.update({("tid", t): 4 + len(cpu_ids) + i for i, t in enumerate(tid_ids)})
    names = sorted({name for s in snaps for f in s.functions or () for name in f})
    first_fn = 4 + len(row)
    row.update({("fn", name): first_fn + i for i, name in enumerate(names)})
    moved = np.zeros((4 + len(row), len(lo)))
    for s in snaps:  # every quantity of a snapshot moved onto the layout in one pass
        mass = np.zeros((len(moved), s.nr_regions))
        # nr_accesses is a per-region rate, not a count: spread it as rate x bytes
        mass[0] = s.nr_accesses * (s.end - s.start).astype(np.float64)
        mass[1], mass[2], mass[3] = s.nr_reports, s.reads, s.writes
        for c, v in s.by_cpu.items():
            mass[row["cpu", c]] = v
        for t, v in s.by_tid.items():
            mass[row["tid", t]] = v
        for i, region_functions in enumerate(s.functions or ()):
            for name, count in region_functions.items():
                mass[row["fn", name], i] = count
        moved += bin_masses(s.start, s.end, mass, lo, hi)
    hz = moved[0] / (hi - lo) / max(1, len(snaps)) * 1e6 / rec.aggr_us
    reports, reads, writes = moved[1], moved[2], moved[3]
    cpus = {c: moved[row["cpu", c]] for c in cpu_ids}
    tids = {t: moved[row["tid", t]] for t in tid_ids}
    functions = {name: moved[row["fn", name]] for name in names}
    order = sorted(range(len(lo)), key=lambda i: (-hz[i], -reports[i], i))[:max(0, top)]
    regions = [RegionShare(
        int(layout.start[i]), int(layout.end[i]), float(hz[i]), float(reports[i]),
        float(reads[i]), float(writes[i]),
        _share({c: float(v[i]) for c, v in cpus.items()}, reports[i]),
        _share({t: float(v[i]) for t, v in tids.items()}, reports[i]),
        mappings=list(layout.mappings[i]) if layout.mappings is not None else [],
        functions=_share({name: float(v[i]) for name, v in functions.items()}, reports[i])) for i in order]
    origin = rec.snapshots[0].start_ns
    span = ((snaps[0].start_ns - origin, snaps[-1].end_ns - origin) if snaps else (0, 0))
    return Breakdown(rec.target_id, rec.pid, len(snaps), span, regions, _total(snaps), comm_of(rec), ppid_of(rec))


def _total(snaps) -> RegionShare:
    reports = float(sum(int(s.nr_reports.sum()) for s in snaps))
    cpus: dict[int, float] = {}
    tids: dict[int, float] = {}
    functions: dict[str, float] = {}
    for s in snaps:
        for f in s.functions or ():
            for name, count in f.items():
                functions[name] = functions.get(name, 0.0) + count
        for c, v in s.by_cpu.items():
            cpus[c] = cpus.get(c, 0.0) + float(v.sum())
        for t, v in s.by_tid.items():
            tids[t] = tids.get(t, 0.0) + float(v.sum())
    lo = min((int(s.start[0]) for s in snaps), default=0)
    hi = max((int(s.end[-1]) for s in snaps), default=0)
    return RegionShare(lo, hi, 0.0, reports, float(sum(int(s.reads.sum()) for s in snaps)),
                       float(sum(int(s.writes.sum()) for s in snaps)),
                       _share(cpus, reports), _share(tids, reports), functions=_share(functions, reports))


def grids(snaps: list[Snapshot], panels: list, axis, edges: np.ndarray, *_sources) -> list[np.ndarray]:
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


def touched_spans(snaps: list[Snapshot]) -> list[tuple[int, int]]:
    """Union of the regions ever accessed or reported (all regions if none was)."""
    def spans(pick: Callable[[Snapshot], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([s.start[pick(s)] for s in snaps] or [np.zeros(0, np.uint64)]),
                np.concatenate([s.end[pick(s)] for s in snaps] or [np.zeros(0, np.uint64)]))

    starts, ends = spans(lambda s: (s.nr_accesses > 0) | (s.nr_reports > 0))
    if len(starts) == 0:
        starts, ends = spans(lambda s: np.ones(s.nr_regions, dtype=bool))
    if len(starts) == 0:
        raise UsageError("no regions were monitored in the chosen time range")
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    first = np.concatenate([[True], starts[1:] > ends[:-1]])  # a new span starts past the reach
    last = np.concatenate([first[1:], [True]])
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def hottest_snapshot(rec: TargetRecord) -> int:
    """The index of the snapshot with the most accessed bytes weighted by rate (sum of size x nr_accesses);
    the last of equals, and the last snapshot when none was accessed."""
    if not rec.snapshots:
        return -1
    heat = [float(np.dot(s.sizes.astype(np.float64), s.nr_accesses)) for s in rec.snapshots]
    best = max(heat)
    return -1 if best <= 0 else max(i for i, h in enumerate(heat) if h == best)


def wss(records: list[TargetRecord], target_id: int | None = None, write: bool = False,
        acc_thres: int = 1, sz_thres: int = 1, skip: int = 0,
        percentiles: tuple[int, ...] = DEFAULT_PERCENTILES) -> WssReport:
    """Working-set (or, with ``write``, dirty-set) size per snapshot, after skipping ``skip``."""
    rec = select_target(records, target_id)
    snaps = rec.snapshots[skip:]
    origin = rec.snapshots[0].start_ns if rec.snapshots else 0
    per_s = 1e6 / rec.aggr_us
    sizes, rates = [], []
    for s in snaps:
        size = (s.end - s.start).astype(np.int64)
        member = (s.writes > 0) if write else (s.nr_accesses >= acc_thres)
        sizes.append(int(size[member & (size >= sz_thres)].sum()))
        if write:
            rates.append(float(s.writes.sum()) * per_s)
    ranked, ranked_rates = sorted(sizes), sorted(rates)
    return WssReport(
        rec.target_id, write, [s.end_ns - origin for s in snaps], sizes, rates,
        {p: percentile(ranked, p) for p in percentiles} if sizes else {},
        {p: percentile(ranked_rates, p) for p in percentiles} if rates else {},
        [s.footprint[0] if s.footprint else None for s in snaps],
        [s.footprint[1] if s.footprint else None for s in snaps], rec.pid, comm_of(rec), ppid_of(rec))



def panels(rec: TargetRecord, snaps: list[Snapshot], by: str | None) -> list[_Panel]:
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



def in_time(rec: TargetRecord, time_range: tuple[int, int] | None) -> list[Snapshot]:
    """Snapshots overlapping ``time_range`` (ns relative to the first snapshot's start)."""
    if time_range is None or not rec.snapshots:
        return list(rec.snapshots)
    origin = rec.snapshots[0].start_ns
    lo, hi = origin + time_range[0], origin + time_range[1]
    return [s for s in rec.snapshots if s.end_ns > lo and s.start_ns < hi]



def mapping_names(snaps: list[Snapshot], axis: AddressAxis) -> list[str] | None:
    """Per row, the short name of the mappings of the region at the row's middle, from the latest snapshot
    that has a region there ("" when none does); None when no snapshot names its regions (older records)."""
    named = [s for s in snaps if s.mappings is not None and s.nr_regions]
    if not named:
        return None
    mids = np.array([(lo + hi) // 2 for lo, hi in zip(axis.lo, axis.hi)], dtype=np.uint64)
    names: list[str | None] = [None] * axis.rows
    for s in reversed(named):
        mappings = s.mappings
        assert mappings is not None   # only snapshots that name their regions are in named
        index = np.searchsorted(s.start, mids, side="right") - 1
        inside = (index >= 0) & (mids < s.end[np.clip(index, 0, None)])
        for r in np.nonzero(inside)[0].tolist():
            if names[r] is None:
                names[r] = region_label(mappings[int(index[r])])
        if all(n is not None for n in names):
            break
    return [n or "" for n in names]



def dirty_rates(rec: TargetRecord, page: int, skip: int) -> tuple[list[int], list[float]]:
    snaps = rec.snapshots[skip:]
    origin = rec.snapshots[0].start_ns if rec.snapshots else 0
    times, rates = [], []
    for s in snaps:
        window_s = (s.end_ns - s.start_ns) / 1e9 or rec.aggr_us / 1e6
        times.append(s.end_ns - origin)
        rates.append(dirty_bytes(s, page) / window_s)
    return times, rates

