"""report numa on two (fake) NUMA nodes, inside a tests/vm guest: a thread on one node's CPU writing
memory placed on the other node is named with its bytes; --apply moves it; afterwards it is local.

Run with `tests/vm/run --kernel backports -- '.venv/bin/pytest -m vm -q tests/test_vm_numa.py'`. The guest boots
with numa=fake=2; which CPUs each fake node gets is read from sysfs, not assumed (NUMA emulation may put
every CPU on node 0 and leave node 1 memory-only): the writer runs on CPU 0, its memory goes to another
node with memory. Accessgen's steady shared-range writer (mode S) keeps its pages mapped, so the soft-dirty
sampler makes its writes fault again, and its range lies far from every other mapping, so DAMON's regions
there hold its pages only (not libraries' shared pages, which move_pages leaves alone); NUMA balancing is
off so the kernel does not move the pages itself. Seen in the 6.12 guest: both CPUs on node 1, memory on 0 and 1.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess

import numpy as np
import pytest

from conftest import DAMON_BPF
from damon_bpf.reports.numa import sample_pages
from damon_bpf.sources import numa as numa_src
from test_vm_samplers import _in_guest, numa_balancing_off

pytestmark = pytest.mark.vm

RANGE_KIB = 8192
PAGE = 4096


def place(pid: int, lo: int, hi: int, node: int) -> np.ndarray:
    addrs = sample_pages(lo, hi, PAGE, (hi - lo) // PAGE)
    for i in range(0, len(addrs), numa_src.CHUNK_PAGES):
        numa_src.move_to(pid, addrs[i:i + numa_src.CHUNK_PAGES], node)
    return numa_src.page_nodes(pid, addrs)


def record_and_report(tmp_path, pid: int, name: str, *report_args) -> dict:
    out = tmp_path / f"{name}.data"
    result = subprocess.run([DAMON_BPF, "record", "-o", str(out), "-p", str(pid), "--sampler", "soft-dirty",
                             "--duration", "6"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([DAMON_BPF, "report", "numa", "-i", str(out), "--min-age", "0", "--json",
                             *report_args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextlib.contextmanager
def remote_writer(accessgen):
    """Accessgen's steady writer on CPU 0 whose range was first moved to a node other than CPU 0's; yields
    (pid, lo, hi, local node, remote node); NUMA balancing off meanwhile."""
    cpu_nodes, memory_nodes = numa_src.cpu_nodes(), numa_src.memory_nodes()
    assert len(memory_nodes) >= 2, f"the guest should have two memory nodes (numa=fake=2): {memory_nodes}"
    local = cpu_nodes[0]
    remote = next(n for n in memory_nodes if n != local)
    print(f"guest CPU -> node: {cpu_nodes}; memory nodes {memory_nodes}; writer on CPU 0 (node {local}), "
          f"memory on node {remote}")
    with numa_balancing_off():
        proc = subprocess.Popen([accessgen, "--wait", "--duration", "600", f"far:0:S:{RANGE_KIB}:0"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            pid, (far,) = info["pid"], info["threads"]
            lo, hi = far["start"], far["end"]
            assert (place(pid, lo, hi, remote) == remote).mean() >= 0.99
            proc.stdin.write("go\n")
            proc.stdin.flush()
            yield pid, lo, hi, local, remote
        finally:
            proc.kill()
            proc.wait()


def inside(data: dict, lo: int, hi: int) -> list[dict]:
    """Regions overlapping [lo, hi): the range is alone in its part of the address space."""
    return [r for r in data["regions"] if r["start"] < hi and r["end"] > lo]


def test_numa_names_the_remote_range_moves_it_and_it_is_local_afterwards(tmp_path, accessgen):
    _in_guest()
    with remote_writer(accessgen) as (pid, lo, hi, local, _remote):
        before = record_and_report(tmp_path, pid, "before", "--apply")
        named = [r for r in inside(before, lo, hi) if r["move_to"] == local]
        assert named, json.dumps(before)
        assert sum(r["move_bytes"] for r in named) >= 0.5 * RANGE_KIB * 1024
        assert all(r["access_share_by_node"].get(str(local), 0) >= 0.9 for r in named)
        assert sum(m["moved_bytes"] for m in before["moved"]) >= 0.5 * RANGE_KIB * 1024
        now = numa_src.page_nodes(pid, sample_pages(lo, hi, PAGE, (hi - lo) // PAGE))
        assert (now == local).mean() >= 0.5, np.unique(now, return_counts=True)

        after = record_and_report(tmp_path, pid, "after")
        mine = inside(after, lo, hi)
        assert mine and not [r for r in mine if r["move_to"] is not None], json.dumps(after)
        local_bytes = sum((r["page_bytes_by_node"] or {}).get(str(local), 0) for r in mine)
        present = sum(sum((r["page_bytes_by_node"] or {}).values()) for r in mine)
        assert present > 0 and local_bytes >= 0.9 * present
        print(f"named {sum(r['move_bytes'] for r in named) / 2**20:.2f} MiB in {len(named)} regions, moved "
              f"{sum(m['moved_bytes'] for m in before['moved']) / 2**20:.2f} MiB; pages on node {local} after: "
              f"{(now == local).mean():.1%}; afterwards {local_bytes / present:.1%} of the present bytes local, "
              f"access from node {local}: {[r['access_share_by_node'] for r in mine]}")


def test_numa_record_apply_moves_the_range_during_the_run_and_its_accesses_turn_local(tmp_path, accessgen):
    """record --apply: the same decision as report numa, taken every 2 s during the run; the end-of-run line
    says what moved and the share of the moved range's later reports that came from its new node.

    40 s, not 12: measured in the 6.12 TCG guest (2026-11-30), the collector's thread was held 10.3 s by its
    first snapshot with reports (7.7 s naming the writer's code, ELF symbols read once; 2.3 s closing the
    intervals), after 2-4 s of soft-dirty warm-up, so a 12 s run had one --apply round with data, taken at
    the first window with reports, and no tick after it."""
    _in_guest()
    with remote_writer(accessgen) as (pid, lo, hi, local, _remote):
        result = subprocess.run([DAMON_BPF, "record", "-o", str(tmp_path / "apply.data"), "-p", str(pid),
                                 "--sampler", "soft-dirty", "--duration", "40", "--apply"],
                                capture_output=True, text=True, timeout=600)
        now = numa_src.page_nodes(pid, sample_pages(lo, hi, PAGE, (hi - lo) // PAGE))
    assert result.returncode == 0, result.stderr
    print(result.stderr)
    line = next(x for x in result.stderr.splitlines() if "--apply:" in x)
    found = re.search(r"moved ([\d.]+) (\w+) in (\d+) regions; local accesses in them: (\d+)% before .*, "
                      r"(\d+)% of their (\d+) reports since", line)
    assert found, line
    moved = float(found[1]) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}.get(found[2], 1)
    assert moved >= 0.5 * RANGE_KIB * 1024
    assert int(found[4]) <= 50 and int(found[5]) >= 90 and int(found[6]) > 0, line
    assert (now == local).mean() >= 0.5, np.unique(now, return_counts=True)
