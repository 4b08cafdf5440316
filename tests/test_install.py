"""The suite runs against the installed package, whose C sources ship inside it."""

from __future__ import annotations

from pathlib import Path

import damon_bpf
from damon_bpf.access import ACCESS_DTYPE, bpf_dir, constants

TREE = Path(__file__).resolve().parent.parent


def test_package_is_the_installed_one():
    installed = Path(damon_bpf.__file__).resolve()
    assert "site-packages" in installed.parts
    assert installed.parent != TREE / "damon_bpf"


def test_bpf_sources_ship_inside_the_package():
    assert bpf_dir() == Path(damon_bpf.__file__).parent / "bpf"
    shipped = {p.name for p in bpf_dir().iterdir()}
    assert {p.name for p in (TREE / "bpf").iterdir()} <= shipped


def test_dtype_follows_the_header():
    assert ACCESS_DTYPE.names[:6] == ("addr", "time_ns", "cpu", "pid", "tid", "write")
    assert ACCESS_DTYPE.names[-1] == "ip" and ACCESS_DTYPE.fields["ip"][1] % 8 == 0
    assert ACCESS_DTYPE.itemsize == 40 and ACCESS_DTYPE.itemsize % 8 == 0
    assert constants()["NR_COUNTERS"] == constants()["COUNTER_FILTER_BASE"] + 2 * constants()["MAX_FILTERS"]
