"""Which mappings a region covers, as /proc/PID/maps names them (the names come in as data: the
reading is damon_bpf.sources.vaddr's), and what kind of memory each name stands for."""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import numpy as np

MAPPING_KINDS = ("file", "heap", "stack", "anon", "shm", "special")
ANON = ""   # an anonymous mapping has no name in /proc/PID/maps

# What the kernel names shared memory: MAP_SHARED|MAP_ANONYMOUS (/dev/zero), SysV segments,
# memfd and POSIX shm files. The prefix test runs before the "file" rule.
_SHM_PREFIXES = ("/dev/zero", "/SYSV", "/memfd:", "/dev/shm/", "/anon_hugepage")


class Mapping(NamedTuple):
    start: int
    end: int
    name: str   # the maps line's path field ("" for anonymous memory)


@functools.lru_cache(maxsize=4096)
def mapping_kind(name: str) -> str:
    """The kind of a /proc/PID/maps name: file, heap, stack, anon, shm or special ([vdso], [vvar])."""
    if name == ANON or name.startswith("[anon:") or name.startswith("[anon_shmem:"):
        return "shm" if name.startswith("[anon_shmem:") else "anon"
    if name == "[heap]":
        return "heap"
    if name.startswith("[stack"):   # [stack], and [stack:TID] of kernels before 4.5
        return "stack"
    if name.startswith(_SHM_PREFIXES):
        return "shm"
    if name.startswith("["):
        return "special"
    return "file"


def mapping_label(name: str) -> str:
    """A short name for tables and axis labels: a file's basename, [heap] as it is, anonymous memory as 'anon'."""
    if name == ANON:
        return "anon"
    if name.startswith("/") and not name.startswith(_SHM_PREFIXES):
        deleted = " (deleted)" if name.endswith(" (deleted)") else ""
        return name.removesuffix(" (deleted)").rsplit("/", 1)[-1] + deleted
    return name


def region_mappings(start: np.ndarray, end: np.ndarray,
                    mappings: Sequence[Mapping]) -> list[list[tuple[str, str]]]:
    """Per region ``[start[i], end[i])``, the distinct ``(name, kind)`` of the mappings it overlaps, in
    address order of their first overlap (an empty list: the region covers no mapping)."""
    if not mappings:
        return [[] for _ in range(len(start))]
    ordered = sorted(mappings)   # /proc/PID/maps is sorted already: a linear check
    m_start = np.fromiter((m.start for m in ordered), dtype=np.uint64, count=len(ordered))
    m_end = np.fromiter((m.end for m in ordered), dtype=np.uint64, count=len(ordered))
    first = np.searchsorted(m_end, np.asarray(start, np.uint64), side="right")   # first mapping ending after start
    last = np.searchsorted(m_start, np.asarray(end, np.uint64), side="left")     # mappings starting before end
    names = [m.name for m in ordered]
    # regions with the same slice of mappings share one list (read-only for callers): neighbours mostly do
    done: dict[tuple[int, int], list[tuple[str, str]]] = {}
    out = []
    for key in zip(first.tolist(), last.tolist()):
        per = done.get(key)
        if per is None:
            per = done[key] = [(name, mapping_kind(name)) for name in dict.fromkeys(names[key[0]:key[1]])]
        out.append(per)
    return out


def region_label(mappings: Sequence[tuple[str, str]], width: int | None = None) -> str:
    """One region's mappings in a cell: the first one's short name, '+N' for the others, '-' for none."""
    if not mappings:
        return "-"
    text = mapping_label(mappings[0][0])
    if len(mappings) > 1:
        text += f" +{len(mappings) - 1}"
    if width is not None and len(text) > width:
        text = text[:width - 1] + "…"
    return text
