"""The snapshots read_record gives: kept as columns, a Snapshot made only when one is asked for.

A one-hour record holds 36,000 snapshots. As Snapshot objects, each with a dozen small numpy views and two
dicts, they took twice the memory of their numbers, and a report spent more time making and walking them
than computing. ``Snapshots`` is the read-only sequence TargetRecord.snapshots holds after read_record:
indexing and iterating give Snapshot objects as a list did (made afresh each time: nothing to change in
them), slicing and ``select`` give sequences of the same kind, and ``columns`` gives whole runs of
snapshots as one array per field, which is how the reports read them (damon_bpf.reports.columns).

Its parts are batches read in bulk (bulk.Batch) or snapshots read one by one (``Loose``); both answer
``len``, ``snapshot(j)``, ``columns(a, b, sources)``, ``outline()``, ``source_ids(a, b, name)`` and
``each(a, b, name)``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Iterator, Sequence, overload

import numpy as np

from damon_bpf.core.snapshot import Snapshot

SOURCES = ("by_cpu", "by_tid")   # the per-id counts Columns may carry


@dataclass
class Columns:
    """The regions of consecutive snapshots, joined: snapshot ``i``'s are ``[bounds[i], bounds[i+1])``.
    ``by_cpu``/``by_tid`` (when asked for) hold, per id any of them names, in the order the ids first
    appear, its count in every region (0 in a snapshot that does not name it). Region fields are named as
    Snapshot's, so code written for one snapshot reads many; ``footprints``, ``functions`` and ``mappings``
    are per snapshot."""

    bounds: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    nr_reports: np.ndarray
    writes: np.ndarray
    reads: np.ndarray
    footprints: list[tuple[int, int] | None]
    functions: list[list[dict[str, int]] | None]
    mappings: list[list[list[tuple[str, str]]] | None]
    by_cpu: dict[int, np.ndarray] = field(default_factory=dict)
    by_tid: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def nr_regions(self) -> int:
        return len(self.start)

    @property
    def snapshot_of_region(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.bounds) - 1), np.diff(self.bounds))

    def per_snapshot(self, values: np.ndarray) -> np.ndarray:
        """Each snapshot's sum of integer ``values`` (one per region), exact (int64: a running total that
        wraps round still gives the right differences)."""
        running = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
        return running[self.bounds[1:]] - running[self.bounds[:-1]]


_REGION_FIELDS = (("start", np.uint64), ("end", np.uint64), ("nr_accesses", np.int64), ("nr_reports", np.int64),
                  ("writes", np.int64), ("reads", np.int64))


def _joined(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(arrays, dtype=dtype, casting="unsafe") if arrays else np.zeros(0, dtype)


def _by_ids(per_snapshot: list[dict[int, np.ndarray]], sizes: list[int]) -> dict[int, np.ndarray]:
    """Per-snapshot {id: counts} as one row per id over all their regions (0 where a snapshot lacks it)."""
    zeros = {n: np.zeros(n, np.int64) for n in set(sizes)}
    return {ident: _joined([d.get(ident, zeros[n]) for d, n in zip(per_snapshot, sizes)], np.int64)
            for ident in dict.fromkeys(chain.from_iterable(per_snapshot))}


def join(snaps: Sequence[Snapshot], sources: Sequence[str] = ()) -> Columns:
    """Snapshot objects joined; ``sources`` (of SOURCES) are the per-id counts to join too."""
    sizes = [len(s.start) for s in snaps]
    start, end, nr_accesses, nr_reports, writes, reads = (_joined([getattr(s, name) for s in snaps], dtype)
                                                          for name, dtype in _REGION_FIELDS)
    out = Columns(np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]),
                  np.fromiter((s.start_ns for s in snaps), np.int64, len(snaps)),
                  np.fromiter((s.end_ns for s in snaps), np.int64, len(snaps)),
                  start, end, nr_accesses, nr_reports, writes, reads,
                  [s.footprint for s in snaps], [s.functions for s in snaps], [s.mappings for s in snaps])
    for name in sources:
        setattr(out, name, _by_ids([getattr(s, name) for s in snaps], sizes))
    return out


def concat(pieces: list[Columns]) -> Columns:
    """Columns of consecutive runs of snapshots joined into one."""
    if len(pieces) == 1:
        return pieces[0]
    offsets = np.cumsum([0] + [p.nr_regions for p in pieces])
    start, end, nr_accesses, nr_reports, writes, reads = (_joined([getattr(p, name) for p in pieces], dtype)
                                                          for name, dtype in _REGION_FIELDS)
    footprints, functions, mappings = (list(chain.from_iterable(getattr(p, name) for p in pieces))
                                       for name in ("footprints", "functions", "mappings"))
    out = Columns(np.concatenate([[0]] + [p.bounds[1:] + o for p, o in zip(pieces, offsets)]),
                  np.concatenate([p.start_ns for p in pieces]), np.concatenate([p.end_ns for p in pieces]),
                  start, end, nr_accesses, nr_reports, writes, reads, footprints, functions, mappings)
    for name in SOURCES:
        per_piece = [getattr(p, name) for p in pieces]
        if any(per_piece):
            setattr(out, name, _by_ids(per_piece, [p.nr_regions for p in pieces]))
    return out


class Loose:
    """Snapshots read one by one (the careful reader's), as a part of Snapshots."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        self.snaps = snaps

    def __len__(self) -> int:
        return len(self.snaps)

    def snapshot(self, j: int) -> Snapshot:
        return self.snaps[j]

    def columns(self, a: int, b: int, sources: Sequence[str], names: bool = True) -> Columns:
        return join(self.snaps[a:b], sources)   # the Snapshot objects have their names already

    def outline(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return outline(self.snaps)

    def source_ids(self, a: int, b: int, name: str) -> Iterator[int]:
        return chain.from_iterable(getattr(s, name) for s in self.snaps[a:b])

    def each(self, a: int, b: int, name: str) -> list:
        return [getattr(s, name) for s in self.snaps[a:b]]


def outline(snaps: Sequence[Snapshot]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each snapshot's start and end (ns) and number of regions."""
    return (np.fromiter((s.start_ns for s in snaps), np.int64, len(snaps)),
            np.fromiter((s.end_ns for s in snaps), np.int64, len(snaps)),
            np.fromiter((len(s.start) for s in snaps), np.int64, len(snaps)))


class Snapshots(Sequence[Snapshot]):
    """A record's snapshots, read-only: the parts' snapshots in order, or those at ``positions`` of them."""

    def __init__(self, parts: list, positions: np.ndarray | None = None) -> None:
        self.parts = [p for p in parts if len(p)]
        self.first = np.cumsum([0] + [len(p) for p in self.parts])   # each part's first snapshot
        self.positions = positions

    def __len__(self) -> int:
        return int(self.first[-1]) if self.positions is None else len(self.positions)

    def __repr__(self) -> str:
        return f"<{len(self)} snapshots>"

    def __eq__(self, other: object) -> bool:
        """As the list of its snapshots compares."""
        if not isinstance(other, (list, tuple, Snapshots)):
            return NotImplemented
        return list(self) == list(other)

    def _all(self) -> np.ndarray:
        return np.arange(self.first[-1]) if self.positions is None else self.positions

    @overload
    def __getitem__(self, i: int) -> Snapshot: ...

    @overload
    def __getitem__(self, i: slice) -> Snapshots: ...

    def __getitem__(self, i: int | slice) -> Snapshot | Snapshots:
        if isinstance(i, slice):
            return Snapshots(self.parts, self._all()[i])
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError("snapshot index out of range")
        pos = i % n if self.positions is None else int(self.positions[i])
        part = int(np.searchsorted(self.first, pos, side="right")) - 1
        return self.parts[part].snapshot(pos - int(self.first[part]))

    def __iter__(self) -> Iterator[Snapshot]:
        if self.positions is not None:
            return (self[i] for i in range(len(self)))
        return (part.snapshot(j) for part in self.parts for j in range(len(part)))

    def select(self, mask: np.ndarray) -> Snapshots:
        """Those where ``mask`` (one bool per snapshot) is true."""
        return Snapshots(self.parts, self._all()[np.asarray(mask, dtype=bool)])

    def _runs(self) -> Iterator[tuple[Any, int, int]]:
        """(part, first, stop) of each run of consecutive snapshots of one part, in order."""
        pos = self._all()
        part = np.searchsorted(self.first, pos, side="right") - 1
        cut = np.flatnonzero((np.diff(pos) != 1) | (np.diff(part) != 0)) + 1
        for a, b in zip([0, *cut.tolist()], [*cut.tolist(), len(pos)]):
            if b > a:
                base = int(self.first[part[a]])
                yield self.parts[part[a]], int(pos[a]) - base, int(pos[b - 1]) + 1 - base

    def columns(self, sources: Sequence[str] = (), names: bool = True) -> Columns:
        """All of them as Columns (views of the parts' arrays where it is one run of one part); ``names``:
        with their functions and mappings (None where not asked for)."""
        pieces = [part.columns(a, b, sources, names) for part, a, b in self._runs()]
        return concat(pieces) if pieces else join([], sources)

    def outline(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each one's start and end (ns) and number of regions, without making Snapshot objects."""
        each = [part.outline() for part in self.parts]
        joined = [np.concatenate([e[k] for e in each]) if each else np.zeros(0, np.int64) for k in range(3)]
        if self.positions is None:
            return joined[0], joined[1], joined[2]
        return joined[0][self.positions], joined[1][self.positions], joined[2][self.positions]

    def source_ids(self, name: str) -> list[int]:
        """The ids ``name`` (by_cpu, by_tid) names, in the order they first appear."""
        return list(dict.fromkeys(chain.from_iterable(part.source_ids(a, b, name) for part, a, b in self._runs())))

    def function_entries(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
        """Their functions flat: a table of names, and per (name, count) their regions' dicts hold, in
        order, its name's index there, its count and its region (in ``columns()``); None if a part can tell
        them only as dicts (then ``columns().functions``)."""
        table: list[str] = []
        ids, counts, regions = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        first_region = 0
        for part, a, b in self._runs():
            got = part.function_entries(a, b) if hasattr(part, "function_entries") else None
            if got is None:
                return None
            ids.append(got[1] + len(table))
            table += got[0]
            counts.append(got[2])
            regions.append(got[3] + first_region)
            first_region += int(part.outline()[2][a:b].sum())
        return table, *(np.concatenate(x).astype(np.int64) for x in (ids, counts, regions))  # type: ignore[return-value]

    def each(self, name: str) -> list:
        """Each one's ``functions``, ``mappings`` or ``footprint`` (the same objects its Snapshot has)."""
        return list(chain.from_iterable(part.each(a, b, name) for part, a, b in self._runs()))
