"""What naming regions by their mappings costs the recorder per snapshot: region_mappings (per region, the
mappings it overlaps) and their JSON for the file, against the snapshot's own JSON without them.

    .venv/bin/python tests/bench/bench_mappings.py [--regions 100 1000] [--mappings 100 1000]

Prints milliseconds per snapshot (best of 5); a recorder at DAMON's default 100 ms aggregation makes ten a second
per target, so 1 ms per snapshot is 1% of a core.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from damon_bpf.core.mappings import Mapping, region_mappings
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.encode import _snapshot_json

BASE = 0x7F00_0000_0000


def layout(nr_mappings: int, nr_regions: int, rng) -> tuple[list[Mapping], Snapshot]:
    """Mappings of 64 KiB with 64 KiB gaps (libraries and their guards), regions cut at random over them."""
    maps = [Mapping(BASE + i * 0x20000, BASE + i * 0x20000 + 0x10000, f"/usr/lib/x86_64-linux-gnu/lib{i % 80}.so")
            for i in range(nr_mappings)]
    cuts = np.unique(rng.integers(1, nr_mappings * 32, nr_regions - 1)) * 4096
    bounds = np.concatenate([[0], cuts, [nr_mappings * 0x20000]]).astype(np.uint64) + np.uint64(BASE)
    n = len(bounds) - 1
    zeros = np.zeros(n, np.int64)
    return maps, Snapshot(0, 100_000_000, bounds[:-1], bounds[1:], zeros, zeros, zeros, zeros, zeros)


def best_ms(fn) -> float:
    return min(timeit.repeat(fn, number=5, repeat=5)) / 5 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--mappings", type=int, nargs="+", default=[100, 1000])
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'regions':>8} {'mappings':>9} {'name ms':>8} {'json ms':>8} {'json without ms':>16}")
    for nr_regions in opts.regions:
        for nr_mappings in opts.mappings:
            maps, snap = layout(nr_mappings, nr_regions, rng)
            plain = best_ms(lambda: _snapshot_json(snap, 100_000))   # noqa: B023
            name = best_ms(lambda: region_mappings(snap.start, snap.end, maps))   # noqa: B023
            snap.mappings = region_mappings(snap.start, snap.end, maps)
            named = best_ms(lambda: _snapshot_json(snap, 100_000))   # noqa: B023
            print(f"{snap.nr_regions:>8} {nr_mappings:>9} {name:>8.2f} {named:>8.2f} {plain:>16.2f}")


if __name__ == "__main__":
    main()
