"""Real BPF, real ring buffer, real workload: attribution and in-kernel filters are exact."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.access import ACCESS_READ, ACCESS_WRITE
from damon_bpf.filters import build_filters, parse_filter_spec

pytestmark = pytest.mark.bpf

# writer "w" on CPU 0 writes 64 KiB 10 times; reader "r" on CPU 1 reads 32 KiB 5 times.
SPECS = ["w:0:w:64:10", "r:1:r:32:5"]
WRITER_TOUCHES, READER_TOUCHES = 16 * 10, 8 * 5


def _check_accounting(accounting, nr_filters: int) -> None:
    assert accounting.seen == accounting.delivered + accounting.filtered + accounting.lost
    assert accounting.lost == 0
    assert len(accounting.filters) == nr_filters
    reaching = accounting.seen
    for count in accounting.filters:  # a report rejected by one filter reaches no later filter
        assert count.passed + count.rejected == reaching
        reaching = count.passed
    assert reaching == accounting.delivered


def test_every_touch_is_reported_with_exact_attribution(trace_workload):
    workload, events, accounting = trace_workload(SPECS)
    _check_accounting(accounting, 0)
    assert workload.thread("w")["touches"] == WRITER_TOUCHES
    for name, touches, kind, cpu in (("w", WRITER_TOUCHES, ACCESS_WRITE, 0), ("r", READER_TOUCHES, ACCESS_READ, 1)):
        mine = events[workload.during_passes(events, name)]
        assert len(mine) == touches, f"thread {name}: every touch faults exactly once"
        assert workload.in_range(mine, name).all(), f"thread {name}: every event inside its range"
        assert (mine["write"] == kind).all()
        assert (mine["cpu"] == cpu).all()
        assert (mine["pid"] == workload.info["pid"]).all()
        # the faulting instruction: a user address, one of the few of the thread's touch loop
        assert ((mine["ip"] > 0) & (mine["ip"] < 1 << 47)).all() and len(np.unique(mine["ip"])) <= 4
        # before its passes began, the pinned thread was on its CPU too
        assert (events[events["tid"] == workload.thread(name)["tid"]]["cpu"] == cpu).all()


@pytest.mark.parametrize("options, keep_writer, keep_reader", [
    ({"cpus": "0"}, True, False),
    ({"cpus": "1"}, False, True),
    ({"cpus": "0-1"}, True, True),
    ({"write_only": True}, True, False),
    ({"read_only": True}, False, True),
    ({"cpus": "0", "read_only": True}, False, False),
    ({"specs": ["write:true:false"]}, False, True),            # reject writes = reads only
    ({"specs": ["cpumask:false:true:0"]}, False, True),        # allow what is not on CPU 0
    ({"specs": ["cpumask:true:false:1", "write:true:true"]}, True, False),
    ({"specs": ["write:false:false", "cpumask:true:true:0"]}, True, False),
])
def test_filters_keep_exactly_what_they_should(trace_workload, options, keep_writer, keep_reader):
    filters = build_filters(**options)
    workload, events, accounting = trace_workload(SPECS, filters)
    _check_accounting(accounting, len(filters))
    writer = workload.in_range(events, "w").sum()
    reader = workload.in_range(events, "r").sum()
    assert writer == (WRITER_TOUCHES if keep_writer else 0)
    assert reader == (READER_TOUCHES if keep_reader else 0)
    rejected_range_touches = (0 if keep_writer else WRITER_TOUCHES) + (0 if keep_reader else READER_TOUCHES)
    assert accounting.filtered >= rejected_range_touches


def test_thread_filter_by_tid(trace_workload, tracer, accessgen):
    from conftest import run_workload

    # The tids are known only once the workload runs, so install the filter while it waits.
    def attach(pid):
        tids = sorted(int(t) for t in __import__("os").listdir(f"/proc/{pid}/task"))
        reader_tid = max(tids)  # threads start in spec order: the reader is the newest
        tracer.set_filters([parse_filter_spec(f"threads:true:true:{reader_tid}")])
        tracer.add_target(pid)

    workload = run_workload(accessgen, SPECS, attach)
    events = tracer.quiesce()
    _check_accounting(tracer.accounting(), 1)
    assert workload.thread("r")["tid"] == events["tid"].max()
    assert (events["tid"] == workload.thread("r")["tid"]).all()
    assert workload.in_range(events, "r").sum() == READER_TOUCHES


def test_untargeted_processes_are_not_seen(trace_workload, tracer, accessgen):
    from conftest import run_workload

    tracer.set_filters([])
    run_workload(accessgen, SPECS, lambda pid: None)
    assert len(tracer.quiesce()) == 0
    assert tracer.accounting().seen == 0


POLL_MS, IDLE_POLL_MS = 10, 50   # damon_bpf.session: the drain period while reports flow, and its idle cap


def _thread_sched_ns() -> tuple[int, int]:
    """(ns this thread ran on a CPU, ns it waited on a run queue) so far, as the scheduler counts them. The
    CPU time is the thread clock's (up to date when read; schedstat's own lags by up to a scheduler tick);
    the wait, schedstat's, was last updated when the thread got the CPU it is reading it on."""
    _on_cpu, waited, _slices = Path("/proc/thread-self/schedstat").read_text().split()
    return time.thread_time_ns(), int(waited)


def _until_asleep(pid: int, deadline_s: float = 30.0) -> None:
    """Until ``pid`` runs sleep(1) and is blocked in its nanosleep: its start-up faults are over."""
    deadline = time.monotonic() + deadline_s
    while not (Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
               and Path(f"/proc/{pid}/syscall").read_text().split()[0] in NANOSLEEP_SYSCALLS):
        assert time.monotonic() < deadline, "sleep(1) never blocked in its nanosleep"
        time.sleep(0.01)


NANOSLEEP_SYSCALLS = {"35", "230"}   # x86_64 nanosleep, clock_nanosleep (the tracepoint source is x86 only)


def _rounds_in(tracer, command: list[str], seconds: float) -> list[tuple[int, float]]:
    """A Session run of ``seconds`` on ``command``: per loop round (one drain to the next; the last round,
    which ends the run, is left out), the reports its drain delivered and the ms the loop then slept of
    its own accord before the next drain.

    Between two on_tick calls the loop's thread was on a CPU (its drain's work), waiting on a run queue
    (what a loaded machine adds), or blocked: the sleep the loop chose (plus a 50 us timer slack). The
    scheduler counts the first two for the thread, so the sleep is the wall time minus them, whatever
    the load."""
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    tracer.set_filters([])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    proc.stdout.readline()   # its first line: accessgen's threads exist and run; sh is about to exec sleep
    if command[0] == "sh":
        _until_asleep(proc.pid)
    marks, reports = [], [0]   # per tick: (wall ns, on-CPU ns, run-queue ns, reports delivered so far)

    def on_batch(batch) -> None:
        reports[0] += len(batch)

    def on_tick(_drained_at: int) -> None:
        marks.append((time.monotonic_ns(), *_thread_sched_ns(), reports[0]))

    try:
        Session(tracer, Targets([proc.pid]), seconds).run(on_batch, on_tick)
    finally:
        proc.kill()
        proc.wait()
    delivered = [now[3] - before[3] for before, now in zip([(0, 0, 0, 0)] + marks, marks)]
    slept = [((t1 - t0) - (c1 - c0) - (w1 - w0)) / 1e6 for (t0, c0, w0, _), (t1, c1, w1, _) in zip(marks, marks[1:])]
    return list(zip(delivered, slept))   # zip ends with slept: at the last round


def _policy_ms(rounds: list[tuple[int, float]]) -> list[float]:
    """The sleep the documented policy chooses after each round: 10 ms after a round that delivered
    reports, else twice the previous sleep, up to 50 ms."""
    chosen, period = [], POLL_MS
    for delivered, _slept in rounds:
        period = POLL_MS if delivered else min(2 * period, IDLE_POLL_MS)
        chosen.append(period)
    return chosen


def test_session_drains_every_10_ms_while_reports_flow_and_backs_off_when_idle(tracer, accessgen):
    """An idle target is polled at most every 50 ms, a busy one every 10 ms: no report waits longer
    than one short period once they flow, and an idle run costs a fifth of the wakeups.

    Judged per round by the loop's own sleep (see _rounds_in), not by counting rounds: on a loaded
    machine a round also waits for a CPU, which says nothing of the policy. A sleep never ends early and
    overshoots by the timer slack only, so the median of the sleeps after the rounds where the policy chose
    10 ms (busy) or 50 ms (idle, backed off) is within 2.5 ms of it (a quarter of the 10 ms between two
    choices): a loop that did not reset, did not back off or backed off further fails."""
    busy = _rounds_in(tracer, [accessgen, "--duration", "30", "w:0:w:4096:0"], 2.0)
    idle = _rounds_in(tracer, ["sh", "-c", "echo ready; exec sleep 30"], 2.0)
    # enough rounds of each kind for a median, with room for a loaded machine's slower rounds
    assert sum(n for n, _ in busy) > 10_000 and sum(1 for n, _ in busy if n) >= 10, busy
    assert sum(n for n, _ in idle) < 50, idle
    for rounds, want in ((busy, POLL_MS), (idle, IDLE_POLL_MS)):
        pairs = list(zip(_policy_ms(rounds), (ms for _, ms in rounds)))
        slept = [ms for chosen, ms in pairs if chosen == want]
        assert len(slept) >= 10 and abs(statistics.median(slept) - want) < 2.5, pairs


def test_clearing_targets_survives_entries_the_program_deleted(tracer):
    """A target that exits is deleted from the map by the program itself: clearing the map after listing it
    (as quiesce does, racing with exits) skips that entry instead of raising bcc's KeyError."""
    import ctypes as ct

    from damon_bpf.sources.tracer import delete_all

    proc = subprocess.Popen(["sleep", "30"])
    try:
        tracer.add_target(proc.pid)
        tracer.add_target(os.getpid())
        listed = list(tracer._targets.keys())
        assert {key.value for key in listed} >= {proc.pid, os.getpid()}
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while tracer.is_target(proc.pid) and time.monotonic() < deadline:   # the program's exit hook deletes it
            time.sleep(0.01)
        assert not tracer.is_target(proc.pid)
        with pytest.raises(KeyError):   # what bcc's clear() did with a listed entry gone
            del tracer._targets[ct.c_uint32(proc.pid)]
        delete_all(tracer._targets, listed)
        assert tracer.kernel_targets() == set()
    finally:
        proc.kill()
        delete_all(tracer._targets)
