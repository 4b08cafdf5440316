"""--cgroup PATH (issue 16): every process of a cgroup v2, filtered in BPF by cgroup id and followed as
processes come and go. Real BPF, a real test cgroup (made under this host's cgroup2 mount, processes moved
in through cgroup.procs, removed afterwards), the ground-truth workload; and the path errors a user can make."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMON_BPF
from damon_bpf.errors import TargetError
from damon_bpf.sources.cgroups import Mount, parse_mountinfo, resolve, v2_mount


# ---------------------------------------------------------------------------------------------- fixtures

def _empty(directory: Path) -> None:
    """Kill what is left in ``directory``'s cgroup (a failed test's workload) and wait until it is empty."""
    procs = directory / "cgroup.procs"
    deadline = time.monotonic() + 10
    while procs.exists() and (pids := procs.read_text().split()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@pytest.fixture
def cgroup() -> Path:
    """A fresh cgroup v2 with one child cgroup, ``child``; removed (with anything left in it) afterwards."""
    path = Path(v2_mount()) / f"damon-bpf-test-{uuid.uuid4().hex[:8]}"
    (path / "child").mkdir(parents=True)
    yield path
    for directory in (path / "child", path):
        if directory.exists():
            _empty(directory)
            directory.rmdir()


def start_in(directory: Path, *command: str, **popen) -> subprocess.Popen:
    """``command`` started inside the cgroup ``directory`` (its shell moves itself there, then execs it)."""
    script = f'echo $$ > "{directory}/cgroup.procs" && exec "$@"'
    return subprocess.Popen(["/bin/sh", "-c", script, "sh", *command], stdout=subprocess.PIPE, text=True, **popen)


def run_to_end(proc: subprocess.Popen) -> tuple[dict, dict]:
    """accessgen's two JSON lines: its ground truth and its touches."""
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    info, done = (json.loads(line) for line in out.splitlines()[:2])
    return info, done


def writer_touches(events: np.ndarray, info: dict, done: dict) -> tuple[int, int]:
    """(reports of accessgen's writer in its range during its passes, its own count of touches)."""
    writer, result = info["threads"][0], done["threads"][0]
    mine = events[(events["pid"] == info["pid"]) & (events["tid"] == writer["tid"])
                  & (events["addr"] >= writer["start"]) & (events["addr"] < writer["end"])
                  & (events["time_ns"] >= result["go_ns"]) & (events["time_ns"] <= result["done_ns"])]
    return len(mine), result["touches"]


def wait_for_line(stream, text: str, timeout: float = 120) -> list[str]:
    """Lines of ``stream`` up to the first one holding ``text`` (the monitor is attached by then)."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in {lines}")


def remove(cgroup: Path) -> None:
    """rmdir the test cgroup and its child once their processes are gone: a --cgroup run ends then."""
    for directory in (cgroup / "child", cgroup):
        _empty(directory)
        directory.rmdir()


# ------------------------------------------------------------------------------------- real BPF, real cgroups

@pytest.mark.bpf
def test_processes_started_in_the_cgroup_after_the_monitor_are_traced_exactly_and_no_other(accessgen, cgroup,
                                                                                            tmp_path):
    from damon_bpf.access import ACCESS_DTYPE

    out, summary_path = tmp_path / "ev.bin", tmp_path / "summary.json"
    monitor = subprocess.Popen([DAMON_BPF, "trace", "--cgroup", str(cgroup), "--format", "binary", "-o", str(out),
                                "--summary-json", str(summary_path), "--duration", "300"],
                               stderr=subprocess.PIPE, text=True)
    try:
        said = wait_for_line(monitor.stderr, "has no process yet")   # empty at the start: it waits
        inside = start_in(cgroup, accessgen, "in:-1:w:2048:3")
        outside = subprocess.Popen([accessgen, "out:-1:w:2048:3"], stdout=subprocess.PIPE, text=True)
        nested = start_in(cgroup / "child", accessgen, "nested:-1:w:1024:2")
        runs = {name: run_to_end(proc) for name, proc in (("in", inside), ("out", outside), ("nested", nested))}
        remove(cgroup)   # the last followed cgroup is gone: the run ends by itself
        _, err = monitor.communicate(timeout=120)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
    assert monitor.returncode == 0, err
    assert f"damon-bpf: note: cgroup {cgroup} was removed before --duration ran out" in err
    assert said[-1].strip() == f"damon-bpf: cgroup /{cgroup.name} has no process yet: waiting for processes to join it"
    events, summary = np.fromfile(out, dtype=ACCESS_DTYPE), json.loads(summary_path.read_text())
    # exact ground truth: every touch of the writer in the cgroup and in its child cgroup (descendants followed)
    for name in ("in", "nested"):
        traced, touched = writer_touches(events, *runs[name])
        assert traced == touched > 0, name
    assert not (events["pid"] == runs["out"][0]["pid"]).any()   # outside the cgroup: nothing
    targets = {t["pid"]: t for t in summary["targets"]}
    assert set(np.unique(events["pid"]).tolist()) == set(targets) == {runs["in"][0]["pid"], runs["nested"][0]["pid"]}
    assert targets[runs["in"][0]["pid"]]["cgroup"] == f"/{cgroup.name}"
    assert targets[runs["nested"][0]["pid"]]["cgroup"] == f"/{cgroup.name}/child"
    assert all(t["exited"] and not t["left"] and t["exit_code"] == 0 for t in targets.values())
    assert summary["reason"] == "targets-exited" and summary["lost"] == 0
    assert summary["seen"] == summary["delivered"] == len(events)


@pytest.mark.bpf
def test_record_gives_each_cgroup_process_its_own_target_and_groups_them_by_cgroup(accessgen, cgroup, tmp_path):
    from damon_bpf.recordfile import read_record

    path = tmp_path / "damon.data"
    first = start_in(cgroup, accessgen, "--duration", "60", "early:-1:c:1024:0")   # in the cgroup at the start
    first.stdout.readline()
    monitor = subprocess.Popen([DAMON_BPF, "record", "--cgroup", str(cgroup), "-o", str(path), "--aggr-us", "50ms",
                                "--duration", "300"], stderr=subprocess.PIPE, text=True)
    try:
        said = wait_for_line(monitor.stderr, "following cgroup")
        late = [start_in(cgroup / "child", accessgen, "late:-1:w:1024:4") for _ in range(2)]
        late_runs = [run_to_end(proc) for proc in late]
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
        remove(cgroup)
        _, err = monitor.communicate(timeout=120)
    finally:
        for proc in (monitor, first):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert monitor.returncode == 0, err
    assert f"following cgroup /{cgroup.name} and its descendants: 1 process(es) now" in said[-1]
    placement = next(line for line in err.splitlines() if " delivered: " in line)
    assert "NOT ACCOUNTED" not in placement
    records = read_record(str(path))
    by_pid = {rec.pid: rec for rec in records}
    assert set(by_pid) == {first.pid, *(info["pid"] for info, _ in late_runs)}
    assert by_pid[first.pid].meta["target"]["cgroup"] == f"/{cgroup.name}"
    for info, done in late_runs:
        rec = by_pid[info["pid"]]
        assert rec.meta["target"]["cgroup"] == f"/{cgroup.name}/child" and "left" not in rec.meta["target"]
        assert rec.snapshots and rec.snapshots[0].start_ns == rec.meta["target"]["born_ns"]
        writer = info["threads"][0]
        in_range = sum(int(s.nr_reports[(s.start < writer["end"]) & (s.end > writer["start"])].sum())
                       for s in rec.snapshots)
        assert in_range >= done["threads"][0]["touches"]   # regions may hold more than the range: at least
    accounting = records[0].meta["accounting"]
    assert accounting["unaccounted"] == accounting["pending"] == 0 and accounting["lost"] == 0
    assert accounting["delivered"] == sum(accounting[k] for k in ("in_regions", "outside_regions", "late",
                                                                  "unattributed"))
    grouped = subprocess.run([DAMON_BPF, "report", "access", "-i", str(path), "--group", "cgroup", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert grouped.returncode == 0, grouped.stderr
    labels = sorted(group["group"] for group in json.loads(grouped.stdout))
    assert labels == sorted([f"/{cgroup.name}", f"/{cgroup.name}/child"])


@pytest.mark.bpf
def test_a_process_moved_out_of_the_cgroup_leaves_and_its_later_touches_are_not_traced(accessgen, cgroup):
    from damon_bpf.access import ACCESS_DTYPE
    from damon_bpf.session import Session
    from damon_bpf.sources.cgroups import resolve as resolve_cgroup
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    proc = start_in(cgroup, accessgen, "--wait", "moved:-1:w:1024:2", stdin=subprocess.PIPE)
    info = json.loads(proc.stdout.readline())   # its start-up is over: it waits for a line
    targets = Targets(cgroups=[resolve_cgroup(str(cgroup))], notify=lambda _message: None)
    heard, batches = [], []
    targets.subscribe(heard.append)
    tracer = Tracer("tracepoint", follow_cgroups=True)
    session = Session(tracer, targets, duration_s=120)

    def on_tick(_now_ns: int) -> None:
        if not proc.stdin.closed:   # attached (it was listed as a member): move it out, then let it write
            (Path(v2_mount()) / "cgroup.procs").write_text(str(proc.pid))   # back to the root cgroup
            proc.stdin.write("go\n")
            proc.stdin.close()
        elif proc.poll() is not None:
            session.request_stop("duration")

    try:
        session.run(batches.append, on_tick)
    finally:
        tracer.close()
    done = json.loads(proc.stdout.read().splitlines()[0])
    assert proc.wait(timeout=60) == 0
    events = np.concatenate(batches) if batches else np.zeros(0, ACCESS_DTYPE)
    kinds = [(event.kind, event.pid) for event in heard]
    assert kinds[0] == ("fork", proc.pid) and ("leave", proc.pid) in kinds
    assert targets.info[proc.pid].left and not targets.info[proc.pid].exited
    traced, touched = writer_touches(events, info, done)
    assert touched > 0 and traced == 0   # every touch came after the move


# ------------------------------------------------------------------------------ paths a user can get wrong

def fake_hierarchy(tmp_path: Path, fstype: str = "cgroup2") -> tuple[Path, list[Mount]]:
    """A directory standing for a cgroup mount, with a cgroup ``app`` (and ``app/web``) in it."""
    root = tmp_path / "cg"
    (root / "app" / "web").mkdir(parents=True)
    for directory in (root, root / "app", root / "app" / "web"):
        (directory / "cgroup.procs").write_text("")
    return root, [Mount("/", "/", "ext4"), Mount(str(root), "/", fstype)]


def test_a_path_is_taken_under_the_mount_or_relative_to_it(tmp_path):
    root, mounts = fake_hierarchy(tmp_path)
    for path in (str(root / "app" / "web"), "app/web", "/app/web"):
        cgroup = resolve(path, mounts)
        assert (cgroup.name, cgroup.level, cgroup.id) == ("/app/web", 2, (root / "app" / "web").stat().st_ino)
    inner = resolve("app", [Mount("/", "/", "ext4"), Mount(str(root), "/machine.slice", "cgroup2")])
    assert (inner.name, inner.level) == ("/machine.slice/app", 2)   # a mount of a sub-cgroup: the kernel's depth


@pytest.mark.parametrize("path, says", [
    ("nothing-here", "no such cgroup"),
    ("/", "that is the root cgroup"),
])
def test_a_wrong_path_is_one_line(tmp_path, path, says):
    _root, mounts = fake_hierarchy(tmp_path)
    with pytest.raises(TargetError, match=says) as caught:
        resolve(path, mounts)
    assert "\n" not in str(caught.value)


def test_a_directory_outside_cgroup_v2_is_refused(tmp_path):
    root, mounts = fake_hierarchy(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(TargetError, match="is not a cgroup v2 directory"):
        resolve(str(plain), mounts)
    v1_root, v1_mounts = fake_hierarchy(tmp_path / "v1", "cgroup")
    with pytest.raises(TargetError, match=r"cgroup v1 hierarchy; --cgroup needs a cgroup v2 directory \(cgroup v2 "
                                          f"is mounted at {root} here\\)"):
        resolve(str(v1_root / "app"), mounts + v1_mounts[1:])
    with pytest.raises(TargetError, match="no cgroup2 hierarchy mounted"):
        resolve(str(v1_root / "app"), v1_mounts)   # a cgroup v1 host


def test_mountinfo_is_parsed_with_its_escapes():
    text = ("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            "35 31 0:32 /sub /sys/fs/cgroup/my\\040mem rw,relatime shared:5 - cgroup cgroup rw,memory\n")
    assert parse_mountinfo(text) == [Mount("/sys/fs/cgroup/unified", "/", "cgroup2"),
                                     Mount("/sys/fs/cgroup/my mem", "/sub", "cgroup")]


def test_kernel_damon_cannot_follow_a_cgroup(cgroup):
    from damon_bpf.errors import UsageError
    from damon_bpf.monitor import Monitor, MonitorConfig, RecordingSpec, TargetSpec

    with pytest.raises(UsageError, match="cannot follow a cgroup's"):
        Monitor(MonitorConfig(TargetSpec(cgroups=(str(cgroup),)), source="damon", recording=RecordingSpec()))


@pytest.mark.parametrize("args, says", [
    (["--cgroup", "/sys/fs/cgroup/damon-bpf-no-such-cgroup"], "no such cgroup"),
    (["--cgroup", "/tmp"], "not a cgroup v2 directory"),
    (["--cgroup", "system.slice", "--", "true"], "not both"),
])
def test_the_command_line_says_one_line(args, says):
    done = subprocess.run([DAMON_BPF, "trace", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and says in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("damon-bpf: error: ")


def test_metrics_of_a_cgroup_target_carry_its_cgroup_label(accessgen, cgroup, tmp_path):
    """record --cgroup --metrics-listen: every target series also names the cgroup the process was found in."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workload = start_in(cgroup, accessgen, "--duration", "60", "w:-1:w:1024:0")
    pid = json.loads(workload.stdout.readline())["pid"]
    monitor = subprocess.Popen([DAMON_BPF, "record", "--cgroup", str(cgroup), "-o", str(tmp_path / "d.data"),
                                "--metrics-listen", f"127.0.0.1:{port}", "--duration", "300"],
                               stderr=subprocess.PIPE, text=True)
    page, label = "", f'cgroup="/{cgroup.name}"'
    try:
        wait_for_line(monitor.stderr, "following cgroup")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                line.startswith("damon_bpf_working_set_bytes{") and label in line for line in page.splitlines()):
            time.sleep(0.5)
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        monitor.send_signal(signal.SIGTERM)
        monitor.communicate(timeout=120)
    finally:
        for proc in (monitor, workload):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    series = [line for line in page.splitlines() if line.startswith("damon_bpf_working_set_bytes{")]
    assert any(label in line and f'pid="{pid}"' in line for line in series), series
