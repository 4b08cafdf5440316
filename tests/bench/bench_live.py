#!/usr/bin/env python3
"""Does the live view slow the collector? The fault generator at full speed, untraced, under
`damon-bpf trace`, `damon-bpf record` (the same aggregation as live, no display) and `damon-bpf
live` (full screen in a 120x40 tmux pane, and with stdout a pipe: one line per snapshot), in
alternating runs.

    bench_live.py [--runs 5] [--seconds 3] [--mode w|r] [--damon-bpf PATH] [--no-tmux]

Reuses bench_trace.py (the generator, its rate and the trace run). Slowdown = untraced rate /
traced rate; the issue's target is live's slowdown within 5% of trace's. Prints figures, asserts
nothing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("bench_trace", Path(__file__).resolve().parent / "bench_trace.py")
bench_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_trace)

SUMMARY = re.compile(r"(\d+) events seen, (\d+) delivered, (\d+) filtered, (\d+) lost in ([\d.]+) s "
                     r"\(([\d.]+) events/s\); collector CPU ([\d.]+) s")


def _from_summary(stderr: str, generator_stdout: str) -> dict:
    """The generator's rate and the collector's figures from live's summary line on stderr."""
    m = SUMMARY.search(stderr)
    if m is None:
        sys.exit(f"damon-bpf failed: {stderr.strip()[-2000:]}")
    lines = "\n".join(line for line in generator_stdout.splitlines() if line.startswith("{"))
    duration, cpu = float(m.group(5)), float(m.group(7))
    return {"rate": bench_trace.rate_of(lines), "events_per_s": float(m.group(6)), "lost": int(m.group(4)),
            "delivered": int(m.group(2)), "collector_cpu": cpu / duration}


def run_record(binary: str, seconds: float, mode: str, tmp: Path, tool: str) -> dict:
    """`record`: the same aggregation as live without a display, to tell the two costs apart."""
    cmd = [tool, "record", "-o", str(tmp / "record.data"), "--"] + bench_trace.generator_args(binary, seconds,
                                                                                           mode, False)
    out = subprocess.run(cmd, capture_output=True, text=True)
    return _from_summary(out.stderr, out.stdout)


def run_live_pipe(binary: str, seconds: float, mode: str, tmp: Path, tool: str) -> dict:
    cmd = [tool, "live", "--"] + bench_trace.generator_args(binary, seconds, mode, False)
    out = subprocess.run(cmd, capture_output=True, text=True)  # stdout not a tty: snapshot lines
    return _from_summary(out.stderr, out.stdout)


def run_live_tmux(binary: str, seconds: float, mode: str, tmp: Path, tool: str) -> dict:
    """Full screen in a detached 120x40 tmux pane: the rendering a user sees, at its default rate."""
    socket = f"damon-bpf-bench-live-{os.getpid()}"
    generator = " ".join(map(shlex.quote, bench_trace.generator_args(binary, seconds, mode, False)))
    gen_out, err = tmp / "generator.out", tmp / "live.err"
    script = (f"{shlex.quote(tool)} live -- sh -c {shlex.quote(f'exec {generator} > {gen_out}')} 2> {err}; "
              f"tmux -L {socket} wait-for -S done")
    tmux = ["tmux", "-L", socket]
    subprocess.run(tmux + ["-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", script], check=True)
    try:
        subprocess.run(tmux + ["wait-for", "done"], check=True, timeout=seconds + 120)
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{socket}").unlink(missing_ok=True)  # tmux leaves it behind
    return _from_summary(err.read_text(), gen_out.read_text())


def main() -> None:
    parser = bench_trace.base_parser(__doc__)
    parser.add_argument("--no-tmux", action="store_true", help="Skip the full-screen run.")
    args = parser.parse_args()
    tool = args.damon_bpf
    rows = {"untraced": bench_trace.run_untraced,
            "damon-bpf trace": lambda *a: bench_trace.run_damon_bpf(*a, tool=tool),
            "damon-bpf record (ref)": lambda *a: run_record(*a, tool=tool),
            "damon-bpf live (pipe)": lambda *a: run_live_pipe(*a, tool=tool)}
    if shutil.which("tmux") and not args.no_tmux:
        rows["damon-bpf live (tmux)"] = lambda *a: run_live_tmux(*a, tool=tool)
    results = bench_trace.run_rows(rows, args)
    bench_trace.report(results, args)
    base = statistics.median(r["rate"] for r in results["untraced"])
    trace = statistics.median(base / r["rate"] for r in results["damon-bpf trace"])
    for name in rows:
        if name.startswith(("damon-bpf live", "damon-bpf record")):
            slowdowns = [base / r["rate"] for r in results[name]]
            live = statistics.median(slowdowns)
            # Paired: each run against the trace run of the same round, which saw about the same
            # background load; steadier than comparing medians on a shared machine.
            paired = [t["rate"] / r["rate"] for t, r in zip(results["damon-bpf trace"], results[name])]
            low, mid, high = paired_interval(paired)
            verdict = ("within 5%" if high <= 1.05 else "NOT within 5%" if low > 1.05 else
                       "undecided at this noise (interval straddles +5%)")
            print(f"{name} slowdown per run: {', '.join(f'{s:.2f}' for s in slowdowns)}; median {live:.2f} "
                  f"vs trace {trace:.2f} ({100 * (live / trace - 1):+.1f}%); paired with trace's runs: median "
                  f"{100 * (mid - 1):+.1f}%, 90% interval {100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}%: "
                  f"{verdict}")


def paired_interval(ratios: list[float], draws: int = 10_000) -> tuple[float, float, float]:
    """Median of the paired ratios and a 90% bootstrap interval of that median."""
    values = np.asarray(ratios)
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(values, size=(draws, len(values))), axis=1)
    return float(np.percentile(medians, 5)), float(np.median(values)), float(np.percentile(medians, 95))

if __name__ == "__main__":
    main()
