"""Inside a tests/vm guest (Debian's stock kernels): every page-fault source loads, sees the same
ground truth with the same attribution, filters in the kernel, and `probe` tells the guest's features.

One program per source is compiled for the whole module (a bcc compile costs 15-55 s under TCG)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import DAMON_BPF, run_workload
from damon_bpf.access import ACCESS_READ, ACCESS_UNKNOWN, ACCESS_WRITE
from damon_bpf.filters import build_filters
from test_vm_guest import DAMON_VADDR, guest_kernel  # noqa: F401 - fixture

pytestmark = pytest.mark.vm

SOURCES = ("tracepoint", "kprobe", "fentry", "perf-fault")
SPECS = ["w:0:w:64:10", "r:1:r:32:5"]
TOUCHES = {"w": 160, "r": 40}


@pytest.fixture(scope="module", params=SOURCES)
def source_tracer(request, guest_kernel):  # noqa: F811 - the imported fixture
    from damon_bpf.sources.tracer import Tracer

    tracer = Tracer(request.param)
    yield tracer
    tracer.close()


def _run(tracer, accessgen, filters=()):
    tracer.set_filters(list(filters))
    workload = run_workload(accessgen, SPECS, tracer.add_target)
    events = tracer.quiesce()
    accounting = tracer.accounting()
    assert accounting.seen == accounting.delivered + accounting.filtered + accounting.lost
    assert accounting.lost == 0
    return workload, events


def test_source_sees_the_ground_truth(source_tracer, accessgen):
    workload, events = _run(source_tracer, accessgen)
    for name, kind, cpu in (("w", ACCESS_WRITE, 0), ("r", ACCESS_READ, 1)):
        mine = events[workload.in_range(events, name)]
        assert len(mine) == TOUCHES[name], f"{source_tracer.source}: thread {name}"
        assert (mine["cpu"] == cpu).all() and (mine["pid"] == workload.info["pid"]).all()
        expected = ACCESS_UNKNOWN if source_tracer.source == "perf-fault" else kind
        assert (mine["write"] == expected).all()


def test_source_filters_in_the_kernel(source_tracer, accessgen):
    workload, events = _run(source_tracer, accessgen, build_filters(cpus="1"))
    assert workload.in_range(events, "w").sum() == 0
    assert workload.in_range(events, "r").sum() == TOUCHES["r"]
    assert (events["cpu"] == 1).all()


def test_probe_reports_the_guest(guest_kernel):  # noqa: F811
    info = json.loads(subprocess.run([DAMON_BPF, "probe", "--json"], capture_output=True, text=True, check=True,
                                     timeout=600).stdout)
    assert {name: s["available"] for name, s in info["sources"].items()} == dict.fromkeys(SOURCES, True)
    assert info["headers"]["matching"] is True and info["btf"] is True
    assert len(info["numa_nodes"]) == 2
    assert info["damon"]["vaddr"] is DAMON_VADDR[guest_kernel]


def test_kprobe_source_from_the_command_line(guest_kernel, accessgen, tmp_path):  # noqa: F811
    out = tmp_path / "ev.bin"
    result = subprocess.run([DAMON_BPF, "trace", "--source", "kprobe", "--format", "binary", "-o", str(out),
                             "--write-only", "--", accessgen, "w:0:w:64:10"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    from damon_bpf.access import ACCESS_DTYPE

    events = np.fromfile(out, dtype=ACCESS_DTYPE)
    info = json.loads(result.stdout.splitlines()[0])
    writer = info["threads"][0]
    inside = (events["addr"] >= writer["start"]) & (events["addr"] < writer["end"])
    assert inside.sum() == 160 and (events["write"] == ACCESS_WRITE).all()
