"""Snapshots as columns for the reports: one array per field over many snapshots, so a report does its
per-snapshot work in a few numpy calls instead of a dozen per snapshot (which cost most of a report's time
on a one-hour record), and never makes a Snapshot object for each.

Each function takes what a record holds: read_record's ``Snapshots`` (its columns are views of what the
reader read) or a list of Snapshot objects (live, tests; joined here). ``chunks`` cuts them into parts whose
work arrays stay a few MB; a report keeps only what it sums, so its memory does not grow with the record.
"""

from __future__ import annotations

from itertools import chain
from typing import Iterator, Sequence

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.snapshots import SOURCES, Columns, Snapshots, join, outline

WORK_VALUES = 1 << 20   # float64 values in one part's work arrays together (8 MiB)

__all__ = ["SOURCES", "Columns", "chunks", "columns", "each", "function_entries", "outline_of", "select", "source_ids"]


def columns(snaps: Sequence[Snapshot], sources: Sequence[str] = (), names: bool = True) -> Columns:
    """``snaps`` joined; ``sources`` (of SOURCES) are the per-id counts to join too; ``names=False`` for a
    caller that reads no functions or mappings (they may then be None)."""
    return snaps.columns(sources, names) if isinstance(snaps, Snapshots) else join(snaps, sources)


def select(snaps: Sequence[Snapshot], mask: np.ndarray) -> Sequence[Snapshot]:
    """Those of ``snaps`` where ``mask`` (one bool each) is true."""
    if isinstance(snaps, Snapshots):
        return snaps.select(mask)
    return [s for s, keep in zip(snaps, np.asarray(mask, dtype=bool).tolist()) if keep]


def source_ids(snaps: Sequence[Snapshot], name: str) -> list[int]:
    """The ids ``name`` (by_cpu or by_tid) names in ``snaps``, in the order they first appear (the order
    a dict filled snapshot by snapshot has, which breaks ties in a report's ranking)."""
    if isinstance(snaps, Snapshots):
        return snaps.source_ids(name)
    return list(dict.fromkeys(chain.from_iterable(getattr(s, name) for s in snaps)))


def each(snaps: Sequence[Snapshot], name: str) -> list:
    """Each snapshot's ``functions``, ``mappings`` or ``footprint``, without making Snapshot objects."""
    return snaps.each(name) if isinstance(snaps, Snapshots) else [getattr(s, name) for s in snaps]


def chunks(snaps: Sequence[Snapshot], per_region: int, per_snapshot: int = 0) -> Iterator[Sequence[Snapshot]]:
    """``snaps`` in consecutive parts whose work arrays, ``per_region`` values for each region of the
    longest snapshot plus ``per_snapshot``, stay within WORK_VALUES."""
    nr_regions = outline_of(snaps)[2]
    widest = int(nr_regions.max()) if len(nr_regions) else 0
    size = max(1, WORK_VALUES // max(1, per_region * widest + per_snapshot))
    for first in range(0, len(snaps), size):
        yield snaps[first:first + size]


def function_entries(snaps: Sequence[Snapshot]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """Every (name, count) of the regions' functions in order, as a table of names and per entry its name's
    index there, its count and its region (in ``columns(snaps)``), read without a dict per region; None where
    only ``columns(snaps).functions`` tells them."""
    return snaps.function_entries() if isinstance(snaps, Snapshots) else None


def outline_of(snaps: Sequence[Snapshot]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each snapshot's start and end (ns) and number of regions, without making Snapshot objects."""
    return snaps.outline() if isinstance(snaps, Snapshots) else outline(snaps)
