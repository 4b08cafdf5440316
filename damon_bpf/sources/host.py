"""What this host offers: privileges, bcc, headers, tracefs, each access source, DAMON, NUMA, PMU."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

from damon_bpf import log
from damon_bpf.errors import HostError
from damon_bpf.filters import parse_cpulist
from damon_bpf.sources import kheaders
# tracer, perf_mem and kdamond ask host for the last three: re-exported from bpf_env, which program.py uses
from damon_bpf.sources.bpf_env import TRACEFS, ensure_tracefs, import_bcc, require_privileges  # noqa: F401
from damon_bpf.sources.program import compile_probe_program

BPFFS = Path("/sys/fs/bpf")
# Preference order for --source auto: exact write flag and user-mode only first, perf last.
SOURCE_ORDER = ("tracepoint", "fentry", "kprobe", "perf-fault")


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
            ok, why = source_status(name, try_load=True)
            log.detail(f"source auto: {name} {'chosen' if ok else 'skipped'}: {why}")
            if ok:
                return name
        raise HostError("no access source works on this host: " + "; ".join(
            f"{name}: {why}" for name, (_, why) in available_sources(try_load=True).items()))
    if requested not in SOURCE_ORDER:
        raise HostError(f"unknown source '{requested}' (known: auto, {', '.join(SOURCE_ORDER)})")
    ok, why = source_status(requested, try_load=False)
    log.detail(f"source {requested}: {why}")
    if not ok:
        raise HostError(f"source '{requested}' is not available here ({why}); "
                        f"this host supports: {', '.join(usable_sources()) or 'none'}")
    return requested


def usable_sources(exclude: str = "") -> list[str]:
    """Sources that work here (loading test programs where needed), best first."""
    return [name for name, (ok, _) in available_sources(try_load=True).items() if ok and name != exclude]


def numa_nodes() -> list[int]:
    try:
        return sorted(parse_cpulist(Path("/sys/devices/system/node/online").read_text(), None))
    except (OSError, ValueError):
        return [0]


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
    elif damon["sysfs"] and damon["paddr"] and damon["tracepoint_aggregated"]:
        kdamond = (True, "DAMON sysfs with paddr only: the frames backing the targets (from pagemap) are "
                   "monitored and mapped back to their pages; steady-state reads and writes alike, any target")
    else:
        ops = damon["vaddr"] or damon["paddr"]
        missing = [name for name, ok in (("DAMON sysfs", damon["sysfs"]), ("vaddr or paddr", ops),
                                         ("damon_aggregated tracepoint", damon["tracepoint_aggregated"])) if not ok]
        kdamond = (False, f"kernel DAMON lacks {', '.join(missing)}")
    return {"perf-mem": perf_mem, "damon": kdamond}
