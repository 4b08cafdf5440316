"""The recorder's targets on real processes: born at their fork (event) or first report, closed at
their exit with a partial snapshot, process events consumed, every report in one counter."""

from __future__ import annotations

import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import DAMON_BPF

from damon_bpf.access import ACCESS_DTYPE, ACCESS_WRITE
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.sources.vaddr import read_maps
from damon_bpf.recorder import Recorder
from damon_bpf.recordfile import RecordWriter, read_record
from damon_bpf.session import RunResult
from damon_bpf.sources.tracer import Accounting

MS = 1_000_000
ATTRS = MonitoringAttrs()   # DAMON's defaults: 5 ms samples, 100 ms aggregations, 1 s updates


def reports(pid: int, addrs, times) -> np.ndarray:
    out = np.zeros(len(addrs), ACCESS_DTYPE)
    out["addr"], out["time_ns"], out["pid"], out["tid"], out["write"] = addrs, times, pid, pid, ACCESS_WRITE
    return out


def event(kind: str, pid: int, time_ns: int, ppid: int = 1, comm: str = "sleep"):
    return SimpleNamespace(kind=kind, pid=pid, ppid=ppid, comm=comm, time_ns=time_ns)


def finished(recorder: Recorder, delivered: int) -> RunResult:
    result = RunResult("targets-exited", 1.0, 0.1, Accounting(seen=delivered, delivered=delivered))
    recorder.finish(result)
    return result


def test_a_forked_child_lives_from_its_fork_to_its_exit(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    try:
        writer = RecordWriter(str(tmp_path / "r.data"))
        t0 = time.monotonic_ns()
        recorder = Recorder(ATTRS, writer=writer, start_ns=t0 - 1000 * MS)   # the run began a second earlier
        born = t0 - 300 * MS
        recorder.on_target_event(event("fork", child.pid, born, ppid=4242, comm="sleep"))
        stack = read_maps(child.pid)[-1][0]
        recorder.on_batch(reports(child.pid, [stack] * 3, [born + 10 * MS, born + 150 * MS, born + 260 * MS]))
        exit_ns = born + 270 * MS
        recorder.on_target_event(event("exit", child.pid, exit_ns))
        recorder.on_tick(exit_ns + 100 * MS, force=True)
        state = recorder.targets[child.pid]
        assert state.gone   # closed once every report up to its exit was routed
        # a report after the close counts as after its process's end, not lost
        recorder.on_batch(reports(child.pid, [stack], [exit_ns + 1]))
        result = finished(recorder, 4)
        assert result.placement["in_regions"] == 3 and result.placement["unattributed"] == 1
        assert result.placement["pending"] == result.placement["unaccounted"] == 0
    finally:
        child.kill()
        child.wait()
    (rec,) = read_record(str(tmp_path / "r.data"))
    assert [(s.start_ns - born, s.end_ns - born) for s in rec.snapshots] == \
        [(0, 100 * MS), (100 * MS, 200 * MS), (200 * MS, 270 * MS)]   # last one partial, up to the exit
    assert [int(s.nr_reports.sum()) for s in rec.snapshots] == [1, 1, 1]
    assert rec.meta["target"]["comm"] == "sleep" and rec.meta["target"]["ppid"] == 4242
    assert rec.meta["target"]["born_ns"] == born and rec.meta["target"]["layout"] == "maps"


def test_an_exit_of_an_unknown_process_makes_no_target():
    recorder = Recorder(ATTRS, start_ns=time.monotonic_ns())
    recorder.on_target_event(event("exit", 2**22 + 7, time.monotonic_ns()))
    assert recorder.targets == {}


def test_without_events_a_child_starts_with_its_first_report_and_gone_ones_use_their_reports():
    child = subprocess.Popen(["sleep", "30"])
    t0 = time.monotonic_ns()
    recorder = Recorder(ATTRS, start_ns=t0 - 1000 * MS)
    stack = read_maps(child.pid)[-1][0]
    recorder.on_batch(reports(child.pid, [stack, stack], [t0 - 200 * MS, t0 - 20 * MS]))
    child.kill()
    child.wait()
    # a process that exited before anything read its layout: its reports are all it left
    recorder.on_batch(reports(child.pid + 10**6, [0x7000_0000, 0x7000_1000], [t0 - 50 * MS, t0 - 40 * MS]))
    recorder.on_tick(t0, force=True)
    recorder.on_tick(t0 + 60 * MS, force=True)   # the exits are seen, then closed at the next pass
    assert all(s.gone for s in recorder.targets.values())
    assert recorder.targets[child.pid].aggregator.start_ns == t0 - 200 * MS
    result = finished(recorder, 4)
    assert result.placement["in_regions"] == 4
    gone = recorder.targets[child.pid + 10**6]
    assert gone.meta["layout"] == "reports" and gone.snapshots == 1


def test_exec_reads_the_new_layout_at_once():
    child = subprocess.Popen(["sleep", "30"])
    try:
        recorder = Recorder(ATTRS, start_ns=time.monotonic_ns())
        recorder.on_target_event(event("exec", child.pid, time.monotonic_ns(), ppid=7, comm="sleep"))
        state = recorder.targets[child.pid]
        assert state.meta["comm"] == "sleep" and state.meta["ppid"] == 7
        regions = state.aggregator.regions
        # every mapping is inside a region or in one of the two gaps DAMON leaves out
        covered = sum(int(e) - int(s) for s, e in zip(regions.start, regions.end))
        assert covered > 0 and state.aggregator.read_ok
    finally:
        child.kill()
        child.wait()


# ---- a target that goes dark


def _snap(t_ns: int, nr_reports: int):
    from damon_bpf.core.snapshot import Snapshot

    one = np.array([nr_reports], np.int64)
    return Snapshot(t_ns, t_ns + 100 * MS, np.array([0], np.uint64), np.array([4096], np.uint64), one, one, one,
                    one, one)


def test_a_busy_target_without_faults_is_explained_once():
    from damon_bpf.dark import DARK_AGGREGATIONS, DarkWatch

    notes, cpu = [], {"t": 0.0}
    watch = DarkWatch(notes.append, cpu_of=lambda pid: cpu["t"], huge_of=lambda pid: 0)
    for i in range(3 + 2 * DARK_AGGREGATIONS):
        cpu["t"] += 0.09   # 90% of a core
        watch.on_snapshot(0, 42, _snap(i * 100 * MS, 5 if i < 3 else 0))
    assert len(notes) == 1 and "process 42" in notes[0] and "steady state" in notes[0]
    assert "sampler" in notes[0]
    # idle (no CPU) without faults is just idle: nothing to explain
    notes.clear()
    idle = DarkWatch(notes.append, cpu_of=lambda pid: 1.0, huge_of=lambda pid: 0)
    for i in range(3 + 2 * DARK_AGGREGATIONS):
        idle.on_snapshot(0, 43, _snap(i * 100 * MS, 5 if i < 3 else 0))
    assert notes == []


def test_huge_pages_are_said_once_per_target():
    from damon_bpf.dark import DarkWatch

    notes = []
    watch = DarkWatch(notes.append, cpu_of=lambda pid: 0.0, huge_of=lambda pid: 8192)
    for i in range(30):
        watch.on_snapshot(0, 42, _snap(i * 100 * MS, 1))
    assert notes == ["process 42 has 8 MiB in transparent huge pages: there one fault maps 2 MiB, so one report "
                     "stands for 2 MiB of first touches"]


@pytest.mark.bpf
def test_record_explains_a_steady_target(accessgen, tmp_path):
    # W: the range is written once before the passes, then written nonstop without faulting
    result = subprocess.run([DAMON_BPF, "record", "-o", str(tmp_path / "d.data"), "--", accessgen, "--duration", "3",
                             "steady:0:W:8192:0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "note:" in line and "steady state" in line]
    assert len(notes) == 1 and "sampler" in notes[0]


def test_end_of_run_lines_say_where_reports_went_and_what_avoids_losses():
    result = RunResult("duration", 2.0, 0.5, Accounting(seen=1000, delivered=900, lost=100))
    result.placement = {"in_regions": 890, "outside_regions": 4, "late": 3, "unattributed": 2, "pending": 0,
                        "unaccounted": 1}
    line = result.placement_line()
    assert line.startswith("of 900 delivered: 890 in regions (98.89%), 4 outside regions, 3 late, 2 after")
    assert "1 NOT ACCOUNTED FOR" in line
    (advice,) = result.advice("normal")
    assert "100 reports (10.0%) were lost" in advice and "--collector-priority rt" in advice and "--ring-mb" in advice
    assert RunResult("duration", 2.0, 0.5, Accounting(seen=5, delivered=5)).advice("rt") == []


def test_bpf_kinds_become_the_cores_kinds_whether_or_not_the_numbers_agree():
    from damon_bpf.access import ACCESS_READ, ACCESS_UNKNOWN
    from damon_bpf.core.events import REPORT_COLUMNS, Kind
    from damon_bpf.recorder import core_reports

    batch = np.zeros(3, ACCESS_DTYPE)
    batch["write"] = [ACCESS_READ, ACCESS_WRITE, ACCESS_UNKNOWN]
    assert set(REPORT_COLUMNS) <= set(ACCESS_DTYPE.names)
    for same in (True, False):   # False: the translation a renumbered header would take
        assert core_reports(batch, same_kinds=same)["write"].tolist() == [Kind.READ, Kind.WRITE, Kind.UNKNOWN]


def test_forgetting_closed_targets_keeps_their_counts_and_new_ids_stay_unique():
    """The standing monitor drops closed targets: the accounting still adds up, a later target gets a new id."""
    first, second = subprocess.Popen(["sleep", "30"]), subprocess.Popen(["sleep", "30"])
    try:
        t0 = time.monotonic_ns()
        recorder = Recorder(ATTRS, start_ns=t0 - 1000 * MS)
        recorder.on_target_event(event("fork", first.pid, t0 - 300 * MS))
        stack = read_maps(first.pid)[-1][0]
        recorder.on_batch(reports(first.pid, [stack] * 2, [t0 - 250 * MS, t0 - 150 * MS]))
        recorder.on_target_event(event("exit", first.pid, t0 - 100 * MS))
        recorder.on_tick(t0, force=True)
        assert recorder.forget_gone() == 1 and first.pid not in recorder.targets
        assert recorder.forget_gone() == 0
        recorder.on_target_event(event("fork", second.pid, t0 - 50 * MS))
        assert recorder.targets[second.pid].target_id == 1
        result = finished(recorder, 2)
        assert result.placement["in_regions"] == 2 and result.placement["unaccounted"] == 0
    finally:
        for child in (first, second):
            child.kill()
            child.wait()


def test_a_process_that_left_its_cgroup_and_came_back_is_a_new_target(tmp_path):
    """leave, then join (the order Targets tells them in): the reports from before the leave go to the
    first target even when they are routed after the join, the later ones to the second; both in the file."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        writer = RecordWriter(str(tmp_path / "r.data"))
        t0 = time.monotonic_ns()
        recorder = Recorder(ATTRS, writer=writer, start_ns=t0 - 1000 * MS)
        stack = read_maps(child.pid)[-1][0]
        joined, left, back = t0 - 600 * MS, t0 - 400 * MS, t0 - 200 * MS
        recorder.on_target_event(SimpleNamespace(**vars(event("join", child.pid, joined)), cgroup="/app"))
        recorder.on_target_event(event("leave", child.pid, left))
        recorder.on_target_event(SimpleNamespace(**vars(event("join", child.pid, back)), cgroup="/app/web"))
        recorder.on_batch(reports(child.pid, [stack] * 3, [joined + 10 * MS, left - 10 * MS, back + 10 * MS]))
        result = finished(recorder, 3)
    finally:
        child.kill()
        child.wait()
    assert result.placement["in_regions"] == 3 and result.placement["unaccounted"] == 0
    first, second = read_record(str(tmp_path / "r.data"))
    assert (first.target_id, second.target_id) == (0, 1) and first.pid == second.pid == child.pid
    assert first.meta["target"]["cgroup"] == "/app" and first.meta["target"]["left"] is True
    assert second.meta["target"]["cgroup"] == "/app/web" and "left" not in second.meta["target"]
    assert sum(int(s.nr_reports.sum()) for s in first.snapshots) == 2
    assert sum(int(s.nr_reports.sum()) for s in second.snapshots) == 1
    assert first.snapshots[-1].end_ns == left and second.meta["target"]["born_ns"] == back


def test_a_recorder_that_falls_behind_returns_to_the_loop_and_catches_up(tmp_path):
    """A slow snapshot consumer (here 20 ms per snapshot, as a TCG guest's whole per-snapshot work took
    170 ms) must not hold the session's loop for the whole backlog: one tick spends about TICK_BUDGET_S, the
    next ticks go on from there, and finish() closes the rest, every report placed once."""
    from damon_bpf import recorder as recorder_module

    child = subprocess.Popen(["sleep", "30"])
    try:
        t0 = time.monotonic_ns()
        run_start = t0 - 10_000 * MS            # ten seconds of reports are waiting: 100 aggregations
        recorder = Recorder(ATTRS, writer=RecordWriter(str(tmp_path / "r.data")), start_ns=run_start)
        seen: list = []
        recorder.listeners.append(lambda _t, _p, snap: (seen.append(snap), time.sleep(0.02)))
        stack = read_maps(child.pid)[-1][0]
        times = run_start + np.arange(1, 10_000, 50) * MS
        recorder.on_batch(reports(child.pid, [stack] * len(times), times))
        began = time.monotonic()
        recorder.on_tick(t0)
        took = time.monotonic() - began
        # a step is one aggregation (one snapshot, 20 ms here): the tick stops after the step that crossed
        # the budget, so it holds the loop for the budget and a snapshot or so, not for the 100 snapshots
        assert took < recorder_module.TICK_BUDGET_S + 0.3, took
        first = len(seen)
        assert 5 <= first < 50, first
        assert recorder.accounting()["pending"] > 0
        recorder.on_tick(t0 + 60 * MS)
        assert len(seen) > first   # the next tick goes on where this one stopped
        child.kill()
        child.wait()
        finished(recorder, len(times))
        assert recorder.accounting()["pending"] == 0
        assert recorder.accounting()["in_regions"] == len(times)
        assert len(seen) >= 99
    finally:
        child.kill()
        child.wait()
