"""The metrics' sharing and NUMA answers run on a worker thread: the collector's thread (the exporter's refresh)
hands a round over and never waits for it; a round due while the last one still runs is skipped and counted;
the results are served from the refresh after the round ends. The answers themselves are test_metrics_answers.py's.
"""

from __future__ import annotations

import threading

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.metrics import MetricsExporter
from damon_bpf.metrics.answer_worker import AnswerWorker
from damon_bpf.metrics.answers import TargetAnswers
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.recent import RecentRecords
from test_metrics_answers import window

WAIT_S = 10.0   # far above any step here; a wait that runs out fails the test


class Blocking:
    """An answer function that holds its round until ``release`` is set, noting the thread it ran on."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.threads: set[int] = set()
        self.records: list[TargetRecord] = []

    def __call__(self, rec: TargetRecord) -> TargetAnswers:
        self.threads.add(threading.get_ident())
        self.records.append(rec)
        self.started.set()
        assert self.release.wait(WAIT_S)
        return TargetAnswers([(11, 12, float(len(rec.snapshots)))], 1, 1, {}, {})


def exporter_with(answer: Blocking, windows: int) -> MetricsExporter:
    exporter = MetricsExporter(answer=answer)
    exporter.recent = RecentRecords(MonitoringAttrs(), keep=150)
    for i in range(windows):
        exporter.on_snapshot(0, 4242, window(i))
    return exporter


def rounds_served(exporter: MetricsExporter) -> dict[str, float]:
    family = next(f for f in exporter._build([]) if f.name == "damon_bpf_answer_rounds")
    return {s.labels["outcome"]: s.value for s in family.samples}


def test_the_collector_hands_a_round_over_and_takes_its_results_at_a_later_refresh():
    answer = Blocking()
    exporter = exporter_with(answer, 5)
    done = threading.Event()
    exporter.answers.on_done = lambda: (exporter._answered(), done.set())
    exporter._fold()
    exporter._answer()
    # the round cannot end before release: _answer returned without waiting for it
    assert answer.started.wait(WAIT_S) and not answer.release.is_set()
    assert answer.threads and threading.get_ident() not in answer.threads
    assert exporter.targets[4242].answers is None and exporter.answers.busy

    exporter.on_snapshot(0, 4242, window(5))   # snapshots the worker's record does not see: its list is its own
    exporter._fold()
    assert len(answer.records[0].snapshots) == 5

    answer.release.set()
    assert done.wait(WAIT_S) and exporter._answers_ready   # the next tick refreshes
    exporter._answer()
    assert exporter.targets[4242].answers.pairs == [(11, 12, 5.0)]
    assert not exporter._answers_ready
    assert rounds_served(exporter) == {"started": 1, "skipped": 0}


def test_a_round_due_while_the_last_still_runs_is_skipped_and_counted():
    answer = Blocking()
    exporter = exporter_with(answer, 3)
    exporter._fold()
    exporter._answer()
    assert answer.started.wait(WAIT_S)
    exporter.on_snapshot(0, 4242, window(3))
    exporter._fold()
    exporter._answers_due = 0.0   # due again while the first round is held
    exporter._answer()
    assert exporter.answers.rounds == 1 and exporter.answers.skipped == 1
    assert rounds_served(exporter) == {"started": 1, "skipped": 1}
    answer.release.set()


def test_a_worker_survives_a_target_it_cannot_answer_and_a_bug():
    calls = []

    def answer(rec: TargetRecord) -> TargetAnswers:
        calls.append(rec.target_id)
        if rec.target_id == 1:
            from damon_bpf.errors import TargetError
            raise TargetError("process 1 is gone")
        if rec.target_id == 2 and calls.count(2) == 1:
            raise RuntimeError("a bug")
        return TargetAnswers([], 0, 0, {}, {})

    ended = threading.Event()
    worker = AnswerWorker(answer, ended.set)
    recs = [TargetRecord(i, i, 5000, 100000, 1000000, [window(0)], {}) for i in (1, 2)]
    excepthook, threading.excepthook = threading.excepthook, lambda _args: None   # the bug's traceback
    try:
        assert worker.submit([(1, 1, recs[0]), (2, 1, recs[1])])
        assert ended.wait(WAIT_S) and not worker.busy
        first = worker.take()
        assert first is not None and first.results == {1: (1, None)}   # the bug ended the round after target 1
        ended.clear()
        assert worker.submit([(2, 2, recs[1])])   # a new thread takes the next round
        assert ended.wait(WAIT_S)
        second = worker.take()
        assert second is not None and second.results[2][1] == TargetAnswers([], 0, 0, {}, {})
    finally:
        threading.excepthook = excepthook
    assert calls == [1, 2, 2]
