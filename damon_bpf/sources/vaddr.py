"""The virtual address space of a process (DAMON's vaddr operation set, mm/damon/vaddr.c): its
mappings from /proc/PID/maps, and the ranges to monitor by one of core.layout's rules."""

from __future__ import annotations

from typing import Callable

from damon_bpf.core.layout import LAYOUT_MODES, Range, all_mappings, three_regions
from damon_bpf.errors import HostError, TargetError, UsageError

MapsSeen = Callable[[int, str], None]   # (pid, the /proc/PID/maps text just read)


def parse_maps(text: str) -> list[Range]:
    """Mappings ``(start, end)`` of /proc/PID/maps text, in address order, without [vsyscall].

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
        mappings.append((int(start, 16), int(end, 16)))
    mappings.sort()
    return mappings


def read_maps(pid: int, seen: MapsSeen | None = None) -> list[Range]:
    """The mappings of process ``pid``; TargetError if it is gone (or has no address space). ``seen`` gets
    the text read (the symbolizer keeps the code mappings, to name instructions after the process exits)."""
    path = f"/proc/{pid}/maps"
    try:
        with open(path) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise TargetError(f"process {pid} is gone ({path} does not exist)") from None
    except PermissionError:
        raise HostError(f"cannot read {path}: permission denied (run as root or as the target's user)") from None
    mappings = parse_maps(text)
    if not mappings:
        # An exiting (zombie) process or a kernel thread: nothing left to monitor.
        raise TargetError(f"process {pid} has no memory mappings (it exited or is a kernel thread)")
    if seen is not None:
        seen(pid, text)
    return mappings


def layout_for(pid: int, mode: str = "damon", seen: MapsSeen | None = None) -> Callable[[], list[Range]]:
    """A zero-argument callable giving the current ranges to monitor of ``pid`` (``seen``: see read_maps)."""
    if mode == "damon":
        return lambda: three_regions(read_maps(pid, seen))
    if mode == "all-mappings":
        return lambda: all_mappings(read_maps(pid, seen))
    raise UsageError(f"unknown layout mode {mode!r}; choose one of: {', '.join(LAYOUT_MODES)}")
