"""Source ``damon`` where the kernel's DAMON has ``paddr`` but not ``vaddr`` (docs/design.md §16).

The physical frames backing each target are read from /proc/PID/pagemap (root sees frame numbers),
their runs are coalesced into at most ``max_nr_regions`` ranges (the smallest gaps bridged), and a
kdamond with the paddr operations monitors those ranges, one DAMON target per process. Each of its
aggregations is mapped back to the process's virtual pages (core.physmap) and filed like vaddr's
snapshots. Every update interval the page maps are read again; when a target has resident pages
outside the monitored ranges (it faulted in new memory), the ranges are recomputed and committed to
the running kdamond, which keeps the counters of the regions that still intersect them.

The page maps and the mapping back are the costly part (every resident page, every aggregation), and the
session loop that ticks this source runs at a real-time priority (damon_bpf.priority) so that it keeps up
with the ring buffers: there this work would take its CPU from the target itself (in the emulated 6.12
guest the written range then showed hot on 1.2% of its bytes). So the loop only drains the kdamond's rows
and files finished snapshots; a worker thread at normal priority does the rest.

When DAMON's sysfs already has a paddr kdamond on that is not ours (a host's own reclaim, as on the
CI machine), no second one can be added beside it: its aggregations are read instead, without
writing anything to it, and mapped back the same way, at its own intervals.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable

import numpy as np

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.layout import page_size
from damon_bpf.core.physmap import PageMap, to_virtual
from damon_bpf.core.regions import page_ranges
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import DamonBpfError, HostError, TargetError, UsageError, warn_stderr
from damon_bpf.sources import host
from damon_bpf.sources import kdamond as kd
from damon_bpf.sources.vaddr import read_maps

PRESENT = np.uint64(1 << 63)
PFN_MASK = np.uint64((1 << 55) - 1)
CHUNK_PAGES = 1 << 17    # pagemap entries read at a time (1 MiB)
# A commit rewrites every range (DAMON's sysfs recreates a target's region folders when nr_regions is written)
# and waits for the kdamond's next aggregation; the next one waits COMMIT_PAUSE times as long as the last took,
# so handing over ranges takes at most about a tenth of the time however slow the host.
COMMIT_PAUSE = 10
# The ranges handed to our kdamond are at most a quarter of max_nr_regions: DAMON merges only adjacent regions,
# so it never has fewer regions than ranges (each one a damon_aggregated row per aggregation), and it splits
# regions only while it has at most half of max_nr_regions, which ranges filling it would forbid.
RANGES_SHARE = 4
WORKER_WAIT_S = 0.05   # the worker's longest sleep with no rows: how late a page-map refresh may come


def read_pagemap(pid: int) -> PageMap:
    """The resident pages of ``pid`` and their frames (swapped-out and never-touched pages left out)."""
    page = page_size()
    vpages, pfns = [], []
    try:
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
            for start, end, _name in read_maps(pid):
                for first in range(start // page, end // page, CHUNK_PAGES):
                    count = min(CHUNK_PAGES, end // page - first)
                    raw = np.frombuffer(os.pread(f.fileno(), count * 8, first * 8), dtype=np.uint64)
                    present = np.flatnonzero((raw & PRESENT) != 0)
                    vpages.append(present + first)
                    pfns.append((raw[present] & PFN_MASK).astype(np.int64))
    except (FileNotFoundError, ProcessLookupError):
        raise TargetError(f"process {pid} is gone (no /proc/{pid}/pagemap)") from None
    except OSError as err:
        raise HostError(f"cannot read /proc/{pid}/pagemap: {err.strerror}") from None
    got = PageMap(np.concatenate(vpages or [np.zeros(0, np.int64)]), np.concatenate(pfns or [np.zeros(0, np.int64)]))
    if len(got.pfns) and not got.pfns.any():
        raise HostError(f"/proc/{pid}/pagemap hides frame numbers (needs CAP_SYS_ADMIN)")
    return got


def borrowable(index: int, sysfs: kd.DamonSysfs) -> tuple[int, MonitoringAttrs] | None:
    """kdamond ``index``'s pid and intervals if it is a running paddr kdamond of one context and one target
    (each aggregation one set of rows), else None. Only reads its sysfs files."""
    folder = kd._kdamonds() / str(index)
    c0 = folder / "contexts" / "0"
    try:
        if sysfs.read(folder / "contexts" / "nr_contexts") != "1" or sysfs.read(c0 / "operations") != "paddr" or \
                sysfs.read(c0 / "targets" / "nr_targets") != "1":
            return None
        intervals, nr_regions = c0 / "monitoring_attrs" / "intervals", c0 / "monitoring_attrs" / "nr_regions"
        attrs = MonitoringAttrs(*(int(sysfs.read(intervals / n)) for n in ("sample_us", "aggr_us", "update_us")),
                                *(int(sysfs.read(nr_regions / n)) for n in ("min", "max")))
        return int(sysfs.read(folder / "pid")), attrs
    except (OSError, ValueError, TypeError):
        return None


class PaddrDamon(kd.KernelDamon):
    """Kernel DAMON on the frames backing the targets, mapped back to their virtual pages."""

    ops = "paddr"
    snapshot_meta = {"view": "kernel-damon", "source": "damon",
                     "tool": "kernel DAMON (paddr on the target's frames, mapped back through pagemap) "
                             "via damon:damon_aggregated"}

    def __init__(self, attrs: MonitoringAttrs, warn: Callable[[str], None] = warn_stderr) -> None:
        self.borrowed: int | None = None   # index of another's kdamond whose aggregations we read
        self.own_attrs = attrs
        self.maps: dict[int, PageMap] = {}
        self.ranges: dict[int, list[tuple[int, int]]] = {}
        self.last_refresh = 0.0
        self.next_commit = 0.0   # monotonic time before which no new ranges are handed over
        # pagemap_s, map_s: CPU seconds (this thread's) reading page maps and mapping aggregations back
        self.counts = {"refreshes": 0, "commits": 0, "commits_deferred": 0, "pages_seen": 0,
                       "pages_unseen": 0, "pagemap_s": 0.0, "map_s": 0.0, "commit_s": 0.0}
        self.inbox: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()    # rows drained, for the worker
        self.outbox: queue.SimpleQueue[tuple[int, Snapshot]] = queue.SimpleQueue()   # snapshots, to file
        self.worker: threading.Thread | None = None
        self.stopping = threading.Event()
        self.worker_error: BaseException | None = None
        super().__init__(attrs, warn)

    def _claim(self, running: list[int]) -> None:
        for index in running:
            found = borrowable(index, self.sysfs)
            if found is not None:
                self.borrowed, self.borrowed_pid = index, found[0]
                self.attrs = found[1]   # snapshots are filed at its intervals, not ours
                self.snapshot_meta = {**self.snapshot_meta, "kdamond": "not ours (held DAMON's sysfs): read only"}
                self.warn(f"damon: kernel DAMON's sysfs is held by kdamond {index} (PID {found[0]}, paddr, not "
                          f"ours; sample {found[1].sample_interval_us} us, aggregation {found[1].aggr_interval_us}"
                          " us): its aggregations are read, nothing of it is changed")
                return
        super()._claim(running)

    def _launch(self) -> int:
        self._refresh_maps()
        if self.borrowed is not None:
            return self.borrowed_pid
        for pid in self.pids:
            if not len(self.maps[pid].pfns):
                raise HostError(f"--source damon: process {pid} has no resident pages to monitor")
        self._choose_ranges()
        return kd.start_kdamond(self.pids, self.attrs, self.sysfs, "paddr", [self.ranges[p] for p in self.pids])

    def _refresh_maps(self) -> None:
        began = time.thread_time()
        for pid in self.pids:
            try:
                self.maps[pid] = read_pagemap(pid)
            except TargetError:   # gone since (keep its last map for rows still in the ring) or before its first
                self.maps.setdefault(pid, PageMap(np.zeros(0, np.int64), np.zeros(0, np.int64)))
            except DamonBpfError:   # cannot be read (permissions): fatal unless it was read before
                if pid not in self.maps:
                    raise
        self.last_refresh = time.monotonic()
        self.counts["refreshes"] += 1
        self.counts["pagemap_s"] += time.thread_time() - began

    def _choose_ranges(self) -> None:
        page = page_size()
        for pid in self.pids:
            self.ranges[pid] = page_ranges(self.maps[pid].frame_addrs(page), page,
                                           max(self.attrs.min_nr_regions, self.attrs.max_nr_regions // RANGES_SHARE))

    def _uncovered(self) -> bool:
        page = page_size()
        for pid in self.pids:
            bounds = np.asarray(self.ranges.get(pid, []), np.uint64).reshape(-1, 2)
            addrs = self.maps[pid].frame_addrs(page)
            idx = np.searchsorted(bounds[:, 0], addrs, side="right").astype(np.int64) - 1
            if (idx < 0).any() or (addrs >= bounds[np.maximum(idx, 0), 1]).any():
                return True
        return False

    def start(self, targets) -> None:
        super().start(targets)
        self.worker = threading.Thread(target=self._work, name="damon-bpf paddr", daemon=True)
        self.worker.start()

    def tick(self, now_ns: int) -> None:
        """In the session loop: hand the rows drained to the worker, file what it finished (and raise what
        failed it). Without a worker (closing) the rows are mapped back here."""
        rows = self._drain()
        if rows is not None:
            self.inbox.put(rows)
        if self.worker is None or not self.worker.is_alive():
            self._map_inbox()
        while True:
            try:
                pid, snapshot = self.outbox.get_nowait()
            except queue.Empty:
                break
            self._file(pid, snapshot)
        if self.worker_error is not None:
            error, self.worker_error = self.worker_error, None
            raise error

    def _work(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))   # 0: this thread, whatever it inherited
        except OSError:
            pass
        try:
            while not self.stopping.is_set():
                try:
                    self._assemble(self.inbox.get(timeout=WORKER_WAIT_S))
                except queue.Empty:
                    pass
                self._map_inbox()
                self._maybe_refresh()
        except Exception as err:   # noqa: BLE001 - raised in the session loop at its next tick
            self.worker_error = err

    def _map_inbox(self) -> None:
        while True:
            try:
                self._assemble(self.inbox.get_nowait())
            except queue.Empty:
                return

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self.last_refresh < self.own_attrs.update_interval_us / 1e6:
            return
        self._refresh_maps()
        if self.borrowed is None and self._uncovered():
            if time.monotonic() < self.next_commit:
                self.counts["commits_deferred"] += 1
                return
            self._commit()

    def _commit(self) -> None:
        began = time.monotonic()
        self._choose_ranges()
        try:
            kd.commit_regions(self.sysfs, [self.ranges[p] for p in self.pids])
            self.counts["commits"] += 1
        except OSError as err:
            self.error = f"cannot hand the kdamond new regions: {err.strerror}"
        took = time.monotonic() - began
        self.counts["commit_s"] += took
        self.next_commit = time.monotonic() + COMMIT_PAUSE * took

    def _emit(self, index: int, rows: np.ndarray) -> None:
        if self.borrowed is None:
            owners = [self.pids[index]] if index < len(self.pids) else []
        else:
            owners = self.pids   # another's kdamond: every target's frames are looked up in its regions
        began = time.thread_time()
        for pid in owners:
            self.outbox.put((pid, self._mapped(pid, rows)))
        self.counts["map_s"] += time.thread_time() - began

    def _mapped(self, pid: int, rows: np.ndarray) -> Snapshot:
        """One aggregation's rows as process ``pid`` sees them, through its last page map."""
        seen = to_virtual(self.maps[pid], rows["start"], rows["end"], rows["nr_accesses"], rows["age"],
                          page_size(), self.own_attrs.max_nr_regions)
        self.counts["pages_seen"] += seen.pages_seen
        self.counts["pages_unseen"] += seen.pages_unseen
        return kd.kernel_snapshot(seen.start, seen.end, seen.nr_accesses, seen.age, int(rows["time_ns"].max()),
                                  self.attrs)

    def _release(self) -> None:
        if self.borrowed is None:
            super()._release()

    @property
    def end_note(self) -> str:
        return "switched off" if self.borrowed is None else "left running as found (not ours)"

    def close(self) -> None:
        self.stopping.set()
        if self.worker is not None:
            self.worker.join()   # after its current piece of work; the rest is mapped back by close's tick
        if self.worker_error is not None:   # said, not raised: the kdamond must still be switched off
            self.error = f"mapping the kdamond's regions back failed: {self.worker_error}"
            self.warn(f"warning: damon: {self.error}")
            self.worker_error = None
        super().close()
        seen, unseen = self.counts["pages_seen"], self.counts["pages_unseen"]
        share = f"{100 * seen / (seen + unseen):.1f}%" if seen + unseen else "none"
        self.warn(f"damon: paddr on the targets' frames: {share} of their resident pages lay in monitored "
                  f"regions, page maps read {self.counts['refreshes']} times, regions recommitted "
                  f"{self.counts['commits']} times ({self.counts['commit_s']:.1f} s; "
                  f"{self.counts['commits_deferred']} more deferred while the last one's cost was paid back)")

    def summary(self) -> dict:
        return {**super().summary(), "operations": "paddr", "borrowed_kdamond": self.borrowed,
                "nr_ranges": {str(p): len(r) for p, r in self.ranges.items()}, **self.counts}


DAMON_OPS = ("auto", "vaddr", "paddr")   # --damon-ops: auto is vaddr where the kernel has it, else paddr


def kernel_damon(attrs: MonitoringAttrs, warn: Callable[[str], None] = warn_stderr,
                 ops: str = "auto") -> kd.KernelDamon:
    """Kernel DAMON for --source damon with the ``ops`` operations (DAMON_OPS). An asked-for ops the kernel
    lacks is refused in one line that names the one it has."""
    if ops not in DAMON_OPS:
        raise UsageError(f"--damon-ops must be one of {', '.join(DAMON_OPS)}, not {ops!r}")
    info = host.damon_info()
    if ops == "auto":
        ops = "vaddr" if info["vaddr"] else "paddr"
    elif info["sysfs"] and not info[ops]:
        other = "paddr" if ops == "vaddr" else "vaddr"
        instead = f": use --damon-ops {other} (or auto)" if info[other] else ""
        raise HostError(f"--damon-ops {ops}: this kernel's DAMON lacks the {kd.OPS_NAMES[ops]} operations "
                        f"(CONFIG_DAMON_{ops.upper()}){instead}")
    return kd.KernelDamon(attrs, warn) if ops == "vaddr" else PaddrDamon(attrs, warn)
