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


# names as `record` writes them (a path, [heap], a function, a library and offset), and names that look like
# our keys, numbers or structure, or need escapes (which our layout's reader leaves to the general path)
NAMES = st.one_of(st.sampled_from(["[heap]", "", "/usr/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6+0x9a2b1", "main",
                                   "maps", "funcs", "start", "start_time", "damon_bpf", "0", "12", '"', "\\",
                                   ']}},{"start":', '"],["', "é", "\x7f", "std::vector<int> >"]),
                  st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12), st.text(max_size=4))
KINDS = st.one_of(st.sampled_from(["file", "heap", "anon", "stack", "shm", "special"]), NAMES)


@st.composite
def named(draw, snap) -> None:
    """Each region's mappings and top functions, as `record` gives them (regions may share one list)."""
    n = len(snap.start)
    if n and draw(st.booleans()):
        lists = draw(st.lists(st.lists(st.tuples(NAMES, KINDS), max_size=3), min_size=1, max_size=3))
        snap.mappings = [lists[draw(st.integers(0, len(lists) - 1))] for _ in range(n)]
    if n and draw(st.booleans()):
        counts = st.one_of(st.integers(0, 2**40), st.integers(0, 2**62))   # above 2**53: refused both ways
        snap.functions = [draw(st.dictionaries(NAMES, counts, max_size=5)) for _ in range(n)]


@st.composite
def records(draw) -> list[TargetRecord]:
    snaps = [draw(snapshots(5_000_000_000_000 + i * 100_000_000)) for i in range(draw(st.integers(0, 14)))]
    how = draw(st.sampled_from(["none", "as drawn", "named"]))
    for snap in snaps:
        if how == "none":
            snap.mappings = snap.functions = None
        elif how == "named":
            draw(named(snap))
    return [TargetRecord(draw(st.integers(0, 2**64 - 1)), 42, 5000, 100_000, 1_000_000, snaps, {"k": 1})]


def _plain(snaps) -> bool:
    """Whether every name the snapshots hold is one our writer leaves as it is (printable ASCII, no quote
    or backslash) and every function's count one a record may hold: our layout's reader takes them."""
    names = [x for s in snaps for m in s.mappings or () for pair in m for x in pair] + \
        [x for s in snaps for f in s.functions or () for x in f]
    counts = [c for s in snaps for f in s.functions or () for c in f.values()]
    return all(x.isascii() and x.isprintable() and '"' not in x and "\\" not in x for x in names) and \
        all(c <= 2**53 for c in counts)


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
    if len(snaps) >= 2 and _plain(snaps):
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


NAMED = GOOD.replace('"tids":{"77":4,"78":1}}', '"tids":{"77":4,"78":1},"maps":[["/usr/lib/libc.so.6","file"],'
                     '["[heap]","heap"]],"funcs":{"main":3,"memcpy_2":2}}')


def _same_as_general(text: str, extras=EXTRAS) -> None:
    ours, general = read_run(text.encode(), extras), Batch(orjson.loads("[" + text + "]"), extras)
    assert ours is not None
    assert_same([TargetRecord(0, 0, 1, 1, 1, [ours.snapshot(j) for j in range(len(ours))])],
                [TargetRecord(0, 0, 1, 1, 1, [general.snapshot(j) for j in range(len(general))])])
    for name in ("mappings", "functions", "footprint"):
        assert ours.each(0, len(ours), name) == general.each(0, len(general), name)


@pytest.mark.parametrize("extras", [EXTRAS, frozenset(), frozenset({"maps"}), frozenset({"funcs"})])
def test_regions_with_mappings_and_functions_are_read_as_the_general_path_reads_them(extras):
    plain = GOOD.replace('"start_time":10', '"start_time":20').replace('"end_time":20', '"end_time":30')
    only_maps = NAMED.replace(',"funcs":{"main":3,"memcpy_2":2}', "").replace("10", "30", 1) \
        .replace('"end_time":20', '"end_time":40')
    region = NAMED[NAMED.index('{"start":4096'):NAMED.index("}],") + 1]
    two = NAMED.replace(region, region + "," + region.replace('"start":4096,"end":8192', '"start":8192,"end":9000'))
    text = ",".join([NAMED, plain, only_maps]) + "," + two.replace("10", "40", 1).replace('"end_time":20',
                                                                                            '"end_time":50')
    _same_as_general(text, extras)
    ours = read_run(text.encode(), extras)
    if "funcs" in extras:
        assert ours.snapshot(0).functions == [{"main": 3, "memcpy_2": 2}] and ours.snapshot(1).functions is None
    if "maps" in extras:
        assert ours.snapshot(0).mappings == [[("/usr/lib/libc.so.6", "file"), ("[heap]", "heap")]]
        assert ours.snapshot(3).mappings[0] == ours.snapshot(3).mappings[1]
    else:
        assert ours.snapshot(0).mappings is None


@pytest.mark.parametrize("change", [
    ('"main":3', '"main":3,"main":5'),          # a name twice: JSON keeps the last
    ('"main"', '"maps"'), ('"main"', '"start"'), ('"main"', '"0"'), ('"main"', '""'),
    ('"[heap]","heap"', '"]}}","start"'),
])
def test_names_like_keys_or_structure_are_names(change):
    _same_as_general(NAMED.replace(*change))


@pytest.mark.parametrize("change", [
    ('"main"', '"ma\\u00efn"'), ('"main"', '"ma\\\\in"'), ('"main"', '"m\\"ain"'),   # escapes
    ('"main"', '"ma\u00efn"'), ('"main"', '"ma\x7fin"'),       # what json.dumps escapes
    ('"main":3', '"main":03'), ('"main":3', '"main":3.0'), ('"main":3', '"main":-3'),
    ('"main":3', '"main":9007199254740993'),                  # above 2**53
    (',"funcs":{"main":3,"memcpy_2":2}', ',"funcs":{}'),      # our writer leaves an empty one out
    ('["[heap]","heap"]', '["[heap]","heap","x"]'), ('["[heap]","heap"]', '["[heap]"]'),
    ('["[heap]","heap"]', '["[heap]",1]'), ('"maps":[', '"maps":[[],'),
    (',"maps":[["/usr/lib/libc.so.6","file"],["[heap]","heap"]],"funcs":{"main":3,"memcpy_2":2}',
     ',"funcs":{"main":3,"memcpy_2":2},"maps":[["/usr/lib/libc.so.6","file"],["[heap]","heap"]]'),
    ('"funcs":{', '"funcs":{"a":{},'), ('"maps":', '"mapz":'), ('"funcs":', '"fun":'),
    ('"heap"]]', '"heap"]],"x":1'),
])
def test_other_names_and_their_neighbours_are_left_to_the_general_path(change):
    assert _run(NAMED) is not None
    assert NAMED.count(change[0]) == 1
    assert _run(NAMED.replace(*change)) is None
