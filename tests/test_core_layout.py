import os
import subprocess
import sys

import pytest

from damon_bpf.core.layout import all_mappings, page_size, three_regions
from damon_bpf.sources.vaddr import layout_for, parse_maps, read_maps
from damon_bpf.errors import TargetError, UsageError

P = page_size()

# A typical x86-64 process: binary, heap right after it, libraries, a big anonymous mapping,
# stack, vdso; the two largest gaps are heap..mmap area and mmap area..stack.
MAPS = """\
555555554000-555555556000 r--p 00000000 08:01 1 /usr/bin/cat
555555556000-55555555b000 r-xp 00002000 08:01 1 /usr/bin/cat
55555555b000-55555555e000 rw-p 00007000 08:01 1 /usr/bin/cat
555555560000-555555581000 rw-p 00000000 00:00 0 [heap]
7ffff7d80000-7ffff7da8000 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff7da8000-7ffff7f3d000 r-xp 00028000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff7f3d000-7ffff7f95000 r--p 001bd000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff7fc0000-7ffff7fc4000 rw-p 00000000 00:00 0
7ffff7fc4000-7ffff7fc8000 r--p 00000000 00:00 0 [vvar]
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""


def test_parse_maps_skips_vsyscall_and_sorts():
    mappings = parse_maps(MAPS)
    assert len(mappings) == 10
    assert mappings[0] == (0x555555554000, 0x555555556000)
    assert mappings[-1] == (0x7FFFFFFDE000, 0x7FFFFFFFF000)
    assert mappings == sorted(mappings)


def test_parse_maps_names_with_spaces_and_no_name():
    text = "1000-2000 rw-p 00000000 00:00 0\n3000-5000 r--p 00000000 08:01 7 /tmp/a file (deleted)\n\n"
    assert parse_maps(text) == [(0x1000, 0x2000), (0x3000, 0x5000)]


def test_three_regions_leaves_out_the_two_largest_gaps():
    assert three_regions(parse_maps(MAPS)) == [
        (0x555555554000, 0x555555581000),  # binary + heap
        (0x7FFFF7D80000, 0x7FFFF7FC8000),  # libraries .. vvar (small gaps inside are kept)
        (0x7FFFFFFDE000, 0x7FFFFFFFF000),  # stack
    ]


def test_three_regions_ties_go_to_the_lower_gap():
    # gaps: 0x1000 (a..b), 0x3000 (b..c), 0x3000 (c..d): the two largest are b..c and c..d.
    m = [(0x0, 0x1000), (0x2000, 0x3000), (0x6000, 0x7000), (0xA000, 0xB000)]
    assert three_regions(m) == [(0x0, 0x3000), (0x6000, 0x7000), (0xA000, 0xB000)]
    # gaps 0x3000, 0x3000, 0x3000: the first two win, the third stays monitored.
    m = [(0x0, 0x1000), (0x4000, 0x5000), (0x8000, 0x9000), (0xC000, 0xD000)]
    assert three_regions(m) == [(0x0, 0x1000), (0x4000, 0x5000), (0x8000, 0xD000)]


def test_three_regions_with_fewer_than_two_gaps_covers_the_runs():
    assert three_regions([(0x0, 0x1000), (0x1000, 0x2000)]) == [(0x0, 0x2000)]
    assert three_regions([(0x0, 0x1000), (0x5000, 0x6000)]) == [(0x0, 0x1000), (0x5000, 0x6000)]
    assert three_regions([]) == []


def test_all_mappings_one_range_per_run_covering_every_mapping():
    mappings = parse_maps(MAPS)
    ranges = all_mappings(mappings)
    assert ranges == [
        (0x555555554000, 0x55555555E000),
        (0x555555560000, 0x555555581000),
        (0x7FFFF7D80000, 0x7FFFF7F95000),
        (0x7FFFF7FC0000, 0x7FFFF7FC8000),
        (0x7FFFFFFDE000, 0x7FFFFFFFF000),
    ]
    for s, e in mappings:
        assert any(rs <= s and e <= re for rs, re in ranges)


def test_ranges_are_page_aligned_outwards():
    assert all_mappings([(P + 1, 2 * P - 1)]) == [(P, 2 * P)]


def test_read_maps_of_self_and_layouts():
    mappings = read_maps(os.getpid())
    here = id(mappings)  # an address inside the Python heap, which is mapped
    assert any(m.start <= here < m.end for m in mappings)
    covered = layout_for(os.getpid(), "all-mappings")()
    assert any(s <= here < e for s, e in covered)
    assert len(layout_for(os.getpid(), "damon")()) == 3


def test_read_maps_of_a_gone_process_is_a_target_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: /proc/PID no longer exists
    with pytest.raises(TargetError):
        read_maps(child.pid)
    with pytest.raises(TargetError):
        layout_for(child.pid, "damon")()


def test_layout_for_rejects_unknown_mode():
    with pytest.raises(UsageError, match="all-mappings"):
        layout_for(1, "everything")
