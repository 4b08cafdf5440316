"""damo's perf_script and perf_data record formats: files damo itself writes read back equal to the record they
came from; damaged or hostile text is one error line; every report verb reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DAMON_BPF
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile import TargetRecord, read_record, write_record
from damon_bpf.recordfile.perf_script import sniff
from test_damo_interop import DAMO, synthetic_snapshots

# damo's modules import each other by their bare names
sys.path.append(str(Path(__import__("damo").__file__).parent))
import _damo_records  # noqa: E402
import _damon  # noqa: E402

AGGR_US = 100_000


def damo_convert(src: Path, dst: Path, fmt: str = "perf_script") -> None:
    subprocess.run([DAMO, "convert_record_format", "--format", fmt, "--record_file", str(src), "--output_file",
                    str(dst)], check=True, capture_output=True, env={**os.environ, "HOME": str(src.parent)},
                   timeout=300)


def assert_same_as_damo_keeps(want: list[TargetRecord], got: list[TargetRecord], time_ns: int = 2000) \
        -> None:
    """What perf_script text keeps: target ids, region bounds, nr_accesses, age, and the snapshot times to the
    microsecond damo prints, give or take float rounding (a start is the previous end; the first's is damo's
    mean-length guess)."""
    assert [r.target_id for r in want] == [r.target_id for r in got]
    for a, b in zip(want, got):
        assert len(a.snapshots) == len(b.snapshots)
        for x, y in zip(a.snapshots, b.snapshots):
            assert abs(x.end_ns - y.end_ns) <= time_ns and abs(x.start_ns - y.start_ns) <= time_ns
            for name in ("start", "end", "nr_accesses", "age"):
                np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
            assert not y.nr_reports.any() and not y.by_cpu and not y.by_tid   # the text has no attribution
        assert b.meta["view"] == "kernel-damon" and b.meta["file_format"] == "perf_script"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, list[TargetRecord]]:
    """Two targets of ours, written as damo's perf_script by damo itself."""
    tmp = tmp_path_factory.mktemp("perf_script")
    original = [TargetRecord(0, 100, 5000, AGGR_US, 1_000_000, synthetic_snapshots(1, nr=12)),
                TargetRecord(1, 101, 5000, AGGR_US, 1_000_000, synthetic_snapshots(2, nr=7))]
    write_record(str(tmp / "ours.data"), original)
    damo_convert(tmp / "ours.data", tmp / "damo.perf_script")
    return tmp / "damo.perf_script", original


def test_damo_perf_script_reads_back_equal(converted):
    path, original = converted
    text = path.read_text()
    assert text.startswith("kdamond.x xxxx xxxx ") and " damon:damon_aggregated: target_id=0 nr_regions=" in text
    assert sniff(path.read_bytes()[:4096]) == "perf_script"
    got = read_record(str(path))
    assert_same_as_damo_keeps(original, got)
    # no intervals in the text: the aggregation is the snapshots' length, the sample a 20th of it (DAMON's ratio)
    assert [(r.sample_us, r.aggr_us, r.pid, r.meta["intervals"]) for r in got] == \
        [(5000, AGGR_US, None, "inferred")] * 2


def test_damo_kdamonds_side_file_gives_intervals_and_pids(converted, tmp_path):
    """`damo record` writes FILE.kdamonds beside the trace: its first context's intervals and target pids."""
    path, original = converted
    copy = tmp_path / "damon.data"
    copy.write_bytes(path.read_bytes())
    kdamond = _damon.Kdamond(state="on", pid=4321, contexts=[_damon.DamonCtx(
        ops="vaddr", targets=[_damon.DamonTarget(pid=p, regions=[]) for p in (777, 778)],
        intervals=_damon.DamonIntervals("2ms", "50ms", "1s"), nr_regions=_damon.DamonNrRegionsRange(), schemes=[])])
    (tmp_path / "damon.data.kdamonds").write_text(json.dumps([kdamond.to_kvpairs()]))   # damo's human units
    got = read_record(str(copy))
    assert [(r.target_id, r.pid, r.sample_us, r.aggr_us, r.update_us, r.meta["intervals"]) for r in got] == \
        [(0, 777, 2000, 50_000, 1_000_000, "kdamonds file"), (1, 778, 2000, 50_000, 1_000_000, "kdamonds file")]
    assert_same_as_damo_keeps(original, got)
    (tmp_path / "damon.data.kdamonds").write_text('{"not": "damo"}')
    with pytest.raises(RecordFileError, match=r"damon.data.kdamonds, which is not damo's"):
        read_record(str(copy))


@pytest.mark.parametrize("index", [0, 3, 6, 11, 12, -1, -2, -7, -8, -12, -13])
def test_one_snapshot_kept_is_that_of_the_whole(converted, index):
    path, _ = converted
    whole = read_record(str(path))
    one = read_record(str(path), snapshot=index)
    for full, rec in zip(whole, one):
        want = full.snapshots[index:][:1] if -len(full.snapshots) <= index < len(full.snapshots) else []
        assert [(s.start_ns, s.end_ns, s.start.tolist(), s.nr_accesses.tolist()) for s in rec.snapshots] == \
            [(s.start_ns, s.end_ns, s.start.tolist(), s.nr_accesses.tolist()) for s in want]
        assert rec.nr_in_file == len(full.snapshots) and rec.origin_ns == full.snapshots[0].start_ns


def test_one_snapshot_record_has_damo_placeholder_dropped(tmp_path):
    """damo adds a placeholder snapshot ("0-0: -1 -1") to time a record's only snapshot; it is dropped."""
    original = [TargetRecord(3, 100, 5000, AGGR_US, 1_000_000, synthetic_snapshots(4, nr=1))]
    write_record(str(tmp_path / "ours.data"), original)
    damo_convert(tmp_path / "ours.data", tmp_path / "one.txt")
    assert "nr_regions=1 0-0: -1 -1" in (tmp_path / "one.txt").read_text()
    got = read_record(str(tmp_path / "one.txt"))
    assert_same_as_damo_keeps(original, got)
    assert got[0].aggr_us == AGGR_US


VERBS = [["access"], ["access", "--group", "all"], ["access", "--snapshot", "last", "--json"], ["wss"],
         ["heatmap", "--json"], ["breakdown"], ["sharing"], ["numa"]]


@pytest.mark.parametrize("verb", VERBS, ids=[" ".join(v) for v in VERBS])
def test_every_report_verb_reads_perf_script(converted, verb):
    path, _ = converted
    out = subprocess.run([DAMON_BPF, "report", *verb, "-i", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "Traceback" not in out.stderr


def test_dirty_rate_says_the_trace_has_no_writes(converted):
    """Kernel DAMON's view has no write attribution: dirty-rate has nothing to say and says so in one line."""
    path, _ = converted
    out = subprocess.run([DAMON_BPF, "report", "dirty-rate", "-i", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and out.stderr.startswith("damon-bpf: error:") and out.stderr.count("\n") == 1, \
        out.stderr


def test_access_json_of_perf_script_matches_the_json_record(converted):
    """The same regions and rates from damo's perf_script as from the record it was written from."""
    path, _ = converted
    src = path.parent / "ours.data"
    runs = [json.loads(subprocess.run([DAMON_BPF, "report", "access", "-i", str(p), "--json"], capture_output=True,
                                      text=True, check=True, timeout=120).stdout) for p in (src, path)]
    ours, theirs = runs
    assert [(r["start"], r["end"], r["nr_accesses"], r["hz"]) for r in ours["regions"]] == \
        [(r["start"], r["end"], r["nr_accesses"], r["hz"]) for r in theirs["regions"]]


# -- damaged and hostile text: one error line, never a traceback

GOOD = ("kdamond.0  4452 [000] 100.000100: damon:damon_aggregated: target_id=0 nr_regions=2 4096-8192: 3 1\n"
        "kdamond.0  4452 [000] 100.000100: damon:damon_aggregated: target_id=0 nr_regions=2 8192-12288: 0 4\n"
        "kdamond.0  4452 [000] 100.100100: damon:damon_aggregated: target_id=0 nr_regions=1 4096-12288: 1 0\n")
BAD = {
    "cut mid-line": (GOOD[:-5], "truncated: its last line"),
    "cut mid-snapshot": (GOOD.split("\n", 1)[0] + "\n", "truncated: target 0's last snapshot has 1 of its 2"),
    "nr_regions changes": (GOOD.replace("nr_regions=2 8192", "nr_regions=3 8192"), "line 2: nr_regions=3 within"),
    "overlapping regions": (GOOD.replace("8192-12288: 0", "4096-12288: 0"), "line 2: .*overlapping"),
    "empty region": (GOOD.replace("4096-8192: 3", "8192-8192: 3"), "line 2: .*empty region"),
    "time goes back": (GOOD.replace("100.100100", "99.000000"), "line 3: .*not sorted by time"),
    "garbage line": (GOOD + "hello world\n", "line 4 is not a `perf script` event line"),
    "binary line": (GOOD + "\x00\x01\x02\n", "line 4 is not a `perf script` event line"),
    "over-long line": (GOOD + "x" * 5000 + "\n", "line 4 is longer than 4096 bytes"),
    "over-long last line": (GOOD + "x" * 2_000_000, "is longer than 4096 bytes"),
    "negative accesses": (GOOD.replace("8192-12288: 0", "8192-12288: -3"), "line 2: .*out of range"),
    "address beyond 64 bits": (GOOD.replace("8192-12288", f"8192-{2**64}"), "line 2: .*out of range"),
    "fields not understood": (GOOD.replace("target_id=0 nr_regions=1", "target=0 regions=1"),
                              "line 3: damon_aggregated fields not understood"),
    "zero regions": (GOOD.replace("nr_regions=1", "nr_regions=0"), "line 3: target_id or nr_regions out of range"),
    "region after placeholder": (GOOD.replace("nr_regions=1 4096-12288: 1 0", "nr_regions=1 0-0: -1 -1") + GOOD,
                                 "line 4: target 0 has a region after damo's placeholder"),
    "time beyond range": (GOOD.replace("100.100100", "999999999999.100100"), "line 3: time .* out of range"),
    "bad tune line": (GOOD + "kdamond.0 1 [0] 101.0: damon:damon_monitor_intervals_tune: sample_us=x\n",
                      "line 4: damon:damon_monitor_intervals_tune without a valid sample_us"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_damaged_perf_script_is_one_error_line(tmp_path, name):
    text, message = BAD[name]
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(RecordFileError, match=message) as err:
        read_record(str(path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cut mid-snapshot", "garbage line", "address beyond 64 bits"])
def test_damaged_perf_script_is_one_error_line_of_the_command(tmp_path, name):
    path = tmp_path / "bad.txt"
    path.write_text(BAD[name][0])
    out = subprocess.run([DAMON_BPF, "report", "access", "-i", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stderr.startswith(f"damon-bpf: error: record file {path}: ") and \
        out.stderr.count("\n") == 1, out.stderr


def test_good_text_and_its_odd_lines_read(tmp_path):
    """The fixture above is valid; other events are counted, the tuned sample interval taken; a kernel before
    5.16 prints no age; `perf script -F time,event,trace` prints no comm."""
    path = tmp_path / "good.txt"
    path.write_text("\n" + GOOD + "perf 1 [0] 100.2: sched:sched_switch: prev=a\n"
                    " 100.3: damon:damon_monitor_intervals_tune: sample_us=4000\n"
                    "kdamond 0 with blanks  4452 [000] 100.000100: damon:damon_aggregated: target_id=9 nr_regions=1 "
                    "4096-8192: 3\n")
    recs = read_record(str(path))
    assert [(r.target_id, len(r.snapshots), r.sample_us, r.aggr_us) for r in recs] == [(0, 2, 4000, 100_000),
                                                                                        (9, 1, 4000, 100_000)]
    first, second = recs[0].snapshots
    assert (first.start_ns, first.end_ns, second.start_ns, second.end_ns) == \
        (100_000_100_000 - 100_000_000, 100_000_100_000, 100_000_100_000, 100_100_100_000)
    assert first.start.tolist() == [4096, 8192] and first.nr_accesses.tolist() == [3, 0]
    assert first.age.tolist() == [1, 4]
    assert recs[0].meta["other_events"] == {"sched:sched_switch": 1} and "age" in recs[1].meta


def test_text_that_is_no_trace_goes_to_the_json_reader(tmp_path):
    path = tmp_path / "x"
    path.write_text("hello\n")
    with pytest.raises(RecordFileError, match="neither zlib-compressed JSON, plain JSON, nor damo's perf_script"):
        read_record(str(path))


def test_a_pipe_is_read_by_the_json_reader_whole(tmp_path):
    """Only regular files are sniffed: a pipe's first bytes must reach the JSON reader."""
    original = [TargetRecord(0, 100, 5000, AGGR_US, 1_000_000, synthetic_snapshots(5, nr=3))]
    write_record(str(tmp_path / "ours.data"), original)
    out = subprocess.run(["bash", "-c", f"{DAMON_BPF} report access --json -i <(cat {tmp_path / 'ours.data'})"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# -- round trips through damo's own writer (in process), any record


@st.composite
def records(draw) -> list[TargetRecord]:
    aggr_us = draw(st.integers(1000, 10**7))
    t0 = draw(st.integers(0, 10**15)) * 1000
    out = []
    for target_id in draw(st.lists(st.integers(0, 2**32), min_size=1, max_size=3, unique=True)):
        snaps = []
        for i in range(draw(st.integers(1, 5))):
            n = draw(st.integers(1, 6))
            edges = sorted(draw(st.lists(st.integers(0, 2**48), min_size=2 * n, max_size=2 * n, unique=True)))
            start, end = np.array(edges[0::2], dtype=np.uint64), np.array(edges[1::2], dtype=np.uint64)
            acc = np.array(draw(st.lists(st.integers(0, 200), min_size=n, max_size=n)), dtype=np.int64)
            age = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), dtype=np.int64)
            zeros = np.zeros(n, dtype=np.int64)
            begin = t0 + i * aggr_us * 1000
            snaps.append(Snapshot(begin, begin + aggr_us * 1000, start, end, acc, age, zeros, zeros, zeros))
        out.append(TargetRecord(target_id, None, 5000, aggr_us, 0, snaps))
    return out


def damo_records_of(recs: list[TargetRecord]) -> list:
    out = []
    for rec in recs:
        record = _damo_records.DamonRecord(0, 0, None, None, rec.target_id, [])
        for s in rec.snapshots:
            regions = [_damon.DamonRegion(int(a), int(b), int(n), _damon.unit_samples, int(g),
                                          _damon.unit_aggr_intervals)
                       for a, b, n, g in zip(s.start, s.end, s.nr_accesses, s.age)]
            record.snapshots.append(_damo_records.DamonSnapshot(s.start_ns, s.end_ns, regions, None))
        out.append(record)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=records())
def test_damo_writer_round_trip(tmp_path, recs):
    path = tmp_path / "rt.txt"
    assert _damo_records.write_damon_records(damo_records_of(recs), str(path), "perf_script") is None
    got = read_record(str(path))
    assert_same_as_damo_keeps(recs, got)
    for want, rec in zip(recs, got):   # the inferred aggregation is the snapshots' length (to the microsecond)
        assert abs(rec.aggr_us - want.aggr_us) <= 1 and rec.sample_us * max(
            1, max(int(s.nr_accesses.max()) for s in want.snapshots)) <= rec.aggr_us


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=records(), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_damo_text_reads_or_is_one_error(tmp_path, recs, cut):
    """A damo-written file cut anywhere either reads (cut at the end of a snapshot) or is a RecordFileError."""
    path = tmp_path / "cut.txt"
    _damo_records.write_damon_records(damo_records_of(recs), str(path), "perf_script")
    text = path.read_bytes()
    path.write_bytes(text[:int(len(text) * cut)])
    try:
        got = read_record(str(path))
    except RecordFileError as err:
        assert "\n" not in str(err)
        return
    assert sum(len(r.snapshots) for r in got) <= sum(len(r.snapshots) for r in recs)


# -- perf.data: `perf script` turns it into the same text


def test_perf_data_without_damon_events_says_so(tmp_path):
    """A real perf.data (perf records a tracepoint of this host) goes through `perf script`; one that holds no
    damon:damon_aggregated event is one line saying what it holds instead."""
    path = tmp_path / "perf.data"
    # one fork by the shell for its background job: perf caught it in every try here, while the exec event of
    # `perf record -- /bin/true` was caught in about one try of three (enable-on-exec races the tracepoint)
    subprocess.run(["perf", "record", "-q", "-e", "sched:sched_process_fork", "-o", str(path), "--",
                    "sh", "-c", "true & wait"], check=True, capture_output=True, timeout=120)
    assert sniff(path.read_bytes()[:8]) == "perf_data"
    with pytest.raises(RecordFileError, match=r"holds no damon:damon_aggregated event \(only 1 x sched:sched_proc"):
        read_record(str(path))


KDAMOND = Path("/sys/kernel/mm/damon/admin/kdamonds/0")


def test_kernel_damon_perf_data_of_this_host_reads_as_damo_reads_it(tmp_path):
    """The kernel's own tracepoint, recorded by perf from the kdamond running on this host (CI: the platform's
    paddr kdamond, which we only watch), reads as damo's own parser reads `perf script` of the same file."""
    assert (KDAMOND / "state").read_text().strip() == "on", "needs a running kdamond (CI: the platform's)"
    aggr_us = int((KDAMOND / "contexts/0/monitoring_attrs/intervals/aggr_us").read_text())
    seconds = min(30.0, 2.2 * aggr_us / 1e6 + 0.5)   # two aggregations at least, when they are 13 s or less
    path = tmp_path / "kernel.data"
    subprocess.run(["perf", "record", "-q", "-e", "damon:damon_aggregated", "-a", "-o", str(path), "--", "sleep",
                    str(seconds)], check=True, capture_output=True, timeout=120)
    ours = read_record(str(path))
    text = subprocess.run(["perf", "script", "--force", "-i", str(path)], check=True, capture_output=True,
                          text=True, timeout=120).stdout
    theirs, err = _damo_records.parse_damon_trace(text, "perf-script", None)
    assert err is None and theirs and ours[0].snapshots, (err, len(text))
    assert [r.target_id for r in ours] == [r.target_id for r in theirs]
    for rec, damo_rec in zip(ours, theirs):
        assert rec.meta["file_format"] == "perf_data" and "cut_short" not in rec.meta, rec.meta
        assert len(rec.snapshots) == len(damo_rec.snapshots)
        for s, d in zip(rec.snapshots, damo_rec.snapshots):
            assert abs(s.end_ns - d.end_time) <= 1000   # damo reads perf's microseconds, we its nanoseconds
            assert list(zip(s.start.tolist(), s.end.tolist(), s.nr_accesses.tolist(), s.age.tolist())) == \
                [(r.start, r.end, r.nr_accesses.samples, r.age.aggr_intervals) for r in d.regions]
    if len(ours[0].snapshots) >= 2:
        assert abs(ours[0].aggr_us - aggr_us) <= 0.2 * aggr_us, (ours[0].aggr_us, aggr_us)


def test_damaged_perf_data_is_one_error_line(tmp_path):
    path = tmp_path / "perf.data"
    path.write_bytes(b"PERFILE2" + bytes(range(256)) * 4)
    out = subprocess.run([DAMON_BPF, "report", "access", "-i", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and \
        "is a perf.data file that `perf script` could not read (exit" in out.stderr, out.stderr


def test_perf_data_without_perf_says_what_to_install(tmp_path):
    path = tmp_path / "perf.data"
    path.write_bytes(b"PERFILE2" + bytes(64))
    out = subprocess.run([DAMON_BPF, "report", "access", "-i", str(path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PATH": str(tmp_path)})
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "needs `perf` (Debian: linux-perf)" in out.stderr, \
        out.stderr


def test_a_trace_perf_began_or_stopped_within_a_snapshot_drops_those_regions():
    """perf starts and stops tracing whenever it is told: in a perf.data the first snapshot may lack its head and
    the last its tail. Those regions are left out and counted; in text (damo writes whole snapshots) they are
    an error."""
    from damon_bpf.recordfile.perf_script import _lines, _Reader

    head = "k 1 [0] 99.9: damon:damon_aggregated: target_id=0 nr_regions=3 65536-69632: 2 2\n"
    tail = "k 1 [0] 100.2: damon:damon_aggregated: target_id=0 nr_regions=2 4096-8192: 1 1\n"
    text = (head + GOOD + tail).encode()
    reader = _Reader(None, lenient=True)
    _lines(iter([text]), reader)
    (rec,) = reader.records("perf_data", {})
    assert len(rec.snapshots) == 2 and rec.meta["cut_short"]["at_start"] == 1 and \
        rec.meta["cut_short"]["at_end"] == 1
    assert rec.snapshots[0].start.tolist() == [4096, 8192]
    with pytest.raises(Exception, match="line 2: nr_regions=2 within a snapshot of 3"):
        _lines(iter([text]), _Reader(None))
