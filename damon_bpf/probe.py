"""What ``damon-bpf probe`` reports: the host's facts, each access source and each sampler. It sits above
both sources and samplers, so neither package has to import the other to describe itself."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from damon_bpf.errors import HostError
from damon_bpf.samplers.numa_state import KNOBS, NumaPaths
from damon_bpf.samplers.soft_dirty import soft_dirty_supported
from damon_bpf.sources.bpf_env import TRACEFS, has_bpf_privileges, import_bcc
from damon_bpf.sources.host import (BPFFS, available_sources, damon_info, extra_sources, headers_info, numa_nodes,
                                    pmu_info)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def soft_dirty_status() -> bool:
    return soft_dirty_supported()[0]


def sampler_status() -> dict[str, dict]:
    soft_ok, soft_why = soft_dirty_supported()
    numa_ok, numa_why = numa_hint_status(len(numa_nodes()))
    return {"soft-dirty": {"available": soft_ok, "why": soft_why},
            "numa-hint": {"available": numa_ok, "why": numa_why}}


def numa_hint_status(nodes: int, paths: NumaPaths | None = None) -> tuple[bool, str]:
    """Whether numa-hint can run and what it sees here; reads only (probe changes nothing)."""
    paths = paths or NumaPaths()
    if not paths.switch.exists():
        return False, "kernel built without CONFIG_NUMA_BALANCING"
    if nodes >= 2:
        return True, f"{nodes} NUMA nodes and CONFIG_NUMA_BALANCING: reads and writes, tuned scan cadence"
    knob = paths.knob(KNOBS[0])
    try:
        knob.read_text()
        cadence = "scan knobs tunable"
    except OSError as err:
        why = ("debugfs not mounted; numa-hint mounts it" if isinstance(err, FileNotFoundError)
               and not os.path.ismount(paths.debugfs) else err.strerror)
        cadence = (f"scan knobs unusable if they refuse ({why}): then the kernel's default cadence, passes seconds "
                   "apart backing off toward 60 s")
    return True, ("one NUMA node: reads and writes of multi-threaded targets that keep running (a single-threaded "
                  f"or idle process's local pages are not scanned); {cadence}")


def probe_host(try_load: bool = True) -> dict:
    """Everything ``damon-bpf probe`` reports, as plain data."""
    try:
        bcc_version = getattr(import_bcc(), "__version__", "unknown")
    except HostError:
        bcc_version = None
    privileged = has_bpf_privileges()
    tracefs_ok = (TRACEFS / "events").is_dir()
    sources = available_sources(try_load=try_load and privileged and bcc_version is not None)
    return {
        "kernel": os.uname().release,
        "arch": platform.machine(),
        "privileged": privileged,
        "bcc": bcc_version,
        "headers": headers_info(),
        "tracefs": tracefs_ok,
        "bpffs": BPFFS.is_dir() and os.path.ismount(BPFFS),
        "btf": Path("/sys/kernel/btf/vmlinux").exists(),
        "sources": {name: {"available": ok, "why": why} for name, (ok, why) in sources.items()},
        # outside --source auto; kept apart so "sources" stays the auto candidates
        "other_sources": {name: {"available": ok, "why": why} for name, (ok, why) in extra_sources().items()},
        "samplers": sampler_status(),
        "damon": damon_info(),
        "numa_nodes": numa_nodes(),
        "numa_balancing": _read("/proc/sys/kernel/numa_balancing"),
        "soft_dirty": soft_dirty_status(),
        "idle_page_tracking": Path("/sys/kernel/mm/page_idle/bitmap").exists(),
        "pmu": pmu_info(),
    }
