"""Regions named by the mappings they cover: kinds, per-region names, /proc/PID/maps names, the file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from damon_bpf.core.mappings import Mapping, mapping_kind, mapping_label, region_label, region_mappings
from damon_bpf.recordfile import read_record, write_record
from damon_bpf.sources.vaddr import parse_named_maps
from test_recordfile import make_record

MAPS = """\
55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1234   /usr/bin/accessgen
55d0c0a02000-55d0c0a04000 r-xp 00002000 08:01 1234   /usr/bin/accessgen
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0000100000 rw-s 00000000 00:01 55     /dev/zero (deleted)
7f0000100000-7f0000200000 rw-p 00000000 00:00 0
7f0000200000-7f0000300000 rw-p 00000000 00:00 0      [anon:my arena]
7f0000300000-7f0000400000 r--s 00000000 08:01 99     /tmp/data file.bin
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0      [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""


@pytest.mark.parametrize("name,kind", [
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "file"), ("/tmp/data file.bin", "file"), ("[heap]", "heap"),
    ("[stack]", "stack"), ("[stack:1234]", "stack"), ("", "anon"), ("[anon:my arena]", "anon"),
    ("/dev/zero (deleted)", "shm"), ("/SYSV0052e2c1 (deleted)", "shm"), ("/memfd:pool (deleted)", "shm"),
    ("/dev/shm/PostgreSQL.1", "shm"), ("[anon_shmem:buf]", "shm"), ("[vdso]", "special"), ("[vvar]", "special"),
])
def test_kinds(name, kind):
    assert mapping_kind(name) == kind


def test_labels_are_short():
    assert mapping_label("/usr/lib/libc.so.6") == "libc.so.6"
    assert mapping_label("/tmp/x.bin (deleted)") == "x.bin (deleted)"
    assert mapping_label("/dev/zero (deleted)") == "/dev/zero (deleted)"
    assert mapping_label("") == "anon"
    assert region_label([]) == "-"
    assert region_label([("/a/b", "file"), ("", "anon")]) == "b +1"
    assert region_label([("/a/verylongname.so", "file")], 8) == "verylon…"


def test_maps_lines_keep_their_names():
    maps = parse_named_maps(MAPS)
    assert [m.name for m in maps] == ["/usr/bin/accessgen", "/usr/bin/accessgen", "[heap]", "/dev/zero (deleted)",
                                      "", "[anon:my arena]", "/tmp/data file.bin", "[stack]", "[vdso]"]
    assert maps[3] == Mapping(0x7F0000000000, 0x7F0000100000, "/dev/zero (deleted)")


def test_a_region_names_every_mapping_it_overlaps_once():
    maps = parse_named_maps(MAPS)
    start = np.array([0x55D0C0A01000, 0x55D0C0A04000, 0x7F00000FF000, 0x7FFD00021000], np.uint64)
    end = np.array([0x55D0C0A03000, 0x55D0C1000000, 0x7F0000201000, 0x7FFD00100000], np.uint64)
    assert region_mappings(start, end, maps) == [
        [("/usr/bin/accessgen", "file")], [],
        [("/dev/zero (deleted)", "shm"), ("", "anon"), ("[anon:my arena]", "anon")], []]


@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 8)), min_size=1, max_size=20),
       st.lists(st.tuples(st.integers(0, 70), st.integers(1, 10)), min_size=1, max_size=10))
def test_region_mappings_agrees_with_a_plain_overlap_check(raw_maps, raw_regions):
    maps, cursor = [], 0
    for gap, size in raw_maps:            # disjoint, sorted mappings named by their index
        cursor += gap
        maps.append(Mapping(cursor, cursor + size, f"/m{len(maps) % 3}"))
        cursor += size
    regions, cursor = [], 0
    for gap, size in raw_regions:
        cursor += gap
        regions.append((cursor, cursor + size))
        cursor += size
    got = region_mappings(np.array([r[0] for r in regions], np.uint64), np.array([r[1] for r in regions], np.uint64),
                          maps)
    for (lo, hi), names in zip(regions, got):
        want = list(dict.fromkeys(m.name for m in maps if m.start < hi and lo < m.end))
        assert [n for n, _ in names] == want


def test_the_file_keeps_each_regions_mappings(tmp_path):
    rec = make_record(nr=2, n=3)
    rec.snapshots[0].mappings = [[("/usr/bin/x", "file")], [], [("[heap]", "heap"), ("", "anon")]]
    path = tmp_path / "d.data"
    write_record(str(path), [rec])
    back = read_record(str(path))[0]
    assert back.snapshots[0].mappings == rec.snapshots[0].mappings
    assert back.snapshots[1].mappings is None


def test_a_bad_mappings_field_is_one_clear_error(tmp_path):
    import json
    import zlib
    from damon_bpf.errors import RecordFileError
    rec = make_record(nr=1, n=2)
    rec.snapshots[0].mappings = [[("/x", "file")], []]
    path = tmp_path / "d.data"
    write_record(str(path), [rec])
    data = json.loads(zlib.decompress(path.read_bytes()))
    data[0]["snapshots"][0]["regions"][0]["damon_bpf"]["maps"] = [["/x"]]
    path.write_bytes(zlib.compress(json.dumps(data).encode()))
    with pytest.raises(RecordFileError, match="maps"):
        read_record(str(path))


def test_a_mapping_gone_before_the_snapshot_still_names_its_region():
    from damon_bpf.recorder import MapsSeen
    from test_recordfile import make_snapshot
    seen = MapsSeen()
    snap = make_snapshot(0, n=3)
    lo, hi = int(snap.start[0]), int(snap.end[-1])
    seen.on_maps([Mapping(lo, hi, "/tmp/old.bin")])
    seen.on_maps([Mapping(hi, hi + 4096, "[stack]")])          # re-read: the file was unmapped meanwhile
    seen.name(snap)
    assert snap.mappings == [[("/tmp/old.bin", "file")]] * 3
    later = make_snapshot(1, n=3)
    seen.name(later)                                           # the next aggregation knows only the last read
    assert later.mappings == [[], [], []]


def test_a_target_whose_maps_were_never_read_has_no_names():
    from damon_bpf.recorder import MapsSeen
    from test_recordfile import make_snapshot
    snap = make_snapshot(0, n=2)
    MapsSeen().name(snap)
    assert snap.mappings is None
