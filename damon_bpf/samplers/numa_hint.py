"""``--sampler numa-hint``: let the kernel's NUMA-balancing scanner re-arm faults.

The scanner (task_numa_work) periodically makes a window of each task's PTEs inaccessible
(PROT_NONE-like); the next access to each page takes a NUMA hinting fault, reads and writes alike,
which the fault sources see with CPU, thread and write flag. We switch kernel.numa_balancing on and
tune the scan period, delay and window toward DAMON's sample interval, restoring everything on exit
(and, after a crash, at the next start: see numa_state.py).

Limits that come from the kernel, not from us:
- It only runs with two or more NUMA nodes.
- It may migrate the target's pages to the node that uses them (that is its job).
- For a single-threaded process (mm_users == 1) it leaves pages already on the node the process runs
  on unprotected (mm/mprotect.c change_pte_range), so with THP off local pages never fault.
- The kernel caps scanning at 2560 MB/s of address space (MAX_SCAN_WINDOW), so a large target is
  covered less often than every sample interval, and it charges each task 32x the time its scans
  took before the next one (the 3% overhead cap in task_numa_work). Under an emulator (QEMU TCG)
  scans are slow, so that cap alone spaces full passes about 1-1.5 s apart whatever the settings.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from damon_bpf.errors import HostError
from damon_bpf.samplers.base import Sampler, warn_stderr
from damon_bpf.samplers.numa_state import KNOBS, NumaPaths, NumaSettings, ensure_debugfs
from damon_bpf.sources.host import numa_nodes
from damon_bpf.sources.targets import thread_count

MAX_SCAN_WINDOW_MB_S = 2560   # kernel/sched/fair.c: the scanner's rate cap
VMSTAT_KEYS = ("numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated")
CHECK_TARGETS_S = 1.0


def tuning(interval_us: int, aggr_us: int) -> dict[str, int]:
    """Scanner settings for a sample interval: a scan period between the sample and the aggregation
    interval, and a window small enough that the kernel's per-window floor (scan_size / 2560 MB/s) does
    not exceed the sample interval. The delay is the aggregation interval, not less: besides delaying the
    first scan of a new task or VMA it sets (x4) how long a thread's past hinting faults keep a VMA on
    its scan list (VMA_PID_RESET_PERIOD), and too short a memory makes the scanner skip busy VMAs."""
    sample_ms = max(1, math.ceil(interval_us / 1000))
    aggr_ms = max(sample_ms, math.ceil(aggr_us / 1000))
    size_mb = max(1, min(256, int(sample_ms * MAX_SCAN_WINDOW_MB_S / 1000)))
    return {"scan_delay_ms": aggr_ms, "scan_period_min_ms": sample_ms, "scan_period_max_ms": aggr_ms,
            "scan_size_mb": size_mb}


def read_vmstat(path: Path = Path("/proc/vmstat")) -> dict[str, int]:
    try:
        pairs = (line.split() for line in path.read_text().splitlines())
        return {k: int(v) for k, v in pairs if k in VMSTAT_KEYS}
    except OSError:
        return {}


def anon_huge_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class NumaHintSampler(Sampler):
    name = "numa-hint"

    def __init__(self, interval_us: int, aggr_us: int, warn: Callable[[str], None] = warn_stderr,
                 paths: NumaPaths | None = None, nodes: list[int] | None = None) -> None:
        self.paths = paths or NumaPaths()
        self.warn = warn
        nodes = numa_nodes() if nodes is None else nodes
        if len(nodes) < 2:
            raise HostError(f"the numa-hint sampler needs two or more NUMA nodes and this host has {len(nodes)}: "
                            "the kernel's NUMA-balancing scanner does not run on one node "
                            "(use --sampler soft-dirty, or boot a test machine with numa=fake=2)")
        if not self.paths.switch.exists():
            raise HostError("the numa-hint sampler needs a kernel with CONFIG_NUMA_BALANCING "
                            f"({self.paths.switch} does not exist)")
        ensure_debugfs(self.paths)
        missing = [k for k in KNOBS if not self.paths.knob(k).exists()]
        if missing:
            raise HostError(f"cannot find the NUMA-balancing knob(s) {', '.join(missing)} in "
                            f"{self.paths.debugfs}/sched/numa_balancing or as sysctls: is debugfs mounted?")
        self.settings = NumaSettings(self.paths)
        self.settings.recover(warn)        # a live owner is an error; a dead one's values go back now
        self.interval_us, self.aggr_us = interval_us, aggr_us
        self.tuned = tuning(interval_us, aggr_us)
        self.targets = None
        self.checked: dict[int, int] = {}  # pid -> thread count when first seen
        self.next_check = 0.0
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}
        self.restore_error: str | None = None

    def wanted(self) -> dict[Path, str]:
        old = int(self.paths.switch.read_text().split()[0])
        values = {self.paths.switch: str(old | 1)}   # 1 = NUMA_BALANCING_NORMAL; keep a tiering bit (2)
        values.update({self.paths.knob(k): str(v) for k, v in self.tuned.items()})
        return values

    def start(self, targets) -> None:
        self.targets = targets
        self.before = read_vmstat()
        self.settings.apply(self.wanted())
        self.warn(f"numa-hint: NUMA balancing on with {_describe(self.tuned)} (restored on exit); "
                  "warning: it may migrate the target's pages between nodes")

    def tick(self, now_ns: int) -> None:
        now = time.monotonic()
        if now < self.next_check or self.targets is None:
            return
        self.next_check = now + CHECK_TARGETS_S
        for pid in list(self.targets.pids):
            if pid not in self.checked:
                self.checked[pid] = count = thread_count(pid)
                if count == 1:
                    self.warn(f"warning: numa-hint: {single_thread_note(pid)}")

    def close(self) -> None:
        self.after = read_vmstat()
        self.restore_error = self.settings.restore()
        if self.restore_error:
            self.warn(f"warning: numa-hint: {self.restore_error}")
        delta = self.delta()
        line = (f"numa-hint: {delta.get('numa_hint_faults', 0)} hinting faults system-wide "
                f"({delta.get('numa_pte_updates', 0)} PTEs protected, {delta.get('numa_pages_migrated', 0)} pages "
                f"migrated); settings restored")
        if not delta.get("numa_hint_faults") and any(n == 1 for n in self.checked.values()):
            line += "; no hinting faults: " + single_thread_note(next(p for p, n in self.checked.items() if n == 1))
        self.warn(line)

    def delta(self) -> dict[str, int]:
        return {k: self.after.get(k, 0) - self.before.get(k, 0) for k in VMSTAT_KEYS if k in self.before}

    def summary(self) -> dict:
        return {"sampler": self.name, "interval_us": self.interval_us, "settings": self.tuned,
                "vmstat": self.delta() if self.after else {}, "single_threaded_targets":
                [p for p, n in self.checked.items() if n == 1], "restore_error": self.restore_error}


def single_thread_note(pid: int) -> str:
    thp = "" if anon_huge_kib(pid) else " and it has no THP-mapped memory"
    return (f"target PID {pid} is single-threaded{thp}: the kernel's NUMA scanner leaves the pages of a "
            "single-threaded process that sit on its own node unprotected (mm_users == 1), so its local "
            "accesses take no hinting fault; only remote or huge pages will show. A second thread in the "
            "process, THP, or --sampler soft-dirty (writes only) avoids this")


def _describe(values: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
