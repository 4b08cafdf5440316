"""Dirty rate per target and what it means for a pre-copy live migration.

What "bytes written" is. A fault source reports a write when a page faults for writing: on first touch,
on copy-on-write, and, with the soft-dirty sampler, on the first write after each re-arm. So one write
report is one page dirtied, and a page faults for writing at most once per re-arm. The dirty bytes of
an aggregation window are, per region, ``min(write reports x page size, region size)``: a page counted
once per window however often it was written (the cap matters only when soft-dirty re-arms faster than
once per window, where one page can report several times). Without soft-dirty a page that stays mapped
reports its first write only: later writes to it are invisible and the rate is a lower bound (new
memory only); with soft-dirty every page written since the last re-arm is seen, which is what a
migration's dirty log sees.

The pre-copy model (as QEMU's RAM migration): round 0 sends the whole memory ``M`` at bandwidth ``B``;
each next round sends what was dirtied while the previous round was sent, ``min(D x t_prev, M)`` at
dirty rate ``D``; when the data left can be sent within the allowed downtime the guest is paused and the
rest sent (stop-and-copy). It does not converge when that has not happened after ``max_rounds`` rounds.
With ``r = D / B < 1`` round ``i`` sends ``M r^i``, so the number of live rounds is the smallest ``n``
with ``M r^n / B <= downtime``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rich import box
from rich.table import Table

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import Columns, chunks, columns, outline_of
from damon_bpf.reports.common import comm_of, fmt_ns, fmt_size, percentile, ppid_of, process_line

DEFAULT_PERCENTILES = (0, 25, 50, 75, 90, 99, 100)
DEFAULT_DOWNTIME_S = 0.3
DEFAULT_MAX_ROUNDS = 30


@dataclass
class Migration:
    """A pre-copy estimate: ``converges`` False means it gave up after ``rounds`` rounds."""

    converges: bool
    rounds: int  # live (pre-copy) rounds, round 0 included; the stop-and-copy is not counted
    total_s: float  # pre-copy rounds plus the downtime (inf when it does not converge)
    downtime_s: float  # time the guest is paused (the last send), when it converges
    sent_bytes: float  # over every round, the stop-and-copy included
    reason: str


def precopy(memory_bytes: float, dirty_bytes_per_s: float, bandwidth_bytes_per_s: float,
            max_downtime_s: float = DEFAULT_DOWNTIME_S,
            max_rounds: int = DEFAULT_MAX_ROUNDS) -> Migration:
    """Rounds and seconds of a pre-copy migration of ``memory_bytes`` (see the module's model)."""
    if bandwidth_bytes_per_s <= 0:
        raise ValueError("bandwidth must be positive")
    left, elapsed, sent = float(memory_bytes), 0.0, 0.0
    for rounds in range(max_rounds + 1):
        if left / bandwidth_bytes_per_s <= max_downtime_s:
            downtime = left / bandwidth_bytes_per_s
            return Migration(True, rounds, elapsed + downtime, downtime, sent + left,
                             f"{rounds} rounds, then {downtime * 1e3:.3g} ms paused")
        if rounds == max_rounds:
            break
        took = left / bandwidth_bytes_per_s
        elapsed, sent = elapsed + took, sent + left
        left = min(dirty_bytes_per_s * took, float(memory_bytes))
    why = ("dirty rate >= bandwidth" if dirty_bytes_per_s >= bandwidth_bytes_per_s
           else f"still {fmt_size(left)} to send after {max_rounds} rounds")
    return Migration(False, max_rounds, float("inf"), float("inf"), sent, f"does not converge: {why}")


@dataclass
class TargetDirty:
    target_id: int
    pid: int | None
    view: str
    times_ns: list[int]  # each snapshot's end, relative to the record's first snapshot start
    rates: list[float]  # dirty bytes per second, per snapshot
    memory_bytes: int  # what round 0 sends: --memory, or the monitored size of the last snapshot
    percentiles: dict[int, float]
    migration: Migration | None
    comm: str | None = None
    ppid: int | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.rates)) if self.rates else 0.0


@dataclass
class DirtyRate:
    page_size: int
    targets: list[TargetDirty]  # best to move first
    bandwidth: float | None
    max_downtime_s: float


def dirty_bytes(snapshot: Snapshot, page: int) -> float:
    """Bytes a window dirtied: per region ``min(write reports x page size, region size)`` (a page once
    per window however often it was written)."""
    sizes = (snapshot.end - snapshot.start).astype(np.float64)
    return float(np.minimum(snapshot.writes.astype(np.float64) * page, sizes).sum())


def _rates(rec: TargetRecord, page: int, skip: int) -> tuple[list[int], list[float]]:
    snaps = rec.snapshots[skip:]
    origin = rec.snapshots[0].start_ns if rec.snapshots else 0
    rates: list[float] = []
    for part in chunks(snaps, 4):
        joined = columns(part, names=False)
        window_ns = joined.end_ns - joined.start_ns
        window_s = np.where(window_ns == 0, rec.aggr_us / 1e6, window_ns / 1e9)
        rates += (_dirty_each(part, joined, page) / window_s).tolist()
    return (outline_of(snaps)[1] - origin).tolist(), rates


def _dirty_each(part: Sequence[Snapshot], joined: Columns, page: int) -> np.ndarray:
    """dirty_bytes of each snapshot. Below 2**53 the sum of whole numbers is exact in any order; above,
    dirty_bytes adds them, as before."""
    dirty = np.minimum(joined.writes.astype(np.float64) * page, (joined.end - joined.start).astype(np.float64))
    out = np.bincount(joined.snapshot_of_region, weights=dirty, minlength=len(part))
    for i in np.flatnonzero(out >= 2.0**53).tolist():
        out[i] = dirty_bytes(part[i], page)
    return out


def _rank_key(t: TargetDirty) -> tuple:
    m = t.migration
    if m is None:
        return (t.mean, t.target_id)
    return (not m.converges, m.total_s if m.converges else t.mean, t.target_id)


def dirty_rate(records: list[TargetRecord], bandwidth: float | None = None,
               max_downtime_s: float = DEFAULT_DOWNTIME_S, max_rounds: int = DEFAULT_MAX_ROUNDS,
               memory_bytes: int | None = None, skip: int = 0, page_size: int | None = None,
               percentiles: tuple[int, ...] = DEFAULT_PERCENTILES) -> DirtyRate:
    """Every target's dirty rate over time, ranked: the cheapest to migrate first.

    With ``bandwidth`` targets are ranked by the estimated migration time (those that do not
    converge last, by dirty rate); without it by mean dirty rate, lowest first.
    """
    records = [r for r in records if r.meta.get("view") != "kernel-damon"]  # no write attribution there
    if not any(r.snapshots for r in records):
        raise UsageError("no target in the record file has page-fault snapshots (kernel DAMON cannot tell writes)")
    page = page_size or int(records[0].meta.get("page_size", 0) if records else 0) or os.sysconf("SC_PAGESIZE")
    out = []
    for rec in (r for r in records if r.snapshots):
        times, rates = _rates(rec, page, skip)
        last = rec.snapshots[-1]
        memory = memory_bytes if memory_bytes is not None else int((last.end - last.start).sum())
        mean = float(np.mean(rates)) if rates else 0.0
        ranked = sorted(rates)
        out.append(TargetDirty(
            rec.target_id, rec.pid, str(rec.meta.get("view") or "page-faults"), times, rates, memory,
            {p: percentile(ranked, p) for p in percentiles} if rates else {},
            precopy(memory, mean, bandwidth, max_downtime_s, max_rounds) if bandwidth else None,
            comm_of(rec), ppid_of(rec)))
    return DirtyRate(page, sorted(out, key=_rank_key), bandwidth, max_downtime_s)


def _migration_json(m: Migration | None) -> dict | None:
    if m is None:
        return None
    return {"converges": m.converges, "rounds": m.rounds,
            "total_s": m.total_s if m.converges else None,
            "downtime_s": m.downtime_s if m.converges else None,
            "sent_bytes": m.sent_bytes, "summary": m.reason}


def to_json(report: DirtyRate) -> dict:
    return {"page_size": report.page_size, "bandwidth_bytes_per_s": report.bandwidth,
            "max_downtime_s": report.max_downtime_s,
            "targets": [{"target_id": t.target_id, "pid": t.pid, "comm": t.comm, "ppid": t.ppid, "view": t.view,
                         "memory_bytes": t.memory_bytes, "mean_bytes_per_s": t.mean,
                         "percentiles": {str(p): v for p, v in t.percentiles.items()},
                         "migration": _migration_json(t.migration),
                         "times_ns": t.times_ns, "bytes_per_s": t.rates} for t in report.targets]}


def headline(report: DirtyRate) -> str:
    """The first line: which target to move."""
    if not report.targets:
        return "no targets in the record"
    best = report.targets[0]
    who = process_line(best.target_id, best.pid, best.comm, best.ppid)
    m = best.migration
    if m is None:
        return f"move first: {who}, lowest dirty rate {fmt_size(best.mean)}/s"
    if not m.converges:   # a migration is estimated only with a bandwidth
        return f"no target converges at {fmt_size(report.bandwidth or 0)}/s; lowest dirty rate: {who}"
    return f"move first: {who}, {m.rounds} rounds, {m.total_s:.3g} s, {m.downtime_s * 1e3:.3g} ms paused"


def table(report: DirtyRate) -> Table:
    shown = [p for p in (50, 90, 100) if report.targets and p in report.targets[0].percentiles]
    caption = (f"dirty bytes of an aggregation window: per region, write reports x {report.page_size} B, "
               "at most the region's size")
    t = Table(title=headline(report), caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("target", "pid", "comm", "mean/s", *(f"p{p}/s" for p in shown), "memory", "span"):
        t.add_column(name, justify="right")
    if report.bandwidth:
        t.add_column(f"migration at {fmt_size(report.bandwidth)}/s", justify="left")
    for d in report.targets:
        cells = [str(d.target_id), str(d.pid) if d.pid is not None else "-", d.comm or "-", fmt_size(d.mean),
                 *(fmt_size(d.percentiles[p]) for p in shown), fmt_size(d.memory_bytes),
                 fmt_ns(d.times_ns[-1]) if d.times_ns else "-"]
        if d.migration is not None:
            m = d.migration
            cells.append(f"{m.total_s:.3g} s: {m.reason}" if m.converges else m.reason)
        t.add_row(*cells)
    return t
