"""The virtual address space of a process (DAMON's vaddr operation set, mm/damon/vaddr.c): its
mappings from /proc/PID/maps, and the ranges to monitor by one of core.layout's rules."""

from __future__ import annotations

import time
from typing import Callable

from damon_bpf.core.layout import LAYOUT_MODES, Range, all_mappings, three_regions
from damon_bpf.core.mappings import Mapping
from damon_bpf.errors import HostError, TargetError, UsageError

MapsText = Callable[[int, str], None]   # (pid, the /proc/PID/maps text just read)


def parse_maps(text: str) -> list[Range]:
    """Mappings ``(start, end)`` of /proc/PID/maps text, in address order, without [vsyscall]."""
    return [(m.start, m.end) for m in parse_named_maps(text)]


def parse_named_maps(text: str) -> list[Mapping]:
    """Mappings ``(start, end, name)`` of /proc/PID/maps text, in address order, without [vsyscall].
    The name is the line's path field as the kernel wrote it ("" for anonymous memory).

    [vsyscall] is a fixed kernel page at the top of the address space, not a VMA of the process;
    DAMON never sees it, and keeping it would make the gap below it the largest one.
    """
    mappings = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if not parts:
            continue
        if len(parts) == 6 and parts[5].strip() == "[vsyscall]":
            continue
        start, _, end = parts[0].partition("-")
        mappings.append(Mapping(int(start, 16), int(end, 16), parts[5].strip() if len(parts) == 6 else ""))
    mappings.sort()
    return mappings


def read_maps(pid: int, seen: MapsText | None = None) -> list[Mapping]:
    """The mappings of process ``pid`` with their names; TargetError if it is gone (or has no address space).
    ``seen`` gets the text read (the symbolizer keeps the code mappings, to name instructions after the process
    exits)."""
    path = f"/proc/{pid}/maps"
    try:
        with open(path) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise TargetError(f"process {pid} is gone ({path} does not exist)") from None
    except PermissionError:
        raise HostError(f"cannot read {path}: permission denied (run as root or as the target's user)") from None
    mappings = parse_named_maps(text)
    if not mappings:
        # An exiting (zombie) process or a kernel thread: nothing left to monitor.
        raise TargetError(f"process {pid} has no memory mappings (it exited or is a kernel thread)")
    if seen is not None:
        seen(pid, text)
    return mappings


def layout_for(pid: int, mode: str = "damon",
               on_maps: Callable[[list[Mapping]], None] | None = None,
               seen: MapsText | None = None) -> Callable[[], list[Range]]:
    """A zero-argument callable giving the current ranges to monitor of ``pid``; ``on_maps`` is handed
    the named mappings of each read (the recorder names regions by them), ``seen`` its text (read_maps)."""
    if mode not in LAYOUT_MODES:
        raise UsageError(f"unknown layout mode {mode!r}; choose one of: {', '.join(LAYOUT_MODES)}")
    rule = three_regions if mode == "damon" else all_mappings

    def layout() -> list[Range]:
        mappings = read_maps(pid, seen)
        if on_maps is not None:
            on_maps(mappings)
        return rule([(m.start, m.end) for m in mappings])
    return layout


def read_footprint(pid: int) -> tuple[int, int] | None:
    """``(RSS, PSS)`` of process ``pid`` in bytes from /proc/PID/smaps_rollup; None once it is gone (or
    the kernel has no smaps_rollup, before 4.14)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    sizes = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            sizes[key] = int(rest.split()[0]) * 1024   # the kernel writes kB
    return (sizes["Rss"], sizes["Pss"]) if len(sizes) == 2 else None


FOOTPRINT_PERIOD_NS = 1_000_000_000   # at most one read a second per target...
FOOTPRINT_BUDGET = 0.01               # ...and at most 1% of the collector's time (a walk of every page table)


class Footprint:
    """A target's latest (RSS, PSS), read again when asked after the period has passed and the last read's
    cost allows (smaps_rollup walks the page tables: a big process costs milliseconds)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.value: tuple[int, int] | None = None
        self._due_ns = 0

    def latest(self, now_ns: int) -> tuple[int, int] | None:
        if now_ns >= self._due_ns:
            began = time.monotonic_ns()
            value = read_footprint(self.pid)
            cost = time.monotonic_ns() - began
            self.value = value or self.value   # a gone process keeps its last reading
            self._due_ns = now_ns + max(FOOTPRINT_PERIOD_NS, int(cost / FOOTPRINT_BUDGET))
        return self.value
