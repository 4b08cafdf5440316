"""Kernel DAMON through damo: `damo record PID --snapshot` (vaddr) on a known workload in the 6.12 guest, and our
reports reading what it wrote.

Run with `tests/vm/run --kernel backports -- '.venv/bin/pytest -m vm -q -rA tests/test_vm_damo.py'`. This host's
DAMON sysfs belongs to a platform kdamond (paddr) that must not be stopped, so `damo record` cannot run here; the
6.12 guest has DAMON vaddr and no other kdamond. The test fails, never skips, when damo cannot record.

Why snapshots and not damo's default (perf): `damo record` without `--snapshot` records DAMON's
`damon:damon_aggregated` tracepoint with `perf record -a`, and under TCG perf's start-up took 98 s to more than
420 s in this guest (`perf record -a -- true` alone: 98 s), so damo stopped perf before it had caught one event and
wrote an empty record (`[]`) in each of three runs. `--snapshot DELAY COUNT` needs no tracer: every DELAY damo
installs a DAMOS scheme matching every region, asks the kdamond for its tried regions through sysfs, and writes
each answer as a record of one snapshot (`target_id` none). `--do_record` then takes access, vmas and
mem_footprint (all from sysfs and /proc); cpu_profile and damon_trace_events are perf's. damo still refuses to
start without perf or trace-cmd installed, though it launches neither here.

Why perf_script only: damo 3.4.3 crashes writing its JSON formats of snapshots on 6.12 (`sz_filter_passed` of a
region is None, the kernel has no such file before 6.14: TypeError in `format_sz`, exit 1, no record), seen in
the guest for json and json_compressed. Its perf_script text has `target_id=None` on every line, which damo's
own reader refuses (int('None')); ours reads it. Under TCG one snapshot took damo ~7 s, not DELAY.
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

# Passed in two of three guest runs of its own, then failed in the full 6.12 suite at the merge (2026-11-30): no
# region lay wholly inside the idle range in any of the 15 snapshots (the kdamond's regions never split at its edge
# under TCG), so the cold check had nothing to judge. Out of tests/vm/run's default run until that is settled.
pytestmark = [pytest.mark.vm, pytest.mark.known_failing]

DAMO = str(Path(sys.executable).parent / "damo")
ADMIN = Path("/sys/kernel/mm/damon/admin")
EVERY_S, COUNT = 0.2, 15   # damo's --snapshot DELAY COUNT
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
    then left alone), and `damo record PID --snapshot` of it, as perf_script."""
    _in_guest()
    if not _guest_has_damon():   # the guest must really lack it
        assert not ADMIN.exists()
        return None
    folder = tmp_path_factory.mktemp("damo")
    work = subprocess.Popen([accessgen, "--duration", "900", f"hot:0:w:{KIB}:0", f"cold:1:c:{KIB}:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(work.stdout.readline())
        out = folder / "damon.data"
        done = _damo("record", str(info["pid"]), "--snapshot", str(EVERY_S), str(COUNT),
                     "--do_record", "access", "vmas", "mem_footprint", "--output_type", "perf_script", "-o", str(out),
                     cwd=folder)
    finally:
        work.kill()
        work.wait()
    said = f"damo record (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-1500:]}"
    _keep(folder, f"workload: {json.dumps(info)}\n{said}")
    return out, info, said


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


def test_damo_snapshot_record_is_read_with_the_hot_range_hot(recorded):
    """damo's snapshot record (perf_script, with its .kdamonds, .vmas and .mem_footprint beside): one target,
    the workload's pid, COUNT snapshots of one aggregation each at damo's default intervals; no region wholly
    inside the idle range is ever accessed, the written range is (in some snapshots: under TCG DAMON sees a
    nonstop writer in 1 of 20 samples at best, and its region often merges with the idle neighbour); and
    `report access/wss/heatmap` read it, damo's side files left alone."""
    from damon_bpf.recordfile import read_record

    if recorded is None:
        return
    path, info, said = recorded
    assert path.exists() and path.read_text().count("target_id=None") > COUNT, said
    for side in ("kdamonds", "vmas", "mem_footprint"):
        assert Path(f"{path}.{side}").exists(), (side, said)
    ranges = {t["name"]: (t["start"], t["end"]) for t in info["threads"]}

    (record,) = read_record(str(path))
    assert (record.pid, record.sample_us, record.aggr_us) == (info["pid"], 5000, 100_000), said
    assert record.meta["intervals"] == "kdamonds file" and len(record.snapshots) == COUNT, said
    assert all(abs(s.end_ns - s.start_ns - 100_000_000) <= 1000 for s in record.snapshots)   # damo prints us
    assert all(a.end_ns < b.start_ns for a, b in zip(record.snapshots, record.snapshots[1:]))
    figures = _judge(record.snapshots, ranges["hot"], ranges["cold"])
    _keep(path.parent, json.dumps(figures))
    assert not any(figures["cold_inside_accessed"]), figures
    assert any(figures["cold_inside"]), figures   # the cold judgement is not empty
    assert max(figures["hot_share"]) > 0, figures

    hottest = int(np.argmax(figures["hot_share"]))
    shown = _report("access", "-i", str(path), "--snapshot", str(hottest))
    assert shown["nr_snapshots"] == COUNT and shown["pid"] == info["pid"]
    assert _mean_hz(shown["regions"], *ranges["hot"]) > 0, shown["regions"]
    wss = _report("wss", "-i", str(path))
    assert wss["kind"] == "working" and len(wss["times_ns"]) == COUNT, wss
    assert _report("heatmap", "-i", str(path))["rows"]

    for side in ("vmas", "mem_footprint"):   # given one by mistake: one line, no traceback
        out = subprocess.run([DAMON_BPF, "report", "access", "-i", f"{path}.{side}"], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("damon-bpf: error: "), out.stderr
