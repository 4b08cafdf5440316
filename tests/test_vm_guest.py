"""Kernel features damon-bpf relies on, checked inside a tests/vm guest (Debian's stock kernels).

Run through `tests/vm/run [--kernel backports|bookworm]`, which boots the kernel and runs `pytest -m vm` in it.
The host suite deselects these with `-m "not vm"`: the CI host's kernel has no kprobes, one NUMA node and no DAMON,
so every test here would fail there, and that is the point of each one.
"""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

TRACING = Path("/sys/kernel/tracing")
DAMON_ADMIN = Path("/sys/kernel/mm/damon/admin")

# What each kernel tests/vm/run can boot is expected to have (seen on 6.12.95+deb12 and 6.1.0-56).
DAMON_VADDR = {"backports": True, "bookworm": False}


@pytest.fixture(scope="module")
def guest_kernel():
    """The suite tests/vm/run booted ('backports' or 'bookworm'); fails outside such a guest."""
    kernel = os.environ.get("DAMON_BPF_VM_KERNEL")
    assert os.environ.get("DAMON_BPF_VM") == "1" and kernel in DAMON_VADDR, (
        "the vm tests run only inside a guest started by tests/vm/run "
        f"(DAMON_BPF_VM={os.environ.get('DAMON_BPF_VM')!r}, DAMON_BPF_VM_KERNEL={kernel!r})")
    return kernel


def append_line(path, line):
    """`echo LINE >> PATH`: Python's open(path, "a") seeks to the end, which tracefs files refuse (EINVAL)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def test_kprobe_events_interface(guest_kernel):
    assert (TRACING / "kprobe_events").is_file(), "no kprobe_events: kernel without CONFIG_KPROBE_EVENTS"


def test_handle_mm_fault_is_traceable(guest_kernel):
    funcs = (TRACING / "available_filter_functions").read_text().split("\n")
    assert any(line.split()[:1] == ["handle_mm_fault"] for line in funcs)


def test_kprobe_on_handle_mm_fault_can_be_created(guest_kernel):
    """The kprobe source attaches here; create and remove one through tracefs (no BPF compile needed)."""
    events = TRACING / "kprobe_events"
    name = f"damon_bpf_vm_{os.getpid()}"
    append_line(events, f"p:{name} handle_mm_fault")
    try:
        assert (TRACING / "events" / "kprobes" / name).is_dir()
    finally:
        append_line(events, f"-:{name}")
    assert name not in events.read_text()


def test_page_fault_user_tracepoint(guest_kernel):
    fmt = (TRACING / "events" / "exceptions" / "page_fault_user" / "format").read_text()
    assert "address" in fmt and "error_code" in fmt


def test_btf_vmlinux(guest_kernel):
    btf = Path("/sys/kernel/btf/vmlinux")
    assert btf.is_file() and btf.stat().st_size > 1 << 20


def test_two_numa_nodes(guest_kernel):
    """tests/vm/run boots with numa=fake=2."""
    assert Path("/sys/devices/system/node/online").read_text().strip() == "0-1"
    nodes = sorted(p.name for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    assert nodes == ["node0", "node1"]


def damon_avail_operations():
    """The operation sets DAMON's sysfs offers, read from a kdamond made for the purpose and removed after."""
    kdamonds = DAMON_ADMIN / "kdamonds"
    assert (kdamonds / "nr_kdamonds").read_text().strip() == "0", "a kdamond is already set up"
    (kdamonds / "nr_kdamonds").write_text("1")
    try:
        (kdamonds / "0" / "contexts" / "nr_contexts").write_text("1")
        return (kdamonds / "0" / "contexts" / "0" / "avail_operations").read_text().split()
    finally:
        (kdamonds / "nr_kdamonds").write_text("0")


def test_damon_vaddr_as_expected_for_this_kernel(guest_kernel):
    if DAMON_VADDR[guest_kernel]:
        assert DAMON_ADMIN.is_dir(), "no DAMON sysfs"
        assert "vaddr" in damon_avail_operations()
    else:
        assert not DAMON_ADMIN.exists(), f"{guest_kernel}'s kernel has DAMON now: update DAMON_VADDR"
