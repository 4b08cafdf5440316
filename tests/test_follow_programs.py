"""Following real programs: a parallel make build, and a PostgreSQL postmaster under pgbench."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMON_BPF
from test_follow import trace

pytestmark = pytest.mark.bpf

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PORT = "55437"   # not the default, so a PostgreSQL of the host is left alone


def c_project(root: Path, units: int) -> None:
    """A C program of ``units`` translation units and a Makefile with one rule per object."""
    for index in range(units):
        (root / f"unit{index}.c").write_text(f"int unit{index}(int x) {{ return x * {index + 1}; }}\n")
    calls = " + ".join(f"unit{index}(1)" for index in range(units))
    externs = "".join(f"int unit{index}(int);\n" for index in range(units))
    expected = sum(range(1, units + 1))
    (root / "main.c").write_text(f"{externs}int main(void) {{ return ({calls}) == {expected} ? 0 : 1; }}\n")
    objects = " ".join(f"unit{index}.o" for index in range(units)) + " main.o"
    (root / "Makefile").write_text(f"prog: {objects}\n\tgcc -o $@ $^\n%.o: %.c\n\tgcc -O1 -c -o $@ $<\n")


def test_a_parallel_make_build_is_followed_process_by_process(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    c_project(project, 12)
    events, summary, done = trace(tmp_path, "--follow-children", "--", "make", "-j2", "-s", "-C", str(project))
    assert subprocess.run([str(project / "prog")]).returncode == 0
    targets = {t["pid"]: t for t in summary["targets"]}
    by_comm: dict[str, list[int]] = {}
    for pid, target in targets.items():
        by_comm.setdefault(target["comm"], []).append(pid)
    assert len(by_comm["cc1"]) == 13 and len(by_comm["as"]) == 13   # one compiler and assembler per unit
    assert by_comm.get("ld") or by_comm.get("collect2")
    pids_with_reports = set(np.unique(events["pid"]).tolist())
    assert pids_with_reports <= set(targets)
    assert all(pid in pids_with_reports for pid in by_comm["cc1"] + by_comm["as"])
    assert all(t["exited"] for t in targets.values()) and summary["reason"] == "targets-exited"
    make = targets[min(by_comm["make"])]
    assert all(targets[pid]["ppid"] in targets for pid in targets if pid != make["pid"])   # one family tree
    assert f"{len(targets)} processes followed" in done.stderr


def _as_postgres(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, text=True,
                          **kwargs)


@pytest.fixture
def postmaster():
    """A throw-away PostgreSQL 15 cluster on a unix socket in a temporary directory, with pgbench's tables."""
    if not (PG_BIN / "initdb").exists() or shutil.which("pgbench") is None:
        pytest.fail("PostgreSQL 15 and pgbench are needed (setup.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="damon-bpf-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "--no-sync", "-U", "postgres")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                 f"-k {root} -p {PG_PORT} -c listen_addresses='' -c shared_buffers=32MB -c fsync=off", "start")
    try:
        _as_postgres("pgbench", "-i", "-s", "1", "-q", "-h", str(root), "-p", PG_PORT, "postgres")
        yield root, int((data / "postmaster.pid").read_text().split()[0])
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def attached(proc: subprocess.Popen) -> str:
    """The line a ``-p PID --follow-children`` run prints once it has attached."""
    while "existing descendant" not in (line := proc.stderr.readline()):
        assert line, "the run ended before it attached"
    return line


def test_a_postmaster_under_pgbench_has_its_backends_followed_and_grouped(postmaster, tmp_path):
    socket_dir, postmaster_pid = postmaster
    out, summary_path, record = tmp_path / "ev.jsonl", tmp_path / "summary.json", tmp_path / "pg.data"
    tracer = subprocess.Popen([DAMON_BPF, "trace", "-p", str(postmaster_pid), "--follow-children", "-o", str(out),
                               "--summary-json", str(summary_path)], stderr=subprocess.PIPE, text=True)
    recorder = subprocess.Popen([DAMON_BPF, "record", "-p", str(postmaster_pid), "--follow-children", "-o", str(record),
                                 "--aggr-us", "200000"], stderr=subprocess.PIPE, text=True)
    try:
        said = [attached(proc) for proc in (tracer, recorder)]
        _as_postgres("pgbench", "-T", "3", "-c", "2", "-h", str(socket_dir), "-p", PG_PORT, "postgres", timeout=60)
        time.sleep(0.5)
    finally:
        for proc in (tracer, recorder):
            proc.send_signal(signal.SIGINT)
        stderr = [proc.communicate(timeout=60)[1] for proc in (tracer, recorder)]
    assert tracer.returncode == 0 and recorder.returncode == 0, stderr
    existing = int(re.search(r"following (\d+) existing descendant", said[0])[1])
    assert existing >= 4    # checkpointer, background writer, walwriter, autovacuum launcher, ...
    summary = json.loads(summary_path.read_text())
    targets = {t["pid"]: t for t in summary["targets"]}
    backends = [pid for pid, t in targets.items() if t["ppid"] == postmaster_pid and t["exited"]]
    assert len(backends) >= 2 and all(targets[pid]["comm"] == "postgres" for pid in backends)
    reporting = {json.loads(line)["pid"] for line in out.read_text().splitlines()}
    assert all(pid in reporting for pid in backends)    # each pgbench connection's backend was traced
    assert reporting <= set(targets)
    grouped = subprocess.run([DAMON_BPF, "report", "access", "-i", str(record), "--group", "all", "--json"],
                             capture_output=True, text=True)
    assert grouped.returncode == 0, grouped.stderr
    groups = json.loads(grouped.stdout)
    # pgbench's two connections last its 3 s: their backends have snapshots, combined in one group
    assert len(set(groups[0]["members"]) & set(backends)) >= 2 and groups[0]["regions"]
    os.remove(record)
