"""Real BPF, real ring buffer, real workload: attribution and in-kernel filters are exact."""

from __future__ import annotations

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


def _ticks_in(tracer, command: list[str], seconds: float) -> tuple[int, int]:
    """Loop iterations (on_tick calls) and reports of a Session run of ``seconds`` on ``command``."""
    import subprocess
    import time

    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    tracer.set_filters([])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    proc.stdout.readline()   # its first line: accessgen's threads exist and run; sh is about to exec sleep
    time.sleep(0.3)          # sleep's own start-up faults are over
    ticks, reports = [], []
    try:
        Session(tracer, Targets([proc.pid]), seconds).run(lambda b: reports.append(len(b)), ticks.append)
    finally:
        proc.kill()
        proc.wait()
    return len(ticks), sum(reports)


def test_session_drains_every_10_ms_while_reports_flow_and_backs_off_when_idle(tracer, accessgen):
    """An idle target is polled at most every 50 ms, a busy one every 10 ms: no report waits longer
    than one short period once they flow, and an idle run costs a fifth of the wakeups."""
    busy_ticks, busy_reports = _ticks_in(tracer, [accessgen, "--duration", "30", "w:0:w:4096:0"], 1.0)
    idle_ticks, idle_reports = _ticks_in(tracer, ["sh", "-c", "echo ready; exec sleep 30"], 1.0)
    assert busy_reports > 10_000 and busy_ticks >= 60, (busy_ticks, busy_reports)
    assert idle_reports < 50 and 15 <= idle_ticks <= 30, (idle_ticks, idle_reports)
