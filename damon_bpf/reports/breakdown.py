"""Who touches the hottest regions: share of reports by CPU, by thread, reads vs writes, by function.

One aggregation holds few page-fault reports, so counts are summed over every snapshot in the
time range. DAMON re-splits and merges regions each aggregation, so the regions of one snapshot
(the last by default) serve as the layout, and each snapshot's counts are moved onto it in
proportion to the bytes its regions overlap. Hotness is the layout region's time-averaged
access frequency (Hz), computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterator, Sequence

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import columns as report_columns
from damon_bpf.reports.columns import SOURCES, Columns, columns, outline_of, select, source_ids
from damon_bpf.reports.common import (comm_of, fmt_addr, fmt_ns, fmt_size, in_time, pick_snapshot, ppid_of,
                                      process_line, select_target)
from damon_bpf.reports.spread import bin_masses_each, summed

SHOWN_SOURCES = 3  # per region, the busiest CPUs / threads shown in the table


@dataclass
class RegionShare:
    start: int
    end: int
    hz: float  # time-averaged access frequency
    reports: float
    reads: float
    writes: float
    by_cpu: dict[int, float] = field(default_factory=dict)
    by_tid: dict[int, float] = field(default_factory=dict)
    mappings: list[tuple[str, str]] = field(default_factory=list)   # (name, kind) of those it covers
    functions: dict[str, float] = field(default_factory=dict)   # faulting code (each snapshot's top 5)

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Breakdown:
    target_id: int
    pid: int | None
    nr_snapshots: int
    span_ns: tuple[int, int]  # relative to the record's first snapshot
    regions: list[RegionShare]  # hottest first
    total: RegionShare  # every report in the time range, whatever the region
    comm: str | None = None
    ppid: int | None = None


def _share(counts: dict, total: float) -> dict:
    """Non-zero shares in [0, 1], biggest first."""
    if total <= 0:
        return {}
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v > 0}


def breakdown(records: list[TargetRecord], top: int = 10, snapshot: int = -1,
              time_range: tuple[int, int] | None = None,
              target_id: int | None = None) -> Breakdown:
    """The ``top`` hottest regions of snapshot ``snapshot``'s layout with their report shares."""
    rec = select_target(records, target_id)
    layout = pick_snapshot(rec, snapshot)
    in_range = in_time(rec, time_range)
    snaps = select(in_range, outline_of(in_range)[2] > 0)
    lo, hi = layout.start.astype(np.float64), layout.end.astype(np.float64)
    cpu_ids, tid_ids = sorted(source_ids(snaps, "by_cpu")), sorted(source_ids(snaps, "by_tid"))
    row: dict[tuple[str, int | str], int] = {("cpu", c): 4 + i for i, c in enumerate(cpu_ids)}
    row.update({("tid", t): 4 + len(cpu_ids) + i for i, t in enumerate(tid_ids)})
    fn_rows = _Rows(4 + len(row))   # a row per function name, in the order the names first appear
    moved = np.zeros((4 + len(row), len(lo)))
    total = _Total(snaps)
    for part in _parts(snaps, lambda: 4 + len(row) + len(fn_rows), len(lo)):
        entries = report_columns.function_entries(part)   # flat, without a dict per region, where it can
        cols = columns(part, SOURCES, names=entries is None)   # else each snapshot's functions, made once
        total.add(cols)
        mass = _masses(cols, row, fn_rows, entries or _function_counts(cols))
        total.add_functions(mass.fn_rows, mass.fn_counts)
        spread = bin_masses_each(cols.start, cols.end, cols.bounds, mass.rows, lo, hi)
        moved = summed(np.concatenate([moved, np.zeros((len(spread[0]) - len(moved), len(lo)))]), spread)
    hz = moved[0] / (hi - lo) / max(1, len(snaps)) * 1e6 / rec.aggr_us
    reports, reads, writes = moved[1], moved[2], moved[3]
    cpus = {c: moved[row["cpu", c]] for c in cpu_ids}
    tids = {t: moved[row["tid", t]] for t in tid_ids}
    functions = {name: moved[fn_rows[name]] for name in sorted(fn_rows)}
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
    return Breakdown(rec.target_id, rec.pid, len(snaps), span, regions, total.share(fn_rows), comm_of(rec),
                     ppid_of(rec))


class _Rows(dict):
    """Function name -> its row of the moved quantities, a new row for each name as it first appears."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self.first = first

    def __missing__(self, name: str) -> int:
        self[name] = at = self.first + len(self)
        return at


def _parts(snaps: Sequence[Snapshot], nr_rows: Callable[[], int], nr_bins: int) -> Iterator[Sequence[Snapshot]]:
    """``snaps`` in consecutive parts whose work arrays (bin_masses_each's, for ``nr_rows()`` quantities, a
    number that grows as function names appear) stay within columns.WORK_VALUES. A part's size does not change what
    is computed (each snapshot's spreading is its own, and the running sums add them in order)."""
    nr_regions = outline_of(snaps)[2]
    widest = int(nr_regions.max()) if len(nr_regions) else 0
    first = 0
    while first < len(snaps):
        rows = nr_rows()
        size = max(1, report_columns.WORK_VALUES // max(1, 4 * rows * widest + 6 * rows * nr_bins))
        yield snaps[first:first + size]
        first += size


@dataclass
class _Mass:
    rows: np.ndarray   # every quantity breakdown moves onto the layout, one row each, per region
    fn_rows: np.ndarray   # per function count of each region, in the order the snapshots name them: its row
    fn_counts: np.ndarray   # and its count


def _masses(cols: Columns, row: dict, fn_rows: _Rows,
            functions: tuple[list[str], np.ndarray, np.ndarray, np.ndarray]) -> _Mass:
    """The masses of the regions of ``cols``; ``row`` says where each cpu and thread goes, ``fn_rows`` where
    each function (``functions``: table of names, each entry's name there, count, region) goes (new names get
    new rows, in the order they first appear; 0 where a snapshot has none)."""
    table, ids, counts, regions = functions
    named, first = np.unique(ids, return_index=True)
    row_of = np.zeros(len(table), np.int64)
    in_order = named[np.argsort(first, kind="stable")]
    row_of[in_order] = np.fromiter((fn_rows[table[i]] for i in in_order.tolist()), np.int64, len(in_order))
    at = row_of[ids]
    mass = np.zeros((fn_rows.first + len(fn_rows), cols.nr_regions))
    # nr_accesses is a per-region rate, not a count: spread it as rate x bytes
    mass[0] = cols.nr_accesses * (cols.end - cols.start).astype(np.float64)
    mass[1], mass[2], mass[3] = cols.nr_reports, cols.reads, cols.writes
    for c, v in cols.by_cpu.items():
        mass[row["cpu", c]] = v
    for t, v in cols.by_tid.items():
        mass[row["tid", t]] = v
    mass[at, regions] = counts
    return _Mass(mass, at, counts)


def _function_counts(cols: Columns) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every (name, count) of the regions' functions in order, and the region (of ``cols``) of each (as
    function_entries gives them: each name its own entry of the table)."""
    per_region: list[dict[str, int]] = []
    region_index: list[int] = []
    for functions, first in zip(cols.functions, cols.bounds.tolist()):
        if functions:
            per_region.extend(functions)
            region_index.extend(range(first, first + len(functions)))
    sizes = np.fromiter(map(len, per_region), np.int64, len(per_region))
    names = list(chain.from_iterable(map(dict.keys, per_region)))
    counts = np.fromiter(chain.from_iterable(map(dict.values, per_region)), np.int64, len(names))
    return names, np.arange(len(names)), counts, np.repeat(np.array(region_index, np.int64), sizes)


class _Total:
    """Every report of the snapshots, whatever the region, added up part by part. Float totals are running
    sums snapshot by snapshot, so they round as adding one snapshot at a time does."""

    def __init__(self, snaps: Sequence[Snapshot]) -> None:
        self.reports = self.reads = self.writes = 0
        self.lo: int | None = None
        self.hi: int | None = None
        # in the order they first appear: it breaks ties between equal shares
        self.by: dict[str, dict[int, float]] = {name: dict.fromkeys(source_ids(snaps, name), 0.0) for name in SOURCES}
        self.functions = np.zeros(0)   # per function row (_Rows), its reports

    def add(self, cols: Columns) -> None:
        self.reports += int(cols.nr_reports.sum())
        self.reads += int(cols.reads.sum())
        self.writes += int(cols.writes.sum())
        lo, hi = int(cols.start[cols.bounds[:-1]].min()), int(cols.end[cols.bounds[1:] - 1].max())
        self.lo, self.hi = (lo, hi) if self.lo is None or self.hi is None else (min(self.lo, lo), max(self.hi, hi))
        for name in SOURCES:
            totals = self.by[name]
            for ident, counts in getattr(cols, name).items():
                totals[ident] = float(summed(np.array(totals[ident]), cols.per_snapshot(counts).astype(np.float64)))

    def add_functions(self, rows: np.ndarray, counts: np.ndarray) -> None:
        """Add each count to its function's total, one at a time in order (np.add.at: as a float sum
        snapshot by snapshot rounds)."""
        grown = np.zeros(max(len(self.functions), int(rows.max()) + 1 if len(rows) else 0))
        grown[:len(self.functions)] = self.functions
        np.add.at(grown, rows, counts.astype(np.float64))
        self.functions = grown

    def share(self, fn_rows: _Rows) -> RegionShare:
        reports = float(self.reports)
        functions = {name: float(self.functions[at]) for name, at in fn_rows.items()}
        return RegionShare(self.lo or 0, self.hi or 0, 0.0, reports, float(self.reads), float(self.writes),
                           _share(self.by["by_cpu"], reports), _share(self.by["by_tid"], reports),
                           functions=_share(functions, reports))


def to_json(b: Breakdown) -> dict:
    """JSON-ready dict. Report counts are whole numbers: a region's share of a snapshot's counts is spread by
    bytes, and the fraction that gives is no count a user can check."""
    def one(r: RegionShare) -> dict:
        return {"start": r.start, "end": r.end, "size": r.size, "hz": r.hz,
                "reports": round(r.reports), "reads": round(r.reads), "writes": round(r.writes),
                "cpu_share": {str(k): v for k, v in r.by_cpu.items()},
                "tid_share": {str(k): v for k, v in r.by_tid.items()},
                "mappings": [{"name": name, "kind": kind} for name, kind in r.mappings],
                "function_share": dict(r.functions)}
    return {"target_id": b.target_id, "pid": b.pid, "comm": b.comm, "ppid": b.ppid, "nr_snapshots": b.nr_snapshots,
            "span_ns": list(b.span_ns), "regions": [one(r) for r in b.regions],
            "total": one(b.total)}


def _top(shares: dict, shown_nr: int = SHOWN_SOURCES) -> str:
    shown = [f"{k}:{v:.0%}" for k, v in list(shares.items())[:shown_nr]]
    rest = len(shares) - shown_nr
    return " ".join(shown) + (f" +{rest}" if rest > 0 else "") if shown else "-"


def _rw(r: RegionShare) -> str:
    if r.reports <= 0:
        return "-"
    unknown = r.reports - r.reads - r.writes
    text = f"{100 * r.reads / r.reports:.0f}/{100 * r.writes / r.reports:.0f}"
    return text + (f" (?{unknown / r.reports:.0%})" if unknown > 0.005 * r.reports else "")


def table(b: Breakdown) -> RenderableType:
    """The regions table, and beneath it, when the record names code, the functions behind each region."""
    t = Table(title=process_line(b.target_id, b.pid, b.comm, b.ppid)
              + f": hottest regions, reports over {b.nr_snapshots} snapshots "
                f"[{fmt_ns(b.span_ns[0])}, {fmt_ns(b.span_ns[1])})",
              caption="shares of each region's reports; cpu:share, tid:share, busiest first",
              box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("start", "size", "access", "reports", "r/w %", "cpus", "threads"):
        # cpus and threads fold onto more lines in a narrow terminal: never cut off with an ellipsis
        t.add_column(name, justify="left" if name in ("start", "cpus", "threads") else "right",
                     no_wrap=name in ("start", "size", "access", "reports"),
                     overflow="fold" if name in ("cpus", "threads") else "ellipsis")
    for r in b.regions:
        t.add_row(fmt_addr(r.start), fmt_size(r.size), f"{r.hz:.3g} Hz", f"{r.reports:.0f}",
                  _rw(r), _top(r.by_cpu), _top(r.by_tid))
    tot = b.total
    t.add_row("all", "", "", f"{tot.reports:.0f}", _rw(tot), _top(tot.by_cpu), _top(tot.by_tid),
              style="bold", end_section=False)
    return Group(t, code_table(b)) if b.total.functions else t


def code_table(b: Breakdown) -> Table:
    """Per region of the table above, the functions whose instructions faulted there (a separate table: a
    column more does not fit 80 columns)."""
    t = Table(caption="function:share of the region's reports (binary+0xADDR: no symbol there)",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("start", no_wrap=True)
    t.add_column("code (top functions)", overflow="fold")
    for r in b.regions:
        t.add_row(fmt_addr(r.start), _top(r.functions))
    t.add_row("all", _top(b.total.functions), style="bold", end_section=False)
    return t
