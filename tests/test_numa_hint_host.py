"""--sampler numa-hint on this one-node host, with real BPF and a real workload (kernel 6.18, restricted
debugfs: the scanner runs on the kernel's default settings). A busy two-thread target whose memory is
mapped before monitoring starts faults again only through NUMA hinting; each test stays under ~30 s."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import DAMON_BPF
from damon_bpf.access import ACCESS_READ, ACCESS_WRITE

SWITCH = Path("/proc/sys/kernel/numa_balancing")
RANGE_KIB = 64 << 10     # 16,384 pages per thread, as measured in issue 15
ENOUGH = 0.5             # share of a range's pages re-faulted that shows a scan pass covered it
LIMIT_S = 25.0


def run_until_covered(tracer, accessgen, sampler):
    """Run a steady writer and reader under ``sampler`` until half of each range has faulted again or
    LIMIT_S passes; returns (threads by name, events, run result)."""
    from damon_bpf.samplers.base import Sampler
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    tracer.set_filters([])
    proc = subprocess.Popen([accessgen, "--wait", "--duration", "60", f"writer:0:W:{RANGE_KIB}:0",
                             f"reader:1:R:{RANGE_KIB}:0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    threads = {t["name"]: t for t in info["threads"]}
    batches, pages = [], {name: set() for name in threads}

    class StopWhenCovered(Sampler):
        def start(self, targets):
            self.began = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()

        def observe(self, batch):
            batches.append(batch)
            for name, t in threads.items():
                mine = batch[(batch["addr"] >= t["start"]) & (batch["addr"] < t["end"])]
                pages[name].update((mine["addr"] >> 12).tolist())

        def tick(self, now_ns):
            covered = all(len(pages[n]) >= ENOUGH * RANGE_KIB / 4 for n in threads)
            if covered or time.monotonic() - self.began > LIMIT_S:
                session.request_stop("duration")

    try:
        session = Session(tracer, Targets([info["pid"]]), LIMIT_S + 30, samplers=[sampler, StopWhenCovered()])
        result = session.run(lambda _b: None)
    finally:
        proc.kill()
        proc.wait()
    events = np.concatenate(batches) if batches else np.zeros(0, dtype=tracer.drain().dtype)
    return threads, events, result


def test_numa_hint_on_one_node_sees_a_steady_reader_and_writer_and_restores(tracer, accessgen):
    from damon_bpf.samplers.numa_hint import NumaHintSampler

    old = SWITCH.read_text()
    notes = []
    sampler = NumaHintSampler(5_000, 100_000, warn=notes.append)
    threads, events, result = run_until_covered(tracer, accessgen, sampler)
    assert SWITCH.read_text() == old, "kernel.numa_balancing not restored"
    for name, kind in (("writer", ACCESS_WRITE), ("reader", ACCESS_READ)):
        t = threads[name]
        mine = events[(events["addr"] >= t["start"]) & (events["addr"] < t["end"])]
        distinct = len(np.unique(mine["addr"] >> 12))
        assert distinct >= ENOUGH * RANGE_KIB / 4, f"{name}: only {distinct} pages re-faulted; notes: {notes}"
        assert (mine["tid"] == t["tid"]).all() and (mine["write"] == kind).all(), name
    refaults = result.samplers[0]["refaults"]
    assert refaults["reports"] == len(events) and refaults["first_touches"] >= ENOUGH * RANGE_KIB / 2, refaults
    assert refaults["bursts"] >= 1, refaults
    assert result.accounting.lost == 0
    assert "reports on" in notes[-1] and "settings restored" in notes[-1], notes[-1]


SINGLE = ("import time\nb = bytearray(32 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
          "end = time.monotonic() + 30\nwhile time.monotonic() < end:\n"
          "    for i in range(0, len(b), 4096): b[i] = 2\n")


def test_numa_hint_explains_a_single_threaded_target(tmp_path):
    old = SWITCH.read_text()
    # A hang guard, not a bound: `trace` compiles its BPF program first, ~5 s here but 80 s and more in the
    # one-node guest under TCG (tests/test_vm_one_node.py runs this case there; 84.9 s measured beside a loaded host).
    result = subprocess.run([DAMON_BPF, "trace", "--sampler", "numa-hint", "--duration", "4", "-o",
                             str(tmp_path / "events"), "--", sys.executable, "-c", SINGLE],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert SWITCH.read_text() == old, "kernel.numa_balancing not restored"
    single = [line for line in result.stderr.splitlines() if "is single-threaded" in line]
    assert single and "mm_users == 1" in single[0], result.stderr
    assert "Traceback" not in result.stderr
