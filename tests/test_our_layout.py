"""The reader of our writer's own layout (recordfile/ourlayout.py) against the general path (orjson and
bulk.Batch, DAMON_BPF_READER=general): same records, same reports, same one-line errors for damaged files."""

from __future__ import annotations

import zlib

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile import TargetRecord, read_record, reader, write_record
from damon_bpf.recordfile.bulk import EXTRAS, Batch
from damon_bpf.recordfile.ourlayout import read_run
from test_bulk_reader import assert_same, snapshots

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def records(draw) -> list[TargetRecord]:
    snaps = [draw(snapshots(5_000_000_000_000 + i * 100_000_000)) for i in range(draw(st.integers(0, 14)))]
    if draw(st.booleans()):   # mostly without maps and funcs, which our layout's reader leaves to the general one
        for snap in snaps:
            snap.mappings = snap.functions = None
    return [TargetRecord(draw(st.integers(0, 2**64 - 1)), 42, 5000, 100_000, 1_000_000, snaps, {"k": 1})]


def _text(tmp_path_factory, recs: list[TargetRecord]) -> bytes:
    path = tmp_path_factory.mktemp("w") / "d"
    write_record(str(path), recs)
    return zlib.decompress(path.read_bytes())


def _read(path: str, general: bool, monkeypatch, ahead: int, extras=EXTRAS) -> tuple[object, int]:
    """What read_record gives (or its error) and how many runs our layout's reader took."""
    taken = []

    def counted(text: bytes, extras: frozenset[str]) -> Batch | None:
        part = read_run(text, extras)
        taken.append(part is not None)
        return part

    with monkeypatch.context() as m:
        if general:
            m.setenv("DAMON_BPF_READER", "general")
        m.setattr(reader, "_WANT_AHEAD", ahead)   # small: a record is many runs
        m.setattr(reader, "_BATCH", 4)
        m.setattr(reader, "read_run", counted)
        try:
            return read_record(path, extras=extras), sum(taken)
        except RecordFileError as err:
            return str(err), sum(taken)


def _same_both_ways(path: str, monkeypatch, ahead: int, extras=EXTRAS) -> int:
    want, none_taken = _read(path, True, monkeypatch, ahead, extras)
    got, taken = _read(path, False, monkeypatch, ahead, extras)
    assert none_taken == 0
    assert_same(want, got)
    return taken


@SETTINGS
@given(records(), st.sampled_from([200, 3000, 1 << 20]), st.sampled_from([EXTRAS, frozenset(), frozenset({"tids"})]))
def test_our_layout_reads_what_the_general_path_reads(tmp_path_factory, monkeypatch, recs, ahead, extras):
    path = tmp_path_factory.mktemp("r") / "d"
    write_record(str(path), recs)
    taken = _same_both_ways(str(path), monkeypatch, ahead, extras)
    snaps = recs[0].snapshots
    if len(snaps) >= 2 and all(s.mappings is None and s.functions is None for s in snaps):
        assert taken >= 1   # the test reads through our layout's reader, not only the general one


CHARS = st.sampled_from(list(b'0129-+ ."\',:{}[]eEa\\') + [0x7F, 0xC3])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.data())
def test_damaged_text_reads_or_fails_alike(tmp_path_factory, monkeypatch, recs, data):
    """A byte changed, inserted or removed anywhere, or a piece repeated: the same records or the same
    one-line error both ways (as text: a change in the compressed bytes is caught by zlib first)."""
    text = bytearray(_text(tmp_path_factory, recs))
    at = data.draw(st.integers(0, len(text) - 1))
    how = data.draw(st.sampled_from(["set", "insert", "remove", "repeat"]))
    if how == "set":
        text[at] = data.draw(CHARS)
    elif how == "insert":
        text[at:at] = bytes([data.draw(CHARS)])
    elif how == "remove":
        del text[at]
    else:
        text[at:at] = text[at:at + data.draw(st.integers(1, 40))]
    path = tmp_path_factory.mktemp("d") / "d"
    path.write_bytes(zlib.compress(bytes(text)) if data.draw(st.booleans()) else bytes(text))
    _same_both_ways(str(path), monkeypatch, data.draw(st.sampled_from([200, 1 << 20])))


@SETTINGS
@given(records(), st.data())
def test_truncated_files_fail_alike(tmp_path_factory, monkeypatch, recs, data):
    path = tmp_path_factory.mktemp("t") / "d"
    write_record(str(path), recs)
    whole = path.read_bytes()
    if data.draw(st.booleans()):
        whole = zlib.decompress(whole)
    path.write_bytes(whole[:data.draw(st.integers(1, len(whole)))])
    _same_both_ways(str(path), monkeypatch, 200)


def _run(text: str) -> Batch | None:
    return read_run(text.encode(), EXTRAS)


GOOD = ('{"start_time":10,"end_time":20,"regions":[{"start":4096,"end":8192,"nr_accesses":{"samples":3},'
        '"age":{"usec":200000,"aggr_intervals":2},"damon_bpf":{"reports":5,"writes":2,"reads":3,'
        '"cpus":{"1":5},"tids":{"77":4,"78":1}}}],"damon_bpf":{"rss":4096,"pss":2048}}')


def test_a_snapshot_in_our_layout_is_read_as_the_general_path_reads_it():
    later = GOOD.replace('"start_time":10', '"start_time":20').replace('"end_time":20', '"end_time":30')
    ours, general = _run(GOOD + "," + later), Batch(orjson.loads("[" + GOOD + "," + later + "]"))
    assert ours is not None and len(ours) == 2
    for j in range(2):
        a, b = ours.snapshot(j), general.snapshot(j)
        assert (a.start_ns, a.end_ns, a.footprint, a.mappings, a.functions) == \
            (b.start_ns, b.end_ns, b.footprint, b.mappings, b.functions)
        for name in ("start", "end", "nr_accesses", "age", "nr_reports", "writes", "reads"):
            assert getattr(a, name).dtype == getattr(b, name).dtype
            assert getattr(a, name).tolist() == getattr(b, name).tolist()
        assert {k: v.tolist() for k, v in a.by_tid.items()} == {77: [4], 78: [1]} == \
            {k: v.tolist() for k, v in b.by_tid.items()}


@pytest.mark.parametrize("change", [
    ('"start":4096', '"start":04096'),                  # a leading zero (not JSON)
    ('"start":4096', '"start":-4096'),
    ('"start":4096', '"start":4096.0'),
    ('"start":4096', '"start": 4096'),
    ('"start":4096', '"start":1234567890123456789'),   # 19 digits: the general path decides
    ('"start":4096', '"start1":4096'),                 # a digit in a key
    ('"start":4096', '"start":"4096"'),
    ('"start":4096,', ''),                             # a key missing
    ('"samples":3', '"samples":3,"x":1'),              # a key more
    ('"tids":{"77":4', '"tids":{"77":4,"77":9'),       # one id twice (JSON keeps the last)
    ('"tids":{"77":4', '"tids":{"077":4'),
    ('"cpus":{"1":5}', '"cpus":{"1048576":5}'),        # a cpu id out of range
    ('"reads":3', '"reads":4'),                        # writes + reads > reports
    ('"cpus":{"1":5}', '"cpus":{"1":5},"maps":[["a","file"]]'),
    ('"end_time":20', '"end_time":5'),
    ('"rss":4096', '"rss":4096,"x":1'),
    ('"regions":[', '"regions":[],"r":['),
])
def test_anything_else_is_left_to_the_general_path(change):
    assert _run(GOOD) is not None
    assert GOOD.count(change[0]) == 1
    assert _run(GOOD.replace(*change)) is None


def test_a_snapshot_without_regions_and_many_ids():
    empty = '{"start_time":10,"end_time":20,"regions":[]}'
    many = GOOD.replace('"tids":{"77":4,"78":1}', '"tids":{' + ",".join(f'"{t}":0' for t in range(300)) + "}")
    ours = _run(empty + "," + many.replace("10", "20", 1).replace('"end_time":20', '"end_time":30'))
    assert ours is not None and len(ours) == 2 and len(ours.snapshot(0).start) == 0
    assert sorted(ours.snapshot(1).by_tid) == list(range(300))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.sampled_from([["access"], ["access", "--snapshot", "last"], ["wss"], ["wss", "--json"],
                                   ["breakdown"], ["breakdown", "--json"], ["heatmap", "--output", "raw"],
                                   ["heatmap", "--json", "--by", "cpu"]]))
def test_reports_over_our_layout_equal_the_general_path(tmp_path_factory, recs, args):
    path = tmp_path_factory.mktemp("rep") / "d"
    write_record(str(path), recs)
    got, want = (CliRunner().invoke(cli, ["report", args[0], "-i", str(path), *args[1:]], env=env)
                 for env in ({"DAMON_BPF_READER": None}, {"DAMON_BPF_READER": "general"}))
    assert (got.exit_code, got.output) == (want.exit_code, want.output)
