#!/usr/bin/env python3
"""Many busy threads on few CPUs: does `record` keep up, and does it say so when it does not?

    bench_threads.py [--threads 50,200,400] [--priorities rt,normal] [--seconds 4] [--runs 1] [--ring-mb 64]

Each run records accessgen with N unpinned threads, each faulting its own 64 KiB over and over
(every touch a fault), so the target wants every CPU. Prints, per thread count and collector
priority (--collector-priority): reports seen / delivered / lost, the share of delivered
reports in regions, snapshots, the collector's CPU, and whether the counters closed. Asserts
nothing; figures from a shared 2-CPU machine vary from run to run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_trace", Path(__file__).resolve().parent / "bench_trace.py")
bench_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_trace)


def read_record(path: str):
    from damon_bpf.recordfile import read_record as read

    return read(path)


def run(tool: str, binary: str, threads: int, priority: str, seconds: float, ring_mb: int, tmp: Path) -> dict:
    out = tmp / "threads.data"
    specs = [f"t{i}:-1:w:64:0" for i in range(threads)]
    cmd = [tool, "record", "--collector-priority", priority, "--ring-mb", str(ring_mb), "-o", str(out), "--", binary,
           "--duration",
           str(seconds), *specs]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        sys.exit(f"damon-bpf record failed: {result.stderr.strip()[-2000:]}")
    records = read_record(str(out))
    acc = records[0].meta["accounting"]
    placed = acc["in_regions"] + acc["outside_regions"] + acc["late"] + acc["unattributed"]
    return {"threads": threads, "priority": priority, "seen": acc["seen"], "delivered": acc["delivered"],
            "lost": acc["lost"], "lost_pct": 100 * acc["lost"] / max(acc["seen"], 1),
            "in_regions_pct": 100 * acc["in_regions"] / max(acc["delivered"], 1),
            "snapshots": sum(len(r.snapshots) for r in records),
            "collector_cpu_pct": 100 * acc["cpu_s"] / acc["duration_s"],
            "closed": placed == acc["delivered"] and acc["pending"] == 0,
            "advice": "lost: the collector fell behind" in result.stderr or "were lost" in result.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="50,200,400")
    parser.add_argument("--priorities", default="rt,normal")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--ring-mb", type=int, default=64, help="a small ring shows what a slow collector loses")
    parser.add_argument("--damon-bpf", default=str(Path(sys.executable).parent / "damon-bpf"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        binary = bench_trace.build(tmp)
        for _ in range(args.runs):
            for threads in (int(t) for t in args.threads.split(",")):
                for priority in args.priorities.split(","):   # alternating: background load hits all alike
                    rows.append(run(args.damon_bpf, binary, threads, priority, args.seconds, args.ring_mb, tmp))
                    print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"ring {args.ring_mb} MiB, {args.seconds} s per run")
    print(f"{'threads':>7} {'priority':>8} {'seen':>10} {'delivered':>10} {'lost':>10} {'lost %':>7} "
          f"{'in regions %':>12} {'snapshots':>9} {'collector CPU %':>15} {'closed':>6} {'said why':>8}")
    for r in rows:
        print(f"{r['threads']:>7} {r['priority']:>8} {r['seen']:>10} {r['delivered']:>10} {r['lost']:>10} "
              f"{r['lost_pct']:>7.1f} {r['in_regions_pct']:>12.2f} {r['snapshots']:>9} "
              f"{r['collector_cpu_pct']:>15.1f} {str(r['closed']):>6} {str(r['advice'] if r['lost'] else '-'):>8}")


if __name__ == "__main__":
    main()
