#!/usr/bin/env python3
"""`trace -o` JSON lines: events/s of the per-record formatter vs the vectorised writer, same batches.

    bench_eventlog.py [--events 2000000] [--batch 65536] [--runs 3]

Batches look like a real trace (user-space addresses, monotonic times, few CPUs, pids and tids of a few
digits, reads and writes); each writer formats them all, best of --runs. Checks that both give the same
bytes, prints figures, asserts nothing else.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from damon_bpf.access import ACCESS_DTYPE
from damon_bpf.eventlog import jsonl_bytes, jsonl_lines_per_event


def batches(events: int, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    records = np.zeros(events, ACCESS_DTYPE)
    records["addr"] = 0x7F0000000000 + rng.integers(0, 1 << 36, events, dtype=np.uint64) * 4096
    records["time_ns"] = 10**13 + np.cumsum(rng.integers(100, 2000, events, dtype=np.uint64))
    records["cpu"] = rng.integers(0, 2, events)
    records["pid"] = rng.integers(1000, 400000, events)
    records["tid"] = records["pid"] + rng.integers(0, 64, events)
    records["write"] = rng.integers(0, 2, events)
    return [records[start:start + batch] for start in range(0, events, batch)]


def rate(formatter, work: list[np.ndarray], runs: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        size = sum(len(formatter(batch)) for batch in work)
        best = min(best, time.perf_counter() - start)
    return sum(map(len, work)) / best, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = batches(args.events, args.batch)
    assert all(jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode() for batch in work[:3])
    old, old_bytes = rate(lambda batch: jsonl_lines_per_event(batch).encode(), work, args.runs)
    new, new_bytes = rate(jsonl_bytes, work, args.runs)
    print(f"{args.events} events in batches of {args.batch}, best of {args.runs}; "
          f"{new_bytes / args.events:.1f} bytes/event")
    print(f"per-record f-strings: {old / 1e6:.2f} M events/s")
    print(f"vectorised (numpy):   {new / 1e6:.2f} M events/s ({new / old:.1f}x)")
    assert old_bytes == new_bytes


if __name__ == "__main__":
    main()
