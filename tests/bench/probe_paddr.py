"""Instrumented run of the paddr-backed kernel-DAMON source (issue 15): what each refresh and each aggregation
does, first with this loop at normal priority, then at record's default collector priority (SCHED_RR 1,
damon_bpf.priority), then so with a process waking every 2 ms on the writer's CPU (PHASES: in the emulated
guest the kdamond saw the written range cold at SCHED_RR while the writer ran on; README, paddr section), the
kernel's NUMA balancing as found. Run as root where DAMON's sysfs is free (the 6.12
guest):

    .venv/bin/python tests/bench/probe_paddr.py --seconds 20 --log OUT/probe.log

Per refresh: its time, the resident pages whose frame changed since the last read, those outside the monitored
ranges, the ranges and the commit's time. Per aggregation: the physical regions, how many were hot, and of the
hot and the cold range the pages seen, shown hot by the kdamond's rows and by the virtual snapshot made of them
(the two must agree but for DAMON-style merging), and their mean nr_accesses. Per phase: vmstat's NUMA counters,
the CPU seconds of each workload thread and of this loop."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.physmap import region_of_pages
from damon_bpf.priority import raise_collector_priority
from damon_bpf.sources import kdamond as kd
from damon_bpf.sources import kdamond_paddr as kp

VMSTAT = ("numa_hint_faults", "numa_pages_migrated", "pgmigrate_success", "numa_pte_updates")
PHASES = (("normal priority", "normal", False), ("SCHED_RR 1, as record", "rt", False),
          ("SCHED_RR 1, another process waking every 2 ms on the writer's CPU", "rt", True))
# A process of its own (another mm: switching to it reloads CR3, which flushes the emulated TLB) that wakes
# every 2 ms on CPU 0, the writer's.
FLUSHER = "import os, time\nos.sched_setaffinity(0, {0})\nwhile True:\n    time.sleep(0.002)\n"


def thread_cpu_s(pid: int, tid: int) -> float:
    """utime + stime of one thread, in seconds."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vmstat() -> dict[str, int]:
    rows = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return {k: int(rows.get(k, -1)) for k in VMSTAT}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--log", default="-")
    ap.add_argument("--kib", type=int, default=16 << 10)
    opts = ap.parse_args()
    out = sys.stdout if opts.log == "-" else open(opts.log, "w")

    def log(*parts) -> None:
        print(f"{time.monotonic():.2f}", *parts, file=out, flush=True)

    binary = Path(tempfile.mkdtemp()) / "accessgen"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(Path(__file__).parents[1] / "workload" /
                                                                      "accessgen.c")], check=True)
    log("numa_balancing", Path("/proc/sys/kernel/numa_balancing").read_text().strip(),
        "thp", Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip())
    began = time.monotonic()
    kernel = kp.PaddrDamon(MonitoringAttrs(), warn=lambda m: log("warn", m))
    log("compiled in", round(time.monotonic() - began, 1), "s")
    proc = subprocess.Popen([str(binary), "--duration", "600", f"hot:0:W:{opts.kib}:0", f"cold:1:c:{opts.kib}:0"],
                            stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    pid = info["pid"]
    threads = {t["name"]: t for t in info["threads"]}
    page = info["page_size"]

    real_refresh, real_commit = kernel._refresh_maps, kd.commit_regions
    prev: dict[str, kp.PageMap] = {}

    def refresh() -> None:
        t0 = time.monotonic()
        real_refresh()
        new = kernel.maps[pid]
        moved = 0
        if "m" in prev:
            common, a, b = np.intersect1d(prev["m"].vpages, new.vpages, return_indices=True)
            moved = int((prev["m"].pfns[a] != new.pfns[b]).sum())
        prev["m"] = new
        bounds = np.asarray(kernel.ranges.get(pid, []), np.uint64).reshape(-1, 2)
        outside = int((region_of_pages(new.pfns, bounds[:, 0], bounds[:, 1], page) < 0).sum()) if len(bounds) else -1
        log("refresh", f"{time.monotonic() - t0:.3f}s", "resident", len(new.pfns), "moved", moved, "outside", outside,
            "ranges", len(bounds))

    def commit(sysfs, regions) -> None:
        t0 = time.monotonic()
        real_commit(sysfs, regions)
        log("commit", f"{time.monotonic() - t0:.3f}s", "ranges", [len(r) for r in regions], "busy", sysfs.busy_retries)

    kernel._refresh_maps = refresh
    kp.kd.commit_regions = commit
    real_mapped = kernel._mapped

    def mapped(owner, rows):
        snap = real_mapped(owner, rows)
        m = kernel.maps[pid]
        rows = rows[np.argsort(rows["start"], kind="stable")]
        idx = region_of_pages(m.pfns, rows["start"], rows["end"], page)
        parts = [f"regions {len(rows)} hot {int((rows['nr_accesses'] > 0).sum())}"
                 f" maxnr {int(rows['nr_accesses'].max())} virtual regions {len(snap.start)}"]
        for name, t in threads.items():
            mine = (m.vpages >= t["start"] // page) & (m.vpages < t["end"] // page)
            seen = mine & (idx >= 0)
            nr = rows["nr_accesses"][idx[seen]].astype(np.int64)
            at = np.searchsorted(snap.start, m.vpages[seen].astype(np.uint64) * np.uint64(page), side="right") - 1
            virtual = snap.nr_accesses[at].astype(np.int64) if len(snap.start) else np.zeros(0, np.int64)
            parts.append(f"{name}: pages {int(mine.sum())} seen {int(seen.sum())} hot {int((nr > 0).sum())} "
                         f"mean {nr.mean() if len(nr) else 0:.2f} regions {len(np.unique(idx[seen]))} virtual hot "
                         f"{int((virtual > 0).sum())} mean {virtual.mean() if len(virtual) else 0:.2f}")
        log("aggr", " | ".join(parts))
        return snap

    kernel._mapped = mapped
    try:
        kernel.start(SimpleNamespace(pids={pid}))
        log("started kdamond", kernel.kdamond_pid, "ranges", len(kernel.ranges.get(pid, [])))
        for phase, priority, flush in PHASES:
            applied = raise_collector_priority(priority) if priority != "normal" else "normal"
            if flush:
                flusher = subprocess.Popen([sys.executable, "-c", FLUSHER])
            before, t0, cpu0 = vmstat(), time.monotonic(), time.thread_time()
            threads_cpu0 = {n: thread_cpu_s(pid, t["tid"]) for n, t in threads.items()}
            log("phase", phase, applied, before)
            while time.monotonic() - t0 < opts.seconds:
                t1 = time.monotonic()
                kernel.tick(0)
                if time.monotonic() - t1 > 0.5 or kernel.error:
                    log("slow tick", f"{time.monotonic() - t1:.2f}s", "error", kernel.error)
                time.sleep(0.05)
            after, wall = vmstat(), time.monotonic() - t0
            log("phase end", phase, {k: after[k] - before[k] for k in VMSTAT}, "snapshots",
                len(kernel.snapshots.get(pid, [])), "wall", f"{wall:.1f}s", "this loop's CPU",
                f"{time.thread_time() - cpu0:.1f}s", "workload threads' CPU",
                {n: round(thread_cpu_s(pid, t["tid"]) - threads_cpu0[n], 1) for n, t in threads.items()})
            if flush:
                flusher.kill()
                flusher.wait()
    finally:
        kernel.close()
        proc.kill()
        proc.wait()
    log("summary", kernel.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
