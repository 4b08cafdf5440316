"""What every sampler offers the session, and the timer thread the periodic ones share."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from damon_bpf import log
from damon_bpf.errors import warn_stderr

STATE_EVERY_NS = 5_000_000_000   # how often --verbose says a periodic sampler's state
COST_SMOOTHING = 0.25            # weight of the latest call in the smoothed cost the budget paces by


class Sampler:
    """Hooks called by Session.run: ``start`` once the targets exist, ``tick`` after every drain,
    ``close`` on every exit path (must not raise). ``summary`` is stored with the run's accounting."""

    name = "none"

    def start(self, targets) -> None:
        """``targets`` has a ``pids`` set that grows and shrinks during the run (Targets)."""

    def observe(self, batch) -> None:
        """Sees every delivered batch of access records (numpy, ACCESS_DTYPE) once; must be cheap."""

    def tick(self, now_ns: int) -> None:
        """Called from the session's loop: every 10 ms while reports flow, up to 50 ms when idle."""

    def close(self) -> None:
        """Stop, put back what was changed, and report."""

    def summary(self) -> dict:
        return {"sampler": self.name}


class PeriodicSampler(Sampler):
    """Calls ``sample(pids)`` every interval on a thread of its own: the session drains every 10 ms (50
    when idle), coarser than DAMON's 5 ms sample interval, and a slow call must not delay the drain.

    ``budget`` (a fraction of one CPU, None for none) bounds the sampler's own cost, as DAMON's quotas
    bound its schemes': a call that used ``c`` seconds of CPU is followed by a pause of at least
    ``c / budget - c``, so the interval stretches on a big target instead of the sampler running back to
    back. ``c`` is the thread's CPU time (user and system: clear_refs' page-table walk is system time),
    not the call's wall time: waiting for the GIL or for a CPU the target keeps busy costs nobody
    anything, and counting it over-throttled the sampler twofold in a loaded 2-vCPU guest (0.98 s of
    wall time in calls against 0.52 s of CPU). ``c`` is smoothed over calls (COST_SMOOTHING): one slow
    walk (83 ms against a 27 ms mean in that guest) would otherwise stop re-arming for 0.4 s and leave the
    target dark for a whole aggregation; the mean pause, hence the CPU share, is the same."""

    def __init__(self, interval_us: int, warn: Callable[[str], None] = warn_stderr,
                 budget: float | None = None) -> None:
        if budget is not None and not 0 < budget <= 1:
            raise ValueError(f"a sampler budget is a fraction of one CPU in (0, 1], not {budget}")
        self.interval_s = interval_us / 1e6
        self.budget = budget
        self.warn = warn
        self.calls = 0
        self.busy_s = 0.0        # wall time spent in sample()
        self.cpu_s = 0.0         # this thread's CPU time spent in sample(): what the budget caps
        self.max_call_s = 0.0
        self.overruns = 0        # intervals missed because a call took longer than the interval
        self.stretched = 0       # intervals skipped to keep within the budget
        self.smoothed_cpu_s: float | None = None   # moving average of a call's CPU time
        self._began = self._ended = 0.0
        self._said_ns = 0
        self._targets = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        try:
            return sorted(self._targets.pids) if self._targets is not None else []
        except RuntimeError:  # the set changed while copying (main thread applying a fork): next time
            return []

    def sample(self, pids: Iterable[int]) -> None:
        raise NotImplementedError

    def start(self, targets) -> None:
        self._targets = targets
        self._thread = threading.Thread(target=self._run, name=f"damon-bpf-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = self._began = time.monotonic()
        while not self._stop.is_set():
            began, cpu_began = time.monotonic(), time.thread_time()
            self.sample(self.pids())
            now = self._ended = time.monotonic()
            took, cpu_took = now - began, time.thread_time() - cpu_began
            self.calls += 1
            self.busy_s += took
            self.cpu_s += cpu_took
            self.max_call_s = max(self.max_call_s, took)
            deadline += self.interval_s
            if now > deadline:  # fell behind: count the missed intervals and go on from now
                self.overruns += int((now - deadline) / self.interval_s) + 1
                deadline = now
            cost = self._smooth(cpu_took)
            if self.budget is not None and began + cost / self.budget > deadline:
                skipped = int((began + cost / self.budget - deadline) / self.interval_s) + 1
                self.stretched += skipped
                deadline += skipped * self.interval_s
            self._stop.wait(max(0.0, deadline - now))

    def _smooth(self, cpu_took: float) -> float:
        previous = self.smoothed_cpu_s
        self.smoothed_cpu_s = cpu_took if previous is None else previous + COST_SMOOTHING * (cpu_took - previous)
        return self.smoothed_cpu_s

    def tick(self, now_ns: int) -> None:
        """With details on, say the sampler's state every STATE_EVERY_NS (from the session's thread)."""
        if log.verbose() and now_ns - self._said_ns >= STATE_EVERY_NS:
            self._said_ns = now_ns
            state = self.summary()
            log.detail(f"{self.name}: {state['calls']} calls, mean {state['mean_call_us']} µs, max "
                       f"{state['max_call_us']} µs, {state['overruns']} intervals missed, {state['stretched']} "
                       f"skipped for the budget, effective interval {state['effective_interval_us']} µs, "
                       f"{len(self.pids())} targets")

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self) -> dict:
        span = self._ended - self._began
        return {"sampler": self.name, "interval_us": round(self.interval_s * 1e6), "calls": self.calls,
                "overruns": self.overruns, "budget": self.budget, "stretched": self.stretched,
                "busy_s": round(self.busy_s, 6), "cpu_s": round(self.cpu_s, 6),
                "mean_call_us": round(1e6 * self.busy_s / self.calls, 1) if self.calls else None,
                "mean_call_cpu_us": round(1e6 * self.cpu_s / self.calls, 1) if self.calls else None,
                "max_call_us": round(1e6 * self.max_call_s, 1),
                # what the target really got: the budget and overruns stretch the requested interval
                "effective_interval_us": round(1e6 * span / (self.calls - 1)) if self.calls > 1 else None,
                "cpu_share": round(self.cpu_s / span, 4) if span > 0 else None}
