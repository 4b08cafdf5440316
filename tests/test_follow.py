"""Following processes (issue 11): forks, execs and exits known before their reports, bursts, daemonising
launchers, existing children of -p, pid reuse, and nothing of our own launcher. Real BPF, real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMON_BPF

pytestmark = pytest.mark.bpf


def trace(tmp_path: Path, *args: str, timeout: float = 180,
          status: int = 0) -> tuple[np.ndarray, dict, subprocess.CompletedProcess]:
    """`damon-bpf trace` in binary format, exiting with ``status`` (the command's); returns (events, summary,
    process)."""
    from damon_bpf.access import ACCESS_DTYPE

    out, summary = tmp_path / "ev.bin", tmp_path / "summary.json"
    done = subprocess.run([DAMON_BPF, "trace", "--format", "binary", "-o", str(out), "--summary-json", str(summary),
                           *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == status, done.stderr
    return np.fromfile(out, dtype=ACCESS_DTYPE), json.loads(summary.read_text()), done


def workload_lines(path: Path) -> tuple[list[dict], dict[int, dict]]:
    """accessgen's JSON lines from a shared output file: (ground truths, results by writer tid)."""
    infos, results = [], {}
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        if "pid" in obj:
            infos.append(obj)
        else:
            results.update({t["tid"]: t for t in obj["threads"]})
    return infos, results


def assert_every_touch_traced(events: np.ndarray, infos: list[dict], results: dict[int, dict]) -> None:
    """Each workload process's writer touches are all in ``events``, under its own pid and tid."""
    assert infos, "no workload process ran"
    for info in infos:
        writer = info["threads"][0]
        done = results[writer["tid"]]
        mine = events[(events["pid"] == info["pid"]) & (events["tid"] == writer["tid"])]
        touches = mine[(mine["addr"] >= writer["start"]) & (mine["addr"] < writer["end"])
                       & (mine["time_ns"] >= done["go_ns"]) & (mine["time_ns"] <= done["done_ns"])]
        assert len(touches) == done["touches"] > 0, info


@pytest.mark.parametrize("children", [300, 2000])
def test_a_burst_of_children_is_traced_whole_and_every_pid_is_known(accessgen, tmp_path, children):
    log = tmp_path / "children.log"
    script = f"for i in $(seq {children}); do {accessgen} w:-1:w:16:2 & done; wait"
    events, summary, _ = trace(tmp_path, "--follow-children", "--command-output", str(log), "--", "/bin/bash", "-c",
                               script)
    infos, results = workload_lines(log)
    assert len(infos) == children
    assert_every_touch_traced(events, infos, results)
    known = {t["pid"]: t for t in summary["targets"]}
    assert set(np.unique(events["pid"]).tolist()) <= set(known)   # nothing unattributed
    shell = next(pid for pid, t in known.items() if t["comm"] == "bash")
    for info in infos:
        assert known[info["pid"]]["comm"] == "accessgen" and known[info["pid"]]["ppid"] == shell
        assert known[info["pid"]]["exited"]
    assert summary["lost"] == 0 and summary["reason"] == "targets-exited"


def test_subscribers_hear_of_each_process_before_its_reports(accessgen, tmp_path):
    """2,000 forks in a few seconds through the library: the session hands no batch holding a pid
    before the TargetEvent of that pid, nor after its exit event; the events come as fork, exec, exit
    per child."""
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    log = tmp_path / "children.log"
    targets = Targets(command=["/bin/bash", "-c", f"for i in $(seq 2000); do {accessgen} w:-1:w:16:1 & done; wait"],
                      follow_children=True, command_output=str(log))
    events, unknown, after_exit, delivered = [], [], [], []
    known: set[int] = set()
    exited: set[int] = set()

    def on_event(event) -> None:
        events.append(event)
        (exited if event.kind == "exit" else known).add(event.pid)

    def on_batch(batch) -> None:
        delivered.append(len(batch))
        pids = set(np.unique(batch["pid"]).tolist())
        unknown.extend(pids - known)
        after_exit.extend(pids & exited)

    targets.subscribe(on_event)
    tracer = Tracer("tracepoint", follow_children=True)
    try:
        result = Session(tracer, targets, duration_s=300).run(on_batch)
        lifecycle_lost = tracer.lifecycle_lost()
    finally:
        tracer.close()
    assert not unknown and not after_exit and sum(delivered) == result.accounting.delivered > 0
    infos, _ = workload_lines(log)
    assert len(infos) == 2000
    kinds: dict[int, list[str]] = {}
    for event in events:
        kinds.setdefault(event.pid, []).append(event.kind)
    for info in infos:
        assert kinds[info["pid"]] == ["fork", "exec", "exit"], info["pid"]
    children = [e for e in events if e.kind == "exec" and e.comm == "accessgen"]
    assert len(children) == 2000 and all(e.ppid == targets.process.pid for e in children)
    forks = [e.time_ns for e in events if e.kind == "fork"]
    assert forks == sorted(forks)   # one parent forks them one by one: the ring keeps that order
    assert result.reason == "targets-exited" and lifecycle_lost == 0


def test_a_daemonising_launcher_is_recorded_whole(accessgen, tmp_path):
    log = tmp_path / "prog.log"
    started = time.monotonic()
    events, summary, _ = trace(tmp_path, "--follow-children", "--command-output", str(log), "--", "/bin/bash", "-c",
                               f"({shutil.which('sleep')} 2; exec {accessgen} w:0:w:64:3) & exit 0")
    assert time.monotonic() - started >= 2
    infos, results = workload_lines(log)
    assert len(infos) == 1
    assert_every_touch_traced(events, infos, results)
    assert results[infos[0]["threads"][0]["tid"]]["touches"] == 48
    assert summary["reason"] == "targets-exited"
    assert sorted(t["comm"] for t in summary["targets"]) == ["accessgen", "bash", "sleep"]


def test_existing_children_of_a_pid_are_followed(accessgen, tmp_path):
    """A parent with two children and a grandchild already running: all are taken in at attach time."""
    log = tmp_path / "children.log"
    spec = f"{accessgen} --duration 120 w:-1:w:64:0"   # outlives loading the program on a busy machine
    parent = subprocess.Popen(["/bin/bash", "-c", f"{spec} & {spec} & /bin/bash -c '{spec} & wait' & wait"],
                              stdout=log.open("w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(log.read_text().splitlines()) < 3:
            assert time.monotonic() < deadline, "the workload did not start"
            time.sleep(0.05)
        events, summary, done = trace(tmp_path, "-p", str(parent.pid), "--follow-children", "--duration", "2")
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    infos, _ = workload_lines(log)
    said = re.search(r"following (\d+) existing descendant process\(es\) of PID (\d+) \((\d+) threads\)", done.stderr)
    assert said and int(said[1]) == 4 and int(said[2]) == parent.pid   # 3 workloads and the inner bash
    assert int(said[3]) >= 4 + 3                                     # each workload has its worker thread too
    for info in infos:
        worker = info["threads"][0]
        mine = events[(events["pid"] == info["pid"]) & (events["tid"] == worker["tid"])]
        assert ((mine["addr"] >= worker["start"]) & (mine["addr"] < worker["end"])).sum() > 16
    assert {t["pid"] for t in summary["targets"]} >= {i["pid"] for i in infos} | {parent.pid}


def test_the_launcher_adds_no_fault_counted_from_the_commands_exec(accessgen, tmp_path):
    """The kernel's own exec event decides: bpftrace counts the command's page faults from its
    sched_process_exec on, in the same runs; trace must hold exactly as many for that pid."""
    if shutil.which("bpftrace") is None:
        pytest.fail("bpftrace is needed for this test (Debian package bpftrace)")
    program = tmp_path / "launchprobe"   # a name nothing else on the machine runs
    shutil.copy(accessgen, program)
    script = tmp_path / "count.bt"
    script.write_text('tracepoint:sched:sched_process_exec /comm == "launchprobe"/ { @go[pid] = 1; }\n'
                      "tracepoint:exceptions:page_fault_user /@go[pid]/ { @n[pid] = count(); }\n"
                      "tracepoint:sched:sched_process_exit /@go[pid] && pid == tid/ { delete(@go[pid]); }\n")
    counter = subprocess.Popen(["bpftrace", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Attaching" in counter.stdout.readline() + counter.stdout.readline()
        traced = {}
        for _run in range(4):
            events, summary, done = trace(tmp_path, "--", str(program), "w:0:w:64:1")
            pid = json.loads(done.stdout.splitlines()[0])["pid"]
            assert set(np.unique(events["pid"]).tolist()) == {pid}
            traced[pid] = len(events)
    finally:
        counter.send_signal(signal.SIGINT)
        output, _ = counter.communicate(timeout=30)
    counted = {int(pid): int(n) for pid, n in re.findall(r"@n\[(\d+)\]: (\d+)", output)}
    assert traced == {pid: counted[pid] for pid in traced}


def _start_with_pid(wanted: int, argv: list[str]) -> subprocess.Popen | None:
    """Start ``argv`` as process ``wanted`` by setting the kernel's last-pid counter; None if another
    process took it first."""
    Path("/proc/sys/kernel/ns_last_pid").write_text(str(wanted - 1))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if proc.pid == wanted:
        return proc
    proc.kill()
    proc.wait()
    return None


def test_a_dead_targets_pid_given_to_another_process_is_not_traced(tracer, accessgen):
    from damon_bpf.access import LIFECYCLE_KINDS

    tracer.set_filters([])
    tracer.drain_lifecycle()   # what earlier cases left
    for _attempt in range(50):
        dead = subprocess.Popen(["/bin/sleep", "0.2"])
        tracer.add_target(dead.pid)
        dead.wait()
        lifecycle = tracer.drain_lifecycle()
        # ("exec", pid) may come first: Popen returns while the kernel still finishes sleep's exec
        assert [(LIFECYCLE_KINDS[int(r["kind"])], int(r["pid"])) for r in lifecycle][-1:] == [("exit", dead.pid)]
        assert dead.pid not in tracer.kernel_targets()   # the kernel dropped it at its exit
        tracer.drain()
        stranger = _start_with_pid(dead.pid, [accessgen, "--wait", "w:0:w:64:2"])
        if stranger is None:
            continue
        info = json.loads(stranger.stdout.readline())
        stranger.stdin.write("go\n")
        stranger.stdin.flush()
        stranger.stdout.readline()
        assert stranger.wait(timeout=30) == 0 and info["pid"] == dead.pid
        events = tracer.quiesce()
        assert not (events["pid"] == dead.pid).any()
        return
    pytest.fail("could not give a dead target's pid to a new process in 50 attempts (a busy machine?)")


LEADER_EXITS_FIRST = r"""
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
static void *late(void *arg)
{
    usleep(300000);   /* the main thread is gone by now */
    char *mem = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 64; i++)
        mem[i * 4096] = 1;
    printf("%lu %lu\n", (unsigned long)mem, (unsigned long)getpid());
    fflush(stdout);
    return arg;
}
int main(void)
{
    pthread_t thread;
    pthread_create(&thread, NULL, late, NULL);
    pthread_exit(NULL);
}
"""


def test_a_process_outliving_its_main_thread_is_traced_to_its_end(tmp_path):
    """6.16+ kernels say when a thread group is dead: the main thread's exit is not the process's."""
    if "group_dead" not in Path("/sys/kernel/tracing/events/sched/sched_process_exit/format").read_text():
        pytest.fail("this kernel's sched_process_exit has no group_dead (before 6.16): see the README's known limit")
    source, binary = tmp_path / "late.c", tmp_path / "late"
    source.write_text(LEADER_EXITS_FIRST)
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(binary), str(source)], check=True)
    events, summary, done = trace(tmp_path, "--", str(binary))
    start, pid = map(int, done.stdout.split())
    touches = events[(events["addr"] >= start) & (events["addr"] < start + 64 * 4096)]
    assert len(touches) == 64 and (touches["pid"] == pid).all() and (touches["tid"] != pid).all()
    assert summary["reason"] == "targets-exited"
