#!/usr/bin/env python3
"""Collector overhead: a page-fault generator at full speed, untraced vs traced, in one invocation.

    bench_trace.py [--runs 5] [--seconds 3] [--mode w|r] [--damon-bpf PATH]

Runs alternate (untraced, damon-bpf, bpftrace, perf, untraced, ...) and each row reports the median of
its runs. The generator measures its own fault rate (touches per second over its loop), so tool
start-up time is not counted. Slowdown = untraced rate / traced rate. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "workload" / "accessgen.c"


def build(tmp: Path) -> str:
    binary = tmp / "accessgen"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(SOURCE)], check=True)
    return str(binary)


def generator_args(binary: str, seconds: float, mode: str, wait: bool) -> list[str]:
    return [binary] + (["--wait"] if wait else []) + ["--duration", str(seconds), f"gen:0:{mode}:4096:0"]


def rate_of(stdout: str) -> float:
    return touches_of(stdout) / json.loads(stdout.strip().splitlines()[-1])["elapsed_s"]


def touches_of(stdout: str) -> int:
    return json.loads(stdout.strip().splitlines()[-1])["threads"][0]["touches"]


def run_untraced(binary: str, seconds: float, mode: str, tmp: Path) -> dict:
    out = subprocess.run(generator_args(binary, seconds, mode, False), capture_output=True, text=True, check=True)
    return {"rate": rate_of(out.stdout)}


def run_damon_bpf(binary: str, seconds: float, mode: str, tmp: Path, tool: str) -> dict:
    summary = tmp / "summary.json"
    cmd = [tool, "trace", "--format", "binary", "-o", str(tmp / "events.bin"), "--summary-json", str(summary), "--"]
    out = subprocess.run(cmd + generator_args(binary, seconds, mode, False), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"damon-bpf trace failed: {out.stderr.strip()}")
    acc = json.loads(summary.read_text())
    return {"rate": rate_of(out.stdout), "events_per_s": acc["events_per_s"], "lost": acc["lost"],
            "delivered": acc["delivered"], "collector_cpu": acc["cpu_s"] / acc["duration_s"]}


def run_attached(binary: str, seconds: float, mode: str, attach_cmd, ready_s: float) -> dict:
    """Start the generator paused, attach an external tool to its pid, then release it."""
    gen = subprocess.Popen(generator_args(binary, seconds, mode, True), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    pid = json.loads(gen.stdout.readline())["pid"]
    tool = subprocess.Popen(attach_cmd(pid), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(ready_s)
    gen.stdin.write("go\n")
    gen.stdin.flush()
    generator_out = gen.stdout.read()
    rate, touches = rate_of(generator_out), touches_of(generator_out)
    gen.wait()
    try:
        out, err = tool.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        tool.kill()
        out, err = tool.communicate()
    return {"rate": rate, "touches": touches, "tool_output": out + err}


def run_bpftrace(binary, seconds, mode, tmp) -> dict:
    program = "tracepoint:exceptions:page_fault_user /pid == $1/ { @faults = count(); }"
    return run_attached(binary, seconds, mode, lambda pid: ["bpftrace", "-e", program, str(pid)], 4.0)


def run_perf(binary, seconds, mode, tmp) -> dict:
    data = tmp / "perf.data"
    result = run_attached(binary, seconds, mode,
                          lambda pid: ["perf", "record", "-q", "-e", "page-faults", "-d", "-c", "1", "-p", str(pid),
                                       "-o", str(data)], 2.0)
    report = subprocess.run(["perf", "report", "-i", str(data), "--stats"], capture_output=True, text=True)
    samples = re.search(r"SAMPLE events:\s+(\d+)", report.stdout)
    # perf throttles sampling above kernel.perf_event_max_sample_rate: faults it never saw are its loss
    result["lost"] = max(0, result["touches"] - int(samples.group(1))) if samples else result["touches"]
    return result


def base_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--mode", choices=("w", "r"), default="w")
    parser.add_argument("--damon-bpf", default=str(Path(sys.executable).parent / "damon-bpf"))
    return parser


def run_rows(rows: dict, args) -> dict[str, list[dict]]:
    """Every row once per round, rounds alternating, so background load hits all rows alike."""
    results: dict[str, list[dict]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        binary = build(tmp)
        for _ in range(args.runs):
            for name, run in rows.items():
                results[name].append(run(binary, args.seconds, args.mode, tmp))
    return results


def main() -> None:
    args = base_parser(__doc__).parse_args()
    rows = {"untraced": run_untraced, "damon-bpf trace": lambda *a: run_damon_bpf(*a, tool=args.damon_bpf)}
    if shutil.which("bpftrace"):
        rows["bpftrace count (ref)"] = run_bpftrace
    if shutil.which("perf"):
        rows["perf record -d (ref)"] = run_perf
    report(run_rows(rows, args), args)


def report(results: dict[str, list[dict]], args) -> None:
    base = statistics.median(r["rate"] for r in results["untraced"])
    kind = "write" if args.mode == "w" else "read"
    print(f"{kind} faults, {args.runs} alternating runs of {args.seconds:g} s, medians")
    print(f"{'tool':<22} {'faults/s':>10} {'slowdown':>9} {'events/s':>10} {'lost':>6} {'collector CPU':>14}")
    for name, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        events = statistics.median(r["events_per_s"] for r in runs) if "events_per_s" in runs[0] else None
        lost = sum(int(r["lost"]) for r in runs) if "lost" in runs[0] else None
        cpu = statistics.median(r["collector_cpu"] for r in runs) if "collector_cpu" in runs[0] else None
        print(f"{name:<22} {rate:>10.0f} {base / rate:>8.2f}x {events and f'{events:.0f}' or '-':>10} "
              f"{'-' if lost is None else lost:>6} {'-' if cpu is None else f'{100 * cpu:.1f}% of a core':>14}")
    slowdowns = [base / r["rate"] for r in results["damon-bpf trace"]]
    print(f"damon-bpf slowdown per run: {', '.join(f'{s:.2f}' for s in slowdowns)}")


if __name__ == "__main__":
    main()
