"""The collector's scheduling priority.

A monitor that loses most of its input is worse than one that takes a little CPU from its
target: with 200 busy threads on 2 CPUs the collector thread, at normal priority, got one
200th of the CPU and the ring overflowed (tests/bench/bench_threads.py has the figures). So by
default the thread that drains the ring (the caller's: the session loop) runs at a modest
real-time priority, SCHED_RR 1: it wakes every 10-50 ms, drains, and sleeps again, so it takes
what it needs and no more (the kernel's RT throttling leaves the rest of the CPU to everyone
else in any case). Threads it starts afterwards (samplers) inherit the policy.
"""

from __future__ import annotations

import os

PRIORITIES = ("rt", "nice", "normal")
RT_PRIORITY = 1     # the lowest real-time priority: above every normal task, below any other RT task
NICE = -10


def raise_collector_priority(mode: str) -> str:
    """Apply ``mode`` (one of PRIORITIES) to the calling thread; returns what was applied, or a
    note that it could not be (never fails: a monitor at normal priority still works)."""
    try:
        if mode == "rt":
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(RT_PRIORITY))
            return f"SCHED_RR {RT_PRIORITY}"
        if mode == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, NICE)   # 0: the calling thread on Linux
            return f"nice {NICE}"
    except OSError as err:
        return f"normal ({mode} refused: {err.strerror})"
    return "normal"


class CollectorPriority:
    """Raises the calling thread's priority at its first call (the session's first tick)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.applied: str | None = None

    def __call__(self, _now_ns: int = 0) -> None:
        if self.applied is None:
            self.applied = raise_collector_priority(self.mode)
