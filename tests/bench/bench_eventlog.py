#!/usr/bin/env python3
"""`trace -o` JSON lines: events/s of the per-record formatter, the previous vectorised writer (a byte matrix,
kept here for comparison) and the current one (4-byte cells), same batches.

    bench_eventlog.py [--events 2000000] [--batch 65536] [--runs 3]

Batches look like a real trace (user-space addresses, monotonic times, few CPUs, pids and tids of a few
digits, reads and writes); each writer formats them all, best of --runs. Checks that all give the same
bytes, prints figures, asserts nothing else.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from damon_bpf.access import ACCESS_DTYPE, ACCESS_READ, ACCESS_WRITE
from damon_bpf.eventlog import jsonl_bytes, jsonl_lines_per_event


# jsonl_bytes lays each record out in a fixed-width row: every number right-aligned in as many digits as its
# type can hold, its leading zeros as NUL bytes, the write word NUL-padded. The rows back to back, with the NULs
# deleted by bytes.translate (one C pass; JSON text never holds a NUL), are the lines. Whole columns at a time: no
# Python per record.
_LAYOUT = ((b'{"addr":', "addr", 20), (b',"time_ns":', "time_ns", 20), (b',"cpu":', "cpu", 10),
           (b',"pid":', "pid", 10), (b',"tid":', "tid", 10))
_POW10 = 10 ** np.arange(19, -1, -1, dtype=np.uint64)           # 10**19 .. 1: a u64 has at most 20 digits
_POSITIONS = {width: np.arange(width, dtype=np.int8) for width in (10, 20)}
_WORDS = np.frombuffer(b"false" b"true\0" b"null\0", np.uint8).reshape(3, 5)
_WORD_OF = np.full(256, 2, np.intp)                             # any other write code: null
_WORD_OF[ACCESS_READ], _WORD_OF[ACCESS_WRITE] = 0, 1
_CHUNK = 1 << 16   # rows per pass: the fixed-width matrix (~130 bytes a row) stays small


def _decimal_u32(values: np.ndarray, out: np.ndarray) -> None:
    """Digits of ``values`` (each below 10**len(out), at most 10 digits) into the rows of ``out``, most
    significant first."""
    quotient = values.astype(np.uint32)
    for row in range(len(out) - 1, -1, -1):   # scalar divisors: numpy divides by them with SIMD
        next_quotient = quotient // np.uint32(10)
        out[row] = quotient - next_quotient * np.uint32(10)
        quotient = next_quotient


def _digits(column: np.ndarray, width: int) -> np.ndarray:
    """Each value's ASCII digits right-aligned in ``width`` columns, leading zeros as NUL."""
    column = np.ascontiguousarray(column)
    digits = np.empty((width, len(column)), np.uint8)   # a digit position per row: contiguous writes
    if width == 20:   # u64: 32-bit pieces of 2, 9 and 9 digits
        billion = np.uint64(10**9)
        high = column // billion
        top = high // billion
        _decimal_u32(top, digits[:2])
        _decimal_u32(high - top * billion, digits[2:11])
        _decimal_u32(column - high * billion, digits[11:])
    else:
        _decimal_u32(column, digits)
    count = np.searchsorted(_POW10[::-1], column, side="right").astype(np.int8)   # digits printed (0 has none)
    printed = _POSITIONS[width][:, None] >= (width - np.maximum(count, 1))[None, :]
    digits += np.uint8(ord("0"))
    digits *= printed
    return digits.T


def _jsonl_chunk(batch: np.ndarray) -> bytes:
    rows = len(batch)
    parts = []
    for text, name, width in _LAYOUT:
        parts += [np.broadcast_to(np.frombuffer(text, np.uint8), (rows, len(text))), _digits(batch[name], width)]
    parts += [np.broadcast_to(np.frombuffer(b',"write":', np.uint8), (rows, 9)), _WORDS[_WORD_OF[batch["write"]]],
              np.broadcast_to(np.frombuffer(b"}\n", np.uint8), (rows, 2))]
    return np.concatenate(parts, axis=1).tobytes().translate(None, b"\0")


def previous_jsonl_bytes(batch: np.ndarray) -> bytes:
    """The writer before this one (one byte per matrix element)."""
    return b"".join(_jsonl_chunk(batch[start:start + _CHUNK]) for start in range(0, len(batch), _CHUNK))


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


def measure(writers: dict, work: list[np.ndarray], runs: int) -> dict[str, tuple[float, float, int]]:
    """Per writer: events/s by the best wall time and by the best CPU time of the process, and the bytes
    written. The writers take turns in each run, so a load that comes and goes hits them alike; CPU time is the
    steadier figure on a machine other work shares."""
    events = sum(map(len, work))
    best = {name: (float("inf"), float("inf"), 0) for name in writers}
    for _ in range(runs):
        for name, writer in writers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            size = sum(len(writer(batch)) for batch in work)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu), size)
    return {name: (events / wall, events / cpu, size) for name, (wall, cpu, size) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = batches(args.events, args.batch)
    assert all(jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode() for batch in work[:3])
    assert all(previous_jsonl_bytes(batch) == jsonl_bytes(batch) for batch in work[:3])
    figures = measure({"per-record f-strings": lambda batch: jsonl_lines_per_event(batch).encode(),
                       "previous byte matrix": previous_jsonl_bytes, "4-byte cells (numpy)": jsonl_bytes},
                      work, args.runs)
    print(f"{args.events} events in batches of {args.batch}, best of {args.runs}; "
          f"{figures['4-byte cells (numpy)'][2] / args.events:.1f} bytes/event; load average "
          f"{os.getloadavg()[0]:.1f}")
    for name, (by_wall, by_cpu, _) in figures.items():
        print(f"{name}: {by_wall / 1e6:.2f} M events/s (wall), {by_cpu / 1e6:.2f} M events/s (CPU)")
    assert len({size for _, _, size in figures.values()}) == 1


if __name__ == "__main__":
    main()
