"""Record file: round trip, incremental flushes, crash and disk-full safety, hostile input."""

from __future__ import annotations

import copy
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile import RecordWriter, TargetRecord, read_record, write_record

BASE = 0x7F00_0000_0000
T0 = 5_000_000_000_000  # a realistic CLOCK_MONOTONIC start
TESTS = str(Path(__file__).resolve().parent)  # child processes import the helpers below


def make_snapshot(i: int, n: int = 6, seed: int = 0, aggr_ns: int = 100_000_000) -> Snapshot:
    rng = np.random.default_rng(seed * 1000 + i)
    sizes = rng.integers(1, 16, n) * 4096
    start = (BASE + np.concatenate([[0], np.cumsum(sizes)[:-1]])).astype(np.uint64)
    end = start + sizes.astype(np.uint64)
    reports = rng.integers(0, 50, n) * (rng.random(n) < 0.6)
    writes = reports // 3
    reads = reports - writes - (reports > 5)  # a few reports of unknown kind
    cpu1 = reports // 2
    tids = {4242: reports - reports // 4, 4243: reports // 4}
    return Snapshot(T0 + i * aggr_ns, T0 + (i + 1) * aggr_ns, start, end,
                    np.minimum(reports, 20), rng.integers(0, 30, n), reports, writes, reads,
                    {0: reports - cpu1, 1: cpu1}, {t: v for t, v in tids.items()})


def make_record(target_id: int = 0, nr: int = 5, n: int = 6, seed: int = 0) -> TargetRecord:
    return TargetRecord(target_id, 4242 + target_id, 5000, 100_000, 1_000_000,
                        [make_snapshot(i, n, seed) for i in range(nr)],
                        {"source": "tracepoint", "accounting": {"seen": 10, "lost": 0}})


def assert_same_snapshot(a: Snapshot, b: Snapshot) -> None:
    assert (a.start_ns, a.end_ns) == (b.start_ns, b.end_ns)
    for name in ("start", "end", "nr_accesses", "age", "nr_reports", "writes", "reads"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("by_cpu", "by_tid"):
        # zero-only sources are not stored (the file keeps non-zero counts only)
        want = {k: v for k, v in getattr(a, name).items() if np.any(v)}
        got = getattr(b, name)
        assert sorted(want) == sorted(got), name
        for k in want:
            np.testing.assert_array_equal(want[k], got[k], err_msg=f"{name}[{k}]")


def assert_same_records(want: list[TargetRecord], got: list[TargetRecord]) -> None:
    assert len(want) == len(got)
    for a, b in zip(want, got):
        assert (a.target_id, a.pid, a.sample_us, a.aggr_us, a.update_us, a.meta) == \
               (b.target_id, b.pid, b.sample_us, b.aggr_us, b.update_us, b.meta)
        assert len(a.snapshots) == len(b.snapshots)
        for sa, sb in zip(a.snapshots, b.snapshots):
            assert_same_snapshot(sa, sb)


# ------------------------------------------------------------------------------------ round trip

def test_round_trip_two_targets(tmp_path):
    path = tmp_path / "damon.data"
    records = [make_record(0, seed=1), make_record(7, nr=3, n=9, seed=2)]
    write_record(str(path), records)
    assert_same_records(records, read_record(str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["damon.data"]  # no temp file left behind


def test_file_is_damo_schema(tmp_path):
    path = tmp_path / "damon.data"
    write_record(str(path), [make_record()])
    raw = path.read_bytes()
    assert raw[:2] == b"\x78\x9c"  # what `file` calls "zlib compressed data"
    doc = json.loads(zlib.decompress(raw))
    rec = doc[0]
    assert rec["intervals"] == {"sample_us": 5000, "aggr_us": 100_000, "ops_update_us": 1_000_000}
    region = rec["snapshots"][0]["regions"][0]
    assert set(region["age"]) == {"usec", "aggr_intervals"}
    assert region["age"]["usec"] == region["age"]["aggr_intervals"] * 100_000
    assert set(region["damon_bpf"]) == {"reports", "writes", "reads", "cpus", "tids"}
    assert all(v > 0 for r in rec["snapshots"][0]["regions"] for v in r["damon_bpf"]["cpus"].values())
    assert rec["damon_bpf"]["pid"] == 4242


def test_empty_targets_and_records(tmp_path):
    path = str(tmp_path / "d")
    write_record(path, [])
    assert read_record(path) == []
    write_record(path, [TargetRecord(3, None, 5000, 100_000, 1_000_000, [], {})])
    [rec] = read_record(path)
    assert (rec.target_id, rec.pid, rec.snapshots, rec.meta) == (3, None, [], {})


def test_meta_is_always_strict_json(tmp_path):
    path = str(tmp_path / "d")
    meta = {"rate": float("nan"), "n": np.int64(7), "cpus": np.array([0, 3]), "host": Path("/x"),
            3: {"inf": float("inf")}, "ok": [1, "a", None, True]}
    write_record(path, [TargetRecord(np.int64(2), 5, 5000, 100_000, 1_000_000, [], meta)])
    [rec] = read_record(path)
    assert rec.meta == {"rate": None, "n": 7, "cpus": [0, 3], "host": "/x", "3": {"inf": None},
                        "ok": [1, "a", None, True]}
    assert rec.target_id == 2


def test_plain_json_is_accepted(tmp_path):
    packed, plain = tmp_path / "packed", tmp_path / "plain"
    records = [make_record()]
    write_record(str(packed), records)
    plain.write_bytes(zlib.decompress(packed.read_bytes()))
    assert_same_records(records, read_record(str(plain)))


def test_damo_style_fields_are_understood(tmp_path):
    """damo writes percent beside samples, may leave aggr_intervals null, and adds a fake
    [0, 0) snapshot to single-snapshot records."""
    path = tmp_path / "d"
    region = {"start": BASE, "end": BASE + 8192, "nr_accesses": {"samples": 4, "percent": 20},
              "age": {"usec": 300_000, "aggr_intervals": None}}
    fake = {"start": 0, "end": 0, "nr_accesses": {"samples": -1}, "age": {"usec": None,
                                                                          "aggr_intervals": -1}}
    doc = [{"kdamond_idx": 0, "target_id": 0, "data_source": "unknown",
            "intervals": {"sample_us": 5000, "aggr_us": 100_000, "ops_update_us": 1_000_000},
            "snapshots": [{"start_time": 0, "end_time": 100, "regions": [region]},
                          {"start_time": 100, "end_time": 200, "regions": [fake]}]}]
    path.write_text(json.dumps(doc))
    [rec] = read_record(str(path))
    assert len(rec.snapshots) == 1
    snap = rec.snapshots[0]
    assert snap.age.tolist() == [3] and snap.nr_accesses.tolist() == [4]
    assert snap.nr_reports.tolist() == [0] and snap.by_cpu == {}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 3), st.integers(0, 40),
                          st.integers(0, 2**20), st.integers(0, 2**32 - 1)),
                min_size=0, max_size=12),
       st.integers(0, 2**47))
def test_round_trip_property(tmp_path_factory, regions, base):
    n = len(regions)
    sizes = np.array([r[0] for r in regions], dtype=np.uint64) * np.uint64(4096)
    gaps = np.array([r[1] for r in regions], dtype=np.uint64) * np.uint64(4096)
    start = np.uint64(base) + np.cumsum(gaps + sizes, dtype=np.uint64) - sizes
    reports = np.array([r[2] for r in regions], dtype=np.int64)
    by_tid: dict[int, np.ndarray] = {}
    for i, r in enumerate(regions):  # each region touched by one thread, threads may repeat
        by_tid.setdefault(r[4], np.zeros(n, dtype=np.int64))[i] += reports[i]
    snap = Snapshot(0, 10**9, start, start + sizes, np.minimum(reports, 20),
                    np.array([r[3] for r in regions], dtype=np.int64), reports, reports // 2,
                    reports - reports // 2, {0: reports}, by_tid)
    path = str(tmp_path_factory.mktemp("rt") / "d")
    record = TargetRecord(1, None, 1000, 20_000, 1_000_000, [snap], {"k": [1, "x"]})
    write_record(path, [record])
    assert_same_records([record], read_record(path))


# ---------------------------------------------------------------------------------- the writer

def test_every_flush_leaves_a_complete_file(tmp_path):
    path = str(tmp_path / "damon.data")
    writer = RecordWriter(path, flush_interval_s=60)
    writer.add_target(make_record(0, nr=0))
    writer.add_target(make_record(1, nr=0))
    for k in range(1, 6):
        writer.add_snapshots(0, [make_snapshot(2 * k), make_snapshot(2 * k + 1)])
        writer.add_snapshots(1, [make_snapshot(k, seed=5)])
        writer.update_meta(1, {"accounting": {"seen": k}})
        writer.flush()
        recs = read_record(path)
        assert [len(r.snapshots) for r in recs] == [2 * k, k]
        assert recs[1].meta["accounting"] == {"seen": k}
        assert recs[0].meta["source"] == "tracepoint"  # update_meta merges, keeps other keys
    writer.close()
    writer.close()  # idempotent
    assert_same_snapshot(make_snapshot(11), read_record(path)[0].snapshots[-1])


def test_maybe_flush_follows_the_interval(tmp_path):
    path = tmp_path / "d"
    writer = RecordWriter(str(path), flush_interval_s=2.0)
    writer.add_target(make_record(nr=1))
    t = time.monotonic()
    # a valid empty record (locked against a second recorder) until the first flush
    assert not writer.maybe_flush(t + 1.0) and read_record(str(path)) == []
    assert writer.maybe_flush(t + 2.5) and len(read_record(str(path))[0].snapshots) == 1
    assert not writer.maybe_flush(t + 3.0)


def test_unwritable_output_is_a_one_line_error(tmp_path):
    for bad in (tmp_path / "no" / "such" / "dir" / "damon.data", tmp_path):
        with pytest.raises(RecordFileError) as err:
            RecordWriter(str(bad))
        assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_writer_refuses_inconsistent_snapshots(tmp_path):
    writer = RecordWriter(str(tmp_path / "d"))
    writer.add_target(make_record(nr=0))
    bad = make_snapshot(0)
    bad.end = bad.start  # empty regions: the reader would refuse the file
    with pytest.raises(ValueError):
        writer.add_snapshots(0, [make_snapshot(1), bad])
    short = make_snapshot(2)
    short.by_cpu[5] = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError):
        writer.add_snapshots(0, [short])
    writer.add_snapshots(0, [make_snapshot(3)])  # nothing of the refused batches was queued
    writer.close()
    assert [s.start_ns for s in read_record(writer.path)[0].snapshots] == [T0 + 3 * 100_000_000]


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_recordfile import make_record, make_snapshot
    from damon_bpf.recordfile import RecordWriter
    writer = RecordWriter(sys.argv[1], flush_interval_s=0.0)
    writer.add_target(make_record(0, nr=0, n=200))
    i = 0
    while True:
        writer.add_snapshots(0, [make_snapshot(i + k, n=200) for k in range(20)])
        i += 20
        writer.flush()
        print(i, flush=True)
""")


@pytest.mark.parametrize("delay_ms", [0, 3, 7, 13, 29, 61])
def test_sigkill_mid_run_leaves_a_readable_file(tmp_path, delay_ms):
    path = tmp_path / "damon.data"
    script = WRITER_SCRIPT.format(tests=TESTS)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        flushed = [int(proc.stdout.readline()) for _ in range(3)]  # file exists, grows
        time.sleep(delay_ms / 1000)   # anywhere in the encode / append / sync / switch cycle
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [rec] = read_record(str(path))
    assert len(rec.snapshots) >= flushed[-1] and len(rec.snapshots) % 20 == 0
    assert_damo_reads(path, len(rec.snapshots))
    RecordWriter(str(path))  # the next recording starts over on the name
    assert os.listdir(tmp_path) == ["damon.data"]


def assert_damo_reads(path, nr_snapshots: int) -> None:
    """damo's reader: zlib.decompress of the whole file (bytes after the stream ignored), then json.loads."""
    records = json.loads(zlib.decompress(Path(path).read_bytes()))
    assert sum(len(r["snapshots"]) for r in records) == nr_snapshots


KILL_INSIDE_FLUSH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_recordfile import make_record, make_snapshot
    from damon_bpf.recordfile import RecordWriter, append
    where, armed, syncs = sys.argv[2], [False], [0]
    real_write, real_sync = append._pwrite_all, os.fdatasync

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def write(fd, data, offset):   # the new data, after the stream's end
        if armed[0] and where == "half-written":
            real_write(fd, data[:len(data) // 2], offset)
            die()
        real_write(fd, data, offset)

    def sync(fd):   # once after the data, once after the switch
        real_sync(fd)
        syncs[0] += armed[0]
        if (where, syncs[0]) in (("before-switch", 1), ("after-switch", 2)):
            die()

    append._pwrite_all, os.fdatasync = write, sync
    writer = RecordWriter(sys.argv[1])
    writer.add_target(make_record(0, nr=0, n=200))
    writer.add_target(make_record(1, nr=0, n=50))
    for i in range(0, 80, 20):
        armed[0] = i == 60
        writer.add_snapshots(0, [make_snapshot(i + k, n=200) for k in range(20)])
        writer.add_snapshots(1, [make_snapshot(i + k, n=50) for k in range(20)])
        writer.flush()
""")


@pytest.mark.parametrize("where,kept", [("half-written", 60), ("before-switch", 60), ("after-switch", 80)])
def test_sigkill_inside_a_flush_keeps_every_completed_flush(tmp_path, where, kept):
    """SIGKILL at each step of an appending flush, with two targets (so the file holds parts of each)."""
    path = tmp_path / "damon.data"
    proc = subprocess.run([sys.executable, "-c", KILL_INSIDE_FLUSH.format(tests=TESTS), str(path), where])
    assert proc.returncode == -signal.SIGKILL
    records = read_record(str(path))
    assert [r.target_id for r in records] == [0, 1]
    for rec, n in zip(records, (200, 50)):
        assert len(rec.snapshots) == kept
        for i, snap in enumerate(rec.snapshots):
            assert_same_snapshot(make_snapshot(i, n=n), snap)
    assert_damo_reads(path, 2 * kept)


def _fill(directory: Path) -> None:
    """Take the last free bytes of a small file system."""
    with open(directory / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def _disk_full_case(directory: Path) -> None:
    path = directory / "damon.data"
    writer = RecordWriter(str(path))
    writer.add_target(make_record(nr=2, n=50))
    writer.flush()
    before = path.read_bytes()
    _fill(directory)
    writer.add_snapshots(0, [make_snapshot(i, n=100, seed=i) for i in range(2, 30)])
    with pytest.raises(RecordFileError) as err:
        writer.flush()
    assert "previous flush" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before and len(read_record(str(path))[0].snapshots) == 2
    assert sorted(os.listdir(directory)) == ["ballast", "damon.data"]  # temp file removed
    (directory / "ballast").unlink()
    writer.close()  # space again: nothing was lost from memory
    assert len(read_record(str(path))[0].snapshots) == 30


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_keeps_previous_file_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        _disk_full_case(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_write_failure_keeps_previous_file_fsize_limit(tmp_path):
    """Same contract without root: a file-size limit makes the write fail (EFBIG) mid-file."""
    script = textwrap.dedent(f"""
        import os, resource, signal, sys
        sys.path.insert(0, {TESTS!r})
        from test_recordfile import make_record, make_snapshot
        from damon_bpf.errors import RecordFileError
        from damon_bpf.recordfile import RecordWriter, read_record
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = sys.argv[1]
        writer = RecordWriter(path)
        writer.add_target(make_record(nr=2, n=50))
        writer.flush()
        size = os.path.getsize(path)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
        writer.add_snapshots(0, [make_snapshot(i, n=400, seed=i) for i in range(2, 40)])
        try:
            writer.flush()
            sys.exit("flush beyond the size limit did not fail")
        except RecordFileError as err:
            print(err)
        assert os.path.getsize(path) == size and len(read_record(path)[0].snapshots) == 2
        assert len(os.listdir(os.path.dirname(path))) == 1
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "previous flush" in out.stdout


# ------------------------------------------------------------------------------ hostile input

def valid_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("v") / "d"
    write_record(str(path), [make_record(nr=3, n=4)])
    return path.read_bytes()


def read_bytes(tmp_path_factory, data: bytes) -> list[TargetRecord] | None:
    path = tmp_path_factory.mktemp("f") / "d"
    path.write_bytes(data)
    try:
        recs = read_record(str(path))
    except RecordFileError as err:
        msg = str(err)
        assert "\n" not in msg and str(path) in msg
        return None
    for rec in recs:  # whatever is accepted satisfies the Snapshot contract
        for s in rec.snapshots:
            assert s.start_ns <= s.end_ns
            assert np.all(s.start < s.end) and np.all(s.start[1:] >= s.end[:-1])
            assert np.all(s.writes + s.reads <= s.nr_reports)
            for a in (s.nr_accesses, s.age, s.nr_reports):
                assert a.dtype == np.int64 and np.all(a >= 0)
    return recs


@pytest.mark.parametrize("content, words", [
    (None, "no such file"), (b"", "empty"), (b"  \n", "empty"),
    (b"\x78\x9c\x01\x02garbage", "neither zlib"), (b"hello", "neither zlib"),
    (b'[{"target_id": 1', "not valid JSON"), (b"[1, 2", "must be a JSON object"), (b'{"a": 1}', "must be a JSON list"),
    (b'[{"target_id": 0}]', 'no "intervals"'), (b"[NaN]", "NaN"),
    (b"\xff\xfe", "neither zlib"), (zlib.compress(b"\xff\xfe"), "not UTF-8"),
    (b"[" * 200_000, "nested too deeply"),
])
def test_corrupt_files_raise_one_clear_line(tmp_path, content, words):
    path = tmp_path / "damon.data"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordFileError) as err:
        read_record(str(path))
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_careful_reader_agrees_with_the_fast_one(tmp_path_factory):
    """Integral floats (3.0) and null ages take the careful path; the result is the same."""
    raw = valid_bytes(tmp_path_factory)
    doc = json.loads(zlib.decompress(raw))
    for snap in doc[0]["snapshots"]:
        for r in snap["regions"]:
            r["start"] = float(r["start"])
            r["age"]["aggr_intervals"] = None  # derived from usec
    fast = read_bytes(tmp_path_factory, raw)
    careful = read_bytes(tmp_path_factory, json.dumps(doc).encode())
    assert_same_records(fast, careful)


def test_directory_is_not_a_record(tmp_path):
    with pytest.raises(RecordFileError, match="directory"):
        read_record(str(tmp_path))


def test_every_truncation_is_detected(tmp_path_factory):
    data = valid_bytes(tmp_path_factory)
    for cut in range(0, len(data) - 1, max(1, len(data) // 150)):
        assert read_bytes(tmp_path_factory, data[:cut]) is None, cut
    assert read_bytes(tmp_path_factory, data) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path_factory, data):
    read_bytes(tmp_path_factory, data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_flipped_compressed_bytes(tmp_path_factory, data):
    raw = bytearray(valid_bytes(tmp_path_factory))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    read_bytes(tmp_path_factory, bytes(raw))


HOSTILE = st.sampled_from([
    -1, -(2**63), 2**63, 2**64 - 1, 2**64, 2**64 + 1, 10**30, 1.5, 1e400, -0.0, True, False, None, "12", "",
    [], {}, [1, 2], {"samples": 1}, "NaN"])


def _paths(node, prefix=()):
    """Every path to a value in a JSON document."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_json(tmp_path_factory, data):
    doc = json.loads(zlib.decompress(valid_bytes(tmp_path_factory)))
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        if data.draw(st.booleans()) and path and isinstance(path[-1], str):
            parent = doc
            for p in path[:-1]:
                parent = parent[p]
            parent.pop(path[-1], None)  # a missing key
        else:
            try:
                # a copy: later mutations must not change the strategy's shared [] and {}
                doc = _set(doc, path, copy.deepcopy(data.draw(HOSTILE)))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier mutation removed the path
        paths = list(_paths(doc))
    text = json.dumps(doc).replace('"NaN"', "NaN")
    packed = data.draw(st.booleans())
    read_bytes(tmp_path_factory, zlib.compress(text.encode()) if packed else text.encode())


@pytest.mark.parametrize("mutate, words", [
    (lambda r: r["snapshots"][0]["regions"][0].update(start=-4096), "out of range"),
    (lambda r: r["snapshots"][0]["regions"][0].update(end=0), "ends before it starts"),
    (lambda r: r["snapshots"][0]["regions"][0].update(end=2**80), "out of range"),
    (lambda r: r["snapshots"][0]["regions"][-1].update(end=2**64), "out of range"),
    (lambda r: r["snapshots"][0]["regions"][0]["damon_bpf"].update(tids=[]), "must be a JSON object"),
    (lambda r: r["snapshots"][0]["regions"][0]["damon_bpf"]["cpus"].update({"0": 2**63}), "out of range"),
    (lambda r: r["snapshots"][0]["regions"][1].update(start=BASE), "overlaps"),
    # damo's text numbers ("3", "1,024") are read; a text that is no number is not
    (lambda r: r["snapshots"][0]["regions"][0]["nr_accesses"].update(samples="three"), "integer"),
    (lambda r: r["snapshots"][0].update(end_time=0), "ends"),
    (lambda r: r["intervals"].update(aggr_us=0), "aggr_us"),
    (lambda r: r["snapshots"][0]["regions"][0]["damon_bpf"].update(writes=10**6), "more reads"),
    (lambda r: r["snapshots"][0]["regions"][0]["damon_bpf"].update(cpus={"x": 1}), "not a number"),
])
def test_hostile_values_are_named(tmp_path_factory, mutate, words):
    doc = json.loads(zlib.decompress(valid_bytes(tmp_path_factory)))
    mutate(doc[0])
    path = tmp_path_factory.mktemp("h") / "damon.data"
    path.write_bytes(zlib.compress(json.dumps(doc).encode()))
    with pytest.raises(RecordFileError) as err:
        read_record(str(path))
    msg = str(err.value)
    assert words in msg and "record 0" in msg and "\n" not in msg


# ----------------------------------------------------------- one snapshot kept (report access streams)

def test_reading_one_snapshot_gives_what_the_full_read_gives(tmp_path):
    """read_record(path, snapshot=N) scans the other snapshots without decoding them (across record
    boundaries too); the report built from it is the one built from the whole file."""
    from damon_bpf.reports import access
    path = str(tmp_path / "d")
    write_record(path, [make_record(0, nr=7), make_record(3, nr=2, seed=1), make_record(5, nr=1, seed=2)])
    full = read_record(path)
    for index in (-8, -7, -2, -1, 0, 1, 3, 6, 7):
        for target in (None, 3, 5):
            def report(records):  # called at once, inside this iteration (B023 below)
                try:
                    return access.access(records, index, target)  # noqa: B023
                except Exception as err:  # noqa: BLE001 - the same error either way
                    return str(err)
            assert report(full) == report(read_record(path, snapshot=index)), (index, target)


def _reaped_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_run_that_fails_at_start_leaves_no_file(tmp_path):
    """An error before monitoring starts (here: no such process) leaves no record file; a file that was
    there before stays as it was."""
    cli = os.path.join(os.path.dirname(sys.executable), "damon-bpf")
    out = tmp_path / "damon.data"
    args = [cli, "record", "-o", str(out), "-p", str(_reaped_pid())]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("damon-bpf: error:"), result.stderr
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"an older recording")
    os.chmod(out, 0o600)
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 1 and out.read_bytes() == b"an older recording"
    assert os.listdir(tmp_path) == ["damon.data"]


def test_abandon_removes_only_what_the_writer_made(tmp_path):
    path = tmp_path / "d"
    writer = RecordWriter(str(path))
    assert read_record(str(path)) == []   # a valid empty record from the start (what a kill leaves)
    writer.abandon()
    assert not path.exists()
    writer = RecordWriter(str(path))
    writer.add_target(make_record(nr=3))
    writer.abandon()   # something was recorded: kept, as close() would
    assert len(read_record(str(path))[0].snapshots) == 3


def test_side_files_are_replaced_whole_0600_and_never_through_a_planted_link(tmp_path):
    from damon_bpf import outputs
    from damon_bpf.errors import DamonBpfError

    plain = tmp_path / "d.mem_footprint"
    old = os.umask(0)
    try:
        outputs.replace_file(str(plain), b"[1]", "side file")
        outputs.replace_file(str(plain), b"[2]", "side file")
    finally:
        os.umask(old)
    assert plain.read_bytes() == b"[2]" and stat.S_IMODE(plain.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("x")
    link = tmp_path / "d.vmas"
    link.symlink_to(victim)
    os.lchown(link, 65534, 65534)   # planted by nobody
    with pytest.raises(DamonBpfError):
        outputs.replace_file(str(link), b"[]", "side file")
    assert victim.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["d.mem_footprint", "d.vmas", "victim"]
