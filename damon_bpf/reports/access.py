"""The regions of one snapshot with their access frequency and age (like ``damo report access``).

Rates follow damo: ``hz = nr_accesses / aggregation seconds`` and
``percent = nr_accesses * 100 / (aggr_us / sample_us)`` (the share of sample intervals in which
the region was seen accessed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from damon_bpf.core.mappings import region_label
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import chunks, columns
from damon_bpf.reports.common import (comm_of, fmt_addr, fmt_ns, fmt_size, pick_snapshot, ppid_of, process_line,
                                      select_target)
from damon_bpf.reports.groups import combine, group_targets

BAR = 8  # width of the heat bar column


@dataclass
class AccessRow:
    start: int
    end: int
    size: int
    nr_accesses: int
    hz: float
    percent: float
    age: int  # aggregation intervals
    age_s: float
    reports: int
    writes: int
    reads: int
    mappings: list[tuple[str, str]] = field(default_factory=list)   # (name, kind) of each mapping it covers
    functions: dict[str, float] = field(default_factory=dict)   # top functions: share of the region's reports


@dataclass
class AccessReport:
    target_id: int
    pid: int | None
    snapshot: int  # index in the record (non-negative)
    start_ns: int  # relative to the record's first snapshot
    end_ns: int
    sample_us: int
    aggr_us: int
    regions: list[AccessRow]
    group: str | None = None     # --group: the comm (or "all") whose members were combined
    members: list[int] = field(default_factory=list)   # their pids
    comm: str | None = None      # the target process's command name and parent, as the record has them
    ppid: int | None = None
    nr_snapshots: int | None = None   # how many the target has (the shown one is chosen from them)

    @property
    def total_size(self) -> int:
        return sum(r.size for r in self.regions)

    @property
    def accessed_size(self) -> int:
        return sum(r.size for r in self.regions if r.nr_accesses > 0)


def _rows(rec: TargetRecord, start, end, nr_accesses, age, reports, writes, reads,
          mappings=None, functions: list[dict[str, int]] | None = None) -> list[AccessRow]:
    per_s = 1e6 / rec.aggr_us
    max_samples = rec.aggr_us / rec.sample_us
    cols = zip(start.tolist(), end.tolist(), nr_accesses.tolist(), age.tolist(), reports.tolist(),
               writes.tolist(), reads.tolist(), mappings or [[]] * len(start), functions or [{}] * len(start))
    return [AccessRow(s, e, e - s, n, n * per_s, n * 100.0 / max_samples, a, a * rec.aggr_us / 1e6, rep, w, r,
                      list(m), {name: count / rep for name, count in f.items()} if rep else {})
            for s, e, n, a, rep, w, r, m, f in cols]


def hottest_snapshot(rec: TargetRecord) -> int:
    """The index of the snapshot with the most accessed bytes weighted by rate (sum of size x nr_accesses);
    the last of equals, and the last snapshot when none was accessed."""
    if not rec.snapshots:
        return -1
    heat = np.concatenate([_heat(part) for part in chunks(rec.snapshots, 4)])
    best = heat.max()
    return -1 if best <= 0 else len(heat) - 1 - int(np.argmax(heat[::-1] == best))


def _heat(part: Sequence[Snapshot]) -> np.ndarray:
    """Each snapshot's sum of size x nr_accesses. Below 2**53 every product and partial sum is a whole number
    a float holds exactly, so any order of adding gives what np.dot gives; above, np.dot decides, as before."""
    joined = columns(part, names=False)
    product = (joined.end - joined.start).astype(np.float64) * joined.nr_accesses
    heat = np.bincount(joined.snapshot_of_region, weights=product, minlength=len(part))
    for i in np.flatnonzero(heat >= 2.0**53).tolist():
        heat[i] = float(np.dot(part[i].sizes.astype(np.float64), part[i].nr_accesses))
    return heat


def access(records: list[TargetRecord], snapshot: int = -1,
           target_id: int | None = None) -> AccessReport:
    """The regions of snapshot ``snapshot`` (default the last) of one target."""
    rec = select_target(records, target_id)
    snap = pick_snapshot(rec, snapshot)
    index = snapshot % (len(rec.snapshots) if rec.nr_in_file is None else rec.nr_in_file)
    rows = _rows(rec, snap.start, snap.end, snap.nr_accesses, snap.age, snap.nr_reports, snap.writes, snap.reads,
                 snap.mappings, snap.functions)
    origin = rec.snapshots[0].start_ns if rec.origin_ns is None else rec.origin_ns
    return AccessReport(rec.target_id, rec.pid, index, snap.start_ns - origin,
                        snap.end_ns - origin, rec.sample_us, rec.aggr_us, rows,
                        comm=comm_of(rec), ppid=ppid_of(rec),
                        nr_snapshots=len(rec.snapshots) if rec.nr_in_file is None else rec.nr_in_file)


def access_groups(records: list[TargetRecord], by: str, snapshot: int = -1) -> list[AccessReport]:
    """Per group of targets (damon_bpf.reports.groups), snapshot ``snapshot`` of its members combined."""
    reports = []
    for group in group_targets(records, by):
        merged = combine(group, snapshot)
        first = group.members[0]
        origin = min(rec.snapshots[0].start_ns for rec in group.members)
        rows = _rows(first, merged.start, merged.end, merged.nr_accesses, merged.age, merged.reports,
                     merged.writes, merged.reads)
        reports.append(AccessReport(first.target_id, None, snapshot, merged.start_ns - origin, merged.end_ns - origin,
                                    first.sample_us, first.aggr_us, rows, group.label, group.pids))
    return reports


SORT_KEYS = ("address", "access_rate", "age", "size", "temperature")
STYLES = ("detailed", "hot", "cold")
TEMPERATURE_WEIGHTS = (0, 100, 100)   # damo's default: size, access rate (percent), age (us)


@dataclass
class RegionFilter:
    """damo's region filters: keep regions whose size (bytes), access rate (percent of samples) and age
    (seconds) lie in the closed ranges given, and that overlap one of ``address`` (any, when empty)."""

    sz_region: tuple[int, int] | None = None
    access_rate: tuple[float, float] | None = None
    age: tuple[float, float] | None = None
    address: list[tuple[int, int]] = field(default_factory=list)

    def keeps(self, r: AccessRow) -> bool:
        inside = [(self.sz_region, r.size), (self.access_rate, r.percent), (self.age, r.age_s)]
        if any(bounds is not None and not bounds[0] <= value <= bounds[1] for bounds, value in inside):
            return False
        return not self.address or any(lo < r.end and r.start < hi for lo, hi in self.address)


def temperature(r: AccessRow, weights: tuple[int, int, int] = TEMPERATURE_WEIGHTS) -> float:
    """damo's temperature: weighted size, rate and age; negative for a region not accessed (the older, the colder)."""
    score = r.size * weights[0] + r.percent * weights[1] + r.age_s * 1e6 * weights[2]
    return score if r.percent > 0 else -score


_SORT_VALUE = {"address": lambda r: r.start, "access_rate": lambda r: r.percent, "age": lambda r: r.age_s,
               "size": lambda r: r.size, "temperature": temperature}


def shape(report: AccessReport, region_filter: RegionFilter | None = None, sort_by: tuple[str, ...] = ("address",),
          descending: tuple[str, ...] = (), style: str = "detailed") -> AccessReport:
    """The report's regions filtered and sorted as damo's ``--sort_regions_by``/``--sort_regions_dsc`` do (each
    key a stable sort in turn, so the last key given orders first; "all" in ``descending`` means every key).
    ``hot`` and ``cold`` styles sort by temperature, hottest / coldest first."""
    if style == "hot":
        sort_by, descending = ("temperature",), ("temperature",)
    elif style == "cold":
        sort_by, descending = ("temperature",), ()
    rows = [r for r in report.regions if region_filter is None or region_filter.keeps(r)]
    for key in sort_by:
        rows.sort(key=_SORT_VALUE[key], reverse="all" in descending or key in descending)
    report.regions = rows
    return report


@dataclass
class MappingRow:
    """The regions that cover the same mappings, together (``--group mapping``)."""

    mappings: list[tuple[str, str]]
    nr_regions: int
    size: int
    accessed_size: int
    hz: float          # size-weighted mean
    max_hz: float
    reports: int
    writes: int


def by_mapping(report: AccessReport) -> list[MappingRow]:
    """Regions grouped by the mappings they cover, hottest (most reports, then highest rate) first."""
    groups: dict[tuple, list[AccessRow]] = {}
    for r in report.regions:
        groups.setdefault(tuple(r.mappings), []).append(r)
    rows = [MappingRow(list(key), len(rs), sum(r.size for r in rs), sum(r.size for r in rs if r.nr_accesses),
                       sum(r.hz * r.size for r in rs) / max(1, sum(r.size for r in rs)), max(r.hz for r in rs),
                       sum(r.reports for r in rs), sum(r.writes for r in rs))
            for key, rs in groups.items()]
    return sorted(rows, key=lambda m: (m.reports, m.hz), reverse=True)


def to_json(report: AccessReport) -> dict:
    """JSON-ready dict (plain numbers: bytes, Hz, seconds); each region's mappings as {name, kind}."""
    out = asdict(report)
    out["total_size"] = report.total_size
    out["accessed_size"] = report.accessed_size
    for region in out["regions"]:
        region["mappings"] = [{"name": name, "kind": kind} for name, kind in region["mappings"]]
    return out


def mappings_json(report: AccessReport, rows: list[MappingRow]) -> dict:
    head = {k: v for k, v in to_json(report).items() if k != "regions"}
    groups = [{**asdict(m), "mappings": [{"name": n, "kind": k} for n, k in m.mappings]} for m in rows]
    return {**head, "mappings": groups}


def _title(report: AccessReport) -> str:
    max_hz = 1e6 / report.sample_us  # accessed in every sample
    who = (f"{report.group}: {len(report.members)} processes combined" if report.group is not None
           else process_line(report.target_id, report.pid, report.comm, report.ppid))
    of = f" of {report.nr_snapshots}" if report.nr_snapshots is not None else ""
    return (who + f", snapshot {report.snapshot}{of} [{fmt_ns(report.start_ns)}, "
            f"{fmt_ns(report.end_ns)}), max {max_hz:.0f} Hz")


def table(report: AccessReport, raw: bool = False, bar: bool = True) -> Table:
    """The regions, one a row; ``raw`` prints plain numbers (bytes, Hz, seconds) as damo's --raw_number;
    without ``bar`` (a narrow terminal) the heat bar and percent columns are left out (the mapping needs the room)."""
    max_hz = 1e6 / report.sample_us
    size = (lambda n: str(n)) if raw else fmt_size
    t = Table(title=_title(report),
              caption=f"{len(report.regions)} regions, {size(report.total_size)}, "
                      f"accessed {size(report.accessed_size)}",
              box=box.SIMPLE_HEAD, pad_edge=False)
    names = ("start", "size", "access", *(("%", "") if bar else ()), "age", "reports", "writes", "mapping")
    for name in names:
        t.add_column(name, justify="left" if name in ("start", "", "mapping") else "right", no_wrap=True,
                     overflow="ellipsis", max_width=24 if name == "mapping" else None)
    for r in report.regions:
        heat = ([f"{r.percent:.0f}", "█" * max(1, round(BAR * min(1.0, r.hz / max_hz))) if r.hz else ""]
                if bar else [])
        t.add_row(str(r.start) if raw else fmt_addr(r.start), size(r.size),
                  f"{r.hz:g}" if raw else f"{r.hz:.3g} Hz", *heat,
                  f"{r.age_s:g}" if raw else f"{r.age_s:.3g} s", str(r.reports),
                  f"{100 * r.writes / r.reports:.0f}%" if r.reports else "-", Text(region_label(r.mappings)))
    return t


def mappings_table(report: AccessReport, rows: list[MappingRow]) -> Table:
    t = Table(title=_title(report), caption=f"{len(rows)} mapping groups", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("mapping", "kind", "size", "accessed", "mean rate", "reports", "writes"):
        t.add_column(name, justify="left" if name in ("mapping", "kind") else "right", no_wrap=True,
                     overflow="ellipsis", max_width=22 if name == "mapping" else 12 if name == "kind" else None)
    for m in rows:
        kinds = ",".join(dict.fromkeys(k for _, k in m.mappings)) or "-"
        t.add_row(Text(region_label(m.mappings)), kinds, fmt_size(m.size), fmt_size(m.accessed_size),
                  f"{m.hz:.3g} Hz", str(m.reports), f"{100 * m.writes / m.reports:.0f}%" if m.reports else "-")
    return t
