"""One NUMA node in the 6.12 guest (`tests/vm/run --nodes 1`, no numa=fake), as most cloud VMs have:

    tests/vm/run --kernel backports --nodes 1      (selects the one_node tests; .ci/run does this)

numa-hint must work there as on the one-node host (tests/test_numa_hint_host.py, run here as it is), and the
paddr-backed kernel-DAMON source gets a kdamond of its own (the guest's DAMON sysfs is free, unlike the host's):
it must monitor the frames it read from pagemap, hand the kdamond new ranges when the target's frames change,
map every aggregation back to the target's pages and remove the kdamond at the end. What the kernel's accessed
bits say is not judged here (under TCG they are unreliable: see test_vm_samplers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.one_node]


def _one_node_guest() -> None:
    from damon_bpf.sources.host import numa_nodes

    assert os.environ.get("DAMON_BPF_VM") == "1", "the vm tests run only inside a guest started by tests/vm/run"
    assert os.environ.get("DAMON_BPF_VM_NODES") == "1", "run with tests/vm/run --nodes 1"
    assert len(numa_nodes()) == 1, numa_nodes()


def test_one_node_numa_hint_sees_a_steady_reader_and_writer(tracer, accessgen):
    import test_numa_hint_host as host_case

    _one_node_guest()
    host_case.test_numa_hint_on_one_node_sees_a_steady_reader_and_writer_and_restores(tracer, accessgen)


def test_one_node_numa_hint_explains_a_single_threaded_target(tmp_path):
    import test_numa_hint_host as host_case

    _one_node_guest()
    host_case.test_numa_hint_explains_a_single_threaded_target(tmp_path)


def test_one_node_paddr_source_with_a_kdamond_of_its_own(accessgen):
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.sources.kdamond import ADMIN, STATE
    from damon_bpf.sources.kdamond_paddr import PaddrDamon

    _one_node_guest()
    notes = []
    kernel = PaddrDamon(MonitoringAttrs(), warn=notes.append)   # compiles first: minutes under a loaded TCG
    assert kernel.borrowed is None, notes
    # "churn" writes and drops its range each pass: new frames all the time, so the ranges must be recommitted
    proc = subprocess.Popen([accessgen, "--duration", "600", "hot:0:W:16384:0", "cold:1:c:16384:0",
                             "churn:1:w:4096:0"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        kernel.start(SimpleNamespace(pids={info["pid"]}))
        c0 = ADMIN / "kdamonds" / "0" / "contexts" / "0"
        assert (c0 / "operations").read_text().strip() == "paddr"
        nr_ranges = int((c0 / "targets" / "0" / "regions" / "nr_regions").read_text())
        assert 1 <= nr_ranges <= MonitoringAttrs().max_nr_regions
        try:
            deadline = time.monotonic() + 60
            while (len(kernel.snapshots.get(info["pid"], [])) < 10 or kernel.counts["commits"] < 1) and \
                    time.monotonic() < deadline:
                kernel.tick(0)
                time.sleep(0.05)
        finally:
            kernel.close()
    finally:
        proc.kill()
        proc.wait()
    summary = kernel.summary()
    assert summary["error"] is None and summary["commits"] >= 1, (summary, notes)
    snaps = kernel.snapshots[info["pid"]]
    assert len(snaps) >= 10, summary
    threads = {t["name"]: t for t in info["threads"]}
    for name in ("hot", "cold"):   # resident all along: mapped back into regions covering them
        t = threads[name]
        s = snaps[-1]
        covered = sum(max(0, min(int(e), t["end"]) - max(int(b), t["start"])) for b, e in zip(s.start, s.end))
        assert covered >= 0.9 * (t["end"] - t["start"]), (name, covered)
    assert summary["pages_seen"] > 0.9 * (summary["pages_seen"] + summary["pages_unseen"]), summary
    assert (ADMIN / "kdamonds" / "nr_kdamonds").read_text().strip() == "0" and not STATE.exists()
