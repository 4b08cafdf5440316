"""Kernel DAMON through damo: `damo record` (vaddr) on a known workload in the 6.12 guest, and our reports
reading what it wrote, in each of damo's formats.

Run with `tests/vm/run --kernel backports -- '.venv/bin/pytest -m vm -q -k damo tests/test_vm_damo.py'`. This
host's DAMON sysfs belongs to a platform kdamond (paddr) that must not be stopped, so `damo record` cannot run
here; the 6.12 guest has DAMON vaddr and no other kdamond. The test fails, never skips, when damo cannot record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMON_BPF
from test_vm_samplers import _guest_has_damon, _in_guest

# known_failing until it has been seen passing: written without a VM run (none was free)
pytestmark = [pytest.mark.vm, pytest.mark.known_failing]

DAMO = str(Path(sys.executable).parent / "damo")
ADMIN = Path("/sys/kernel/mm/damon/admin")
RECORD_S = 15       # damo's --timeout, counted once perf records (damo's start-up under TCG: 10-40 s before)
MIB = 1 << 20


def _damo(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DAMO, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "HOME": "/tmp"})


def _report(*args: str) -> dict | list:
    out = subprocess.run([DAMON_BPF, "report", *args, "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"report {' '.join(args)}: {out.stderr.strip()}"
    return json.loads(out.stdout)


def _mean_hz(regions: list[dict], lo: int, hi: int) -> float:
    """The access rate over [lo, hi), weighted by the bytes of each region that overlap it."""
    overlap = np.array([max(0, min(r["end"], hi) - max(r["start"], lo)) for r in regions], dtype=float)
    assert overlap.sum() > 0, f"no region covers [{lo:#x}, {hi:#x})"
    return float(np.dot(overlap, [r["hz"] for r in regions]) / overlap.sum())


def _same_damon_fields(want, got, time_ns: int) -> None:
    """The same snapshots, but for one perf stopped tracing within: damo keeps its regions, we leave it out (a
    snapshot perf began within would have made damo misread the whole trace: not expected in a short run)."""
    assert [r.target_id for r in want] == [r.target_id for r in got]
    for a, b in zip(want, got):
        cut = b.meta.get("cut_short", {"at_start": 0, "at_end": 0})
        assert not cut["at_start"], cut
        wanted = a.snapshots[:-1] if cut["at_end"] else a.snapshots
        assert len(wanted) == len(b.snapshots), (len(a.snapshots), len(b.snapshots), cut)
        for x, y in zip(wanted[1:], b.snapshots[1:]):   # the first's start is each reader's guess
            assert abs(x.end_ns - y.end_ns) <= time_ns and abs(x.start_ns - y.start_ns) <= time_ns
        for x, y in zip(wanted, b.snapshots):
            for name in ("start", "end", "nr_accesses", "age"):
                np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_damo_record_of_kernel_damon_is_read_in_every_format(accessgen, tmp_path):
    """`damo record PID` with its default tracer (perf) leaves the record (json_compressed, converted by damo
    with the kdamond's intervals), the raw perf.data (`--do_record damon_trace_events` keeps it as FILE.trace) and
    FILE.kdamonds; damo converts the record to perf_script too. Our reader reads all three, finds in them the same
    snapshots, and `report access/wss/heatmap` show the workload's written range hot and its idle range cold."""
    from damon_bpf.recordfile import read_record

    _in_guest()
    if not _guest_has_damon():   # the guest must really lack it
        assert not ADMIN.exists()
        return
    assert shutil.which("perf"), "damo records kernel DAMON's tracepoint with perf, which the guest lacks"
    # hot: written and dropped every pass, so each touch faults in a fresh, young PTE (under TCG the accessed bit
    # of a page written nonstop is not set again once DAMON clears it); cold: written once, then left alone
    work = subprocess.Popen([accessgen, "--duration", "900", "hot:0:w:16384:0", "cold:1:c:16384:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(work.stdout.readline())
        ranges = {t["name"]: (t["start"], t["end"]) for t in info["threads"]}
        out = tmp_path / "damon.data"
        damo = _damo("record", str(info["pid"]), "--timeout", str(RECORD_S), "--do_record", "access",
                     "damon_trace_events", "-o", str(out), cwd=tmp_path)
    finally:
        work.kill()
        work.wait()
    said = f"damo record (exit {damo.returncode}): {(damo.stdout + damo.stderr).strip()[-1500:]}"
    trace = Path(f"{out}.trace")
    assert damo.returncode == 0 and out.exists() and trace.exists(), said
    assert trace.read_bytes()[:8] == b"PERFILE2", said
    assert (tmp_path / "damon.data.kdamonds").exists(), said

    (record,) = read_record(str(out))
    assert (record.sample_us, record.aggr_us) == (5000, 100_000), said
    assert len(record.snapshots) >= 20, f"{len(record.snapshots)} snapshots in {RECORD_S} s; {said}"

    # the raw perf.data, through `perf script` (no side file under its name: intervals inferred)
    from_perf = read_record(str(trace))
    assert from_perf[0].meta["file_format"] == "perf_data" and from_perf[0].meta["intervals"] == "inferred"
    assert 50_000 <= from_perf[0].aggr_us <= 200_000, from_perf[0].aggr_us   # the kdamond's, give or take TCG
    _same_damon_fields([record], from_perf, time_ns=2000)   # damo took perf's microseconds, we the nanoseconds
    shutil.copy(tmp_path / "damon.data.kdamonds", f"{trace}.kdamonds")
    (with_side,) = read_record(str(trace))
    assert (with_side.pid, with_side.sample_us, with_side.aggr_us) == (info["pid"], 5000, 100_000)

    # damo's perf_script text of the same record
    text = tmp_path / "damon.txt"
    converted = _damo("convert_record_format", "--format", "perf_script", "--record_file", str(out),
                      "--output_file", str(text), cwd=tmp_path)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    from_text = read_record(str(text))
    assert from_text[0].meta["file_format"] == "perf_script"
    _same_damon_fields([record], from_text, time_ns=2000)

    # our reports on each file: the hot range hot, the cold one cold
    for path in (out, trace, text):
        hottest = _report("access", "-i", str(path))
        hot, cold = _mean_hz(hottest["regions"], *ranges["hot"]), _mean_hz(hottest["regions"], *ranges["cold"])
        assert hot > 0 and hot > 2 * cold, (path.name, hot, cold)
        assert _report("wss", "-i", str(path))
        assert _report("heatmap", "-i", str(path))
