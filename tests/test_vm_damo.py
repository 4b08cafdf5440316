"""Kernel DAMON through damo: `damo record PID --snapshot` (vaddr) on a known workload in the 6.12 guest, and our
reports reading what it wrote, in each of damo's output formats.

Run with `tests/vm/run --kernel backports -- '.venv/bin/pytest -m vm -q -rA tests/test_vm_damo.py'`. This host's
DAMON sysfs belongs to a platform kdamond (paddr) that must not be stopped, so `damo record` cannot run here; the
6.12 guest has DAMON vaddr and no other kdamond. The test fails, never skips, when damo cannot record.

Why snapshots and not damo's default (perf): `damo record` without `--snapshot` records DAMON's
`damon:damon_aggregated` tracepoint with `perf record -a`, and under TCG perf's start-up took 98 s to more than
420 s in this guest (`perf record -a -- true` alone: 98 s), so damo stopped perf before it had caught one event and
wrote an empty record (`[]`) in each of three runs. `--snapshot DELAY COUNT` needs no tracer: every DELAY damo
installs a DAMOS scheme matching every region, asks the kdamond for its tried regions through sysfs, and writes
each answer as a record of one snapshot (`"target_id": null`). `--do_record` then takes access, vmas and
mem_footprint (all read from sysfs and /proc); cpu_profile and damon_trace_events are perf's. damo still refuses
to start without perf or trace-cmd installed, though it launches neither here.
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
from test_damo_interop import num
from test_vm_samplers import _guest_has_damon, _in_guest

# known_failing until it has been seen passing twice in the guest
pytestmark = [pytest.mark.vm, pytest.mark.known_failing]

DAMO = str(Path(sys.executable).parent / "damo")
ADMIN = Path("/sys/kernel/mm/damon/admin")
FORMATS = ("json_compressed", "json", "perf_script")
EVERY_S, COUNT = 0.2, 30   # damo's --snapshot DELAY COUNT
WARMUP = 5                 # snapshots left out of the hot judgement (DAMON's regions still few and wide)
KIB = 16384                # each workload range


def _damo(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DAMO, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "HOME": "/tmp"})


def _keep(folder: Path, note: str) -> None:
    """Copies what damo wrote (records and side files) and ``note`` into the guest's kept results folder, so
    they can be looked into on the host (the guest's own files are gone when it stops)."""
    results = os.environ.get("DAMON_BPF_VM_OUT")
    if not results:
        return
    kept = Path(results) / "damo-record"
    kept.mkdir(exist_ok=True)
    for path in folder.glob("damon.*"):
        if path.is_file():
            shutil.copy(path, kept / path.name)
    with open(kept / "notes.txt", "a") as notes:
        notes.write(note + "\n")


@pytest.fixture(scope="module")
def recorded(accessgen, tmp_path_factory):
    """One workload (a range written and dropped every pass: each touch faults in a fresh, young PTE, which
    TCG needs, as it does not set the accessed bit again on a page written nonstop; and a range written once,
    then left alone), and `damo record PID --snapshot` of it once per output format, one after the other."""
    _in_guest()
    if not _guest_has_damon():   # the guest must really lack it
        assert not ADMIN.exists()
        return None
    folder = tmp_path_factory.mktemp("damo")
    work = subprocess.Popen([accessgen, "--duration", "900", f"hot:0:w:{KIB}:0", f"cold:1:c:{KIB}:0"],
                            stdout=subprocess.PIPE, text=True)
    said = {}
    try:
        info = json.loads(work.stdout.readline())
        for fmt in FORMATS:
            out = folder / f"damon.{fmt}"
            done = _damo("record", str(info["pid"]), "--snapshot", str(EVERY_S), str(COUNT),
                         "--do_record", "access", "vmas", "mem_footprint", "--output_type", fmt, "-o", str(out),
                         cwd=folder)
            said[fmt] = f"damo record {fmt} (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-1500:]}"
    finally:
        work.kill()
        work.wait()
    _keep(folder, "\n".join([f"workload: {json.dumps(info)}", *said.values()]))
    return folder, {t["name"]: (t["start"], t["end"]) for t in info["threads"]}, said


def _report(*args: str) -> dict | list:
    out = subprocess.run([DAMON_BPF, "report", *args, "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"report {' '.join(args)}: {out.stderr.strip()}"
    return json.loads(out.stdout)


def _overlap(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.minimum(ends, hi).astype(np.int64) - np.maximum(starts, lo).astype(np.int64), 0, None)


def _mean_hz(regions: list[dict], lo: int, hi: int) -> float:
    """The access rate over [lo, hi), weighted by the bytes of each region that overlap it."""
    overlap = _overlap(np.array([r["start"] for r in regions]), np.array([r["end"] for r in regions]), lo, hi)
    assert overlap.sum() > 0, f"no region covers [{lo:#x}, {hi:#x})"
    return float(np.dot(overlap, [r["hz"] for r in regions]) / overlap.sum())


def _judge(snapshots: list, hot: tuple[int, int], cold: tuple[int, int]) -> dict:
    """Per snapshot: the share of the hot range in accessed regions; the bytes of regions wholly inside the
    cold range, and of those the accessed ones (a region straddling the cold range's edge with the hot
    neighbour is hot by DAMON's own rules, so it is not judged)."""
    hot_share, inside, inside_accessed = [], [], []
    for snap in snapshots:
        accessed = snap.nr_accesses > 0
        hot_share.append(float(_overlap(snap.start, snap.end, *hot)[accessed].sum() / (hot[1] - hot[0])))
        within = (snap.start >= cold[0]) & (snap.end <= cold[1])
        size = (snap.end - snap.start).astype(np.int64)
        inside.append(int(size[within].sum()))
        inside_accessed.append(int(size[within & accessed].sum()))
    return {"hot_share": hot_share, "cold_inside": inside, "cold_inside_accessed": inside_accessed}


@pytest.mark.parametrize("fmt", ["json_compressed", "json"])
def test_damo_snapshot_record_is_read_with_the_hot_range_hot(recorded, fmt):
    """damo's snapshot record in its JSON formats: one target (damo's records of one snapshot each joined, as
    damo's own reader joins them), COUNT snapshots at damo's default intervals; the written range is seen
    accessed in most of them, no region wholly inside the idle range ever is; `report access/wss/heatmap` read
    it (damo's side files beside it left alone), and damo's own `report access` finds the same regions."""
    from damon_bpf.recordfile import read_record

    if recorded is None:
        return
    folder, ranges, said = recorded
    path = folder / f"damon.{fmt}"
    assert path.exists(), said[fmt]
    for side in ("kdamonds", "vmas", "mem_footprint"):
        assert Path(f"{path}.{side}").exists(), (side, said[fmt])

    (record,) = read_record(str(path))
    assert (record.sample_us, record.aggr_us) == (5000, 100_000), said[fmt]
    assert len(record.snapshots) == COUNT, said[fmt]
    starts = [s.start_ns for s in record.snapshots]
    assert starts == sorted(starts)
    figures = _judge(record.snapshots, ranges["hot"], ranges["cold"])
    _keep(folder, f"{fmt}: {json.dumps(figures)}")
    assert not any(figures["cold_inside_accessed"]), figures
    assert sum(b > 0 for b in figures["cold_inside"][WARMUP:]) >= (COUNT - WARMUP) // 2, figures
    assert np.mean(figures["hot_share"][WARMUP:]) >= 0.25, figures

    hottest = _report("access", "-i", str(path))
    assert hottest["nr_snapshots"] == COUNT
    assert _mean_hz(hottest["regions"], *ranges["hot"]) > 0, hottest["regions"]
    wss = _report("wss", "-i", str(path))
    assert wss["kind"] == "working" and max(wss["percentiles"].values()) > 0, wss
    heat = _report("heatmap", "-i", str(path))
    assert heat["rows"], heat

    for side in ("vmas", "mem_footprint"):   # given one by mistake: one line saying it holds no record
        out = subprocess.run([DAMON_BPF, "report", "access", "-i", f"{path}.{side}"], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("damon-bpf: error: "), out.stderr

    if fmt == "json_compressed":   # damo tells JSON apart by `file -b`, and this `file` says "JSON text data"
        _damo_reads_the_same(path, record)


def _damo_reads_the_same(path: Path, record) -> None:
    """damo's `report access --json` of the file: its records of one snapshot each (damo's report does not join
    them), snapshot for snapshot the regions we read."""
    out = _damo("report", "access", "-i", str(path), "--json", cwd=path.parent)
    assert out.returncode == 0 and "fail" not in out.stdout, out.stdout + out.stderr
    theirs = [snap for rec in json.loads(out.stdout) for snap in rec["snapshots"]]
    assert len(theirs) == len(record.snapshots)
    for snap_theirs, snap_ours in zip(theirs, record.snapshots):
        assert [(num(r["start"]), num(r["end"]), r["nr_accesses"]["samples"]) for r in snap_theirs["regions"]] \
            == list(zip(snap_ours.start.tolist(), snap_ours.end.tolist(), snap_ours.nr_accesses.tolist()))


def test_damo_snapshot_record_as_perf_script_is_one_error_line(recorded):
    """damo writes its snapshot records as perf_script with `target_id=None` on every line, which damo's own
    reader refuses (int('None')) and so does ours: one error line naming the line, no traceback."""
    if recorded is None:
        return
    folder, _ranges, said = recorded
    path = folder / "damon.perf_script"
    assert path.exists(), said["perf_script"]
    assert "target_id=None" in path.read_text().splitlines()[0], said["perf_script"]
    out = subprocess.run([DAMON_BPF, "report", "access", "-i", str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1 and out.stdout == "", out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("damon-bpf: error: record file") and "line 1" in line, line
