"""The bulk reader (orjson runs + arrays per batch, recordfile/bulk.py) against the reference one (json and
arrays snapshot by snapshot, DAMON_BPF_READER=reference): same records, same errors, on generated files."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile import TargetRecord, read_record, reader, write_record
from damon_bpf.recordfile.bulk import EXTRAS
from damon_bpf.recordfile.snapshots import SOURCES, Columns, join, outline

BASE = 0x7F00_0000_0000
FIELDS = ("start", "end", "nr_accesses", "age", "nr_reports", "writes", "reads")


@st.composite
def snapshots(draw, t0: int) -> Snapshot:
    n = draw(st.integers(0, 6))
    sizes = np.array(draw(st.lists(st.integers(1, 64), min_size=n, max_size=n)), dtype=np.uint64) * 4096
    gaps = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.uint64) * 4096
    start = np.uint64(BASE) + np.cumsum(gaps + sizes, dtype=np.uint64) - sizes
    reports = np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), dtype=np.int64)
    ids = st.dictionaries(st.integers(0, 2**20 - 1), st.just(1), max_size=3)
    cpus, tids = draw(ids), draw(ids)
    snap = Snapshot(t0, t0 + 100_000_000, start, start + sizes, np.minimum(reports, 20),
                    np.array(draw(st.lists(st.integers(0, 999), min_size=n, max_size=n)), dtype=np.int64),
                    reports, reports // 2, reports // 3,
                    {c: reports // (i + 2) for i, c in enumerate(sorted(cpus))},
                    {t: reports // (i + 3) for i, t in enumerate(sorted(tids))})
    if n and draw(st.booleans()):
        snap.mappings = [[("libc.so.6", "file")] if i % 2 else [] for i in range(n)]
    if n and draw(st.booleans()):
        snap.functions = [{"main": int(reports[i]) // 2} if i % 2 == 0 else {} for i in range(n)]
    if draw(st.booleans()):
        snap.footprint = (draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40)))
    return snap


@st.composite
def record_files(draw) -> bytes:
    nr = draw(st.integers(0, 12))
    snaps = [draw(snapshots(5_000_000_000_000 + i * 100_000_000)) for i in range(nr)]
    doc = _doc([TargetRecord(draw(st.integers(0, 2**64 - 1)), 42, 5000, 100_000, 1_000_000, snaps, {"k": 1})])
    for snap in doc[0]["snapshots"]:
        for region in snap["regions"]:
            if draw(st.booleans()):   # numbers as damo 3.x's adjust / convert_record_format write them
                region["start"] = f"{region['start']:,}"
                region["age"]["usec"] = f"{region['age']['usec'] // 1000} ms"
                del region["age"]["aggr_intervals"]
            if draw(st.booleans()):
                region["nr_accesses"]["samples"] = str(region["nr_accesses"]["samples"])
    compact = draw(st.booleans())   # our writer's layout (read in orjson runs) or json.dumps's spaced one
    return json.dumps(doc, separators=(",", ":") if compact else None).encode()


def _doc(records: list[TargetRecord]) -> list:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        write_record(f"{tmp}/d", records)
        with open(f"{tmp}/d", "rb") as f:
            return json.loads(zlib.decompress(f.read()))


def _read(path: str, reference: bool, monkeypatch, extras=EXTRAS) -> object:
    with monkeypatch.context() as m:
        if reference:
            m.setenv("DAMON_BPF_READER", "reference")
        m.setattr(reader, "_BATCH", 4)   # batches end in the middle of the records
        try:
            return read_record(path, extras=extras)
        except RecordFileError as err:
            return str(err)


def assert_same(want: object, got: object) -> None:
    if isinstance(want, str) or isinstance(got, str):
        assert want == got
        return
    assert len(want) == len(got)
    for a, b in zip(want, got):
        assert (a.target_id, a.pid, a.aggr_us, a.meta, len(a.snapshots)) == \
               (b.target_id, b.pid, b.aggr_us, b.meta, len(b.snapshots))
        for sa, sb in zip(a.snapshots, b.snapshots):
            assert (type(sa.start_ns), sa.start_ns, sa.end_ns, sa.mappings, sa.functions, sa.footprint) == \
                   (type(sb.start_ns), sb.start_ns, sb.end_ns, sb.mappings, sb.functions, sb.footprint)
            for name in FIELDS:
                x, y = getattr(sa, name), getattr(sb, name)
                assert x.dtype == y.dtype and x.tolist() == y.tolist(), name
            for name in ("by_cpu", "by_tid"):
                x, y = getattr(sa, name), getattr(sb, name)
                assert list(x) == list(y), name
                assert all(x[k].dtype == y[k].dtype and x[k].tolist() == y[k].tolist() for k in x), name


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(record_files())
def test_bulk_and_reference_read_the_same(tmp_path_factory, monkeypatch, data):
    path = str(tmp_path_factory.mktemp("b") / "d")
    with open(path, "wb") as f:
        f.write(zlib.compress(data))
    want = _read(path, True, monkeypatch)
    assert not isinstance(want, str), want
    assert_same(want, _read(path, False, monkeypatch))


HOSTILE = st.sampled_from([-1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**30, 1.5, 3.0, True, None, "12",
                           "1,024", "x", [], {}, {"0": 1}, {"0": -1}, {"x": 1}, {"01": 1, "1": 2}])
KEYS = st.sampled_from(["start", "end", "samples", "aggr_intervals", "reports", "writes", "reads", "cpus",
                        "tids", "maps", "funcs", "start_time", "end_time", "damon_bpf", "rss"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(record_files(), st.data())
def test_bulk_and_reference_fail_alike(tmp_path_factory, monkeypatch, data, draw):
    """A hostile value anywhere: the same records, or the same one-line error, both ways."""
    doc = json.loads(data)
    snaps = doc[0]["snapshots"]
    if snaps and snaps[-1]["regions"]:
        snap = draw.draw(st.sampled_from(snaps))
        node = draw.draw(st.sampled_from([snap, *snap["regions"]] if snap["regions"] else [snap]))
        key, value = draw.draw(KEYS), draw.draw(HOSTILE)
        for inner in ("nr_accesses", "age", "damon_bpf"):
            if isinstance(node.get(inner), dict) and key in node[inner]:
                node = node[inner]
        node[key] = value
    path = str(tmp_path_factory.mktemp("h") / "d")
    with open(path, "wb") as f:
        f.write(zlib.compress(json.dumps(doc, separators=(",", ":")).encode()))
    assert_same(_read(path, True, monkeypatch), _read(path, False, monkeypatch))


@pytest.mark.parametrize("extras", [frozenset(), frozenset({"maps"})])
def test_extras_left_out_are_empty_and_the_rest_the_same(tmp_path, monkeypatch, extras):
    path = str(tmp_path / "d")
    snaps = [Snapshot(i, i + 1, np.array([BASE], np.uint64), np.array([BASE + 4096], np.uint64),
                      *(np.array([2], np.int64) for _ in range(3)), np.array([1], np.int64),
                      np.array([1], np.int64), {0: np.array([2])}, {7: np.array([2])},
                      [[("heap", "anon")]]) for i in range(10)]
    write_record(path, [TargetRecord(0, 1, 5000, 100_000, 1_000_000, snaps, {})])
    full, some = _read(path, False, monkeypatch), _read(path, False, monkeypatch, extras)
    for a, b in zip(full[0].snapshots, some[0].snapshots):
        assert (b.by_cpu, b.by_tid) == ({}, {})
        assert b.mappings == (a.mappings if "maps" in extras else None)
        assert all(getattr(a, f).tolist() == getattr(b, f).tolist() for f in FIELDS)


def test_twenty_digit_addresses_read_alike(tmp_path, monkeypatch):
    """Numbers of 19+ digits (orjson would make the largest floats) leave a run to json: same result."""
    kernel = 0xFFFF_8000_0000_0000
    region = {"nr_accesses": {"samples": 1}, "age": {"usec": 100, "aggr_intervals": 1},
              "damon_bpf": {"reports": 2, "writes": 1, "reads": 1, "cpus": {"0": 2}, "tids": {"5": 2}}}
    snaps = [{"start_time": i * 100, "end_time": i * 100 + 100,
              "regions": [dict(region, start=kernel + r * 8192, end=kernel + r * 8192 + 4096) for r in range(3)]}
             for i in range(20)]
    doc = [{"target_id": 0, "intervals": {"sample_us": 5000, "aggr_us": 100_000}, "snapshots": snaps}]
    path = tmp_path / "d"
    path.write_bytes(zlib.compress(json.dumps(doc, separators=(",", ":")).encode()))
    want = _read(str(path), True, monkeypatch)
    assert not isinstance(want, str) and int(want[0].snapshots[-1].start[0]) == kernel
    assert_same(want, _read(str(path), False, monkeypatch))


def assert_same_columns(got: Columns, want: Columns) -> None:
    for name in ("bounds", "start_ns", "end_ns", "start", "end", "nr_accesses", "nr_reports", "writes", "reads"):
        x, y = getattr(got, name), getattr(want, name)
        assert x.dtype == y.dtype and x.tolist() == y.tolist(), name
    assert (got.footprints, got.functions, got.mappings) == (want.footprints, want.functions, want.mappings)
    for name in SOURCES:
        x, y = getattr(got, name), getattr(want, name)
        assert list(x) == list(y) and all(x[k].tolist() == y[k].tolist() for k in x), name


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(record_files(), st.data())
def test_what_is_read_is_a_sequence_of_its_snapshots(tmp_path_factory, monkeypatch, data, draw):
    """read_record's Snapshots index, slice and iterate like the list of its snapshots; its columns, outline,
    ids and per-snapshot extras are those of the snapshots joined, for any selection of them."""
    path = str(tmp_path_factory.mktemp("s") / "d")
    with open(path, "wb") as f:
        f.write(zlib.compress(data))
    for reference in (False, True):
        snaps = _read(path, reference, monkeypatch)[0].snapshots
        every = list(snaps)
        assert len(snaps) == len(every) and [s.start_ns for s in reversed(snaps)] == [s.start_ns for s in every[::-1]]
        if every:
            i = draw.draw(st.integers(-len(every), len(every) - 1))
            assert_same([TargetRecord(0, 0, 1, 1, 1, [snaps[i]])], [TargetRecord(0, 0, 1, 1, 1, [every[i]])])
        with pytest.raises(IndexError):
            snaps[len(every)]
        mask = np.array(draw.draw(st.lists(st.booleans(), min_size=len(every), max_size=len(every))), dtype=bool)
        a, b = draw.draw(st.integers(-3, 14)), draw.draw(st.integers(-3, 14))
        for got, want in ((snaps.select(mask), [s for s, m in zip(every, mask) if m]), (snaps[a:b], every[a:b]),
                          (snaps.select(mask)[1:], [s for s, m in zip(every, mask) if m][1:])):
            assert_same([TargetRecord(0, 0, 1, 1, 1, got)], [TargetRecord(0, 0, 1, 1, 1, want)])
            assert_same_columns(got.columns(SOURCES), join(want, SOURCES))
            assert all(x.tolist() == y.tolist() for x, y in zip(got.outline(), outline(want)))
            for name in SOURCES:
                assert got.source_ids(name) == list(dict.fromkeys(i for s in want for i in getattr(s, name)))
            for name in ("functions", "mappings", "footprint"):
                assert got.each(name) == [getattr(s, name) for s in want]
