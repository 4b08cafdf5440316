"""The sharing and NUMA answers of the metrics, computed off the collector's thread.

One round for a 32-thread target took the collector's thread 1-1.9 s (report sharing's pairs; report numa's
move_pages queries), and meanwhile no ring buffer was emptied. So the monitor's thread only hands the worker a
round: each target's recent snapshots as its own ``TargetRecord`` (a new list; a closed snapshot is never
changed afterwards, so the worker reads nothing the collector writes). The worker computes
``answers.target_answers`` for each target and leaves the results for the collector to take at its next
refresh (and says so through ``on_done``, so that refresh comes at the next tick). The collector never waits:
a round due while the previous one still runs is not started, and counted (``skipped``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from damon_bpf.errors import DamonBpfError
from damon_bpf.metrics.answers import TargetAnswers
from damon_bpf.recordfile import TargetRecord

# (pid, the target's folded snapshot count when the round was made, its recent snapshots)
Job = tuple[int, int, TargetRecord]


@dataclass
class Finished:
    """A round's results: pid -> (snapshot count it was made at, answers or None when there were none)."""
    results: dict[int, tuple[int, TargetAnswers | None]]
    cpu_s: float    # the worker's CPU for the round (its thread's time): what pacing budgets
    wall_s: float


class AnswerWorker:
    """One daemon thread computing ``answer(record)`` for each job of a round, one round at a time."""

    def __init__(self, answer: Callable[[TargetRecord], TargetAnswers],
                 on_done: Callable[[], None] | None = None) -> None:
        self.answer, self.on_done = answer, on_done
        self.rounds = 0     # rounds started
        self.skipped = 0    # rounds not started: the previous one was still running
        self._cond = threading.Condition()
        self._jobs: list[Job] | None = None   # handed over, not yet picked up by the thread
        self._busy = False                    # a round handed over and not finished
        self._done: Finished | None = None
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
                self._thread = threading.Thread(target=self._run, name="damon-bpf-answers", daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def take(self) -> Finished | None:
        """The last finished round's results, once (None when none finished since)."""
        with self._cond:
            done, self._done = self._done, None
        return done

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
            results: dict[int, tuple[int, TargetAnswers | None]] = {}
            try:
                for pid, seen, rec in jobs:
                    try:
                        results[pid] = (seen, self.answer(rec))
                    except DamonBpfError:   # e.g. move_pages refused: nothing to say
                        results[pid] = (seen, None)
            finally:   # a bug's traceback goes to threading's excepthook; the next round starts a new thread
                with self._cond:
                    self._done = Finished(results, time.thread_time() - began_cpu, time.monotonic() - began)
                    self._busy = False
                if self.on_done is not None:
                    self.on_done()
