#!/usr/bin/env python3
"""What carrying and naming the faulting instruction costs. The fault generator at full speed, untraced,
under `damon-bpf trace` and `damon-bpf record` (which counts (region, ip) pairs per aggregation and names
each region's top functions at every snapshot), and, with --baseline PATH, under the same commands of an
earlier damon-bpf (before the instruction pointer was carried), in alternating runs.

    bench_symbols.py [--runs 5] [--seconds 3] [--mode w|r] [--damon-bpf PATH] [--baseline PATH]

Slowdown = untraced rate / traced rate, each against the untraced runs of the same invocation. Prints
figures, asserts nothing. Reuses bench_trace.py (generator, rates, trace run) and bench_live.py (record run).
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_trace = _load("bench_trace")
bench_live = _load("bench_live")


def main() -> None:
    parser = bench_trace.base_parser(__doc__)
    parser.add_argument("--baseline", help="damon-bpf of an earlier version to compare with")
    args = parser.parse_args()
    tools = {"": args.damon_bpf} | ({" (baseline)": args.baseline} if args.baseline else {})
    rows = {"untraced": bench_trace.run_untraced}
    for suffix, tool in tools.items():
        rows[f"damon-bpf trace{suffix}"] = lambda *a, tool=tool: bench_trace.run_damon_bpf(*a, tool=tool)
        rows[f"damon-bpf record{suffix}"] = lambda *a, tool=tool: bench_live.run_record(*a, tool=tool)
    results = bench_trace.run_rows(rows, args)
    bench_trace.report(results, args)
    base = statistics.median(r["rate"] for r in results["untraced"])
    for name in rows:
        if name == "untraced":
            continue
        slowdowns = [base / r["rate"] for r in results[name]]
        cpu = [r["collector_cpu"] for r in results[name] if "collector_cpu" in r]
        print(f"{name}: slowdown vs untraced per run {', '.join(f'{s:.2f}' for s in slowdowns)}; median "
              f"{statistics.median(slowdowns):.2f}x" + (f"; collector CPU median {100 * statistics.median(cpu):.1f}% "
                                                      "of a core" if cpu else ""))


if __name__ == "__main__":
    main()
