#!/usr/bin/env python3
"""What does serving Prometheus metrics cost? `damon-bpf record --metrics-listen` on accessgen (a writer and
a reader thread, 4 MiB each, faulting nonstop), scraped every INTERVAL seconds like a Prometheus server.

    bench_metrics.py [--intervals 15 1] [--seconds 46] [--runs 2] [--damon-bpf PATH]

Two figures per interval:
- per scrape: the record process's CPU (every thread's run time from /proc/PID/task/*/schedstat, in ns)
  from just before a GET /metrics to just after it, minus what the process used per second between
  scrapes over the scrape's wall time; its share of a core at the interval = cost / interval. A scrape
  folds every snapshot since the previous one, so the 15 s interval pays for 150 per target.
- whole run: the record process's CPU share over the run, scraped at the interval against a run of the
  same workload without --metrics-listen (alternating; other work on the machine makes this one noisy).
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (schedstat's first field), in ns."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            pass   # a thread that just ended
    return total


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def one_run(tool: str, workload: str, seconds: float, interval: float | None, tmp: Path) -> dict:
    port = free_port()
    listen = ["--metrics-listen", f"127.0.0.1:{port}"] if interval else []
    cmd = [tool, "record", "-o", str(tmp / "bench.data"), *listen, "--", workload, "--duration", str(seconds),
           "wr:-1:w:4096:0", "rd:-1:r:4096:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    costs, sizes = [], []
    time.sleep(5)   # the BPF program is built and the workload starts
    began_ns, began = run_ns(proc.pid), time.monotonic()
    last_ns, last = began_ns, began
    end = began + seconds - 7
    while interval and time.monotonic() + interval < end:
        time.sleep(max(0.0, last + interval - time.monotonic()))
        before_ns, before = run_ns(proc.pid), time.monotonic()
        baseline = (before_ns - last_ns) / max(before - last, 1e-9)   # ns of CPU per s between scrapes
        sizes.append(scrape(f"http://127.0.0.1:{port}/metrics"))
        after_ns, after = run_ns(proc.pid), time.monotonic()
        costs.append(max(0.0, after_ns - before_ns - baseline * (after - before)) / 1e9)
        last_ns, last = after_ns, after
    while time.monotonic() < end:
        time.sleep(0.1)
    share = (run_ns(proc.pid) - began_ns) / 1e9 / (time.monotonic() - began)
    err = proc.communicate()[1]
    if proc.returncode != 0:
        sys.exit(f"record failed: {err.strip()[-1000:]}")
    return {"costs": costs, "share": share, "page_bytes": statistics.median(sizes) if sizes else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[15, 1])
    parser.add_argument("--seconds", type=float, default=46, help="length of each run (>= 3 scrapes at 15 s)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--damon-bpf", default=str(Path(sys.executable).parent / "damon-bpf"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workload = str(Path(tmp) / "accessgen")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", workload, str(ROOT / "tests/workload/accessgen.c")],
                       check=True)
        shutil.copy(workload, workload + ".bak")
        print(f"record on accessgen (writer + reader, 4 MiB each), {args.seconds:.0f} s runs, {args.runs} runs each")
        print(f"{'interval':>9} {'scrapes':>8} {'CPU/scrape':>11} {'max':>9} {'share of a core':>16} "
              f"{'page':>8} {'run CPU with':>13} {'without':>8}")
        for interval in args.intervals:
            costs, shares, bare, pages = [], [], [], []
            for _ in range(args.runs):   # alternating, so drifts in the machine's load hit both alike
                served = one_run(args.damon_bpf, workload, args.seconds, interval, Path(tmp))
                costs += served["costs"]
                shares.append(served["share"])
                pages.append(served["page_bytes"])
                bare.append(one_run(args.damon_bpf, workload, args.seconds, None, Path(tmp))["share"])
            per_scrape = statistics.median(costs)
            print(f"{interval:>8g}s {len(costs):>8} {1e3 * per_scrape:>9.2f}ms {1e3 * max(costs):>7.2f}ms "
                  f"{100 * per_scrape / interval:>15.3f}% {statistics.median(pages) / 1024:>6.1f}KiB "
                  f"{100 * statistics.median(shares):>12.1f}% {100 * statistics.median(bare):>7.1f}%")
            print(json.dumps({"interval_s": interval, "scrape_cpu_s": costs, "run_share_served": shares,
                              "run_share_bare": bare}))


if __name__ == "__main__":
    main()
