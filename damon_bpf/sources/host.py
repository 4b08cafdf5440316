"""What this host offers: privileges, bcc, headers, tracefs, each access source, DAMON, NUMA, PMU."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import subprocess
from pathlib import Path

from damon_bpf.errors import HostError

TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
# Preference order for --source auto: exact write flag and user-mode only first, perf last.
SOURCE_ORDER = ("tracepoint", "fentry", "kprobe", "perf-fault")
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_bpf_privileges() -> bool:
    caps = effective_caps()
    if caps >> _CAP_SYS_ADMIN & 1:
        return True
    return bool(caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1)


def require_privileges() -> None:
    if not has_bpf_privileges():
        raise HostError("damon-bpf needs root (or CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo")


def import_bcc():
    """The bcc module, or a HostError saying how to get it."""
    try:
        import bcc  # noqa: PLC0415 - optional system package, imported only when tracing
    except ImportError:
        raise HostError("bcc is not installed for this Python: apt-get install python3-bpfcc and use a venv made "
                        "with '/usr/bin/python3 -m venv --system-site-packages' (the PyPI 'bcc' is another project)"
                        ) from None
    return bcc


def ensure_tracefs() -> Path:
    """tracefs at /sys/kernel/tracing, mounted if it is not."""
    if (TRACEFS / "events").is_dir():
        return TRACEFS
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True)
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise HostError(f"tracefs is not mounted and mounting it failed: run 'mount -t tracefs nodev {TRACEFS}'")
    return TRACEFS


def _tracefs_has(relative: str) -> bool:
    return (TRACEFS / relative).exists()


@functools.lru_cache(maxsize=1)
def _kallsyms() -> frozenset[str]:
    """Kernel symbol names, read once per run: probe asks about several (120k lines each read)."""
    try:
        with open("/proc/kallsyms") as kallsyms:
            return frozenset(line.split()[2] for line in kallsyms)
    except OSError:
        return frozenset()


def _kallsyms_has(symbol: str) -> bool:
    return symbol in _kallsyms()


def _perf_sw_page_faults_opens() -> tuple[bool, str]:
    """Open (and close) a perf software page-faults counter on CPU 0, as the perf-fault source will."""
    numbers = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "s390x": 331, "ppc64le": 319}
    nr = numbers.get(platform.machine())
    if nr is None:
        return False, f"perf_event_open syscall number unknown on {platform.machine()}"
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = 1          # type = PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = 128        # size
    ctypes.c_uint64.from_buffer(attr, 8).value = 2          # config = PERF_COUNT_SW_PAGE_FAULTS
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(nr, attr, -1, 0, -1, 0)
    if fd < 0:
        return False, f"perf_event_open failed: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return True, "perf software page-faults event opens"


def source_status(name: str, try_load: bool = False) -> tuple[bool, str]:
    """(available, why) for one access source. ``try_load`` compiles a tiny program where only
    loading can tell (fentry)."""
    if name in ("tracepoint", "kprobe"):
        # Mount tracefs before judging: right after boot it may not be mounted yet, and "no tracepoint"
        # then made --source auto fall back to perf-fault, whose reports carry no write flag.
        try:
            ensure_tracefs()
        except HostError as err:
            return False, str(err)
    if name == "tracepoint":
        if _tracefs_has("events/exceptions/page_fault_user"):
            return True, "tracepoint exceptions:page_fault_user exists"
        return False, "no exceptions:page_fault_user tracepoint (x86 only)"
    if name == "kprobe":
        if not _tracefs_has("kprobe_events"):
            return False, "kernel built without kprobes (no kprobe_events in tracefs)"
        if not _kallsyms_has("handle_mm_fault"):
            return False, "handle_mm_fault not in /proc/kallsyms"
        return True, "kprobes enabled and handle_mm_fault is probeable"
    if name == "fentry":
        if not Path("/sys/kernel/btf/vmlinux").exists():
            return False, "no kernel BTF (/sys/kernel/btf/vmlinux)"
        if not try_load:
            return True, "kernel BTF present (attach not tried)"
        return _try_fentry()
    if name == "perf-fault":
        return _perf_sw_page_faults_opens()
    raise HostError(f"unknown source '{name}' (known: {', '.join(SOURCE_ORDER)})")


def _try_fentry() -> tuple[bool, str]:
    from damon_bpf.sources.program import compile_probe_program  # noqa: PLC0415 - avoids a cycle

    try:
        compile_probe_program("fentry")
    except Exception:  # noqa: BLE001 - bcc reports every refusal as "Need super-user privileges"
        return False, "the kernel refused a fentry program on handle_mm_fault (no BPF trampoline support)"
    return True, "fentry attached to handle_mm_fault"


def available_sources(try_load: bool = False) -> dict[str, tuple[bool, str]]:
    return {name: source_status(name, try_load) for name in SOURCE_ORDER}


def choose_source(requested: str) -> str:
    """Resolve ``auto`` to the first source in SOURCE_ORDER that works here, and check an explicit one.
    fentry can only be judged by loading a program, so it is tried only when it is needed."""
    if requested == "auto":
        for name in SOURCE_ORDER:
            if source_status(name, try_load=True)[0]:
                return name
        raise HostError("no access source works on this host: " + "; ".join(
            f"{name}: {why}" for name, (_, why) in available_sources(try_load=True).items()))
    if requested not in SOURCE_ORDER:
        raise HostError(f"unknown source '{requested}' (known: auto, {', '.join(SOURCE_ORDER)})")
    ok, why = source_status(requested, try_load=False)
    if not ok:
        raise HostError(f"source '{requested}' is not available here ({why}); "
                        f"this host supports: {', '.join(usable_sources()) or 'none'}")
    return requested


def usable_sources(exclude: str = "") -> list[str]:
    """Sources that work here (loading test programs where needed), best first."""
    return [name for name, (ok, _) in available_sources(try_load=True).items() if ok and name != exclude]


def numa_nodes() -> list[int]:
    from damon_bpf.filters import parse_cpulist  # noqa: PLC0415 - same list syntax

    try:
        return sorted(parse_cpulist(Path("/sys/devices/system/node/online").read_text(), None))
    except (OSError, ValueError):
        return [0]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def pmu_info(devices: Path = Path("/sys/bus/event_source/devices")) -> dict:
    names = sorted(p.name for p in devices.iterdir()) if devices.is_dir() else []
    mem_sampling = None
    if (devices / "cpu/events/mem-loads").exists():
        mem_sampling = "intel-pebs"
    elif "ibs_op" in names:
        mem_sampling = "amd-ibs"
    elif any(name.startswith("arm_spe") for name in names):
        mem_sampling = "arm-spe"
    present = "cpu" in names or any(name.startswith(("armv8", "cpu_core", "cpu_atom")) for name in names)
    return {"present": present, "mem_sampling": mem_sampling, "event_sources": names}


def damon_info() -> dict:
    sysfs = Path("/sys/kernel/mm/damon/admin")
    return {
        "sysfs": sysfs.is_dir(),
        "vaddr": _kallsyms_has("damon_va_check_accesses") or _kallsyms_has("damon_va_prepare_access_checks"),
        "paddr": _kallsyms_has("damon_pa_check_accesses") or _kallsyms_has("damon_pa_prepare_access_checks"),
        "tracepoint_aggregated": _tracefs_has("events/damon/damon_aggregated"),
    }


def headers_info() -> dict:
    from damon_bpf.sources import kheaders  # noqa: PLC0415

    running = kheaders.running_tree()
    if running is not None:
        return {"matching": True, "tree": str(running)}
    pairs = kheaders._flavour_trees()
    return {"matching": False, "tree": str(pairs[0][0]) if pairs else None}


def extra_sources() -> dict[str, tuple[bool, str]]:
    """Sources outside --source auto: hardware sampling (perf-mem) and the kernel's own DAMON (damon)."""
    pmu = pmu_info()
    if pmu["mem_sampling"] in ("intel-pebs", "amd-ibs"):
        perf_mem = (True, f"{pmu['mem_sampling']} memory-access sampling")
    elif pmu["mem_sampling"] == "arm-spe":
        perf_mem = (False, "ARM SPE found, but its AUX-buffer samples cannot be read by BPF")
    else:
        perf_mem = (False, "no PEBS, IBS or SPE (no hardware PMU)" if not pmu["present"] else
                    "the PMU offers no memory-access sampling")
    damon = damon_info()
    if damon["sysfs"] and damon["vaddr"] and damon["tracepoint_aggregated"]:
        kdamond = (True, "DAMON sysfs with vaddr and the damon:damon_aggregated tracepoint")
    else:
        missing = [name for name, ok in (("DAMON sysfs", damon["sysfs"]), ("vaddr", damon["vaddr"]),
                                         ("damon_aggregated tracepoint", damon["tracepoint_aggregated"])) if not ok]
        kdamond = (False, f"kernel DAMON lacks {', '.join(missing)}")
    return {"perf-mem": perf_mem, "damon": kdamond}


def soft_dirty_status() -> bool:
    from damon_bpf.samplers.soft_dirty import soft_dirty_supported  # noqa: PLC0415 - avoids a cycle

    return soft_dirty_supported()[0]


def sampler_status() -> dict[str, dict]:
    from damon_bpf.samplers.soft_dirty import soft_dirty_supported  # noqa: PLC0415

    soft_ok, soft_why = soft_dirty_supported()
    nodes = len(numa_nodes())
    numa_ok = nodes >= 2 and Path("/proc/sys/kernel/numa_balancing").exists()
    numa_why = (f"{nodes} NUMA nodes and CONFIG_NUMA_BALANCING" if numa_ok else
                f"needs two or more NUMA nodes (this host has {nodes})" if nodes < 2 else
                "kernel built without CONFIG_NUMA_BALANCING")
    return {"soft-dirty": {"available": soft_ok, "why": soft_why},
            "numa-hint": {"available": numa_ok, "why": numa_why}}


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
