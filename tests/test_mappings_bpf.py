"""A real recording names the mappings behind its regions: a file mapped shared and read, anonymous memory and
heap written (tests/workload/mapgen.c), each reported under its own name and kind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import DAMON_BPF
from damon_bpf.recordfile import read_record

MAPGEN = Path(__file__).parent / "workload" / "mapgen.c"


@pytest.fixture(scope="module")
def mapgen_record(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mapgen")
    binary = tmp / "mapgen"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(MAPGEN)], check=True)
    out, data_file = tmp / "d.data", tmp / "mapped data.bin"
    result = subprocess.run([DAMON_BPF, "record", "--regions", "all-mappings", "-o", str(out), "--", str(binary),
                             str(data_file), "8"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    truth = json.loads(result.stdout.splitlines()[0])
    return out, truth, str(data_file)


def _inside(snapshot, lo: int, hi: int):
    return [i for i in range(snapshot.nr_regions) if lo <= int(snapshot.start[i]) and int(snapshot.end[i]) <= hi]


@pytest.mark.parametrize("part,kind", [("file", "file"), ("anon", "anon"), ("heap", "heap")])
def test_regions_inside_each_mapping_carry_its_name_and_kind(mapgen_record, part, kind):
    out, truth, data_file = mapgen_record
    name = {"file": data_file, "anon": "", "heap": "[heap]"}[part]
    lo, hi = truth[part]
    rec = read_record(str(out))[0]
    assert rec.meta["target"]["comm"] == "mapgen"
    named = reported = 0
    for snapshot in rec.snapshots:
        assert snapshot.mappings is not None
        for i in _inside(snapshot, lo, hi):
            assert snapshot.mappings[i] == [(name, kind)], (part, hex(int(snapshot.start[i])))
            named += 1
            reported += int(snapshot.nr_reports[i])
    assert named >= 5 and reported > 100


def test_every_snapshot_carries_the_process_rss_and_pss(mapgen_record):
    out, _, _ = mapgen_record
    rec = read_record(str(out))[0]
    footprints = [s.footprint for s in rec.snapshots]
    assert all(f is not None for f in footprints)
    # mapgen's three 8 MiB areas are resident while it touches them
    assert max(rss for rss, _ in footprints) >= 16 << 20
    assert all(rss >= pss > 0 for rss, pss in footprints)


def test_report_access_json_and_groups_name_the_mappings(mapgen_record):
    out, truth, data_file = mapgen_record
    result = subprocess.run([DAMON_BPF, "report", "access", "-i", str(out), "--json"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["comm"] == "mapgen" and isinstance(report["ppid"], int)
    kinds = {m["kind"] for r in report["regions"] for m in r["mappings"] if r["reports"]}
    assert {"file", "anon", "heap"} <= kinds
    names = {m["name"] for r in report["regions"] for m in r["mappings"]}
    assert data_file in names and "[heap]" in names
    grouped = subprocess.run([DAMON_BPF, "report", "access", "-i", str(out), "--group", "mapping", "--json"],
                             capture_output=True, text=True, timeout=60)
    groups = json.loads(grouped.stdout)["mappings"]
    heap = [g for g in groups if g["mappings"] == [{"name": "[heap]", "kind": "heap"}]]
    assert heap and heap[0]["reports"] > 0 and heap[0]["writes"] == heap[0]["reports"]
    table = subprocess.run([DAMON_BPF, "report", "access", "-i", str(out), "--group", "mapping"],
                           capture_output=True, text=True, timeout=60).stdout
    assert "[heap]" in table and "mapped data" in table, table
