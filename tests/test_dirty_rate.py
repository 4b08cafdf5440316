"""dirty-rate on synthetic records with known answers, and the pre-copy model against its arithmetic."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st

from cli.main import cli
from damon_bpf.recordfile import TargetRecord, write_record
from damon_bpf.reports import dirty_rate as dr
from test_reports import A, MiB, plain, snap

PAGE = 4096


def writer(target_id: int, writes_per_window: int, size: int = 4 * MiB, nr: int = 10) -> TargetRecord:
    snaps = [snap(i, [{"start": A, "end": A + size, "acc": 5, "rep": writes_per_window,
                       "w": writes_per_window}, {"start": A + size, "end": A + 2 * size}]) for i in range(nr)]
    return TargetRecord(target_id, 100 + target_id, 5000, 100_000, 1_000_000, snaps, {})


def test_dirty_bytes_are_write_reports_times_page_capped_at_the_region():
    report = dr.dirty_rate([writer(0, 10), writer(1, 10_000)], page_size=PAGE)
    by_id = {t.target_id: t for t in report.targets}
    assert by_id[0].rates == [pytest.approx(10 * PAGE / 0.1)] * 10   # 100 ms windows
    assert by_id[1].rates == [pytest.approx(4 * MiB / 0.1)] * 10     # 10,000 pages > the 4 MiB region
    assert [t.target_id for t in report.targets] == [0, 1]           # least dirtying first
    assert by_id[0].memory_bytes == 8 * MiB                          # the last snapshot's regions


def closed_form(memory, rate, bandwidth, downtime):
    """Rounds and seconds from the geometric series (r < 1, the cap at memory never binds)."""
    r = rate / bandwidth
    n = 0
    while memory * r**n / bandwidth > downtime:
        n += 1
    return n, sum(memory * r**i / bandwidth for i in range(n + 1))


@given(memory=st.integers(MiB, 64 << 30), ratio=st.floats(0.0, 0.95),
       bandwidth=st.floats(1e6, 1e10), downtime=st.floats(0.01, 1.0))
def test_precopy_matches_the_geometric_series(memory, ratio, bandwidth, downtime):
    expected_rounds, expected_s = closed_form(memory, ratio * bandwidth, bandwidth, downtime)
    assume(expected_rounds <= dr.DEFAULT_MAX_ROUNDS)
    m = dr.precopy(memory, ratio * bandwidth, bandwidth, downtime)
    assert m.converges and m.rounds == expected_rounds
    assert m.total_s == pytest.approx(expected_s, rel=1e-9)
    assert m.downtime_s <= downtime


@given(memory=st.integers(MiB, 64 << 30), ratio=st.floats(1.0, 100.0), bandwidth=st.floats(1e6, 1e10))
def test_precopy_never_converges_when_dirtying_outpaces_the_link(memory, ratio, bandwidth):
    assume(memory / bandwidth > 0.3)  # round 0 alone would not fit in the downtime
    m = dr.precopy(memory, ratio * bandwidth, bandwidth, 0.3)
    assert not m.converges and math.isinf(m.total_s) and "dirty rate >= bandwidth" in m.reason


@given(memory=st.integers(MiB, 64 << 30), rate=st.floats(0, 1e10), bandwidth=st.floats(1e6, 1e10),
       faster=st.floats(1.0, 10.0))
def test_more_bandwidth_never_takes_more_rounds(memory, rate, bandwidth, faster):
    slow, fast = dr.precopy(memory, rate, bandwidth), dr.precopy(memory, rate, bandwidth * faster)
    assert fast.converges >= slow.converges
    if slow.converges:
        assert fast.rounds <= slow.rounds and fast.total_s <= slow.total_s * (1 + 1e-9)


def test_worked_numbers():
    # 4 GiB at 1 GiB/s with 256 MiB/s dirtied: rounds of 4 s and 1 s, then 256 MiB left = 250 ms paused
    m = dr.precopy(4 << 30, 256 << 20, 1 << 30, 0.3)
    assert (m.converges, m.rounds) == (True, 2)
    assert m.total_s == pytest.approx(4 + 1 + 0.25)
    assert m.downtime_s == pytest.approx(0.25)
    assert m.sent_bytes == (4 << 30) + (1 << 30) + (256 << 20)
    # with a 200 ms budget one more round: 64 MiB paused
    assert dr.precopy(4 << 30, 256 << 20, 1 << 30, 0.2).rounds == 3


def test_ranked_by_migration_time_with_a_bandwidth():
    report = dr.dirty_rate([writer(0, 10_000), writer(1, 10)], bandwidth=30 * MiB, page_size=PAGE,
                           memory_bytes=1 << 30)
    first, second = report.targets
    assert first.target_id == 1 and first.migration.converges
    assert not second.migration.converges      # 4 MiB per 100 ms window: 40 MiB/s dirtied
    assert dr.headline(report).startswith("move first: target 1 (pid 101)")
    assert "does not converge" in plain(dr.table(report))


def test_cli_json_and_errors(tmp_path):
    path = tmp_path / "d.data"
    write_record(str(path), [writer(0, 1000), writer(1, 10)])
    runner = CliRunner()
    out = runner.invoke(cli, ["report", "dirty-rate", "-i", str(path), "--bandwidth", "1Gbit/s", "--memory",
                                 "4GiB", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [t["target_id"] for t in data["targets"]] == [1, 0]
    assert data["bandwidth_bytes_per_s"] == 125e6
    assert data["targets"][0]["migration"]["converges"] is True
    for bad in (["--bandwidth", "fast"], ["--memory", "1Gbit/s"], ["--max-downtime", "soon"]):
        out = runner.invoke(cli, ["report", "dirty-rate", "-i", str(path), *bad])
        assert out.exit_code == 2 and out.output.startswith("damon-bpf: error: ") \
            and len(out.output.strip().splitlines()) == 1, out.output
