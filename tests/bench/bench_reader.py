"""Record reader: time and peak memory of `damon-bpf report` on a one-hour record.

Writes a record of one target, one hour at DAMON's default 100 ms aggregation (36,000 snapshots) with
--regions regions each, attributed to 2 CPUs and 3 threads (10 MB compressed at the default, 12); with --named
each region also names the mappings it covers and its top 5 functions, as `record` writes them
(core.mappings and recorder.top_functions over a fixed layout and list of functions, so names repeat as in a
real run; 15 MB). Then it runs each report in a fresh process and prints its wall time, CPU time and peak RSS
(ru_maxrss of the child), from the columnar side file `record` writes beside the record (recordfile/columnfile.py,
written here as `record` does if missing; the default), from the JSON with our layout's reader
(recordfile/ourlayout.py, DAMON_BPF_READER=json), with the general
path it falls back to (DAMON_BPF_READER=general: orjson and bulk.Batch), with --reference the reader before the bulk one
(DAMON_BPF_READER=reference: json and numpy arrays snapshot by snapshot) and, with --baseline, an earlier
version's damon-bpf; whether every one printed the same. Then what a report's time is made of: the process
start (``report X --help``: Python, numpy, click and the modules the CLI imports) and read_record alone
(in a fresh process, CPU seconds) with each reader; the rest is the report's own work.

    .venv/bin/python tests/bench/bench_reader.py [--regions 12] [--runs 3] [--named] [--record PATH] [--reference]
        [--baseline PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from damon_bpf.core.mappings import Mapping, region_mappings
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recorder import top_functions
from damon_bpf.recordfile import RecordWriter, TargetRecord, columnfile, read_record

AGGR_NS = 100_000_000
T0 = 5_000_000_000_000
BASE = 0x7F00_0000_0000


def snapshot(i: int, n: int, rng: np.random.Generator, named: bool = False) -> Snapshot:
    sizes = rng.integers(1, 64, n).astype(np.uint64) * 4096
    start = BASE + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    reports = rng.integers(0, 400, n) * (rng.random(n) < 0.5)
    writes = reports // 3
    tids = {1000: reports // 2, 1001: reports // 4, 1002: reports - reports // 2 - reports // 4}
    snap = Snapshot(T0 + i * AGGR_NS, T0 + (i + 1) * AGGR_NS, start, start + sizes,
                    np.minimum(reports, 20), rng.integers(0, 300, n), reports, writes, reports - writes,
                    {0: reports // 2, 1: reports - reports // 2}, tids)
    if named:   # as `record` writes them: each region's mappings and top functions
        snap.mappings = region_mappings(start, start + sizes, LAYOUT)
        snap.ips = ips_of(reports, rng)
        snap.functions = top_functions(snap, lambda ips: [FUNCTIONS[ip] for ip in ips])
    return snap


# a process's mappings as /proc/PID/maps names them, over the regions' addresses (about 4 MiB): the heap, a
# few libraries' segments, anonymous memory, a shared memory file and the stack
LAYOUT = [Mapping(BASE + lo * 4096, BASE + hi * 4096, name) for lo, hi, name in (
    (0, 90, "[heap]"), (90, 140, ""), (140, 150, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    (150, 160, "/usr/lib/x86_64-linux-gnu/libm.so.6"), (160, 300, ""), (300, 420, "/dev/shm/PostgreSQL.1234"),
    (420, 470, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), (470, 620, "[anon:arena]"),
    (620, 700, "/usr/lib/postgresql/15/bin/postgres"), (700, 1100, "[stack]"))]
# the code that faults: names as the symbolizer gives them (a function, or a library and offset it could not name)
FUNCTIONS = ["memcpy", "__memset_avx2_unaligned_erms", "main", "ExecScan", "hash_search_with_hash_value",
             "heap_getnextslot", "palloc", "AllocSetAlloc", "LWLockAcquire", "pg_qsort", "slot_deform_heap_tuple",
             "libc.so.6+0x9a2b1", "[kernel]", "bsearch", "_int_malloc", "ReadBufferExtended", "tuplesort_puttuple",
             "ExecInterpExpr", "[unknown]", "std::vector<int, std::allocator<int> >::_M_realloc_insert"]


def ips_of(reports: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(region, ip, count) of the reports, as core.ipcounts gives them: each region's reports from up to 6
    neighbouring functions (so names repeat across regions and snapshots); an ip names FUNCTIONS[ip]."""
    region, ips, counts = [], [], []
    firsts = rng.integers(0, len(FUNCTIONS) - 6, len(reports)).tolist()
    for r, (count, first) in enumerate(zip(reports.tolist(), firsts)):
        for k, n in enumerate(rng.multinomial(count, [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]).tolist()):
            if n:
                region.append(r)
                ips.append(first + k)
                counts.append(n)
    return np.array(region, np.int64), np.array(ips, np.uint64), np.array(counts, np.int64)


def write_hour(path: str, regions: int, named: bool = False) -> dict[str, list[tuple[float, float]]]:
    """Write the one-hour record as `record` does, a flush per 2 s of snapshots (20) in the first and the
    last minute (timed there) and per 100 s between; returns the timed flushes' (wall, CPU) seconds by minute."""
    rng = np.random.default_rng(1)
    writer = RecordWriter(path)
    writer.add_target(TargetRecord(0, 1000, 5000, 100_000, 1_000_000, [], {"source": "bench"}))
    cost: dict[str, list[tuple[float, float]]] = {"1 min": [], "60 min": []}
    for first in range(0, 36_000, 20):
        writer.add_snapshots(0, [snapshot(first + i, regions, rng, named) for i in range(20)])
        minute = "1 min" if 600 <= first < 1200 else "60 min" if first >= 35_400 else None
        if minute is not None or (first + 20) % 1000 == 0:
            begin, begin_cpu = time.perf_counter(), time.process_time()
            writer.flush()
            if minute is not None:
                cost[minute].append((time.perf_counter() - begin, time.process_time() - begin_cpu))
    writer.close()
    return cost


def run(cli: str, args: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system: what a loaded machine does not inflate), peak RSS (MiB) and
    a digest of the output of one report in a fresh process."""
    begin = time.monotonic()
    out = subprocess.run([cli, *args], check=True, capture_output=True).stdout
    wall = time.monotonic() - begin
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, hashlib.sha256(out).hexdigest()[:16]


def measure(cli: str, path: str, report: list[str], reader: str, runs: int) -> tuple[list[float], list[float],
                                                                                     list[float], set[str]]:
    walls, cpus, peaks, outputs = [], [], [], set()
    env = dict(os.environ, DAMON_BPF_READER=reader)
    for _ in range(runs):
        # ru_* of children add up over all of them: measure each from its own process
        out = subprocess.run([sys.executable, __file__, "--one", cli, path, *report], check=True,
                             capture_output=True, text=True, env=env).stdout.split()
        walls.append(float(out[0]))
        cpus.append(float(out[1]))
        peaks.append(float(out[2]))
        outputs.add(out[3])
    return walls, cpus, peaks, outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regions", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reports", nargs="+", type=str.split,
                        default=[["access", "--snapshot", "last"], ["access"], ["wss"], ["breakdown"],
                                 ["heatmap", "--output", "raw"]],
                        help="reports to run, each quoted ('heatmap --output raw')")
    parser.add_argument("--named", action="store_true",
                        help="regions carry mappings and top functions, as `record` writes them")
    parser.add_argument("--record", metavar="PATH", help="the one-hour record: written there if missing, else reused")
    parser.add_argument("--reference", action="store_true",
                        help="also the reader before the bulk one (slow)")
    parser.add_argument("--baseline", metavar="PATH",
                        help="damon-bpf of an earlier version: its reports too, and whether their output is the same")
    opts = parser.parse_args()
    cli = os.path.join(os.path.dirname(sys.executable), "damon-bpf")
    versions = [("columns", cli, "columns"), ("json", cli, "json"), ("general", cli, "general")] + \
        ([("reference", cli, "reference")] if opts.reference else []) + \
        ([("baseline", opts.baseline, "ours")] if opts.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = opts.record or os.path.join(tmp, "hour.data")
        cost = write_hour(path, opts.regions, opts.named) if not os.path.exists(path) else {}
        if not columnfile.load(path, None, frozenset()):   # as `record` writes it when it closes the file
            begin = time.process_time()
            columnfile.write_beside(path, print, read_record)
            print(f"columnar side file written in {time.process_time() - begin:.2f} s CPU")
        print(f"columnar side file: {os.path.getsize(columnfile.side_path(path)) / 1e6:.1f} MB")
        print(f"record: 36000 snapshots x {opts.regions} regions, {os.path.getsize(path) / 1e6:.1f} MB"
              f"{' (reused: ' + path + ')' if not cost else ''}")
        for minute, times in cost.items():   # each flush appends 20 snapshots (2 s of recording)
            walls, cpus = zip(*times)   # wall includes the two fdatasyncs: the disk, and other load
            print(f"flush after {minute:6s}: CPU median {statistics.median(cpus) * 1e3:6.2f} ms, wall median "
                  f"{statistics.median(walls) * 1e3:6.2f} ms, max {max(walls) * 1e3:6.2f} ms ({len(times)} flushes "
                  "of 20 snapshots)")
        print(f"load average before the reports: {os.getloadavg()[0]:.1f}")
        for report in opts.reports:
            outputs: dict[str, set[str]] = {}
            for name, tool, reader in versions:
                walls, cpus, peaks, outputs[name] = measure(tool, path, report, reader, opts.runs)
                print(f"report {' '.join(report):20s} {name:9s} wall {statistics.median(walls):5.2f} s "
                      f"(runs {min(walls):.2f}-{max(walls):.2f})  CPU {statistics.median(cpus):5.2f} s  "
                      f"peak RSS {max(peaks):6.0f} MiB  load {os.getloadavg()[0]:.1f}")
            if len(outputs) > 1:
                same = len(set.union(*outputs.values())) == 1
                print(f"report {' '.join(report):20s} output the same in every run of every version: "
                      f"{'yes' if same else 'NO'}")
        stages(cli, path, opts.runs)
        print(f"load average after: {os.getloadavg()[0]:.1f}")


def stages(cli: str, path: str, runs: int) -> None:
    """What a report's time is made of: starting the CLI, and reading the record with each reader."""
    walls, cpus, peaks, _ = measure(cli, "", ["access", "--help"], "columns", runs)
    print(f"process start (report access --help): wall {statistics.median(walls):5.2f} s  CPU "
          f"{statistics.median(cpus):5.2f} s  peak RSS {max(peaks):4.0f} MiB")
    for reader in ("columns", "json", "general"):
        for extras in ("cpus,tids,maps,funcs", ""):
            env = dict(os.environ, DAMON_BPF_READER=reader)
            times = [float(subprocess.run([sys.executable, __file__, "--read", path, extras], check=True,
                                          capture_output=True, text=True, env=env).stdout) for _ in range(runs)]
            print(f"read_record alone, {reader:7s} extras {extras or '(none)':20s}: CPU "
                  f"{statistics.median(times):5.2f} s (runs {min(times):.2f}-{max(times):.2f})")


def read_alone(path: str, extras: str) -> float:
    """CPU seconds of read_record in this process (imports done before)."""
    from damon_bpf.recordfile import read_record
    begin = time.process_time()
    read_record(path, extras=frozenset(extras.split(",")) - {""})
    return time.process_time() - begin


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--one":
        input_args = ["-i", sys.argv[3]] if sys.argv[3] else []
        print(*run(sys.argv[2], ["report", sys.argv[4], *input_args, *sys.argv[5:]]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--read":
        print(read_alone(sys.argv[2], sys.argv[3]))
    else:
        main()
