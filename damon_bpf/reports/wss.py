"""Working-set size over time and its percentiles (like ``damo report wss``).

The working set of a snapshot is the total size of its regions with ``nr_accesses >= acc_thres``
(and ``size >= sz_thres``), exactly damo's rule, and percentiles use damo's index rule, so the
numbers match ``damo report wss --exclude_samples <skip>``. ``write=True`` reports the dirty set
instead: regions with at least one write report, with the write report rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich import box
from rich.table import Table

from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import fmt_ns, fmt_size, percentile, select_target

BAR = 30
DEFAULT_PERCENTILES = (0, 25, 50, 75, 100)


@dataclass
class WssReport:
    target_id: int
    write: bool
    times_ns: list[int]  # each snapshot's end, relative to the record's first snapshot start
    sizes: list[int]  # working (or dirty) set size per snapshot, bytes
    write_rates: list[float]  # write reports per second per snapshot (write=True only)
    percentiles: dict[int, int]
    rate_percentiles: dict[int, float]

    @property
    def average(self) -> float:
        return sum(self.sizes) / len(self.sizes) if self.sizes else 0.0


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
        {p: percentile(ranked_rates, p) for p in percentiles} if rates else {})


def to_json(report: WssReport) -> dict:
    return {"target_id": report.target_id, "kind": "dirty" if report.write else "working",
            "average": report.average, "percentiles": report.percentiles,
            "write_rate_percentiles": report.rate_percentiles if report.write else None,
            "times_ns": report.times_ns, "sizes": report.sizes,
            "write_rates": report.write_rates if report.write else None}


def table(report: WssReport) -> Table:
    kind = "dirty set (regions written)" if report.write else "working set"
    span = f", {fmt_ns(report.times_ns[-1])} recorded" if report.times_ns else ""
    t = Table(title=f"target {report.target_id}: {kind} size over {len(report.sizes)} "
                    f"snapshots{span}",
              caption=f"average {fmt_size(report.average)}" if report.sizes
              else "no snapshots (fewer than the skipped ones?)", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("percentile", justify="right")
    t.add_column("size", justify="right")
    if report.write:
        t.add_column("write reports/s", justify="right")
    t.add_column("")
    top = max(report.percentiles.values(), default=0) or 1
    for p, size in report.percentiles.items():
        cells = [str(p), fmt_size(size)]
        if report.write:
            cells.append(f"{report.rate_percentiles[p]:.4g}")
        cells.append("█" * round(BAR * size / top))
        t.add_row(*cells)
    return t
