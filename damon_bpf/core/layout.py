"""A target's address layout: /proc/PID/maps parsed into mappings, then the ranges to monitor.

Two modes: ``damon`` (DAMON's three regions, the default for comparability with the kernel) and
``all-mappings`` (one range per run of adjacent mappings, so a heap sitting in one of the two big
gaps is monitored too; damo issue #57).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from damon_bpf.errors import HostError, TargetError, UsageError

Range = tuple[int, int]
LAYOUT_MODES = ("damon", "all-mappings")


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _align_down(value: int, page: int) -> int:
    return value - value % page


def _align_up(value: int, page: int) -> int:
    return _align_down(value + page - 1, page)


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


def _runs(mappings: Sequence[Range]) -> list[Range]:
    """Runs of adjacent (or overlapping) mappings, in address order."""
    runs: list[list[int]] = []
    for start, end in sorted(mappings):
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    return [(s, e) for s, e in runs]


def all_mappings(mappings: Sequence[Range]) -> list[Range]:
    """One page-aligned range per run of adjacent mappings: every mapping is covered."""
    page = page_size()
    return [(_align_down(s, page), _align_up(e, page)) for s, e in _runs(mappings)]


def three_regions(mappings: Sequence[Range]) -> list[Range]:
    """DAMON's three regions: everything from the first to the last mapping except the two
    largest gaps (docs/design.md §3, damon_va_three_regions).

    Ties go to the lower gap, as in the kernel's strict ``>`` comparisons. Where there are fewer
    than two gaps the kernel gives up; we return the runs of mappings instead (at most two).
    """
    runs = _runs(mappings)
    if len(runs) < 3:
        return all_mappings(runs)
    first, second = (0, 0), (0, 0)  # (gap start, gap end), first >= second in size
    for (_, prev_end), (start, _) in zip(runs, runs[1:]):
        gap = start - prev_end
        if gap > first[1] - first[0]:
            second, first = first, (prev_end, start)
        elif gap > second[1] - second[0]:
            second = (prev_end, start)
    low, high = sorted([first, second])
    page = page_size()
    bounds = [(runs[0][0], low[0]), (low[1], high[0]), (high[1], runs[-1][1])]
    return [(_align_down(s, page), _align_up(e, page)) for s, e in bounds]


def read_maps(pid: int) -> list[Range]:
    """The mappings of process ``pid``; TargetError if it is gone (or has no address space)."""
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
    return mappings


def layout_for(pid: int, mode: str = "damon") -> Callable[[], list[Range]]:
    """A zero-argument callable giving the current ranges to monitor of ``pid``."""
    if mode == "damon":
        return lambda: three_regions(read_maps(pid))
    if mode == "all-mappings":
        return lambda: all_mappings(read_maps(pid))
    raise UsageError(f"unknown layout mode {mode!r}; choose one of: {', '.join(LAYOUT_MODES)}")
