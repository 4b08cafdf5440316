"""The sharing and NUMA answers of the metrics, computed off the collector's thread.

One round for a 32-thread target took the collector's thread 1-1.9 s (report sharing's pairs; report numa's
move_pages queries), and meanwhile no ring buffer was emptied. So the exporter's refresh only hands a
``rounds.RoundWorker`` a round: each target's recent snapshots as its own ``TargetRecord`` (a new list; a closed
snapshot is never changed afterwards, so the worker reads nothing the collector writes), keyed by pid and
stamped with the target's folded snapshot count. The worker computes ``answers.target_answers`` for each and the
next refresh serves them; a round due while the previous one still runs is skipped and counted.
"""

from __future__ import annotations

from typing import Callable

from damon_bpf.metrics.answers import TargetAnswers
from damon_bpf.recordfile import TargetRecord
from damon_bpf.rounds import Finished, Job, RoundWorker

__all__ = ["AnswerWorker", "Finished", "Job"]


class AnswerWorker(RoundWorker[TargetRecord, TargetAnswers]):
    """The metrics' answer rounds: ``answer(record)`` per target."""

    def __init__(self, answer: Callable[[TargetRecord], TargetAnswers],
                 on_done: Callable[[], None] | None = None) -> None:
        super().__init__(answer, on_done, name="damon-bpf-answers")
