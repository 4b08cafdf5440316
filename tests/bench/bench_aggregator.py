"""Throughput of the region core: access reports per second through Aggregator.feed + advance.

A script, not a test: ``python tests/bench/bench_aggregator.py [--regions 1000] [--reports 5000000]``.
Reports arrive as a collector delivers them: time-ordered batches, one per 10 ms drain, and
``advance`` after each batch. Address patterns: uniform over the target (the worst case for
np.searchsorted's branch prediction), runs of 64 consecutive pages (page faults' usual shape),
and uniform with 30% of the reports in a heap that appears in one of DAMON's two gaps after the
first layout read (the layout gives it from the second read on: the re-read that a report outside
the regions causes finds it), and "unmapped", 30% of the reports in the gap with no mapping there
ever (not something page faults do: the worst case of regions made of the reports' own pages).
The machine may be shared, so each pattern runs several times; the best and median are printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from damon_bpf.access import ACCESS_DTYPE
from damon_bpf.core.aggregator import Aggregator
from damon_bpf.core.attrs import MonitoringAttrs

PAGE = 4096
RANGES = [(0x5555_0000_0000, 0x5555_4000_0000), (0x7F00_0000_0000, 0x7F01_0000_0000),
          (0x7FFF_F000_0000, 0x7FFF_F100_0000)]
HEAP = (0x6000_0000_0000, 0x6000_4000_0000)   # 1 GiB in the first gap, mapped after the first read


def _addresses(rng: np.random.Generator, n: int, pattern: str) -> np.ndarray:
    lo, hi = RANGES[1]
    if pattern == "uniform":
        return rng.integers(lo, hi, n, dtype=np.uint64)
    if pattern in ("outside", "unmapped"):
        addr = rng.integers(lo, hi, n, dtype=np.uint64)
        gap_lo, gap_hi = HEAP if pattern == "outside" else (RANGES[0][1], RANGES[1][0])
        away = rng.random(n) < 0.3
        addr[away] = rng.integers(gap_lo, gap_hi, int(away.sum()), dtype=np.uint64)
        return addr
    run = 64
    base = rng.integers(lo, hi - run * PAGE, -(-n // run), dtype=np.uint64)
    return (base[:, None] + np.arange(run, dtype=np.uint64) * PAGE).ravel()[:n]


def make_batches(n: int, rate: float, drain_ns: int, pattern: str, seed: int = 1) -> list[np.ndarray]:
    """Time-ordered batches of ``n`` reports in all, ``rate`` reports/s, one batch per drain."""
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, ACCESS_DTYPE)
    rec["time_ns"] = np.sort(rng.integers(0, int(n / rate * 1e9), n, dtype=np.uint64))
    rec["addr"] = _addresses(rng, n, pattern)
    rec["cpu"] = rng.integers(0, 8, n)
    rec["tid"] = rng.integers(1000, 1016, n)
    rec["write"] = rng.integers(0, 3, n)
    cuts = np.searchsorted(rec["time_ns"], np.arange(drain_ns, int(rec["time_ns"][-1]) + drain_ns, drain_ns))
    return [rec[lo:hi] for lo, hi in zip(np.r_[0, cuts[:-1]], cuts)]


def run(batches: list[np.ndarray], regions: int, drain_ns: int, pattern: str) -> tuple[float, Aggregator]:
    attrs = MonitoringAttrs(min_nr_regions=regions, max_nr_regions=regions)
    reads = []

    def layout():
        reads.append(1)
        return RANGES + [HEAP] if pattern == "outside" and len(reads) > 1 else RANGES

    agg = Aggregator(attrs, layout, start_ns=0)
    now = 0
    t0 = time.perf_counter()
    for batch in batches:
        now += drain_ns
        agg.feed(batch)
        agg.advance(now)
    agg.advance(now + 10**9)
    return time.perf_counter() - t0, agg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=1000)
    ap.add_argument("--reports", type=int, default=5_000_000)
    ap.add_argument("--rate", type=float, default=10e6, help="simulated reports/s (sets batch size)")
    ap.add_argument("--drain-ms", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    drain_ns = int(args.drain_ms * 1e6)
    for pattern in ("uniform", "runs", "outside", "unmapped"):
        batches = make_batches(args.reports, args.rate, drain_ns, pattern)
        run(batches[:20], args.regions, drain_ns, pattern)  # warm-up: imports, allocator
        times = []
        for _ in range(args.repeat):
            elapsed, agg = run(batches, args.regions, drain_ns, pattern)
            times.append(elapsed)
        best, median = min(times), float(np.median(times))
        print(f"{pattern:8s} best {args.reports / best / 1e6:6.2f} M reports/s, median "
              f"{args.reports / median / 1e6:6.2f} M reports/s  ({args.reports} reports in {len(batches)} "
              f"batches of {args.drain_ms:g} ms; {agg.snapshots_emitted} aggregations, {agg.nr_regions} regions, "
              f"late {agg.late}, outside {agg.outside}, re-reads {agg.rereads}, "
              f"ranges from reports {agg.report_ranges})")


if __name__ == "__main__":
    main()
