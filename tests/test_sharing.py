"""sharing on synthetic records with known answers: shared bytes, Jaccard, the grouping."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cli.main import cli
from damon_bpf.recordfile import TargetRecord, write_record
from damon_bpf.reports import sharing as sh
from test_reports import A, KiB, MiB, plain, snap


def three_threads(nr: int = 10) -> list[TargetRecord]:
    """Threads 1 and 2 both write [A, A+1MiB); 3 writes [A+1MiB, A+1.5MiB); [A+2MiB, A+3MiB) is cold."""
    regions = [{"start": A, "end": A + MiB, "acc": 5, "rep": 20, "tids": {1: 10, 2: 10}},
               {"start": A + MiB, "end": A + MiB + 512 * KiB, "acc": 5, "rep": 7, "tids": {3: 7}},
               {"start": A + 2 * MiB, "end": A + 3 * MiB, "tids": {1: 1, 3: 1}}]  # not hot: never shared
    return [TargetRecord(0, 50, 5000, 100_000, 1_000_000, [snap(i, regions) for i in range(nr)], {})]


def test_two_writers_of_one_range_share_it_and_the_third_shares_nothing():
    report = sh.sharing(three_threads())
    assert report.accessed == {1: 10 * MiB, 2: 10 * MiB, 3: 5 * MiB}
    assert [(p.a, p.b, p.shared_bytes, p.jaccard) for p in report.pairs] == [(1, 2, 10 * MiB, 1.0)]
    assert report.groups == [[1, 2], [3]]
    text = plain(sh.table(report))
    assert "{1, 2}" in text and "10 MiB" in text


def test_processes_share_the_overlap_of_their_own_regions():
    def proc(tid, lo, hi):
        regions = [{"start": A + lo, "end": A + hi, "acc": 3, "rep": 3, "tids": {tid: 3}}]
        return TargetRecord(tid, tid, 5000, 100_000, 1_000_000, [snap(i, regions) for i in range(4)], {})
    report = sh.sharing([proc(1, 0, 2 * MiB), proc(2, MiB, 4 * MiB), proc(3, 8 * MiB, 9 * MiB)], by="process")
    (pair,) = report.pairs
    assert (pair.a, pair.b, pair.shared_bytes) == (1, 2, 4 * MiB)   # 1 MiB overlap x 4 windows
    assert pair.jaccard == pytest.approx(1 / 4)                       # 1 MiB of a 4 MiB union
    assert report.groups == [[1, 2], [3]]
    assert sh.sharing([proc(1, 0, 2 * MiB), proc(2, MiB, 4 * MiB)], by="process", min_jaccard=0.3).groups \
        == [[1], [2]]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.floats(0.01, 1.0)), max_size=20),
       st.integers(1, 4))
def test_groups_partition_the_entities_and_respect_the_size_cap(links, cap):
    pairs = {(min(a, b), max(a, b)): j for a, b, j in links if a != b}
    accessed = {e: 1 for e in range(6)}
    groups = sh.group(accessed, [sh.Pair(a, b, 1, j) for (a, b), j in pairs.items()], 0.1, cap)
    assert sorted(e for g in groups for e in g) == list(range(6))
    assert all(len(g) <= cap for g in groups)


def test_cli_json_shape_and_errors(tmp_path):
    path = tmp_path / "s.data"
    write_record(str(path), three_threads())
    runner = CliRunner()
    out = runner.invoke(cli, ["report", "sharing", "-i", str(path), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["pairs"] == [{"a": 1, "b": 2, "shared_bytes": 10 * MiB, "jaccard": 1.0}]
    assert data["groups"] == [[1, 2], [3]]
    out = runner.invoke(cli, ["report", "sharing", "-i", str(path), "--by", "process", "--target", "0"])
    assert out.exit_code == 2 and out.output.startswith("damon-bpf: error: --by process"), out.output
