"""Steady state on a one-node host without DAMON vaddr (the CI machine): kernel DAMON paddr mapped back
through pagemap (--source damon) against --sampler numa-hint, on the same steady workload.

    .venv/bin/python tests/bench/bench_one_node.py --seconds 30 --runs 3

The workload and the scoring are bench_samplers.py's: accessgen writes one hot range and reads another
nonstop without unmapping them, next to a cold range written once before monitoring; for each snapshot
after the first quarter, the predicted hot set is the regions with nr_accesses > 0 clipped to the
workload's ranges (precision = hot bytes predicted / bytes predicted, recall = hot bytes predicted / hot
bytes). Monitor CPU is the damon-bpf session's own (collector, region core, page-map reads and the
mapping back); the kdamond's CPU is given apart, and when the kdamond is borrowed (a host's own paddr
kdamond holds DAMON's sysfs) it runs whether we read it or not. Workload speed is its touch rate against
an untraced run in the same invocation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_samplers import build_accessgen, finish, go, run_companion, run_ours, scores, start_workload  # noqa: E402


def run_paddr(tracer, binary: str, seconds: float, args) -> dict:
    """--source damon's paddr companion on the workload (the fault view is traced alongside, as record does)."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.sources.kdamond_paddr import PaddrDamon

    kernel = PaddrDamon(MonitoringAttrs(), warn=lambda _m: None)
    run = run_companion(tracer, binary, seconds, args, kernel)
    s = kernel.summary()
    whose = "borrowed (a host kdamond, runs anyway)" if s["borrowed_kdamond"] is not None else "ours"
    seen = s["pages_seen"] / max(1, s["pages_seen"] + s["pages_unseen"])
    return {"method": "kernel DAMON paddr, mapped back (--source damon)", **scores(run["snapshots"], run["ranges"]),
            "monitor_cpu_s": run["result"].cpu_s, "touch_rate": run["touch_rate"],
            "extra": f"kdamond {whose}: {run['kdamond_cpu_s']:.2f} s CPU at {kernel.attrs.sample_interval_us} us "
                     f"samples, {kernel.attrs.aggr_interval_us} us aggregations; {len(run['snapshots'])} snapshots; "
                     f"{100 * seen:.1f}% of resident pages in monitored regions; page maps read {s['refreshes']} "
                     f"times, mapping back {s['map_s']:.2f} s"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--hot-kib", type=int, default=8192)
    ap.add_argument("--cold-kib", type=int, default=32768)
    args = ap.parse_args()
    from damon_bpf.sources.tracer import Tracer

    binary = build_accessgen(Path(tempfile.mkdtemp(prefix="bench-one-node-")))
    tracer = Tracer("auto")
    print(f"{args.seconds:g} s per row, hot {2 * args.hot_kib >> 10} MiB (written + read), cold "
          f"{args.cold_kib >> 10} MiB; kernel {os.uname().release}; load average {os.getloadavg()[0]:.1f}\n")
    print("| run | method | hot-set precision | hot-set recall | monitor CPU (% of a core) | workload speed | notes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in range(1, args.runs + 1):
        proc, _, _ = start_workload(binary, args.seconds / 3, args.hot_kib, args.cold_kib)
        go(proc)
        baseline = finish(proc)
        for row in (run_paddr(tracer, binary, args.seconds, args),
                    run_ours(tracer, binary, args.seconds, "numa-hint", args, Path("."))):
            print(f"| {run} | {row['method']} | {row['precision']:.2f} | {row['recall']:.2f} | "
                  f"{100 * row['monitor_cpu_s'] / args.seconds:.1f} | {row['touch_rate'] / baseline:.2f}x | "
                  f"{row['extra']} |", flush=True)
    tracer.close()


if __name__ == "__main__":
    main()
