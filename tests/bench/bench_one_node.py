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
from bench_samplers import build_accessgen, finish, go, run_kernel, run_ours, start_workload  # noqa: E402


def run_paddr(tracer, binary: str, seconds: float, args) -> dict:
    """--source damon's paddr companion on the workload (the fault view is traced alongside, as record does);
    monitor CPU here is the damon-bpf session's (the kdamond's is in the notes)."""
    row = run_kernel(tracer, binary, seconds, args, "paddr")
    return {**row, "method": "kernel DAMON paddr, mapped back (--source damon)", "monitor_cpu_s": row["session_cpu_s"]}


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
