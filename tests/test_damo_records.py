"""Records in the shapes damo's own writer gives them (json_compressed, as `damo record` converts its trace): each
reads to what damo's own reader finds in it, and what damo refuses or finds empty is one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DAMON_BPF
from damon_bpf.recordfile import read_record
from test_damo_interop import DAMO, synthetic_snapshots

sys.path.append(str(Path(__import__("damo").__file__).parent))   # damo's modules import each other by bare name
import _damo_records  # noqa: E402
import _damon  # noqa: E402

T0 = 10**12
INTERVALS = _damon.DamonIntervals(5000, 100_000, 1_000_000)


def region(start: int, end: int, samples: int, age: int) -> _damon.DamonRegion:
    return _damon.DamonRegion(start, end, samples, _damon.unit_samples, age, _damon.unit_aggr_intervals)


def snapshot(i: int, regions: list) -> _damo_records.DamonSnapshot:
    return _damo_records.DamonSnapshot(T0 + i * 10**8, T0 + (i + 1) * 10**8, regions, None)


def record(target_id: int | None, snapshots: list, scheme_idx: int | None = None) -> _damo_records.DamonRecord:
    rec = _damo_records.DamonRecord(None, None, INTERVALS, scheme_idx, target_id, [])
    rec.snapshots = snapshots
    return rec


def damo_wrote(tmp_path: Path, records: list, name: str = "damo.data") -> Path:
    path = tmp_path / name
    assert _damo_records.write_damon_records(records, str(path), "json_compressed") is None
    return path


def assert_read_as_damo_reads(path: Path, target_ids: list[int]) -> list:
    """Our records of ``path`` hold what damo's reader finds in it (records with the same target merged as
    damo's ``can_merge`` would), under ``target_ids``."""
    theirs, err = _damo_records.parse_records_file(str(path))
    assert err is None, err
    merged = _damo_records.merge_records(theirs)
    ours = read_record(str(path))
    assert [r.target_id for r in ours] == target_ids
    for want, got in zip(merged, ours):
        assert (got.sample_us, got.aggr_us, got.update_us) == \
            (want.intervals.sample, want.intervals.aggr, want.intervals.ops_update)
        assert len(got.snapshots) == len(want.snapshots)
        for a, b in zip(want.snapshots, got.snapshots):
            assert (int(a.start_time), int(a.end_time)) == (b.start_ns, b.end_ns)
            assert [(r.start, r.end, r.nr_accesses.samples, r.age.aggr_intervals) for r in a.regions] == \
                list(zip(b.start.tolist(), b.end.tolist(), b.nr_accesses.tolist(), b.age.tolist()))
    return ours


def test_snapshot_records_without_a_target_id(tmp_path):
    """`damo record --snapshot` (DAMOS tried regions) writes one record per scheme and snapshot, its
    target_id null: a record's place stands for its id, and the snapshots of one scheme make one target."""
    recs = [record(None, [snapshot(0, [region(4096, 8192, 3, 1)])], scheme_idx=0),
            record(None, [snapshot(0, [region(1 << 20, 2 << 20, 0, 9)])], scheme_idx=1),
            record(None, [snapshot(1, [region(4096, 12288, 5, 2)])], scheme_idx=0)]
    path = damo_wrote(tmp_path, recs)
    ours = assert_read_as_damo_reads(path, [0, 1])
    assert [len(r.snapshots) for r in ours] == [2, 1]


def test_snapshots_without_regions_and_kernel_pointer_target_ids(tmp_path):
    """A snapshot of no region (a target whose regions all went), and target ids as kernels before 5.19
    traced them (the target's address)."""
    recs = [record(0xFFFF_9B7E_0000_1000, [snapshot(0, [region(4096, 8192, 3, 1)]), snapshot(1, []),
                                           snapshot(2, [region(4096, 8192, 5, 2)])]),
            record(0xFFFF_9B7E_0000_2000, [snapshot(0, [region(0, 4096, 0, 0)]), snapshot(1, [])])]
    ours = assert_read_as_damo_reads(damo_wrote(tmp_path, recs), [0xFFFF_9B7E_0000_1000, 0xFFFF_9B7E_0000_2000])
    assert len(ours[0].snapshots[1].start) == 0


def test_damo_adjust_aggregated_snapshots(tmp_path):
    """`damo adjust --aggregate_interval` joins snapshots whose layouts differ (its regions cut at each
    other's edges, with the largest count of the parts)."""
    recs = [record(0, [])]
    for i, snap in enumerate(synthetic_snapshots(3, nr=12)):
        recs[0].snapshots.append(snapshot(i, [region(int(a), int(b), int(n), int(g)) for a, b, n, g in
                                              zip(snap.start, snap.end, snap.nr_accesses, snap.age)]))
    src = damo_wrote(tmp_path, recs, "src.data")
    dst = tmp_path / "adjusted.data"
    subprocess.run([DAMO, "adjust", "-i", str(src), "-o", str(dst), "--aggregate_interval", "300000", "--skip",
                    "0"], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    ours = assert_read_as_damo_reads(dst, [0])
    assert ours[0].aggr_us == 300_000 and len(ours[0].snapshots) == 4


@pytest.mark.parametrize("verb", ["access", "wss", "heatmap"])
def test_an_empty_damo_record_is_one_line(tmp_path, verb):
    """What `damo record` writes when its tracer caught no event ("[]"; damo says "No record")."""
    path = tmp_path / "empty.data"
    assert _damo_records.write_damon_records([], str(path), "json_compressed") is None
    out = subprocess.run([DAMON_BPF, "report", verb, "-i", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.strip().splitlines() == ["damon-bpf: error: the record file holds no target"]



def test_snapshot_records_as_perf_script(tmp_path):
    """`damo record PID --snapshot DELAY COUNT --output_type perf_script`, as it wrote in the 6.12 guest (damo
    3.4.3; its JSON formats crash there): records of one snapshot each, `target_id=None` on every line, each
    closed by damo's placeholder, snapshots seconds apart (wall-clock times) and a .kdamonds beside. damo's own
    reader refuses it (int('None')); ours reads one target (pid from .kdamonds), each snapshot one aggregation
    long, ending where damo says."""
    wall = 1_796_053_966_863_162_000
    ends = [wall, wall + 5_399_463_000, wall + 15_726_685_000]
    recs = [record(None, [_damo_records.DamonSnapshot(end - 100_000_000, end, regions, None)], scheme_idx=0)
            for end, regions in zip(ends, [[region(4096, 8192, 0, 40), region(8192, 16384, 1, 0)],
                                            [region(4096, 12288, 0, 41)],
                                            [region(4096, 6144, 0, 3), region(6144, 16384, 0, 7)]])]
    path = tmp_path / "damon.data"
    assert _damo_records.write_damon_records(recs, str(path), "perf_script") is None
    assert path.read_text().count("target_id=None") == 2 + 1 + 2 + 3   # regions, placeholders
    kdamonds = [{"contexts": [{"ops": "vaddr", "targets": [{"pid": 201}],
                               "intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s"}}]}]
    (tmp_path / "damon.data.kdamonds").write_text(json.dumps(kdamonds))

    (ours,) = read_record(str(path))
    assert (ours.target_id, ours.pid, ours.sample_us, ours.aggr_us) == (0, 201, 5000, 100_000)
    assert [(s.start_ns, s.end_ns) for s in ours.snapshots] == [(e - 100_000_000, e) for e in ends]
    for want, got in zip(recs, ours.snapshots):
        assert [(r.start, r.end, r.nr_accesses.samples, r.age.aggr_intervals) for r in want.snapshots[0].regions] \
            == list(zip(got.start.tolist(), got.end.tolist(), got.nr_accesses.tolist(), got.age.tolist()))
    assert ours.meta["view"] == "kernel-damon"
    (last,) = read_record(str(path), snapshot=-1)
    assert (last.snapshots[0].start_ns, last.snapshots[0].end_ns) == (ends[-1] - 100_000_000, ends[-1])
    out = subprocess.run([DAMON_BPF, "report", "wss", "-i", str(path), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
