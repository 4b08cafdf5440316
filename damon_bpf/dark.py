"""Explaining a target that goes dark.

A page fault happens once per page until the page is unmapped, so a fault source sees a program's
new memory and then nothing: a target that keeps computing on memory it already mapped makes an
empty heatmap. When a target that had reports has none for a few aggregations while it keeps
using CPU, say once what that means and what this host offers against it (the samplers `probe`
lists). Say too when transparent huge pages back a target's memory: one fault then maps 2 MiB,
so one report stands for 2 MiB.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from damon_bpf.core.snapshot import Snapshot

DARK_AGGREGATIONS = 5    # empty aggregations in a row before a busy target counts as dark
BUSY_SHARE = 0.1         # ... while it used at least this share of a core
THP_CHECK_SNAPSHOT = 10  # when a target's huge pages are looked at (smaps_rollup walks its page tables)


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def huge_kib_of(pid: int) -> int:
    """KiB of the process's anonymous memory in transparent huge pages (0 if unknown)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^AnonHugePages:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


KERNEL_VIEW = ("kernel DAMON's accessed-bit view of it (--source damon) is in the record beside this one, as "
               "targets from id 1000: steady accesses show there")


def samplers_offered(kernel_view: bool = False) -> str:
    """What this host offers against a dark target, as `probe` finds it: the samplers that make steady
    accesses fault again, and kernel DAMON (--source damon), which sees them through accessed bits;
    ``kernel_view``: that one is already running."""
    from damon_bpf.probe import sampler_status  # noqa: PLC0415 - reads /proc and /sys, only when needed
    from damon_bpf.sources.host import extra_sources  # noqa: PLC0415 - reads /sys, only when needed

    status = sampler_status()
    ready = [f"--sampler {name}" for name, s in status.items() if s["available"]]
    offers = [f"this host offers {' or '.join(ready)}, which make steady accesses fault again"] if ready else []
    if kernel_view:
        offers.append(KERNEL_VIEW)
    else:
        damon_ok, damon_why = extra_sources()["damon"]
        if damon_ok:
            offers.append(f"--source damon runs kernel DAMON beside the fault view ({damon_why})")
    if offers:
        return "; ".join(offers)
    why = "; ".join(f"{name}: {s['why']}" for name, s in status.items())
    return (f"this host offers no sampler that makes steady accesses fault again ({why}) and no kernel DAMON "
            f"({extra_sources()['damon'][1]}); `damon-bpf probe` lists what it has")


@dataclass
class _Target:
    seen: bool = False        # had reports once
    streak: int = 0           # empty aggregations in a row since
    cpu_at: float = 0.0       # its CPU time when the streak began
    start_ns: int = 0         # and the streak's start
    snapshots: int = 0


class DarkWatch:
    """A snapshot listener (Recorder.listeners) that calls ``say`` with a note, once per run for
    a dark target and once per target with huge pages."""

    def __init__(self, say: Callable[[str], None], sampler: str | None = None, kernel_view: bool = False,
                 cpu_of: Callable[[int], float | None] = cpu_seconds_of,
                 huge_of: Callable[[int], int] = huge_kib_of) -> None:
        self.say, self.sampler, self.cpu_of, self.huge_of = say, sampler, cpu_of, huge_of
        self.kernel_view = kernel_view   # --source damon: the kernel's view is recorded beside
        self.said_dark = False
        self._huge_said: set[int] = set()
        self._targets: dict[int, _Target] = {}

    def on_snapshot(self, _target_id: int, pid: int, snapshot: Snapshot) -> None:
        state = self._targets.setdefault(pid, _Target())
        state.snapshots += 1
        if state.snapshots == THP_CHECK_SNAPSHOT:
            self._check_huge_pages(pid)
        if int(snapshot.nr_reports.sum()):
            state.seen, state.streak = True, 0
            return
        if not state.seen or self.said_dark:
            return
        if state.streak == 0:
            state.cpu_at, state.start_ns = self.cpu_of(pid) or 0.0, snapshot.start_ns
        state.streak += 1
        if state.streak >= DARK_AGGREGATIONS:
            self._check_dark(pid, state, snapshot.end_ns)

    def _check_dark(self, pid: int, state: _Target, end_ns: int) -> None:
        cpu = self.cpu_of(pid)
        wall = (end_ns - state.start_ns) / 1e9
        if cpu is None or wall <= 0 or cpu - state.cpu_at < BUSY_SHARE * wall:
            return
        self.said_dark = True
        now = (f"the --sampler {self.sampler} in use re-arms faults only now and then" if self.sampler else
               samplers_offered(self.kernel_view))
        if self.sampler and self.kernel_view:
            now += f"; {KERNEL_VIEW}"
        self.say(f"process {pid} used {cpu - state.cpu_at:.2f} s of CPU in {wall:.2f} s without a single page "
                 "fault: its memory is mapped (steady state), and a page-fault source sees new memory only, so "
                 f"its heatmap stays empty while it works on what it has; {now}")
        self._check_huge_pages(pid)

    def _check_huge_pages(self, pid: int) -> None:
        huge = 0 if pid in self._huge_said else self.huge_of(pid)
        if huge:
            self._huge_said.add(pid)
            self.say(f"process {pid} has {huge // 1024} MiB in transparent huge pages: there one fault maps "
                     "2 MiB, so one report stands for 2 MiB of first touches")
