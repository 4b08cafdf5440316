"""`report access`: the hottest snapshot by default, damo's sort / filter / style / raw options, mappings, who."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import cli
from damon_bpf.recordfile import write_record
from damon_bpf.reports import access
from test_reports import A, KiB, MiB, plain, record, snap

REGIONS = [  # size, nr_accesses (of 20), age
    {"start": A, "end": A + 4 * KiB, "acc": 20, "age": 3, "rep": 9, "w": 3, "r": 6},
    {"start": A + 4 * KiB, "end": A + MiB, "acc": 0, "age": 50},
    {"start": A + MiB, "end": A + 3 * MiB, "acc": 5, "age": 10, "rep": 4, "w": 4},
    {"start": A + 3 * MiB, "end": A + 4 * MiB, "acc": 0, "age": 5},
]


def records():
    quiet = [dict(r, acc=0, rep=0, w=0, r=0) for r in REGIONS]
    recs = record([snap(0, quiet), snap(1, REGIONS), snap(2, quiet)])
    recs[0].snapshots[1].mappings = [[("/usr/lib/libc.so.6", "file")], [("", "anon")],
                                     [("[heap]", "heap")], [("[heap]", "heap"), ("", "anon")]]
    recs[0].meta["target"] = {"comm": "myprog", "ppid": 7}
    return recs


def run(tmp_path, *args):
    path = tmp_path / "d.data"
    write_record(str(path), records())
    return CliRunner().invoke(cli, ["report", "access", "-i", str(path), *args])


def test_the_hottest_snapshot_is_the_default_not_the_idle_last(tmp_path):
    assert access.hottest_snapshot(records()[0]) == 1
    out = json.loads(run(tmp_path, "--json").output)
    assert out["snapshot"] == 1 and out["accessed_size"] == 4 * KiB + 2 * MiB
    assert json.loads(run(tmp_path, "--json", "--snapshot", "last").output)["snapshot"] == 2
    assert json.loads(run(tmp_path, "--json", "--snapshot", "0").output)["snapshot"] == 0


def test_an_idle_record_shows_its_last_snapshot():
    recs = record([snap(i, [dict(REGIONS[1], acc=0)]) for i in range(3)])
    assert access.hottest_snapshot(recs[0]) == -1


def test_the_process_and_each_regions_mappings_are_named(tmp_path):
    result = run(tmp_path)
    assert result.exit_code == 0, result.output
    assert "target 0 (pid 99 myprog, parent 7)" in result.output
    assert "libc.so.6" in result.output and "[heap] +1" in result.output
    out = json.loads(run(tmp_path, "--json").output)
    assert out["comm"] == "myprog" and out["ppid"] == 7
    assert out["regions"][3]["mappings"] == [{"name": "[heap]", "kind": "heap"}, {"name": "", "kind": "anon"}]


def test_group_by_mapping_sums_the_regions_of_each(tmp_path):
    out = json.loads(run(tmp_path, "--group", "mapping", "--json").output)
    first = out["mappings"][0]
    assert first["mappings"] == [{"name": "/usr/lib/libc.so.6", "kind": "file"}] and first["reports"] == 9
    heap = [g for g in out["mappings"] if g["mappings"] == [{"name": "[heap]", "kind": "heap"}]][0]
    assert heap["size"] == 2 * MiB and heap["writes"] == 4 and heap["nr_regions"] == 1


def sizes(tmp_path, *args):
    return [r["size"] for r in json.loads(run(tmp_path, "--json", *args).output)["regions"]]


def test_sort_by_damos_keys(tmp_path):
    assert sizes(tmp_path, "--sort-regions-by", "size") == [4 * KiB, MiB - 4 * KiB, MiB, 2 * MiB]
    assert sizes(tmp_path, "--sort_regions_by", "size", "--sort_regions_dsc", "size") == [
        2 * MiB, MiB, MiB - 4 * KiB, 4 * KiB]
    assert sizes(tmp_path, "--sort-regions-by", "age", "--sort-regions-dsc", "all") == [
        MiB - 4 * KiB, 2 * MiB, MiB, 4 * KiB]
    # the last key orders first, the earlier keys break its ties (damo's successive stable sorts)
    assert sizes(tmp_path, "--sort-regions-by", "size", "--sort-regions-by", "access_rate") == [
        MiB - 4 * KiB, MiB, 2 * MiB, 4 * KiB]


def test_hot_and_cold_styles(tmp_path):
    # damo's temperature (weights 0, 100, 100): an accessed region's age counts for it (in us, so it dominates
    # the percent), an idle one's against it
    assert sizes(tmp_path, "--style", "hot") == [2 * MiB, 4 * KiB, MiB, MiB - 4 * KiB]
    assert sizes(tmp_path, "--style", "cold") == [MiB - 4 * KiB, MiB, 4 * KiB, 2 * MiB]


def test_region_filters(tmp_path):
    assert sizes(tmp_path, "--sz-region", "1MiB", "max") == [MiB, 2 * MiB] or \
        sizes(tmp_path, "--sz-region", "1MiB", "max") == [2 * MiB, MiB]
    assert sizes(tmp_path, "--access-rate", "50%", "max") == [4 * KiB]
    assert sizes(tmp_path, "--access-rate", "min", "0") == [MiB - 4 * KiB, MiB]
    assert sizes(tmp_path, "--age", "1s", "max") == [MiB - 4 * KiB, 2 * MiB]   # 50 and 10 aggregations of 100 ms
    assert sizes(tmp_path, "--address", hex(A + MiB), hex(A + MiB + 1), "--address", "0", hex(A + 1)) == [
        4 * KiB, 2 * MiB]


def test_raw_numbers(tmp_path):
    out = run(tmp_path, "--raw-number").output
    assert str(A) in out and str(2 * MiB) in out and "MiB" not in out


def test_bad_options_are_one_line(tmp_path):
    for args in (["--snapshot", "warmest"], ["--sz-region", "big", "max"], ["--access-rate", "x", "1"],
                 ["--age", "soon", "max"], ["--address", "5", "1"]):
        result = run(tmp_path, *args)
        assert result.exit_code != 0 and "Traceback" not in result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("damon-bpf: error:"), (args, result.output)


def test_table_fits_80_columns():
    rep = access.access(records(), 1)
    text = plain(access.table(rep, bar=False))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "0x7f0000000000" in text


# ------------------------------------------------------------------------------------ breakdown

def test_breakdown_json_counts_are_integers_and_regions_name_their_mappings():
    from damon_bpf.reports import breakdown
    from test_reports import snap as make
    early = make(0, [{"start": A, "end": A + 3 * 4096, "rep": 10, "w": 3, "r": 7, "acc": 4}])
    late = make(1, [{"start": A, "end": A + 4096}, {"start": A + 4096, "end": A + 3 * 4096}])
    late.mappings = [[("/bin/x", "file")], [("[heap]", "heap")]]
    recs = record([early, late])
    recs[0].meta["target"] = {"comm": "x", "ppid": 1}
    out = breakdown.to_json(breakdown.breakdown(recs, top=5))
    counts = [r[k] for r in out["regions"] for k in ("reports", "reads", "writes")]
    assert all(type(c) is int for c in counts) and sorted(r["reports"] for r in out["regions"]) == [3, 7]
    assert {r["mappings"][0]["name"] for r in out["regions"]} == {"/bin/x", "[heap]"}
    assert (out["comm"], out["ppid"]) == ("x", 1)


def test_breakdown_threads_are_not_cut_at_80_columns():
    from rich.console import Console
    from damon_bpf.reports import breakdown
    from test_reports import snap as make
    tids = {1000001 + i: 10 - i for i in range(5)}
    recs = record([make(0, [{"start": A, "end": A + MiB, "rep": 40, "acc": 3, "tids": tids,
                             "cpus": {0: 20, 1: 20}}])])
    console = Console(width=80, color_system=None, record=True)
    console.print(breakdown.table(breakdown.breakdown(recs)))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for tid in list(tids)[:3]:
        assert str(tid) in text.replace("\n", "").replace(" ", "") or str(tid) in text


# ------------------------------------------------------------------------------------ heatmap

def far_apart():
    """Two hot spots 100 TiB apart (a heap and a stack), each region named by its mapping."""
    far = A + 100 * (1 << 40)
    regions = [{"start": A, "end": A + MiB, "acc": 10, "rep": 5}, {"start": A + MiB, "end": far, "acc": 0},
               {"start": far, "end": far + MiB, "acc": 20, "rep": 5}]
    snaps = [snap(i, regions) for i in range(5)]
    for s in snaps:
        s.mappings = [[("[heap]", "heap")], [], [("[stack]", "stack")]]
    return record(snaps)


def test_a_heatmap_of_few_rows_still_skips_the_gaps():
    from damon_bpf.reports import heatmap
    for rows in (3, 4, 10):
        hm = heatmap.heatmap(far_apart(), (rows, 20))
        assert hm.axis.breaks, rows
        assert hm.axis.hi[-1] - hm.axis.lo[0] - sum(h - lo for lo, h in zip(hm.axis.lo, hm.axis.hi)) > 99 << 40
        assert sum(h - lo for lo, h in zip(hm.axis.lo, hm.axis.hi)) < 1 << 30


def test_heatmap_rows_are_labelled_by_mapping_and_json(tmp_path):
    from damon_bpf.reports import heatmap
    hm = heatmap.heatmap(far_apart(), (10, 20))
    assert hm.axis.names[0] == "[heap]" and hm.axis.names[-1] == "[stack]"
    text = plain(heatmap.render([hm], color=False))
    assert "[heap]" in text and "[stack]" in text
    path = tmp_path / "d.data"
    write_record(str(path), far_apart())
    result = CliRunner().invoke(cli, ["report", "heatmap", "-i", str(path), "--json", "--resol", "10", "20"])
    out = json.loads(result.output)
    assert out["rows"][0]["mapping"] == "[heap]" and out["gap_before_rows"]
    grid = out["panels"][0]["grid"]
    assert len(grid) == len(out["rows"]) and len(grid[0]) == len(out["time_edges_ns"]) - 1
    assert max(v for row in grid for v in row if v is not None) == 200.0
    png = tmp_path / "h.png"
    assert CliRunner().invoke(cli, ["report", "heatmap", "-i", str(path), "--output", str(png)]).exit_code == 0
    assert png.stat().st_size > 1000


def test_an_old_record_without_mappings_draws_as_before():
    from damon_bpf.reports import heatmap
    recs = far_apart()
    for s in recs[0].snapshots:
        s.mappings = None
    hm = heatmap.heatmap(recs, (10, 20))
    assert hm.axis.names is None and "[heap]" not in plain(heatmap.render([hm], color=False))


# ------------------------------------------------------------------------------------ wss beside RSS/PSS

def test_footprint_is_read_and_rate_limited():
    import os

    from damon_bpf.sources.vaddr import FOOTPRINT_PERIOD_NS, Footprint, read_footprint
    rss, pss = read_footprint(os.getpid())
    assert rss >= pss > 0 and rss % 1024 == 0
    reader = Footprint(os.getpid())
    first = reader.latest(10**12)
    assert first is not None
    reader.value = (1, 1)   # a read within the period answers the last reading without reading again
    assert reader.latest(10**12 + FOOTPRINT_PERIOD_NS // 2) == (1, 1)
    assert reader.latest(10**12 + 100 * FOOTPRINT_PERIOD_NS) != (1, 1)   # later than the budget wait too
    gone = Footprint(2**22 + 1)   # above pid_max's default: no such process
    assert gone.latest(0) is None


def test_wss_shows_rss_and_pss_and_plots(tmp_path):
    recs = far_apart()
    for i, s in enumerate(recs[0].snapshots):
        s.footprint = (4 * MiB * (i + 1), 2 * MiB * (i + 1))
    path = tmp_path / "d.data"
    write_record(str(path), recs)
    out = json.loads(CliRunner().invoke(cli, ["report", "wss", "-i", str(path), "--json"]).output)
    assert out["rss"] == [4 * MiB * (i + 1) for i in range(5)] and out["pss"][0] == 2 * MiB
    assert out["rss_percentiles"]["100"] == 20 * MiB
    png = tmp_path / "w.png"
    result = CliRunner().invoke(cli, ["report", "wss", "-i", str(path), "--output", str(png)])
    assert result.exit_code == 0 and "RSS" in result.output and "PSS" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG" and (png.stat().st_mode & 0o777) == 0o600
    bad = CliRunner().invoke(cli, ["report", "wss", "-i", str(path), "--output", str(tmp_path / "w.txt")])
    assert bad.exit_code != 0 and bad.output.startswith("damon-bpf: error:")


def test_wss_of_a_record_without_footprints_has_no_rss_columns(tmp_path):
    path = tmp_path / "d.data"
    write_record(str(path), far_apart())
    out = CliRunner().invoke(cli, ["report", "wss", "-i", str(path)]).output
    assert "RSS" not in out


def test_every_report_names_the_process_and_its_parent(tmp_path):
    recs = far_apart()
    recs[0].meta["target"] = {"comm": "myprog", "ppid": 7}
    path = tmp_path / "d.data"
    write_record(str(path), recs)

    def report(*args):
        result = CliRunner().invoke(cli, ["report", *args, "-i", str(path)])
        assert result.exit_code == 0, result.output
        return result.output

    for verb in ("access", "breakdown", "wss", "heatmap"):
        assert "myprog" in report(verb) and "parent 7" in report(verb), verb
        out = json.loads(report(verb, "--json"))
        assert (out["comm"], out["ppid"]) == ("myprog", 7), verb
    assert json.loads(report("dirty-rate", "--json"))["targets"][0]["comm"] == "myprog"
    assert "myprog" in report("dirty-rate")
    assert json.loads(report("sharing", "--json"))["processes"]["0"] == {"pid": 99, "comm": "myprog", "ppid": 7}
