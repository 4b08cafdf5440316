"""Sample filters of the DAMON per-CPU/thread/write RFC, with the semantics this project adopts.

A report passes iff it satisfies every filter, in order. A filter with ``allow`` is satisfied when the
report's match result equals ``matching``; without ``allow`` it is satisfied when it does not. The BPF
programs run the same rule (bpf/report_common.bpf.c); :func:`evaluate` is the reference used by tests.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from damon_bpf.access import ACCESS_WRITE, MAX_CPUS, MAX_FILTERS
from damon_bpf.errors import UsageError

FILTER_KINDS = ("cpumask", "threads", "write")
_BOOLS = {"true": True, "y": True, "yes": True, "1": True, "false": False, "n": False, "no": False, "0": False}


@dataclass(frozen=True)
class SampleFilter:
    """One sample filter: ``kind`` is cpumask, threads or write; ``cpus``/``tids`` hold the argument."""

    kind: str
    matching: bool
    allow: bool
    cpus: frozenset[int] = field(default_factory=frozenset)
    tids: frozenset[int] = field(default_factory=frozenset)

    def describe(self) -> str:
        """The filter in ``--filter`` syntax, e.g. ``cpumask:true:true:0-3``."""
        text = f"{self.kind}:{str(self.matching).lower()}:{str(self.allow).lower()}"
        if self.kind == "cpumask":
            text += ":" + format_cpulist(self.cpus)
        elif self.kind == "threads":
            text += ":" + ",".join(str(tid) for tid in sorted(self.tids))
        return text

    def matches(self, cpu: np.ndarray, tid: np.ndarray, write: np.ndarray) -> np.ndarray:
        """Per-report match result (before ``matching``/``allow`` are applied)."""
        if self.kind == "cpumask":
            return np.isin(cpu, np.fromiter(self.cpus, dtype=np.int64, count=len(self.cpus)))
        if self.kind == "threads":
            return np.isin(tid, np.fromiter(self.tids, dtype=np.int64, count=len(self.tids)))
        return write == ACCESS_WRITE


def present_cpus() -> int:
    """Number of CPU ids this machine can have (highest present id + 1)."""
    try:
        return max(parse_cpulist(Path("/sys/devices/system/cpu/present").read_text(), None)) + 1
    except (OSError, UsageError, ValueError):
        return os.cpu_count() or 1


def parse_cpulist(text: str, nr_cpus: int | None = -1) -> frozenset[int]:
    """Parse a kernel cpulist such as ``0-3,8``. ``nr_cpus=-1`` checks against this machine,
    ``None`` skips the check."""
    limit = present_cpus() if nr_cpus == -1 else nr_cpus
    cpus: set[int] = set()
    for part in text.strip().split(","):
        # ASCII digits only, and few of them: int() takes '٣' and refuses 5000 digits with a ValueError
        match = re.fullmatch(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", part)
        if not match:
            raise UsageError(f"bad cpulist '{text.strip()}': '{part.strip()}' is not a CPU number or a range like 0-3")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UsageError(f"bad cpulist '{text.strip()}': range {first}-{last} runs backwards")
        cpus.update(range(first, min(last, MAX_CPUS) + 1))
        if last >= MAX_CPUS or (limit is not None and last >= limit):
            bound = min(MAX_CPUS, limit) if limit is not None else MAX_CPUS
            raise UsageError(f"bad cpulist '{text.strip()}': CPU {last} does not exist "
                             f"(this machine has CPUs 0-{bound - 1})")
    return frozenset(cpus)


def format_cpulist(cpus: Iterable[int]) -> str:
    """The shortest cpulist for a set of CPUs (``0-3,8``)."""
    ordered = sorted(cpus)
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_tidlist(text: str) -> frozenset[int]:
    """Parse a comma-separated list of thread ids."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError("bad thread list: it is empty (give thread ids like 1234,1240)")
    tids = set()
    for item in items:
        if not re.fullmatch(r"[0-9]{1,10}", item) or int(item) <= 0 or int(item) >= 2**31:   # not isdigit: '²' is one
            raise UsageError(f"bad thread list '{text}': '{item}' is not a thread id")
        tids.add(int(item))
    return frozenset(tids)


def _parse_bool(word: str, what: str, spec: str) -> bool:
    try:
        return _BOOLS[word.strip().lower()]
    except KeyError:
        raise UsageError(f"bad filter '{spec}': {what} must be true or false, not '{word}'") from None


def parse_filter_spec(spec: str) -> SampleFilter:
    """Parse ``TYPE:MATCHING:ALLOW[:ARG]`` (e.g. ``cpumask:true:true:0-1``, ``write:true:false``)."""
    parts = spec.split(":", 3)
    if len(parts) < 3 or parts[0] not in FILTER_KINDS:
        raise UsageError(f"bad filter '{spec}': expected TYPE:MATCHING:ALLOW[:ARG] with TYPE one of "
                         + ", ".join(FILTER_KINDS))
    kind = parts[0]
    matching = _parse_bool(parts[1], "MATCHING", spec)
    allow = _parse_bool(parts[2], "ALLOW", spec)
    argument = parts[3] if len(parts) == 4 else ""
    if kind == "write":
        if argument:
            raise UsageError(f"bad filter '{spec}': a write filter takes no argument")
        return SampleFilter(kind, matching, allow)
    if not argument:
        raise UsageError(f"bad filter '{spec}': a {kind} filter needs an argument "
                         + ("(a cpulist like 0-3,8)" if kind == "cpumask" else "(thread ids like 1234,1240)"))
    if kind == "cpumask":
        return SampleFilter(kind, matching, allow, cpus=parse_cpulist(argument))
    return SampleFilter(kind, matching, allow, tids=parse_tidlist(argument))


def build_filters(cpus: str | None = None, tids: str | None = None, write_only: bool = False,
                  read_only: bool = False, specs: Sequence[str] = ()) -> list[SampleFilter]:
    """The ordered filter list from the command line's shorthands (each an allow filter that matches,
    like damo's --exp_ops_*), followed by the general ``--filter`` specs in the order given."""
    if write_only and read_only:
        raise UsageError("--write-only and --read-only exclude each other")
    filters: list[SampleFilter] = []
    if cpus is not None:
        filters.append(SampleFilter("cpumask", True, True, cpus=parse_cpulist(cpus)))
    if tids is not None:
        filters.append(SampleFilter("threads", True, True, tids=parse_tidlist(tids)))
    if write_only or read_only:
        filters.append(SampleFilter("write", write_only, True))
    filters.extend(parse_filter_spec(spec) for spec in specs)
    if len(filters) > MAX_FILTERS:
        raise UsageError(f"too many sample filters: {len(filters)} (at most {MAX_FILTERS})")
    return filters


def evaluate(filters: Sequence[SampleFilter], cpu: np.ndarray, tid: np.ndarray,
             write: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Apply ``filters`` in order: the mask of passing reports and (passed, rejected) per filter,
    counted the way the BPF program counts them (a rejected report reaches no later filter)."""
    alive = np.ones(len(cpu), dtype=bool)
    counts = []
    for sample_filter in filters:
        match = sample_filter.matches(cpu, tid, write)
        satisfied = (match == sample_filter.matching) if sample_filter.allow else (match != sample_filter.matching)
        rejected = alive & ~satisfied
        alive &= satisfied
        counts.append((int(alive.sum()), int(rejected.sum())))
    return alive, counts
