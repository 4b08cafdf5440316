"""The columnar side file (recordfile/columnfile.py): written beside a record by RecordWriter(columns=True),
read_record takes it only while it matches the record, and every report prints the same with it as from the
record's JSON (DAMON_BPF_READER=json); a stale, damaged or planted side file is ignored."""

from __future__ import annotations

import os
import stat
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile import RecordWriter, TargetRecord, read_record
from damon_bpf.recordfile import columnfile
from damon_bpf.recordfile.bulk import EXTRAS
from test_bulk_reader import assert_same
from test_our_layout import records

REPORTS = [["access"], ["access", "--snapshot", "last"], ["access", "--snapshot", "0"], ["wss"], ["wss", "--json"],
           ["breakdown"], ["breakdown", "--json"], ["heatmap", "--output", "raw"], ["heatmap", "--json"],
           ["heatmap", "--json", "--by", "cpu"], ["access", "--group", "mapping"]]


def _snapshot(i: int, rng: np.random.Generator) -> Snapshot:
    n = 6
    sizes = rng.integers(1, 16, n).astype(np.uint64) * 4096
    start = np.uint64(0x7F00_0000_0000) + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    reports = rng.integers(0, 50, n)
    writes = reports // 3
    snap = Snapshot(10**12 + i * 10**8, 10**12 + (i + 1) * 10**8, start, start + sizes, np.minimum(reports, 20),
                    rng.integers(0, 9, n), reports, writes, reports - writes,
                    {0: reports // 2, 1: reports - reports // 2}, {7: reports - reports // 4, 8: reports // 4})
    snap.mappings = [[("[heap]", "heap")] if k % 2 else [("/usr/lib/libc.so.6", "file"), ("[anon]", "anon")]
                     for k in range(n)]
    snap.functions = [{"main": int(r), f"f{k % 3}": int(r // 2)} if r else {} for k, r in enumerate(reports)]
    snap.footprint = (4096 * (i + 1), 2048 * (i + 1)) if i % 3 == 0 else None
    return snap


def _write(path: str, nr: int = 40, columns: bool = True) -> None:
    rng = np.random.default_rng(3)
    with RecordWriter(path, columns=columns) as writer:
        writer.add_target(TargetRecord(0, 1234, 5000, 100_000, 1_000_000, [], {"source": "test"}))
        for first in range(0, nr, 10):   # several flushes: several parts before the compact rewrite
            writer.add_snapshots(0, [_snapshot(first + i, rng) for i in range(10)])
            writer.flush()


@pytest.fixture
def recorded(tmp_path) -> str:
    path = str(tmp_path / "rec.data")
    _write(path)
    return path


def _invoke(args: list[str], path: str, reader: str | None) -> tuple[int, str]:
    got = CliRunner().invoke(cli, ["report", args[0], "-i", path, *args[1:]], env={"DAMON_BPF_READER": reader})
    return got.exit_code, got.output


def _read(path: str, use_columns: bool) -> object:
    try:
        return read_record(path, use_columns=use_columns)
    except RecordFileError as err:   # a count no record may hold: no side file, the same error
        return str(err)


def _used(path: str) -> bool:
    return columnfile.load(path, None, EXTRAS) is not None


def test_the_side_file_is_written_private_and_used(recorded):
    side = columnfile.side_path(recorded)
    assert stat.S_IMODE(os.stat(side).st_mode) == 0o600
    assert _used(recorded)
    for extras in (EXTRAS, frozenset(), frozenset({"maps"}), frozenset({"tids", "funcs"})):
        assert_same(read_record(recorded, extras=extras, use_columns=False), read_record(recorded, extras=extras))
    for index in (0, -1, 39, 40, -41):
        want, got = read_record(recorded, snapshot=index, use_columns=False), read_record(recorded, snapshot=index)
        assert_same(want, got)
        assert [(r.nr_in_file, r.origin_ns) for r in want] == [(r.nr_in_file, r.origin_ns) for r in got]


def test_without_the_option_no_side_file(tmp_path):
    path = str(tmp_path / "plain.data")
    _write(path, columns=False)
    assert not os.path.exists(columnfile.side_path(path))


@pytest.mark.parametrize("args", REPORTS)
def test_every_report_prints_the_same_from_the_side_file(recorded, args):
    assert _used(recorded)
    got, want = _invoke(args, recorded, None), _invoke(args, recorded, "json")
    assert got[0] == 0 and got == want


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.sampled_from(REPORTS))
def test_reports_from_any_record_are_the_same_from_its_side_file(tmp_path_factory, recs, args):
    """Generated records (names, ids, footprints, empty snapshots): the same records and the same reports."""
    path = str(tmp_path_factory.mktemp("c") / "d")
    with RecordWriter(path, columns=True) as writer:
        for rec in recs:
            writer.add_target(TargetRecord(rec.target_id, rec.pid, rec.sample_us, rec.aggr_us, rec.update_us, [],
                                           rec.meta))
            writer.add_snapshots(rec.target_id, rec.snapshots)
    assert_same(_read(path, False), _read(path, True))
    assert _invoke(args, path, None) == _invoke(args, path, "json")


def test_a_changed_record_leaves_its_side_file(recorded):
    """Rewritten (by damo, by hand, by another run) with the same size: the hash no longer matches."""
    data = bytearray(open(recorded, "rb").read())
    side = open(columnfile.side_path(recorded), "rb").read()
    _write(recorded, nr=30)   # another recording, no side file left from this one
    with open(columnfile.side_path(recorded), "wb") as f:
        f.write(side)
    assert not _used(recorded)
    data[len(data) // 2] ^= 1   # the first record, one bit changed: same size, same side file
    os.unlink(recorded)
    with open(recorded, "wb") as f:
        f.write(data)
    assert not _used(recorded)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "member", "function", "pickle", "link", "shared"])
def test_a_damaged_or_planted_side_file_is_ignored(recorded, tmp_path, damage):
    side = columnfile.side_path(recorded)
    good = open(side, "rb").read()
    if damage == "link":
        os.unlink(side)
        os.symlink(str(tmp_path / "elsewhere"), side)
        with open(tmp_path / "elsewhere", "wb") as f:
            f.write(good)
    elif damage == "shared":
        os.chmod(side, 0o666)
    elif damage == "member":   # one array's shape changed, the binding intact
        arrays = dict(np.load(side))
        arrays["r0_bounds"] = arrays["r0_bounds"][:-1]
        np.savez(side, **arrays)
    elif damage == "function":   # a function's name index past the table, the binding intact
        arrays = dict(np.load(side))
        arrays["r0_func_ids"][-1] = 10**6
        np.savez(side, **arrays)
    elif damage == "pickle":   # an object array needs pickle: refused
        arrays = dict(np.load(side))
        arrays["r0_times"] = np.array([object()], dtype=object)
        with zipfile.ZipFile(side, "w") as z:
            for name, value in arrays.items():
                with z.open(name + ".npy", "w") as f:
                    np.lib.format.write_array(f, value, allow_pickle=True)
    else:
        with open(side, "wb") as f:
            f.write({"truncated": good[:len(good) // 2], "garbage": os.urandom(5000), "empty": b""}[damage])
    assert not _used(recorded)
    want = _invoke(["breakdown", "--json"], recorded, "json")
    assert want[0] == 0 and _invoke(["breakdown", "--json"], recorded, None) == want


def test_a_side_file_path_taken_by_something_else_is_a_warning(tmp_path):
    """A directory (or anything) at the side file's name: the record is written, one warning says why."""
    path = str(tmp_path / "rec.data")
    os.mkdir(columnfile.side_path(path))
    warned: list[str] = []
    with RecordWriter(path, columns=True, warn=warned.append) as writer:
        writer.add_target(TargetRecord(0, 1, 5000, 100_000, 1_000_000, [], {}))
        writer.add_snapshots(0, [_snapshot(0, np.random.default_rng(1))])
    assert len(read_record(path)[0].snapshots) == 1
    assert len(warned) == 1 and "columnar side file" in warned[0] and "\n" not in warned[0]
    assert os.path.isdir(columnfile.side_path(path))
