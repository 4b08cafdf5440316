"""Source ``perf-mem``: hardware memory-access sampling with a BPF program on perf events.

Intel PEBS (the ``mem-loads`` and ``mem-stores`` events named by the cpu PMU in sysfs) and AMD IBS
(the ``ibs_op`` PMU) give a sampled data address for one in every ``--sample-period`` loads/stores or
ops, whether or not the page is mapped: unlike page faults this sees steady-state accesses without a
sampler. Writes are known from which event fired (Intel); an IBS op sample does not say it to a BPF
program, so IBS reports are 'unknown', like perf-fault's. ARM SPE writes its records to an AUX buffer
that BPF cannot read, so it is detected and refused. Test machines here have no PMU; the plumbing
(event open, BPF program, ring, filters) is tested with the software page-faults event instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from damon_bpf.errors import HostError, UsageError
from damon_bpf.filters import SampleFilter
from damon_bpf.sources import host
from damon_bpf.sources.program import LoadError, last_line, load_bpf, shared_cflags
from damon_bpf.sources.tracer import DEFAULT_RING_BYTES, Tracer

DEVICES = Path("/sys/bus/event_source/devices")
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_SAMPLE_ADDR = 1 << 3
DEFAULT_SAMPLE_PERIOD = 10007   # a prime, so sampling does not lock onto a loop's stride


@dataclass(frozen=True)
class PerfMemEvent:
    label: str
    type: int
    config: int
    config1: int = 0
    precise_ip: int = 0
    kind: str = "unknown"         # read | write | unknown: the BPF entry point on_<kind>


def _format_bits(pmu: Path, term: str) -> tuple[str, list[tuple[int, int]]]:
    """sysfs format 'config:0-7,32-35' -> ('config', [(0, 7), (32, 35)])."""
    field, _, spans = (pmu / "format" / term).read_text().strip().partition(":")
    bits = []
    for span in spans.split(","):
        lo, _, hi = span.partition("-")
        bits.append((int(lo), int(hi or lo)))
    return field, bits


def encode_event(pmu: Path, spec: str) -> dict[str, int]:
    """A sysfs event string such as 'event=0xcd,umask=0x1,ldlat=3' as config words for that PMU."""
    words: dict[str, int] = {"config": 0, "config1": 0, "config2": 0}
    for term in filter(None, spec.strip().split(",")):
        name, _, value = term.partition("=")
        field, spans = _format_bits(pmu, name)
        number = int(value or "1", 0)
        for lo, hi in spans:
            width = hi - lo + 1
            words[field] |= (number & ((1 << width) - 1)) << lo
            number >>= width
    return words


def hardware_events(devices: Path = DEVICES) -> list[PerfMemEvent]:
    """The memory-sampling events this machine's PMU offers, or a HostError saying why there are none."""
    kind = host.pmu_info(devices)["mem_sampling"]
    if kind == "intel-pebs":
        pmu = next(devices / name for name in ("cpu", "cpu_core") if (devices / name / "events/mem-loads").exists())
        pmu_type = int((pmu / "type").read_text())
        events = []
        for label, access in (("mem-loads", "read"), ("mem-stores", "write")):
            if (pmu / "events" / label).exists():
                words = encode_event(pmu, (pmu / "events" / label).read_text())
                events.append(PerfMemEvent(label, pmu_type, words["config"], words["config1"], 2, access))
        return events
    if kind == "amd-ibs":
        return [PerfMemEvent("ibs_op", int((devices / "ibs_op" / "type").read_text()), 0, 0, 0, "unknown")]
    if kind == "arm-spe":
        raise HostError("this machine has ARM SPE, whose samples go to an AUX buffer that BPF programs cannot read; "
                        "use 'perf mem record', or a page-fault source with --sampler")
    names = ", ".join(p.name for p in sorted(devices.iterdir())) if devices.is_dir() else "none"
    raise HostError("--source perf-mem needs hardware memory-access sampling (Intel PEBS, AMD IBS or ARM SPE) and "
                    f"this machine's perf offers none (event sources: {names}; virtual machines rarely pass a PMU "
                    "through); use a page-fault source with --sampler numa-hint or soft-dirty")


def software_test_events() -> list[PerfMemEvent]:
    """The software page-faults event: carries a data address like PEBS, exists everywhere (tests)."""
    return [PerfMemEvent("page-faults", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS)]


def _attr(bcc, event: PerfMemEvent, sample_period: int):
    attr = bcc.Perf.perf_event_attr()
    attr.type, attr.config, attr.config1 = event.type, event.config, event.config1
    attr.sample_period = sample_period
    attr.sample_type = PERF_SAMPLE_ADDR    # PEBS and IBS fill the data address only when asked
    attr.precise_ip = event.precise_ip
    attr.exclude_kernel = 1                # user-space accesses of the targets only
    attr.exclude_hv = 1
    return attr


class PerfMemTracer(Tracer):
    """A Tracer whose reports come from sampled loads/stores instead of page faults."""

    def __init__(self, filters: Sequence[SampleFilter] = (), follow_children: bool = False,
                 ring_bytes: int = DEFAULT_RING_BYTES, sample_period: int = DEFAULT_SAMPLE_PERIOD,
                 events: Sequence[PerfMemEvent] | None = None, follow_cgroups: bool = False) -> None:
        if sample_period < 1:
            raise UsageError(f"--sample-period must be at least 1, not {sample_period}")
        host.require_privileges()
        self.source = "perf-mem"
        self.events = list(hardware_events() if events is None else events)
        if any(e.label == "ibs_op" for e in self.events):
            sample_period = max(16, sample_period & ~0xF)   # IBS counts in units of 16 ops
        self.sample_period = sample_period
        self.follow_children = follow_children
        self._check_filters(filters)
        self.bpf = _compile(self.events, sample_period, ring_bytes, follow_children, follow_cgroups)
        self._bind_maps(ring_bytes, filters)

    def _check_filters(self, filters: Sequence[SampleFilter]) -> None:
        if any(e.kind == "unknown" for e in self.events) and any(f.kind == "write" for f in filters):
            raise UsageError(f"perf-mem with {self.events[0].label} samples cannot tell writes from reads, so "
                             "write/read filters cannot apply")
        super()._check_filters(filters)


def _compile(events: Sequence[PerfMemEvent], sample_period: int, ring_bytes: int, follow_children: bool,
             follow_cgroups: bool):
    try:
        program = load_bpf("perf_mem.bpf.c", shared_cflags(ring_bytes, follow_children, follow_cgroups))
    except LoadError as err:
        raise HostError(f"cannot load the perf-mem program: {err}") from None
    bcc = host.import_bcc()
    for event in events:
        try:
            program.attach_perf_event_raw(attr=_attr(bcc, event, sample_period), fn_name=f"on_{event.kind}")
        except Exception as err:  # noqa: BLE001
            program.cleanup()
            raise HostError(f"cannot open the {event.label} perf event for perf-mem: {last_line(err)}") from None
    return program
