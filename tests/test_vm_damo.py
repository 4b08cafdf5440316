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
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMON_BPF
from test_vm_samplers import _guest_has_damon, _in_guest

# known_failing until it has been seen passing: written without a VM run (none was free)
pytestmark = [pytest.mark.vm, pytest.mark.known_failing]

DAMO = str(Path(sys.executable).parent / "damo")
ADMIN = Path("/sys/kernel/mm/damon/admin")
# How long damo records once perf does. damo's own --timeout counts from when it starts `perf record -a`, and under
# TCG perf's start-up took longer than 90 s (`perf record -a -- true` alone: 98 s in a 6.12 guest): with --timeout
# 15 and 90, damo stopped perf before it had caught one damon event and wrote an empty record ("[]"; damo's own
# `report access` says "No record"). So damo records until the workload ends, which the test ends RECORD_S after
# perf has enabled its events.
RECORD_S = 10
PERF_START_S = 420   # how long perf's start-up may take (in the third run it had not finished by then)
PERF_RECORD_FINISHED_INIT = 82   # perf writes it after its start-up records, once its events are enabled
MIB = 1 << 20


def _damo(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DAMO, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "HOME": "/tmp"})


def _perf_started(path: Path) -> bool:
    """Whether `perf record` writing ``path`` has finished starting (its FINISHED_INIT record is in the file:
    perf writes its header and start-up records straight to the file, the traced events only later)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    if raw[:8] != b"PERFILE2" or len(raw) < 104:
        return False
    at = struct.unpack_from("<Q", raw, 40)[0]   # perf_file_header.data.offset
    while at + 8 <= len(raw):
        kind, _, size = struct.unpack_from("<IHH", raw, at)
        if kind == PERF_RECORD_FINISHED_INIT:
            return True
        if size < 8:
            return False
        at += size
    return False


def _damo_record(pid: int, out: Path, stop: subprocess.Popen) -> tuple[subprocess.CompletedProcess, bool]:
    """`damo record PID` (perf; the raw perf.data kept as OUT.trace), stopped the way a user stops it for a
    process: the process ends (``stop`` is killed RECORD_S after perf has started); and whether perf started."""
    cmd = [DAMO, "record", str(pid), "--do_record", "access", "damon_trace_events", "-o", str(out)]
    damo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=out.parent,
                            env={**os.environ, "HOME": "/tmp"})
    try:
        deadline = time.monotonic() + PERF_START_S
        while not _perf_started(out) and damo.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        started = _perf_started(out)
        if started:
            time.sleep(RECORD_S)
        stop.kill()
        stop.wait()
        said, _ = damo.communicate(timeout=600)
    finally:
        damo.kill()
        damo.wait()
    return subprocess.CompletedProcess(cmd, damo.returncode, said, ""), started


def _keep(tmp_path: Path, said: str) -> None:
    """Copies what damo wrote (and what it said) into the guest's kept results folder, so a failure can be
    looked into on the host (the guest's own files are gone when it stops)."""
    results = os.environ.get("DAMON_BPF_VM_OUT")
    if not results:
        return
    kept = Path(results) / "damo-record"
    kept.mkdir(exist_ok=True)
    for path in tmp_path.glob("damon.*"):
        if path.is_file():
            shutil.copy(path, kept / path.name)
    (kept / "damo-said.txt").write_text(said)


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
        damo, perf_started = _damo_record(info["pid"], out, work)
    finally:
        work.kill()
        work.wait()
    said = f"damo record (exit {damo.returncode}): {(damo.stdout + damo.stderr).strip()[-1500:]}"
    trace = Path(f"{out}.trace")
    _keep(tmp_path, f"exit {damo.returncode}\n{damo.stdout}\n{damo.stderr}\nworkload: {json.dumps(info)}\n")
    assert perf_started, f"perf had not started after {PERF_START_S} s; {said}"
    assert damo.returncode == 0 and out.exists() and trace.exists(), said
    assert trace.read_bytes()[:8] == b"PERFILE2", said
    assert (tmp_path / "damon.data.kdamonds").exists(), said

    records = read_record(str(out))
    assert records, f"damo's record is empty (perf caught no damon event); {said}"
    (record,) = records
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
