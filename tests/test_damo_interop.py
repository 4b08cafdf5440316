"""Files we write load in the real damo (3.x), and damo's reports agree with ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import RecordWriter, TargetRecord, write_record
from damon_bpf.reports import access, heatmap, wss

DAMO = str(Path(sys.executable).parent / "damo")
A = 0x7F12_3400_0000
B = 0x5555_0000_0000  # a second area far below, like heap vs mmap
PAGE = 4096
T0 = 9_000_000_000_000
AGGR_US = 100_000


def synthetic_snapshots(seed: int, nr: int = 40) -> list[Snapshot]:
    """DAMON-like snapshots: two areas, layouts that change every aggregation (random splits),
    a hot spot that moves, ages that grow; the first snapshot has age 0 like a fresh start."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(nr):
        bounds = []
        for base, pages in ((B, 256), (A, 1024)):
            cuts = np.sort(rng.choice(np.arange(1, pages), size=rng.integers(3, 12), replace=False))
            edges = base + np.concatenate([[0], cuts, [pages]]) * PAGE
            bounds += list(zip(edges[:-1], edges[1:]))
        start = np.array([b[0] for b in bounds], dtype=np.uint64)
        end = np.array([b[1] for b in bounds], dtype=np.uint64)
        n = len(start)
        hot_at = A + (100 + 10 * i) * PAGE
        acc = np.where((start <= hot_at) & (end > hot_at), 20, rng.integers(0, 4, n) * (rng.random(n) < 0.4))
        reports = acc * rng.integers(1, 6, n)
        writes = reports // 2
        age = np.zeros(n, dtype=np.int64) if i == 0 else rng.integers(0, i + 1, n)
        out.append(Snapshot(T0 + i * AGGR_US * 1000, T0 + (i + 1) * AGGR_US * 1000, start, end,
                            acc.astype(np.int64), age, reports, writes, reports - writes,
                            {0: reports - reports // 3, 1: reports // 3}, {777: reports}))
    return out


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> tuple[str, list[TargetRecord]]:
    """Two targets, written through RecordWriter in several flushes like a live recording."""
    path = str(tmp_path_factory.mktemp("interop") / "damon.data")
    recs = [TargetRecord(t, 1000 + t, 5000, AGGR_US, 1_000_000, synthetic_snapshots(t), {"t": t})
            for t in (0, 1)]
    writer = RecordWriter(path)
    for rec in recs:
        writer.add_target(TargetRecord(rec.target_id, rec.pid, rec.sample_us, rec.aggr_us,
                                       rec.update_us, [], rec.meta))
    for chunk in range(0, 40, 15):
        for rec in recs:
            writer.add_snapshots(rec.target_id, rec.snapshots[chunk:chunk + 15])
        writer.flush()
    writer.close()
    return path, recs


def damo(tmp_path, *args: str) -> str:
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([DAMO, "report", *args], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    # damo reports parse failures on stdout with exit status 1
    assert out.returncode == 0 and "fail" not in out.stdout, out.stdout + out.stderr
    return out.stdout


def num(text) -> int:
    return int(str(text).replace(",", ""))


def test_file_type_is_what_damo_detects(records):
    path, _ = records
    out = subprocess.run(["file", "-b", path], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "zlib compressed data"


def test_damo_report_access_sees_our_regions(records, tmp_path):
    path, recs = records
    doc = json.loads(damo(tmp_path, "access", "-i", path, "--json"))
    assert [r["target_id"] for r in doc] == [0, 1]
    for theirs, ours in zip(doc, recs):
        assert len(theirs["snapshots"]) == len(ours.snapshots)
        for ts, os_ in zip(theirs["snapshots"], ours.snapshots):
            assert [(num(r["start"]), num(r["end"]), r["nr_accesses"]["samples"])
                    for r in ts["regions"]] == \
                   list(zip(os_.start.tolist(), os_.end.tolist(), os_.nr_accesses.tolist()))
            assert [r["nr_accesses"]["percent"] for r in ts["regions"]] == \
                   [int(n * 100 / 20) for n in os_.nr_accesses.tolist()]
    # our access report: same regions and damo's rate definitions for the last snapshot
    last_theirs = doc[0]["snapshots"][-1]["regions"]
    ours = access.access(recs, target_id=0)
    assert len(ours.regions) == len(last_theirs)
    assert [r.percent for r in ours.regions] == [t["nr_accesses"]["percent"] for t in last_theirs]


def test_damo_text_access_rates_match(records, tmp_path):
    path, recs = records
    text = damo(tmp_path, "access", "-i", path, "--raw_number")
    hz = [float(line.split("access ")[1].split()[0]) for line in text.splitlines()
          if " addr " in f" {line}" and "access " in line]
    ours = [r.hz for rec in recs for i in range(len(rec.snapshots))
            for r in access.access(recs, i, rec.target_id).regions]
    np.testing.assert_allclose(hz, ours)


def test_damo_heatmap_raw_matches_ours(records, tmp_path):
    path, recs = records
    rows, cols = 24, 20
    # From the record's start: damo 3.4.3 adds negative heat to the first column when the time
    # range starts later (int() truncates a -0.6 pixel index to 0, and the overlap goes negative).
    t_start, t_end = 0, 3_650_000_000  # relative to the first snapshot; cells straddle snapshots
    lo, hi = A, A + 1024 * PAGE
    theirs = damo(tmp_path, "heatmap", "-i", path, "--output", "raw", "--tid", "0",
                  "--resol", str(cols), str(rows), "--abs_addr",
                  "--time_range", str(T0 + t_start), str(T0 + t_end),
                  "--address_range", str(lo), str(hi))
    ours = heatmap.raw_text(heatmap.heatmap(recs, (rows, cols), (lo, hi), (t_start, t_end), 0))
    parse = [[line.split("\t") for line in out.strip().splitlines()] for out in (theirs, ours)]
    assert [(t, a) for t, a, _ in parse[0]] == [(t, a) for t, a, _ in parse[1]]
    heats = [np.nan_to_num(np.array([float(h) for _, _, h in p])) for p in parse]
    assert heats[1].max() > 0
    np.testing.assert_allclose(heats[1], heats[0], rtol=1e-9, atol=1e-9)


def _damo_wss(text: str) -> tuple[float, dict[int, int]]:
    avg, pcts = None, {}
    for line in text.splitlines():
        if line.startswith("# avr:"):
            avg = float(line.split()[-1])
        elif line.strip() and not line.startswith("#"):
            p, size = line.split()[:2]
            pcts[int(p)] = int(size)
    return avg, pcts


@pytest.mark.parametrize("target", [0, 1])
def test_damo_wss_matches_ours(records, tmp_path, target):
    path, recs = records
    single = str(tmp_path / "one.data")
    write_record(single, [recs[target]])  # damo sums targets by default; compare one at a time
    avg, pcts = _damo_wss(damo(tmp_path, "wss", "-i", single, "--exclude_samples", "0",
                               "--raw_number", "--range", "0", "101", "5"))
    ours = wss.wss(recs, target_id=target, percentiles=tuple(range(0, 101, 5)))
    assert pcts == ours.percentiles
    assert avg == int(ours.average)  # damo prints the average with '%d'
    # and damo's default, which skips the first 20 snapshots
    avg20, pcts20 = _damo_wss(damo(tmp_path, "wss", "-i", single, "--raw_number"))
    assert pcts20 == wss.wss(recs, target_id=target, skip=20).percentiles


def _damo_fields_equal(want: list[TargetRecord], got: list[TargetRecord]) -> None:
    """What damo keeps of a record: ids, intervals, snapshot times, region bounds, nr_accesses, age."""
    assert [(r.target_id, r.sample_us, r.aggr_us, r.update_us) for r in want] == \
        [(r.target_id, r.sample_us, r.aggr_us, r.update_us) for r in got]
    for a, b in zip(want, got):
        assert len(a.snapshots) == len(b.snapshots)
        for x, y in zip(a.snapshots, b.snapshots):
            assert (x.start_ns, x.end_ns) == (y.start_ns, y.end_ns)
            for name in ("start", "end", "nr_accesses", "age"):
                np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


@pytest.mark.parametrize("how", [
    ["convert_record_format", "--format", "json", "--record_file", "{src}", "--output_file", "{dst}"],
    ["convert_record_format", "--format", "json_compressed", "--record_file", "{src}", "--output_file", "{dst}"],
    ["adjust", "-i", "{src}", "-o", "{dst}"],
], ids=["convert-json", "convert-json_compressed", "adjust"])
def test_files_damo_rewrote_read_back_equal(tmp_path, how):
    """damo 3.x writes numbers as text ("5000", "139,637,976,727,552", "1 s 100 ms"): read as the numbers."""
    from damon_bpf.recordfile import read_record
    src, dst = tmp_path / "ours.data", tmp_path / "damo.data"
    original = [TargetRecord(0, 100, 5000, 100_000, 1_000_000, synthetic_snapshots(1, nr=12)),
                TargetRecord(1, 101, 5000, 100_000, 1_000_000, synthetic_snapshots(2, nr=7))]
    write_record(str(src), original)
    subprocess.run([DAMO, *(a.format(src=src, dst=dst) for a in how)], check=True, capture_output=True)
    raw = dst.read_bytes()
    text = (raw if raw.lstrip()[:1] == b"[" else zlib.decompress(raw)).decode()
    assert '"sample_us": "5000"' in text   # the case at hand: damo wrote numbers as text
    _damo_fields_equal(read_record(str(src)), read_record(str(dst)))
