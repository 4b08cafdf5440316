"""`report access --group`: targets of a record combined by command name or all together."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import cli
from damon_bpf.recordfile import TargetRecord, write_record
from damon_bpf.reports import access
from damon_bpf.reports.groups import combine, group_targets
from test_reports import A, KiB, MiB, plain, snap


def target(target_id: int, pid: int, comm: str, regions: list[dict], **meta) -> TargetRecord:
    return TargetRecord(target_id, pid, 5000, 100_000, 1_000_000, [snap(0, regions), snap(1, regions)],
                        {"comm": comm, "ppid": 1, **meta})


def backend(target_id: int, pid: int, hot_acc: int, hot_rep: int) -> TargetRecord:
    """A process with private memory below A and 'shared_buffers' at [A, A+1MiB), hot in [A, A+64KiB)."""
    return target(target_id, pid, "postgres", [
        {"start": A - MiB, "end": A, "acc": 1, "rep": 2, "r": 2},
        {"start": A, "end": A + 64 * KiB, "acc": hot_acc, "rep": hot_rep, "w": hot_rep},
        {"start": A + 64 * KiB, "end": A + MiB},
    ])


def pg_record() -> list[TargetRecord]:
    shell = target(3, 300, "bash", [{"start": A + 4 * MiB, "end": A + 5 * MiB, "acc": 5, "rep": 7, "r": 7}])
    kernel = target(1000, 100, "postgres", [{"start": A, "end": A + MiB, "acc": 9}], view="kernel-damon")
    return [backend(0, 100, 6, 10), backend(1, 101, 4, 30), backend(2, 102, 15, 5), shell, kernel]


def test_backends_sharing_an_address_are_combined_by_comm():
    groups = group_targets(pg_record(), "comm")
    assert [(g.label, g.pids) for g in groups] == [
        ("postgres", [100, 101, 102]), ("bash", [300]), ("postgres [kernel-damon]", [100])]
    reports = access.access_groups(pg_record(), "comm")
    hot = next(r for r in reports[0].regions if r.start == A)
    assert hot.end == A + 64 * KiB
    assert hot.nr_accesses == 20            # 6 + 4 + 15 = 25, capped at 100 ms / 5 ms samples
    assert hot.reports == hot.writes == 45  # 10 + 30 + 5
    private = next(r for r in reports[0].regions if r.start == A - MiB)
    assert private.nr_accesses == 3 and private.reports == 6
    assert reports[0].members == [100, 101, 102] and reports[0].group == "postgres"
    assert "postgres: 3 processes combined" in plain(access.table(reports[0]))


def test_all_groups_every_process_of_a_view():
    reports = access.access_groups(pg_record(), "all")
    assert [(r.group, r.members) for r in reports] == [("all", [100, 101, 102, 300]), ("all [kernel-damon]", [100])]
    assert sum(r.reports for r in reports[0].regions) == 6 + 45 + 7


def test_cli_group_comm_json(tmp_path):
    path = tmp_path / "pg.data"
    write_record(str(path), pg_record())
    result = CliRunner().invoke(cli, ["report", "access", "-i", str(path), "--group", "comm", "--json"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)
    assert [g["group"] for g in groups] == ["postgres", "bash", "postgres [kernel-damon]"]
    assert groups[0]["members"] == [100, 101, 102]
    result = CliRunner().invoke(cli, ["report", "access", "-i", str(path), "--group", "comm", "--target", "1"])
    assert result.exit_code != 0 and "leave out --target" in result.output


region_sets = st.lists(st.tuples(st.integers(0, 64), st.integers(1, 16), st.integers(0, 20), st.integers(0, 50)),
                       min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(region_sets, min_size=1, max_size=4))
def test_combining_keeps_bytes_and_reports(members):
    """The combined regions cover exactly the union of the members' regions, keep every report (to
    rounding) and never exceed the samples of an interval."""
    records = []
    for index, spans in enumerate(members):
        regions, cursor = [], 0
        for gap, pages, acc, rep in spans:
            start = A + (cursor + gap) * 4 * KiB
            regions.append({"start": start, "end": start + pages * 4 * KiB, "acc": acc, "rep": rep, "r": rep})
            cursor += gap + pages
        records.append(target(index, 100 + index, "p", regions))
    merged = combine(group_targets(records, "all")[0])
    union = set()
    for rec in records:
        for s, e in zip(rec.snapshots[-1].start.tolist(), rec.snapshots[-1].end.tolist()):
            union.update(range(s, e, 4 * KiB))
    assert int((merged.end - merged.start).sum()) == len(union) * 4 * KiB
    assert (merged.start[1:] >= merged.end[:-1]).all()
    total = sum(int(rec.snapshots[-1].nr_reports.sum()) for rec in records)
    assert abs(int(merged.reports.sum()) - total) <= len(merged.reports)
    assert (merged.nr_accesses <= 20).all() and (merged.nr_accesses >= 0).all()
    assert np.all(merged.end > merged.start)
