"""The regions of one snapshot with their access frequency and age (like ``damo report access``).

Rates follow damo: ``hz = nr_accesses / aggregation seconds`` and
``percent = nr_accesses * 100 / (aggr_us / sample_us)`` (the share of sample intervals in which
the region was seen accessed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich import box
from rich.table import Table

from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import fmt_addr, fmt_ns, fmt_size, pick_snapshot, select_target
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

    @property
    def total_size(self) -> int:
        return sum(r.size for r in self.regions)

    @property
    def accessed_size(self) -> int:
        return sum(r.size for r in self.regions if r.nr_accesses > 0)


def _rows(rec: TargetRecord, start, end, nr_accesses, age, reports, writes, reads,
          functions: list[dict[str, int]] | None = None) -> list[AccessRow]:
    per_s = 1e6 / rec.aggr_us
    max_samples = rec.aggr_us / rec.sample_us
    cols = zip(start.tolist(), end.tolist(), nr_accesses.tolist(), age.tolist(), reports.tolist(),
               writes.tolist(), reads.tolist(), functions or [{}] * len(start))
    return [AccessRow(s, e, e - s, n, n * per_s, n * 100.0 / max_samples, a, a * rec.aggr_us / 1e6, rep, w, r,
                      {name: count / rep for name, count in f.items()} if rep else {})
            for s, e, n, a, rep, w, r, f in cols]


def access(records: list[TargetRecord], snapshot: int = -1,
           target_id: int | None = None) -> AccessReport:
    """The regions of snapshot ``snapshot`` (default the last) of one target."""
    rec = select_target(records, target_id)
    snap = pick_snapshot(rec, snapshot)
    index = snapshot % (len(rec.snapshots) if rec.nr_in_file is None else rec.nr_in_file)
    rows = _rows(rec, snap.start, snap.end, snap.nr_accesses, snap.age, snap.nr_reports, snap.writes, snap.reads,
                 snap.functions)
    origin = rec.snapshots[0].start_ns if rec.origin_ns is None else rec.origin_ns
    return AccessReport(rec.target_id, rec.pid, index, snap.start_ns - origin,
                        snap.end_ns - origin, rec.sample_us, rec.aggr_us, rows)


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


def to_json(report: AccessReport) -> dict:
    """JSON-ready dict (plain numbers: bytes, Hz, seconds)."""
    out = asdict(report)
    out["total_size"] = report.total_size
    out["accessed_size"] = report.accessed_size
    return out


def table(report: AccessReport) -> Table:
    max_hz = 1e6 / report.sample_us  # accessed in every sample
    who = (f"{report.group}: {len(report.members)} processes combined" if report.group is not None
           else f"target {report.target_id}" + (f" (pid {report.pid})" if report.pid is not None else ""))
    t = Table(title=who
              + f", snapshot {report.snapshot} [{fmt_ns(report.start_ns)}, "
                f"{fmt_ns(report.end_ns)}), max {max_hz:.0f} Hz",
              caption=f"{len(report.regions)} regions, {fmt_size(report.total_size)}, "
                      f"accessed {fmt_size(report.accessed_size)}",
              box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("start", "size", "access", "%", "", "age", "reports", "writes"):
        t.add_column(name, justify="left" if name in ("start", "") else "right", no_wrap=True)
    for r in report.regions:
        bar = "█" * max(1, round(BAR * min(1.0, r.hz / max_hz))) if r.hz else ""
        t.add_row(fmt_addr(r.start), fmt_size(r.size), f"{r.hz:.3g} Hz", f"{r.percent:.0f}",
                  bar, f"{r.age_s:.3g} s", str(r.reports),
                  f"{100 * r.writes / r.reports:.0f}%" if r.reports else "-")
    return t
