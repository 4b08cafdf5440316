"""``--sampler numa-hint``: let the kernel's NUMA-balancing scanner re-arm faults.

The scanner (task_numa_work) periodically makes a window of each task's PTEs inaccessible
(PROT_NONE-like); the next access to each page takes a NUMA hinting fault, reads and writes alike,
which the fault sources see with CPU, thread and write flag. We switch kernel.numa_balancing on and
tune the scan period, delay and window toward DAMON's sample interval, restoring everything on exit
(and, after a crash, at the next start: see numa_state.py).

Limits that come from the kernel, not from us:
- On one node it still scans (kernel 6.18 measured: a busy two-thread target took a full pass of hinting
  faults within ~3 s), nothing migrates, and every fault is local, so the period backs off toward
  scan_period_max_ms (60 s by default).
- Where the debugfs knobs refuse reads or writes (restricted debugfs), only the switch is turned on and
  the kernel's default cadence applies (KERNEL_DEFAULTS); nothing documented undoes the back-off (NO_RESET).
- The scanner runs from a task's own scheduler ticks and is paced by its CPU time: an idle task is rarely
  scanned.
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
import os
import time
from pathlib import Path
from typing import Callable

from damon_bpf.errors import HostError
from damon_bpf.samplers.base import Sampler, warn_stderr
from damon_bpf.samplers.numa_state import KNOBS, NumaPaths, NumaSettings, ensure_debugfs
from damon_bpf.samplers.refaults import RefaultTracker
from damon_bpf.sources.host import numa_nodes
from damon_bpf.sources.targets import thread_count

MAX_SCAN_WINDOW_MB_S = 2560   # kernel/sched/fair.c: the scanner's rate cap
VMSTAT_KEYS = ("numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated")
CHECK_TARGETS_S = 1.0
# kernel/sched/fair.c: sysctl_numa_balancing_scan_{delay,period_min,period_max}_ms, _scan_size
KERNEL_DEFAULTS = {"scan_delay_ms": 1000, "scan_period_min_ms": 1000, "scan_period_max_ms": 60000, "scan_size_mb": 256}
IDLE_CPU_SHARE = 0.05   # a target below this share of one CPU is "mostly idle" for the explanation


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
        self.nodes = numa_nodes() if nodes is None else nodes
        if not self.paths.switch.exists():
            raise HostError("the numa-hint sampler needs a kernel with CONFIG_NUMA_BALANCING "
                            f"({self.paths.switch} does not exist)")
        ensure_debugfs(self.paths)
        self.knob_problem = knob_problem(self.paths)
        self.settings = NumaSettings(self.paths)
        self.settings.recover(warn)        # a live owner is an error; a dead one's values go back now
        self.interval_us, self.aggr_us = interval_us, aggr_us
        self.tuned = tuning(interval_us, aggr_us) if self.knob_problem is None else {}
        self.targets = None
        self.checked: dict[int, int] = {}  # pid -> thread count when first seen
        self.cpu_ticks: dict[int, list[int]] = {}  # pid -> [CPU ticks when first seen, latest]
        self.refaults = RefaultTracker()
        self.started_at = 0.0
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
        self.started_at = time.monotonic()
        if self.knob_problem is None:
            self.warn(f"numa-hint: NUMA balancing on with {_describe(self.tuned)} (restored on exit)"
                      + ("" if len(self.nodes) < 2 else "; warning: it may migrate the target's pages between nodes"))
        else:
            self.warn(f"numa-hint: NUMA balancing on (restored on exit) with the kernel's default scan settings: "
                      f"{self.knob_problem}; {default_cadence()}")
        if len(self.nodes) < 2:
            self.warn("numa-hint: one NUMA node: every hinting fault is local and nothing migrates; the kernel "
                      "scans only multi-threaded processes' local pages, and a task only while it runs")

    def observe(self, batch) -> None:
        if len(batch):
            self.refaults.observe(batch["pid"], batch["addr"], batch["time_ns"])

    def tick(self, now_ns: int) -> None:
        now = time.monotonic()
        if now < self.next_check or self.targets is None:
            return
        self.next_check = now + CHECK_TARGETS_S
        for pid in list(self.targets.pids):
            ticks = cpu_ticks(pid)
            if ticks is not None:
                self.cpu_ticks.setdefault(pid, [ticks, ticks])[1] = ticks
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
        # the session drains the last reports after this (restoring comes first), so the run's summary
        # ("refaults") has the final counts; this line counts up to the restore
        line = (f"numa-hint: until the restore, {self.refaults.describe(int(self.started_at * 1e9))}; system-wide "
                f"{delta.get('numa_hint_faults', 0)} hinting "
                f"faults ({delta.get('numa_pte_updates', 0)} PTEs protected, {delta.get('numa_pages_migrated', 0)} "
                "pages migrated); settings restored")
        if not self.refaults.refaults:
            line += "; " + (self.dark_reason()
                            or "no re-faults: the target may have been too short-lived for a scan pass")
        self.warn(line)

    def idle_targets(self) -> dict[int, float]:
        """pid -> share of one CPU used since first seen, for targets below IDLE_CPU_SHARE."""
        span = time.monotonic() - self.started_at
        if span <= 0:
            return {}
        tick_s = 1 / os.sysconf("SC_CLK_TCK")
        shares = {pid: (last - first) * tick_s / span for pid, (first, last) in self.cpu_ticks.items()}
        return {pid: share for pid, share in shares.items() if share < IDLE_CPU_SHARE}

    def dark_reason(self) -> str | None:
        single = [p for p, n in self.checked.items() if n == 1]
        if single:
            return "no re-faults: " + single_thread_note(single[0])
        idle = self.idle_targets()
        if idle:
            pid, share = next(iter(idle.items()))
            return (f"no re-faults: target PID {pid} used {share:.0%} of a CPU: the scanner runs from a task's own "
                    "scheduler ticks and paces itself by its CPU time, so a mostly idle process is rarely scanned")
        return None

    def delta(self) -> dict[str, int]:
        return {k: self.after.get(k, 0) - self.before.get(k, 0) for k in VMSTAT_KEYS if k in self.before}

    def summary(self) -> dict:
        return {"sampler": self.name, "interval_us": self.interval_us, "settings": self.tuned or "kernel defaults",
                "knob_problem": self.knob_problem, "nodes": len(self.nodes), "refaults": self.refaults.summary(),
                "idle_targets": sorted(self.idle_targets()) if self.started_at else [],
                "vmstat": self.delta() if self.after else {}, "single_threaded_targets":
                [p for p, n in self.checked.items() if n == 1], "restore_error": self.restore_error}


def knob_problem(paths: NumaPaths) -> str | None:
    """Why the scan knobs cannot be tuned here, or None. Each is read and its own value written back
    (no change), since restricted debugfs (lockdown, 6.x's debugfs access rules) refuses either."""
    for name in KNOBS:
        path = paths.knob(name)
        try:
            path.write_text(path.read_text().strip())
        except OSError as err:
            why = "is missing" if isinstance(err, FileNotFoundError) else f"refuses: {err.strerror or err}"
            return f"{path} {why}"
    return None


def default_cadence() -> str:
    values = KERNEL_DEFAULTS
    return (f"expect the first pass about {values['scan_delay_ms'] / 1000:g} s after a thread has run and passes a "
            f"few seconds apart that back off toward {values['scan_period_max_ms'] / 1000:g} s while faults are "
            f"local ({values['scan_size_mb']} MB per window); {NO_RESET}")


# Why the back-off stays (kernel/sched/fair.c, 6.18): the period is per task; update_task_scan_period lengthens it
# while the task's hinting faults are local, up to task_scan_max, which only the debugfs scan_period_max_ms sets;
# it starts again only in a new task (init_numa_balancing). The numa_balancing sysctl's handler only flips the
# mode and the static key (and resets tiering's promotion counters), and no prctl or cgroup file touches it.
# Measured here: neither numa_balancing 0 -> 1 nor 1 -> 3 -> 1 brought a pass within 20 s.
NO_RESET = ("nothing the kernel documents resets that back-off from outside the process (it is per task and only "
            "the debugfs scan_period_max_ms bounds it; switching numa_balancing off and on or to tiering mode "
            "changes no task's period); --source damon, where `damon-bpf probe` lists it, keeps seeing steady accesses")


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks (/proc/PID/stat), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def single_thread_note(pid: int) -> str:
    thp = "" if anon_huge_kib(pid) else " and it has no THP-mapped memory"
    return (f"target PID {pid} is single-threaded{thp}: the kernel's NUMA scanner leaves the pages of a "
            "single-threaded process that sit on its own node unprotected (mm_users == 1), so its local "
            "accesses take no hinting fault; only remote or huge pages will show. A second thread in the "
            "process, THP, or --sampler soft-dirty (writes only) avoids this")


def _describe(values: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
