"""Work done off the collector's thread, one round at a time.

The collector's thread empties the ring buffers; anything slow it did between two ticks (report sharing's pairs,
move_pages(2) queries and moves) left them unread that long. So it only hands a worker thread a round: a list of
jobs whose payloads the collector no longer writes (closed snapshots are never changed). The worker computes
``work(payload)`` for each and leaves the results for the collector to take at a later tick (``on_done`` says when).
The collector never waits: a round due while the previous one still runs is not started, and counted (``skipped``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from damon_bpf.errors import DamonBpfError

Payload = TypeVar("Payload")
Result = TypeVar("Result")

# (key, a stamp the collector made the job at, the payload)
Job = tuple[int, int, Any]


@dataclass
class Finished(Generic[Result]):
    """A round's results: key -> (the job's stamp, its result, or None when its work raised DamonBpfError)."""
    results: dict[int, tuple[int, Result | None]]
    cpu_s: float    # the worker's CPU for the round (its thread's time): what pacing budgets
    wall_s: float


class RoundWorker(Generic[Payload, Result]):
    """One daemon thread computing ``work(payload)`` for each job of a round, one round at a time."""

    def __init__(self, work: Callable[[Payload], Result], on_done: Callable[[], None] | None = None,
                 name: str = "damon-bpf-rounds") -> None:
        self.work, self.on_done, self.name = work, on_done, name
        self.rounds = 0     # rounds started
        self.skipped = 0    # rounds not started: the previous one was still running
        self._cond = threading.Condition()
        self._jobs: list[Job] | None = None   # handed over, not yet picked up by the thread
        self._busy = False                    # a round handed over and not finished
        self._done: Finished[Result] | None = None
        self._thread: threading.Thread | None = None

    def submit(self, jobs: list[Job]) -> bool:
        """Start a round (never waits); False, and counted, when the previous round still runs."""
        with self._cond:
            if self._busy:
                self.skipped += 1
                return False
            self._busy, self._jobs = True, jobs
            self.rounds += 1
            if self._thread is None or not self._thread.is_alive():   # first round, or a bug ended it
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def take(self) -> Finished[Result] | None:
        """The last finished round's results, once (None when none finished since)."""
        with self._cond:
            done, self._done = self._done, None
        return done

    def wait(self, timeout_s: float) -> bool:
        """Wait for the round in progress to end (at the end of a run); False if it is still running."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout_s)

    @property
    def busy(self) -> bool:
        return self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs is not None)
                jobs, self._jobs = self._jobs, None
            assert jobs is not None   # the wait above
            began_cpu, began = time.thread_time(), time.monotonic()
            results: dict[int, tuple[int, Result | None]] = {}
            try:
                for key, stamp, payload in jobs:
                    try:
                        results[key] = (stamp, self.work(payload))
                    except DamonBpfError:   # e.g. move_pages refused, the process gone: nothing to say
                        results[key] = (stamp, None)
            finally:   # a bug's traceback goes to threading's excepthook; the next round starts a new thread
                with self._cond:
                    self._done = Finished(results, time.thread_time() - began_cpu, time.monotonic() - began)
                    self._busy = False
                    self._cond.notify_all()
                if self.on_done is not None:
                    self.on_done()
