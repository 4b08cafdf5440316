"""Which ranges of a target's mappings to monitor (the rules only: damon_bpf.sources.vaddr reads
/proc/PID/maps and applies them).

Two modes: ``damon`` (DAMON's three regions, the default for comparability with the kernel) and
``all-mappings`` (one range per run of adjacent mappings, so a heap sitting in one of the two big
gaps is monitored too; damo issue #57).
"""

from __future__ import annotations

import os
from typing import Sequence

Range = tuple[int, int]
LAYOUT_MODES = ("damon", "all-mappings")


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _align_down(value: int, page: int) -> int:
    return value - value % page


def _align_up(value: int, page: int) -> int:
    return _align_down(value + page - 1, page)


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
