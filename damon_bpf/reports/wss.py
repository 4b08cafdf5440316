"""Working-set size over time and its percentiles (like ``damo report wss``).

The working set of a snapshot is the total size of its regions with ``nr_accesses >= acc_thres``
(and ``size >= sz_thres``), exactly damo's rule, and percentiles use damo's index rule, so the
numbers match ``damo report wss --exclude_samples <skip>``. ``write=True`` reports the dirty set
instead: regions with at least one write report, with the write report rate.

Beside each snapshot's working set, the process's RSS and PSS (/proc/PID/smaps_rollup, read by the recorder
at most once a second, so consecutive snapshots may share a reading) say how much of its resident memory it
used: WSS well below RSS is memory that could be reclaimed; WSS above RSS is memory DAMON's regions count
at region granularity (a region is as big as its bytes, resident or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich import box
from rich.table import Table

from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import chunks, columns, each, outline_of
from damon_bpf.reports.common import comm_of, fmt_ns, fmt_size, percentile, ppid_of, process_line, select_target

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
    rss: list[int | None] = field(default_factory=list)   # per snapshot, bytes (None: not recorded)
    pss: list[int | None] = field(default_factory=list)
    pid: int | None = None
    comm: str | None = None
    ppid: int | None = None

    @property
    def has_footprint(self) -> bool:
        return any(v is not None for v in self.rss)

    def footprint_percentiles(self, which: str) -> dict[int, int]:
        known = sorted(v for v in getattr(self, which) if v is not None)
        return {p: percentile(known, p) for p in self.percentiles} if known else {}

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
    sizes: list[int] = []
    rates: list[float] = []
    for part in chunks(snaps, 8):
        joined = columns(part, names=False)
        size = (joined.end - joined.start).astype(np.int64)
        member = (joined.writes > 0) if write else (joined.nr_accesses >= acc_thres)
        sizes += joined.per_snapshot(np.where(member & (size >= sz_thres), size, 0)).tolist()
        if write:
            rates += (joined.per_snapshot(joined.writes).astype(np.float64) * per_s).tolist()
    ranked, ranked_rates = sorted(sizes), sorted(rates)
    footprints = each(snaps, "footprint")
    return WssReport(
        rec.target_id, write, (outline_of(snaps)[1] - origin).tolist(), sizes, rates,
        {p: percentile(ranked, p) for p in percentiles} if sizes else {},
        {p: percentile(ranked_rates, p) for p in percentiles} if rates else {},
        [f[0] if f else None for f in footprints], [f[1] if f else None for f in footprints],
        rec.pid, comm_of(rec), ppid_of(rec))


def to_json(report: WssReport) -> dict:
    return {"target_id": report.target_id, "pid": report.pid, "comm": report.comm, "ppid": report.ppid,
            "kind": "dirty" if report.write else "working",
            "rss": report.rss, "pss": report.pss, "rss_percentiles": report.footprint_percentiles("rss"),
            "pss_percentiles": report.footprint_percentiles("pss"),
            "average": report.average, "percentiles": report.percentiles,
            "write_rate_percentiles": report.rate_percentiles if report.write else None,
            "times_ns": report.times_ns, "sizes": report.sizes,
            "write_rates": report.write_rates if report.write else None}


def table(report: WssReport) -> Table:
    kind = "dirty set (regions written)" if report.write else "working set"
    span = f", {fmt_ns(report.times_ns[-1])} recorded" if report.times_ns else ""
    who = process_line(report.target_id, report.pid, report.comm, report.ppid)
    t = Table(title=f"{who}: {kind} size over {len(report.sizes)} snapshots{span}",
              caption=_caption(report), box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("percentile", justify="right")
    t.add_column("size", justify="right")
    rss, pss = report.footprint_percentiles("rss"), report.footprint_percentiles("pss")
    if rss:
        t.add_column("RSS", justify="right")
        t.add_column("PSS", justify="right")
    if report.write:
        t.add_column("write reports/s", justify="right")
    t.add_column("")
    top = max(report.percentiles.values(), default=0) or 1
    for p, size in report.percentiles.items():
        cells = [str(p), fmt_size(size)]
        if rss:
            cells += [fmt_size(rss[p]), fmt_size(pss[p])]
        if report.write:
            cells.append(f"{report.rate_percentiles[p]:.4g}")
        cells.append("█" * round(BAR * size / top))
        t.add_row(*cells)
    return t


def _caption(report: WssReport) -> str:
    if not report.sizes:
        return "no snapshots (fewer than the skipped ones?)"
    text = f"average {fmt_size(report.average)}"
    pairs = [(w, r) for w, r in zip(report.sizes, report.rss) if r]
    if pairs:
        text += (f"; {sum(w for w, _ in pairs) / sum(r for _, r in pairs):.0%} of the RSS on average "
                 "(RSS/PSS: /proc/PID/smaps_rollup, read at most once a second; columns are each one's percentiles)")
    return text


def write_plot(report: WssReport, path, image_format: str | None = None) -> None:
    """The working (or dirty) set, RSS and PSS over time, as an image (matplotlib, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    t = [ns / 1e9 for ns in report.times_ns]
    mib = 1 << 20
    ax.step(t, [v / mib for v in report.sizes], where="post", label="dirty set" if report.write else "WSS")
    for name in ("rss", "pss"):
        values = getattr(report, name)
        if any(v is not None for v in values):
            ax.step(t, [float("nan") if v is None else v / mib for v in values], where="post",
                    label=name.upper(), linestyle="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(process_line(report.target_id, report.pid, report.comm, report.ppid))
    fig.savefig(path, dpi=100, format=image_format)
