"""NUMA placement: per region, which nodes' CPUs accessed it and where its pages live; what to move.

Access side: the reports of each region by CPU (``breakdown``'s layout: the regions of one snapshot,
counts summed over the record), turned into node shares with the CPU -> node map. The map is the one
stored in the record's meta (``numa_cpu_nodes``) when the recorder stored it, else this host's now
(``cpu_map_from`` says which). Page side: the live process is asked with move_pages(2) in query mode,
``samples`` pages spread evenly over each region; the bytes per node are the sampled shares times the
region's size (exact when the region has no more pages than that).

A region is worth moving when it is hot enough (``min_reports``), old enough, mostly accessed from one node
(``min_share`` of its reports) and some of its present pages live on other nodes: those bytes are the bytes to
move, to that node. Old enough: ``min_age`` aggregation intervals of DAMON's age in the layout snapshot, or
reports in at least ``min_age`` of the aggregation windows summed (``windows``). The second is what a fault
source needs: DAMON's age restarts whenever nr_accesses moves by more than a tenth of the largest, and with
a sampler that re-arms faults only every few sample intervals (soft-dirty under load: every 95-270 ms against
5 ms samples, so nr_accesses is 0-15 and the tenth is 0 or 1) it restarts nearly every window, however long
the region has been written; measured in a two-node guest, the 6.5 MiB of an 8 MiB range written nonstop had
age 0 at the decision, in records where it had reports in 60-84% of the windows after its first.
``apply`` moves them with move_pages(2), DAMOS-style under a quota of bytes per second.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from rich import box
from rich.table import Table

from damon_bpf.core.layout import page_size as system_page_size
from damon_bpf.errors import TargetError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import breakdown as breakdown_mod
from damon_bpf.reports.common import (bin_masses, comm_of, fmt_addr, fmt_size, in_time, pick_snapshot, ppid_of,
                                      process_line, select_target)
from damon_bpf.sources import numa as numa_src

DEFAULT_SAMPLES = 512
DEFAULT_MIN_REPORTS = 10
DEFAULT_MIN_SHARE = 0.5
DEFAULT_MIN_AGE = 3


@dataclass
class NumaRegion:
    start: int
    end: int
    reports: float
    age: int
    access_share: dict[int, float]  # node -> share of the region's reports
    page_bytes: dict[int, float] | None  # node -> estimated bytes living there; None: unknown
    absent_bytes: float = 0.0  # estimated bytes not present (never touched, dropped, swapped)
    move_to: int | None = None  # the node to move to, when worth moving
    move_bytes: float = 0.0
    windows: int = 0   # aggregation windows (of those summed) in which the region's bytes had reports

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class NumaReport:
    target_id: int
    pid: int | None
    nodes: list[int]  # nodes with CPUs or memory
    cpu_nodes: dict[int, int]
    cpu_map_from: str  # "record" or "this host at report time"
    placement_known: bool
    note: str  # why placement is unknown, or why there is nothing to move
    regions: list[NumaRegion]  # accessed regions, most reports first
    comm: str | None = None
    ppid: int | None = None
    moved: list[dict] = field(default_factory=list)  # --apply: per region what moved

    @property
    def to_move(self) -> list[NumaRegion]:
        return [r for r in self.regions if r.move_to is not None]


def _cpu_map(rec: TargetRecord) -> tuple[dict[int, int], str]:
    stored = rec.meta.get("numa_cpu_nodes")
    if isinstance(stored, dict) and stored:
        return {int(c): int(n) for c, n in stored.items()}, "record"
    return numa_src.cpu_nodes(), "this host at report time"


def sample_pages(start: int, end: int, page: int, samples: int) -> np.ndarray:
    """Up to ``samples`` page addresses spread evenly over [start, end)."""
    pages = max(1, (end - start) // page)
    n = min(pages, samples)
    return (start + (np.arange(n, dtype=np.uint64) * pages // n) * page).astype(np.uint64)


def _placement(pid: int, r: NumaRegion, page: int, samples: int,
               query: Callable[[int, np.ndarray], np.ndarray]) -> None:
    status = query(pid, sample_pages(r.start, r.end, page, samples))
    scale = r.size / len(status)
    nodes, counts = np.unique(status[status >= 0], return_counts=True)
    r.page_bytes = {int(n): float(c) * scale for n, c in zip(nodes, counts)}
    r.absent_bytes = float((status < 0).sum()) * scale


def windows_with_reports(snapshots, layout) -> np.ndarray:
    """Per region of ``layout``: in how many of ``snapshots`` some of its bytes had reports."""
    count = np.zeros(layout.nr_regions, np.int64)
    for s in snapshots:
        if s.nr_regions:
            count += bin_masses(s.start, s.end, s.nr_reports, layout.start, layout.end)[0] > 0
    return count


def _judge(r: NumaRegion, min_reports: int, min_share: float, min_age: int) -> None:
    old = r.age >= min_age or r.windows >= min_age
    if r.page_bytes is None or r.reports < min_reports or not old or not r.access_share:
        return
    node, share = max(r.access_share.items(), key=lambda kv: kv[1])
    remote = sum(b for n, b in r.page_bytes.items() if n != node)
    if share >= min_share and remote > 0 and node >= 0:   # -1: CPUs the map does not know, no node to move to
        r.move_to, r.move_bytes = node, remote


def numa(records: list[TargetRecord], target_id: int | None = None, snapshot: int = -1,
         time_range: tuple[int, int] | None = None, samples: int = DEFAULT_SAMPLES,
         min_reports: int = DEFAULT_MIN_REPORTS, min_share: float = DEFAULT_MIN_SHARE,
         min_age: int = DEFAULT_MIN_AGE, page_size: int | None = None,
         query: Callable[[int, np.ndarray], np.ndarray] = numa_src.page_nodes) -> NumaReport:
    """Access shares per node and page placement of the accessed regions of one target."""
    rec = select_target(records, target_id)
    layout = pick_snapshot(rec, snapshot)
    page_size = page_size or system_page_size()
    cpu_nodes, cpu_from = _cpu_map(rec)
    ages = dict(zip(layout.start.tolist(), layout.age.tolist()))
    windows = dict(zip(layout.start.tolist(), windows_with_reports(in_time(rec, time_range), layout).tolist()))
    shares = breakdown_mod.breakdown(records, layout.nr_regions, snapshot, time_range, rec.target_id)
    regions = []
    for row in shares.regions:
        if row.reports <= 0:
            continue
        by_node: dict[int, float] = {}
        for cpu, share in row.by_cpu.items():
            node = cpu_nodes.get(cpu, -1)  # -1: a CPU the map does not know
            by_node[node] = by_node.get(node, 0.0) + share
        regions.append(NumaRegion(row.start, row.end, row.reports, int(ages.get(row.start, 0)), by_node, None,
                                  windows=int(windows.get(row.start, 0))))
    regions.sort(key=lambda r: (-r.reports, r.start))
    note = ""
    if rec.pid is None:
        note = "the record holds no pid: where the pages live is unknown"
    else:
        try:
            for r in regions:
                _placement(rec.pid, r, page_size, samples, query)
        except TargetError as err:
            for r in regions:
                r.page_bytes = None
            note = str(err)
    for r in regions:
        _judge(r, min_reports, min_share, min_age)
    nodes = sorted({*cpu_nodes.values(), *numa_src.memory_nodes()})
    report = NumaReport(rec.target_id, rec.pid, nodes, cpu_nodes, cpu_from, not note, note, regions,
                        comm_of(rec), ppid_of(rec))
    if not note and not report.to_move:
        report.note = ("nothing to move: this host has one NUMA node, every page is local"
                       if len(nodes) == 1 else
                       "nothing to move: no hot, old region is mostly accessed from a node its pages do not live on")
    return report


class Quota:
    """DAMOS's size quota: bytes moved never ahead of ``bytes_per_s`` x time; allowance left unused is kept
    for at most one second, so a quiet spell does not let a burst through."""

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s, self.begun, self.sent = bytes_per_s, time.monotonic(), 0

    def delay(self, nbytes: int) -> float:
        """Seconds to wait before ``nbytes`` more may move (<= 0: now)."""
        now = time.monotonic()
        self.begun = max(self.begun, now - 1.0 - self.sent / self.bytes_per_s)
        return self.begun + (self.sent + nbytes) / self.bytes_per_s - now


def _remote_stretches(pid: int, r: NumaRegion, node: int, page_size: int,
                      query: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """The pages worth asking about in ``r``: each sampled page's stretch (up to the next sample) when that
    page is present on another node than ``node``. Every page of a region of at most DEFAULT_SAMPLES pages;
    for a big region mostly not present (a DAMON region can span a gap) a walk in proportion to its present
    pages, not to its size."""
    pages = r.size // page_size
    samples = sample_pages(r.start, r.end, page_size, DEFAULT_SAMPLES)
    where = query(pid, samples)
    ends = np.append(samples[1:], np.uint64(r.start + pages * page_size))
    keep = (where >= 0) & (where != node)
    step = np.uint64(page_size)
    return np.concatenate([np.arange(lo, hi, step, dtype=np.uint64) for lo, hi in zip(samples[keep], ends[keep])]
                          or [np.empty(0, np.uint64)])


def apply(report: NumaReport, quota: float | Quota, page_size: int | None = None,
          move: Callable[[int, np.ndarray, int], np.ndarray] = numa_src.move_to,
          query: Callable[[int, np.ndarray], np.ndarray] = numa_src.page_nodes, block: bool = True) -> list[dict]:
    """Move the regions worth moving, every present page of each, within ``quota`` (bytes per second, or a Quota
    shared across calls). ``block`` False: stop where the quota runs out instead of waiting (the rest
    waits for a later call), as record and live do from the collector's thread."""
    page_size = page_size or system_page_size()
    quota = quota if isinstance(quota, Quota) else Quota(quota)
    pid = report.pid
    if pid is None:   # no pid, no placement: nothing was judged worth moving
        return report.moved
    chunk_pages = max(1, min(numa_src.CHUNK_PAGES, int(quota.bytes_per_s / 10 / page_size)))  # 0.1 s of quota
    for r in report.to_move:
        node = r.move_to
        assert node is not None   # to_move holds the regions with a node to move to
        addrs = _remote_stretches(pid, r, node, page_size, query)
        moved = failed = 0
        errors: dict[str, int] = {}
        for i in range(0, len(addrs), chunk_pages):
            chunk = addrs[i:i + chunk_pages]
            where = query(pid, chunk)
            away = chunk[(where >= 0) & (where != node)]
            if len(away) == 0:
                continue
            wait = quota.delay(len(away) * page_size)
            if wait > 0 and not block:
                break
            if wait > 0:
                time.sleep(wait)
            after = move(pid, away, node)
            quota.sent += len(away) * page_size
            moved += int((after == node).sum())
            failed += int((after != node).sum())
            for code in after[after < 0]:
                name = errno.errorcode.get(-int(code), str(-int(code)))
                errors[name] = errors.get(name, 0) + 1
        report.moved.append({"start": r.start, "end": r.end, "to_node": node, "moved_bytes": moved * page_size,
                             "failed_pages": failed, "errors": errors})
    return report.moved


def to_json(report: NumaReport) -> dict:
    def one(r: NumaRegion) -> dict:
        return {"start": r.start, "end": r.end, "size": r.size, "reports": r.reports, "age": r.age,
                "access_share_by_node": {str(n): s for n, s in sorted(r.access_share.items())},
                "page_bytes_by_node": (None if r.page_bytes is None
                                       else {str(n): b for n, b in sorted(r.page_bytes.items())}),
                "windows": r.windows, "absent_bytes": r.absent_bytes, "move_to": r.move_to,
                "move_bytes": r.move_bytes}
    return {"target_id": report.target_id, "pid": report.pid, "comm": report.comm, "ppid": report.ppid,
            "nodes": report.nodes,
            "cpu_nodes": {str(c): n for c, n in report.cpu_nodes.items()}, "cpu_map_from": report.cpu_map_from,
            "placement_known": report.placement_known, "note": report.note,
            "regions": [one(r) for r in report.regions],
            "to_move": [{"start": r.start, "end": r.end, "to_node": r.move_to, "bytes": r.move_bytes}
                        for r in report.to_move],
            "bytes_to_move": sum(r.move_bytes for r in report.to_move), "moved": report.moved}


def _nodes(shares: dict[int, float] | None, total: float = 1.0) -> str:
    if shares is None:
        return "unknown"
    shown = [f"{'?' if n < 0 else n}:{v / total:.0%}" for n, v in sorted(shares.items(), key=lambda kv: -kv[1])]
    return " ".join(shown) or "-"


def table(report: NumaReport, top: int = 20) -> Table:
    moving = report.to_move
    title = (process_line(report.target_id, report.pid, report.comm, report.ppid) + ": "
             + (f"move {fmt_size(sum(r.move_bytes for r in moving))} in {len(moving)} regions" if moving
                else report.note))
    caption = (f"nodes {report.nodes}; CPU -> node map from {report.cpu_map_from}"
               + (f"; {report.note}" if moving and report.note else ""))
    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("start", "size", "reports", "age", "windows", "accessed from", "pages on", "move"):
        t.add_column(name, justify="left" if name in ("start", "accessed from", "pages on", "move") else "right")
    for r in report.regions[:top]:
        present = sum(r.page_bytes.values()) if r.page_bytes else 0.0
        pages = _nodes(r.page_bytes, present) if present or r.page_bytes is None else "none present"
        move = f"{fmt_size(r.move_bytes)} -> node {r.move_to}" if r.move_to is not None else "-"
        t.add_row(fmt_addr(r.start), fmt_size(r.size), f"{r.reports:.0f}", str(r.age), str(r.windows),
                  _nodes(r.access_share), pages, move)
    return t


def moved_line(report: NumaReport) -> str:
    """What --apply did, in one line."""
    if not report.to_move:
        return f"--apply: {report.note}"
    moved = sum(m["moved_bytes"] for m in report.moved)
    failed = sum(m["failed_pages"] for m in report.moved)
    return (f"--apply: moved {fmt_size(moved)} of {fmt_size(sum(r.move_bytes for r in report.to_move))} "
            f"(estimated) in {len(report.moved)} regions" + (f", {failed} pages failed" if failed else ""))
