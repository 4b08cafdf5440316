"""Instrumented run of the paddr-backed kernel-DAMON source (issue 15): what each refresh and each aggregation
does, with the kernel's NUMA balancing as found and then switched off. Run as root where DAMON's sysfs is free
(the 6.12 guest):

    .venv/bin/python tests/bench/probe_paddr.py --seconds 20 --log OUT/probe.log

Per refresh: its time, the resident pages whose frame changed since the last read, those outside the monitored
ranges, the ranges and the commit's time. Per aggregation: the physical regions, how many were hot, and of the
hot and the cold range the share of pages seen, shown hot, and their mean nr_accesses. vmstat's NUMA counters
before and after each phase."""

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
from damon_bpf.sources import kdamond as kd
from damon_bpf.sources import kdamond_paddr as kp

VMSTAT = ("numa_hint_faults", "numa_pages_migrated", "pgmigrate_success", "numa_pte_updates")


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
    nb = Path("/proc/sys/kernel/numa_balancing")
    found_nb = nb.read_text().strip()
    log("numa_balancing", found_nb, "thp", Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip())
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
    real_emit = kernel._emit

    def emit(index, rows) -> None:
        m = kernel.maps[pid]
        idx = region_of_pages(m.pfns, rows["start"], rows["end"], page)
        parts = [f"regions {len(rows)} hot {int((rows['nr_accesses'] > 0).sum())}"
                 f" maxnr {int(rows['nr_accesses'].max())}"]
        for name, t in threads.items():
            mine = (m.vpages >= t["start"] // page) & (m.vpages < t["end"] // page)
            seen = mine & (idx >= 0)
            nr = rows["nr_accesses"][idx[seen]].astype(np.int64)
            parts.append(f"{name}: pages {int(mine.sum())} seen {int(seen.sum())} hot {int((nr > 0).sum())} "
                         f"mean {nr.mean() if len(nr) else 0:.2f} regions {len(np.unique(idx[seen]))}")
        log("aggr", " | ".join(parts))
        real_emit(index, rows)

    kernel._emit = emit
    try:
        kernel.start(SimpleNamespace(pids={pid}))
        log("started kdamond", kernel.kdamond_pid, "ranges", len(kernel.ranges.get(pid, [])))
        for phase, setting in (("as found", None), ("numa_balancing=0", "0")):
            if setting is not None:
                if os.environ.get("DAMON_BPF_VM") != "1":
                    break   # the host's numa_balancing belongs to others' runs too
                nb.write_text(setting)
            before, t0 = vmstat(), time.monotonic()
            log("phase", phase, before)
            while time.monotonic() - t0 < opts.seconds:
                t1 = time.monotonic()
                kernel.tick(0)
                if time.monotonic() - t1 > 0.5 or kernel.error:
                    log("slow tick", f"{time.monotonic() - t1:.2f}s", "error", kernel.error)
                time.sleep(0.05)
            after = vmstat()
            log("phase end", phase, {k: after[k] - before[k] for k in VMSTAT}, "snapshots",
                len(kernel.snapshots.get(pid, [])))
    finally:
        if nb.read_text().strip() != found_nb:
            nb.write_text(found_nb)
        kernel.close()
        proc.kill()
        proc.wait()
    log("summary", kernel.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
