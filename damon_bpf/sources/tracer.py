"""A loaded access source: targets and filters in, batches of access reports and accounting out."""

from __future__ import annotations

import ctypes as ct
import mmap
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from damon_bpf.access import ACCESS_DTYPE, FILTER_TYPES, LIFECYCLE_DTYPE, MAX_FILTERS, constants
from damon_bpf.errors import HostError, UsageError
from damon_bpf.filters import SampleFilter
from damon_bpf.sources import host, program
from damon_bpf.sources.program import LoadError, compile_program, ring_pages
from damon_bpf.sources.ringbuf import RingReader

DEFAULT_RING_BYTES = 64 << 20  # 1 s of reader pause at 1M events/s is 48 MB of records (40 + 8-byte header)
_C = constants()
# A lifecycle record still being written when the ring is read holds back the committed ones behind
# it; BPF programs cannot sleep, so it commits within microseconds: wait for it, at most this long.
LIFECYCLE_COMMIT_WAIT_S = 0.005


@dataclass
class FilterCount:
    spec: str
    passed: int
    rejected: int


@dataclass
class Accounting:
    """Every report of a target process, counted in the kernel: seen = delivered + filtered + lost."""

    seen: int = 0
    delivered: int = 0
    lost: int = 0
    filters: list[FilterCount] = field(default_factory=list)

    @property
    def filtered(self) -> int:
        return sum(count.rejected for count in self.filters)

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "delivered": self.delivered,
            "lost": self.lost,
            "filtered": {
                "total": self.filtered,
                "filters": [{"filter": c.spec, "passed": c.passed, "rejected": c.rejected} for c in self.filters],
            },
        }


def delete_all(table, keys=None) -> None:
    """Delete every entry (or those of ``keys``) of a BPF hash map. The program deletes entries itself (a
    target's exit, a started command's exec), so one listed may be gone when it is deleted: bcc's clear()
    raised KeyError then, an internal error at the end of a run."""
    for key in list(table.keys()) if keys is None else keys:
        try:
            del table[key]
        except KeyError:
            pass


class Tracer:
    """One access source loaded in the kernel, with its target set, filters and ring reader."""

    def __init__(self, source: str = "auto", filters: Sequence[SampleFilter] = (),
                 follow_children: bool = False, ring_bytes: int = DEFAULT_RING_BYTES,
                 follow_cgroups: bool = False) -> None:
        host.require_privileges()
        self.source = host.choose_source(source)
        self.follow_children = follow_children
        self._check_filters(filters)
        try:
            self.bpf = compile_program(self.source, ring_bytes, follow_children, follow_cgroups)
        except LoadError as err:
            others = host.usable_sources(exclude=self.source)
            raise HostError(f"{err}; try --source {others[0] if others else 'auto'}") from None
        self._bind_maps(ring_bytes, filters)

    def _bind_maps(self, ring_bytes: int, filters: Sequence[SampleFilter]) -> None:
        """Hold the loaded program's shared maps (bpf/report_common.bpf.c) and install the filters."""
        self._targets = self.bpf["targets"]
        # As compiled into the program (shared_cflags): before 6.16 an exit record is the main thread's.
        self.exit_is_group_dead = program.exit_has_group_dead()
        self._pending = self.bpf["pending_exec"]
        ring = self.bpf["accesses"]
        self.reader = RingReader(ring.map_fd, ring_pages(ring_bytes) * mmap.PAGESIZE, ACCESS_DTYPE)
        lifecycle = self.bpf["lifecycle"]
        self.lifecycle_reader = RingReader(lifecycle.map_fd, _C["LIFECYCLE_RING_PAGES"] * mmap.PAGESIZE,
                                           LIFECYCLE_DTYPE)
        self.filters: list[SampleFilter] = []
        self.set_filters(filters)

    def _check_filters(self, filters: Sequence[SampleFilter]) -> None:
        if len(filters) > MAX_FILTERS:
            raise UsageError(f"too many sample filters: {len(filters)} (at most {MAX_FILTERS})")
        if self.source == "perf-fault" and any(f.kind == "write" for f in filters):
            others = host.usable_sources(exclude="perf-fault")
            raise UsageError("the perf-fault source cannot tell writes from reads, so write/read filters cannot "
                             f"apply; use --source {others[0] if others else 'tracepoint'}")

    def set_filters(self, filters: Sequence[SampleFilter]) -> None:
        """Install an ordered filter list (replacing the previous one) and zero the counters."""
        self._check_filters(filters)
        table, tids = self.bpf["filters"], self.bpf["filter_tids"]
        tids.clear()
        for index in range(MAX_FILTERS):
            leaf = table.Leaf()
            if index < len(filters):
                self._encode(leaf, filters[index], index, tids)
            table[ct.c_int(index)] = leaf
        self.filters = list(filters)
        self.bpf["counters"].clear()

    @staticmethod
    def _encode(leaf, sample_filter: SampleFilter, index: int, tids) -> None:
        leaf.type = FILTER_TYPES[sample_filter.kind]
        leaf.matching = int(sample_filter.matching)
        leaf.allow = int(sample_filter.allow)
        for cpu in sample_filter.cpus:
            leaf.cpus[cpu // 64] |= 1 << (cpu % 64)
        for tid in sample_filter.tids:
            tids[ct.c_uint64(index << 32 | tid)] = ct.c_uint8(1)

    def add_target(self, pid: int, by_cgroup: bool = False) -> None:
        """Make ``pid`` a target; ``by_cgroup``: only while it is in a followed cgroup (--cgroup)."""
        self._targets[ct.c_uint32(pid)] = ct.c_uint8(_C["TARGET_BY_CGROUP"] if by_cgroup else _C["TARGET_BY_PID"])

    def exclude(self, pid: int) -> None:
        """Never trace ``pid`` (damon-bpf itself inside a followed cgroup)."""
        self._targets[ct.c_uint32(pid)] = ct.c_uint8(_C["TARGET_NEVER"])

    def follow_cgroups(self, cgroups: Sequence[tuple[int, int]]) -> None:
        """Follow the processes of these cgroups, ``(id, level)`` each (a program compiled with
        ``follow_cgroups``): each becomes a target at its first report from inside one."""
        levels = sorted({level for _id, level in cgroups})
        if len(levels) > _C["MAX_CGROUP_LEVELS"]:
            raise UsageError(f"--cgroup: the cgroups given lie at {len(levels)} depths of the hierarchy; at most "
                             f"{_C['MAX_CGROUP_LEVELS']} are supported")
        table = self.bpf["cgroup_levels"]
        for index, level in enumerate(levels):
            table[ct.c_int(index)] = ct.c_uint32(level + 1)
        for cgroup_id, _level in cgroups:
            self.bpf["cgroups"][ct.c_uint64(cgroup_id)] = ct.c_uint8(1)

    def add_on_exec(self, pid: int) -> None:
        """Make ``pid`` a target from its next exec on (for commands we launch)."""
        self._pending[ct.c_uint32(pid)] = ct.c_uint8(1)

    def remove_target(self, pid: int) -> None:
        delete_all(self._targets, [ct.c_uint32(pid)])   # the program may have deleted it at the exit

    def is_target(self, pid: int) -> bool:
        """True if ``pid`` is in the kernel's target map now."""
        try:
            self._targets[ct.c_uint32(pid)]
        except KeyError:
            return False
        return True

    def kernel_targets(self) -> set[int]:
        return {key.value for key in self._targets.keys()}

    def drain(self) -> np.ndarray:
        return self.reader.read()

    def drain_lifecycle(self) -> np.ndarray:
        """Every lifecycle record (bpf/access.h) committed before this call, oldest first.

        Called after drain(): every access record drained was written after its process's fork or
        exec record was committed, so this returns those records too."""
        parts = [self.lifecycle_reader.read()]
        deadline = time.monotonic() + LIFECYCLE_COMMIT_WAIT_S
        while self.lifecycle_reader.pending_bytes() and time.monotonic() < deadline:
            parts.append(self.lifecycle_reader.read())   # stopped at a record being written: wait for it
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def lifecycle_lost(self) -> int:
        """Lifecycle records lost to a full lifecycle ring (then user space checks /proc instead)."""
        return sum(int(getattr(value, "value", value)) for value in self.bpf["lifecycle_lost"][ct.c_int(0)])

    def accounting(self) -> Accounting:
        per_cpu = self.bpf["counters"][ct.c_int(0)]
        totals = [sum(cpu.slot[index] for cpu in per_cpu) for index in range(_C["NR_COUNTERS"])]
        base = _C["COUNTER_FILTER_BASE"]
        filters = [FilterCount(f.describe(), totals[base + 2 * i], totals[base + 2 * i + 1])
                   for i, f in enumerate(self.filters)]
        return Accounting(totals[_C["COUNTER_SEEN"]], totals[_C["COUNTER_DELIVERED"]], totals[_C["COUNTER_LOST"]],
                          filters)

    def quiesce(self, grace_s: float = 0.02) -> np.ndarray:
        """Stop taking reports (empty the target set), let running programs finish, and return the
        last records, so the accounting read afterwards is exact."""
        delete_all(self._pending)
        self.bpf["cgroup_levels"].clear()   # first: no cgroup member joins or leaves from now on
        delete_all(self._targets)
        time.sleep(grace_s)
        return self.drain()

    def close(self) -> None:
        self.reader.close()
        self.lifecycle_reader.close()
        self.bpf.cleanup()
