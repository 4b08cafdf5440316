"""What the process-events connector (cn_proc) adds to following: exit statuses, a process whose main
thread exits first traced to its last thread's end on kernels whose exit tracepoint has no group_dead
(forced here: the kernel is asked as on 6.1), forks repaired after the lifecycle ring lost records,
and a socket drained whole and overruns counted. Real BPF, real cn_proc, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import numpy as np
import pytest

from test_follow import LEADER_EXITS_FIRST, assert_every_touch_traced, trace, workload_lines

pytestmark = pytest.mark.bpf


def test_exit_statuses_are_in_the_summary(tmp_path):
    script = "sh -c 'exit 3' & sh -c 'kill -9 $$' & sh -c 'kill -TERM $$' & wait; exit 5"
    _, summary, _ = trace(tmp_path, "--follow-children", "--", "/bin/bash", "-c", script, status=5)
    statuses = sorted(((t["comm"], t["exit_code"], t["exit_signal"]) for t in summary["targets"]), key=str)
    assert statuses == sorted([("bash", 5, None), ("sh", 3, None), ("sh", None, 9), ("sh", None, 15)], key=str)
    assert all(t["exited"] for t in summary["targets"])
    assert summary["following"]["proc_events"] and summary["following"]["proc_event_overruns"] == 0


def test_the_proc_events_socket_is_drained_whole_and_overruns_are_counted():
    from damon_bpf.sources.procevents import ProcEvents

    small, large = ProcEvents(rcvbuf_bytes=4096), ProcEvents()
    try:
        children = [subprocess.Popen(["/bin/sh", "-c", f"exit {i % 7}"]) for i in range(200)]
        codes = {child.pid: child.wait() for child in children}
        time.sleep(0.1)
        exits = {e.tgid: e.exit_status() for e in large.read() if e.kind == "exit" and e.tgid in codes}
        assert exits == {pid: (code, None) for pid, code in codes.items()}   # every one, in one read
        assert [e for e in large.read() if e.tgid in codes] == [] and large.overruns == 0
        small.read()
        assert small.overruns >= 1   # 200 forks, execs and exits do not fit 4 KiB
    finally:
        small.close()
        large.close()


@pytest.fixture
def without_group_dead(monkeypatch):
    """Compile and run as on kernels before 6.16: the exit record is the main thread's."""
    from damon_bpf.sources import program

    monkeypatch.setattr(program, "exit_has_group_dead", lambda: False)


def run_session(targets, tracer, on_batch=None):
    """Session.run with TargetEvents collected; each exit event notes whether the pid was still in the
    kernel map when it was told (it must not be)."""
    from damon_bpf.session import Session

    events, in_map_at_exit, batches = [], [], []

    def on_event(event) -> None:
        events.append(event)
        if event.kind == "exit" and tracer.is_target(event.pid):
            in_map_at_exit.append(event.pid)

    targets.subscribe(on_event)
    result = Session(tracer, targets, duration_s=300).run(on_batch or batches.append)
    return result, events, in_map_at_exit, batches


def assert_traced_to_its_last_thread(tmp_path) -> None:
    """A process whose main thread exits first (pthread_exit) and whose other thread faults 64 pages
    300 ms later and calls exit(4): every touch traced, under its pid, and its exit told once, with
    status 4, after user space removed it from the kernel map (the kernel has no group_dead here)."""
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    source, binary, out = tmp_path / "late.c", tmp_path / "late", tmp_path / "late.out"
    exits_with_4 = LEADER_EXITS_FIRST.replace("return arg;", "exit(4);")
    source.write_text(exits_with_4.replace("<unistd.h>", "<unistd.h>\n#include <stdlib.h>"))
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(binary), str(source)], check=True)
    tracer = Tracer("tracepoint", follow_children=True)
    try:
        assert not tracer.exit_is_group_dead
        targets = Targets(command=[str(binary)], command_output=str(out), follow_children=True)
        result, events, in_map_at_exit, batches = run_session(targets, tracer)
    finally:
        tracer.close()
    start, pid = map(int, out.read_text().split())
    reports = np.concatenate(batches)
    touches = reports[(reports["addr"] >= start) & (reports["addr"] < start + 64 * 4096)]
    assert len(touches) == 64 and (touches["pid"] == pid).all() and (touches["tid"] != pid).all()
    assert [(e.kind, e.exit_code, e.exit_signal) for e in events if e.pid == pid] == [("exec", None, None),
                                                                                     ("exit", 4, None)]
    assert not in_map_at_exit and result.reason == "targets-exited"
    following = targets.following()
    assert following["deferred_exits"] == 1 and following["deferred_exit_latency_ms_max"] < 1000


def test_without_group_dead_a_process_outliving_its_main_thread_is_traced_to_its_end(without_group_dead, tmp_path):
    assert_traced_to_its_last_thread(tmp_path)


def test_without_group_dead_children_leave_the_map_before_their_exit_is_told(without_group_dead, accessgen, tmp_path):
    """Single-threaded children on the pre-6.16 path: each stays a target until user space sees it
    gone, and is out of the kernel map by the time its exit is published."""
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    log = tmp_path / "children.log"
    tracer = Tracer("tracepoint", follow_children=True)
    try:
        targets = Targets(command=["/bin/bash", "-c", f"for i in $(seq 50); do {accessgen} w:-1:w:16:2 & done; wait"],
                          follow_children=True, command_output=str(log))
        result, events, in_map_at_exit, batches = run_session(targets, tracer)
        left_in_map = tracer.kernel_targets()
    finally:
        tracer.close()
    infos, results = workload_lines(log)
    assert len(infos) == 50
    assert_every_touch_traced(np.concatenate(batches), infos, results)
    exits = [e for e in events if e.kind == "exit"]
    assert len(exits) == len(targets.describe()) == 52, (targets.describe(), exits, result)   # bash, seq and the 50
    assert [e for e in exits if e.exit_code != 0] == []
    assert not in_map_at_exit and not left_in_map and result.reason == "targets-exited"
    # every child and seq; bash too unless its reaping (Popen.poll) told of its end first
    assert targets.following()["deferred_exits"] in (51, 52)


FORKER = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    for (int i = atoi(argv[1]); i > 0; i--)
        if (fork() == 0)
            _exit(0);
    while (wait(NULL) > 0)
        ;
    return 0;
}
"""


def test_forks_the_lifecycle_ring_lost_are_repaired_from_proc_events(accessgen, tmp_path):
    """The lifecycle ring (1 MiB, ~18,700 records) is left undrained while 12,000 children fork and
    exit, so it fills and refuses records; three long-lived children forked after that are in the
    kernel's map but their fork records are lost. cn_proc's fork events let user space take them in."""
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    forker = tmp_path / "forker"
    (tmp_path / "forker.c").write_text(FORKER)
    subprocess.run(["gcc", "-O1", "-o", str(forker), str(tmp_path / "forker.c")], check=True)
    log, marker = tmp_path / "children.log", tmp_path / "burst-done"
    # Still running when they are repaired: the test ends them. A 20 s lifetime ran out on a loaded machine
    # before the first update had read the burst (~24,000 cn_proc events and 18,700 lifecycle records).
    spec = f"{accessgen} --duration 300 w:-1:w:16:0"
    # the marker once the three have printed their ground truth (they run): a fixed wait was too short for
    # three starts on a loaded machine
    started = f"until [ $(grep -c '\"pid\"' {log}) -ge 3 ]; do sleep 0.05; done"
    script = f"{forker} 12000; for i in 1 2 3; do {spec} & done; {started}; : > {marker}; wait"
    tracer = Tracer("tracepoint", follow_children=True)
    try:
        targets = Targets(command=["/bin/bash", "-c", script], follow_children=True, command_output=str(log))
        forks = []
        targets.subscribe(lambda event: forks.append(event.pid) if event.kind == "fork" else None)
        targets.attach(tracer)
        deadline = time.monotonic() + 240
        while not marker.exists():   # nothing is drained meanwhile: the lifecycle ring fills up
            assert time.monotonic() < deadline, "the burst did not finish"
            time.sleep(0.1)
        assert tracer.lifecycle_lost() > 0
        tracer.drain()
        targets.update(tracer)
        infos, _ = workload_lines(log)
        assert len(infos) == 3
        for info in infos:
            assert info["pid"] in targets.pids and info["pid"] in forks, (targets.following(), tracer.lifecycle_lost())
        assert targets.repaired_forks >= 3
        for info in infos:
            os.kill(info["pid"], signal.SIGTERM)
        while targets.alive:
            tracer.drain()
            targets.update(tracer)
            time.sleep(0.05)
    finally:
        targets.close()
        tracer.close()
    statuses = {t["pid"]: (t["exit_code"], t["exit_signal"]) for t in targets.describe()}
    assert [statuses[info["pid"]] for info in infos] == [(None, signal.SIGTERM)] * 3
