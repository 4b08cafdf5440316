"""`record` on programs nobody here wrote: every report `trace` would see lands in a region of its
process (>= 99.9%) or in a named counter, the counters add up to what the source delivered, that
figure matches an independent bpftrace count of the same tracepoint in the same run, and damo
reads the file. sqlite3 and make come from Debian (setup.sh)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DAMON_BPF
from damon_bpf.recordfile import read_record

pytestmark = pytest.mark.bpf

DAMO = str(Path(sys.executable).parent / "damo")
PLACED = ("in_regions", "outside_regions", "late", "unattributed")


# Faults per (pid, execs the process had made so far) of this test's descendants only: the host
# runs other work, whose processes would fill bpftrace's maps. BEGIN runs once every probe is
# attached.
BPFTRACE = """BEGIN { printf("ready\\n"); }
tracepoint:sched:sched_process_fork /pid == $1 || @watch[pid]/ { @watch[args->child_pid] = 1; }
tracepoint:sched:sched_process_exec /@watch[pid]/ { @execs[pid] = @execs[pid] + 1; }
tracepoint:exceptions:page_fault_user /@watch[pid]/ { @[pid, @execs[pid]] = count(); }"""


@contextlib.contextmanager
def bpftrace_counts():
    """Page faults per (pid, number of execs before them) counted by bpftrace while the block
    runs: a dict filled on exit."""
    counts: dict[tuple[int, int], int] = {}
    proc = subprocess.Popen(["bpftrace", "-e", BPFTRACE, str(os.getpid())], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "BPFTRACE_MAP_KEYS_MAX": "1000000"})
    try:
        for line in proc.stdout:
            if line.startswith("ready"):
                break
        else:
            raise AssertionError(f"bpftrace did not attach (exit status {proc.wait()})")
        yield counts
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=300)   # it prints its maps on exit: slow on a loaded machine
    for pid, execs, count in re.findall(r"^@\[(\d+), (\d+)\]: (\d+)$", out, re.M):
        counts[int(pid), int(execs)] = int(count)


def record(tmp_path: Path, *args: str, timeout: int = 300):
    out = tmp_path / "damon.data"
    with bpftrace_counts() as counts:
        result = subprocess.run([DAMON_BPF, "record", "-o", str(out), *args], capture_output=True, text=True,
                                timeout=timeout, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return read_record(str(out)), counts, result.stderr, out


def check_placement(records, counts: dict, stderr: str, min_share: float = 0.999) -> dict:
    """The counters close, the share in regions is met, bpftrace saw what the source delivered."""
    acc = records[0].meta["accounting"]
    assert acc["lost"] == 0 and acc["filtered"]["total"] == 0
    assert sum(acc[k] for k in PLACED) == acc["delivered"] > 0
    assert acc["pending"] == acc["unaccounted"] == 0
    assert acc["in_regions"] == sum(int(s.nr_reports.sum()) for r in records for s in r.snapshots)
    assert acc["in_regions"] / acc["delivered"] >= min_share, acc
    assert f"of {acc['delivered']} delivered: {acc['in_regions']} in regions" in stderr
    # independent count: every fault of the children (targets from their fork on), and of the
    # command from its exec (its second: Python starts the launcher, a bash that then execs the
    # command); record may also see the launcher's last faults after it registered the pid
    children = {r.pid for r in records[1:]}
    root = records[0].pid
    assert all(r.meta["target"].get("born_ns") for r in records)
    exact = sum(n for (pid, _), n in counts.items() if pid in children)
    root_from_exec = sum(n for (pid, execs), n in counts.items() if pid == root and execs >= 2)
    root_all = sum(n for (pid, _), n in counts.items() if pid == root)
    assert exact + root_from_exec <= acc["delivered"] <= exact + root_all
    for rec in records:   # each target's snapshots start when it was born, and it has some
        assert rec.snapshots and rec.snapshots[0].start_ns == rec.meta["target"]["born_ns"]
    return acc


def damo_reads(tmp_path: Path, path: Path) -> None:
    out = subprocess.run([DAMO, "report", "access", "-i", str(path)], capture_output=True, text=True,
                         env={**os.environ, "HOME": str(tmp_path)}, cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and "Traceback" not in out.stderr + out.stdout, out.stdout + out.stderr


SQL = ("PRAGMA cache_size=-262144; CREATE TABLE t(a INTEGER, b TEXT); "
       "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
       "INSERT INTO t SELECT x, hex(randomblob(8)) FROM c; CREATE INDEX i ON t(b);")


def test_sqlite3_building_an_indexed_table(tmp_path):
    records, counts, stderr, path = record(tmp_path, "--", "sqlite3", str(tmp_path / "t.db"), SQL)
    assert len(records) == 1
    acc = check_placement(records, counts, stderr)
    assert acc["delivered"] >= 10_000   # a 256 MiB page cache filling up: new memory all along
    damo_reads(tmp_path, path)


def make_project(root: Path, nr_files: int = 20) -> None:
    for i in range(nr_files):
        (root / f"f{i}.c").write_text(
            f"#include <string.h>\nstruct s{i} {{ int a[64]; char b[128]; }};\n"
            f"int f{i}(int x) {{ struct s{i} v; memset(&v, 0, sizeof v);\n"
            f"  for (int i = 0; i < 64; i++) v.a[i] = x * i; return v.a[x % 64] + {i}; }}\n")
    (root / "main.c").write_text("int main(void) { return 0; }\n")
    objs = " ".join(["main.o"] + [f"f{i}.o" for i in range(nr_files)])
    (root / "Makefile").write_text(f"OBJS = {objs}\nprog: $(OBJS)\n\tgcc -o $@ $(OBJS)\n"
                                   "%.o: %.c\n\tgcc -O2 -c $< -o $@\n")


def test_make_j2_of_a_generated_project_following_children(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    make_project(project)
    records, counts, stderr, path = record(tmp_path, "--follow-children", "--", "make", "-s", "-j2", "-C",
                                           str(project))
    assert (project / "prog").exists()
    # make, and per object at least gcc, cc1 and as
    assert len(records) >= 1 + 3 * 21
    check_placement(records, counts, stderr)
    damo_reads(tmp_path, path)


def test_short_lived_children_close_their_accounting(tmp_path):
    # children living 20 ms to 1 s, several of them gone before their first aggregation ends
    script = "for i in 1 2 3 4 5; do sleep 1 & /bin/ls / > /dev/null & sleep 0.02; /bin/true; done; wait"
    records, counts, stderr, path = record(tmp_path, "--follow-children", "--", "bash", "-c", script)
    assert len(records) >= 1 + 5 * 3
    check_placement(records, counts, stderr)
    short = [r for r in records if r.snapshots[-1].end_ns - r.snapshots[0].start_ns < 100_000_000]
    assert short, "no child ended before its first aggregation"
    damo_reads(tmp_path, path)


def test_the_issue_reproducer_is_read_by_damo(tmp_path):
    records, counts, stderr, path = record(tmp_path, "--follow-children", "--", "bash", "-c",
                                           "sleep 1.2; /bin/ls / >/dev/null; sleep 1")
    check_placement(records, counts, stderr)
    damo_reads(tmp_path, path)
