"""Reading many well-formed snapshots at once: one numpy array per column for a whole batch, instead of a
dozen small arrays per snapshot, whose per-call cost was most of the reader's time on a long record. A
Batch keeps them so (a part of snapshots.Snapshots): a Snapshot, its arrays views of the batch's, is made
only when one is asked for, and reports read the columns themselves.

``Batch`` raises on anything it does not accept, which is at least everything the careful per-snapshot
reader (schema) rejects; the caller then reads that batch snapshot by snapshot, which says exactly what is
wrong and where. Its snapshots equal the per-snapshot reader's (tests/test_bulk_reader.py).
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any, Sequence

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.model import MAX_COUNT, MAX_NS
from damon_bpf.recordfile.schema import _footprint, _functions, _region_maps, _snapshot_maps
from damon_bpf.recordfile.snapshots import Columns

_EMPTY: dict = {}
EXTRAS = frozenset({"cpus", "tids", "maps", "funcs"})   # per-region extras a report may go without
_START_END, _OURS = itemgetter("start", "end"), itemgetter("damon_bpf")


def _ints(values: list, dtype: type = np.int64) -> np.ndarray:
    """A column of plain ints (no bool, float or text: those take the careful way); OverflowError if out of
    the dtype's range."""
    if values and set(map(type, values)) != {int}:
        raise TypeError
    return np.array(values, dtype=dtype)


def _counts(regs: list[dict]) -> tuple[list, np.ndarray, bool]:
    """The regions' damon_bpf objects, their nr_accesses, age, reports, writes and reads (5, regions), and
    whether every region has every key: then they are read in one pass (our writer's), else key by key
    (damo's have no damon_bpf: no reports)."""
    try:
        ours = list(map(_OURS, regs))
        flat = [x for r, o in zip(regs, ours) for x in
                (r["nr_accesses"]["samples"], r["age"]["aggr_intervals"], o["reports"], o["writes"], o["reads"])]
        return ours, np.ascontiguousarray(_ints(flat).reshape(len(regs), 5).T), True
    except KeyError:
        ours = [r.get("damon_bpf", _EMPTY) for r in regs]
        return ours, np.stack([
            _ints([r["nr_accesses"]["samples"] for r in regs]), _ints([r["age"]["aggr_intervals"] for r in regs]),
            _ints([o.get("reports", 0) for o in ours]), _ints([o.get("writes", 0) for o in ours]),
            _ints([o.get("reads", 0) for o in ours])]).reshape(5, len(regs)), False


def _each(ours: list[dict], key: str) -> tuple[list, bool]:
    """Each region's ``key`` of its damon_bpf object ({} where it has none), and whether every one has it."""
    try:
        return list(map(itemgetter(key), ours)), True
    except KeyError:
        return [o.get(key, _EMPTY) for o in ours], False


class Batch:
    """Well-formed snapshots (decoded JSON objects, damo's fake one already dropped) read at once and kept as
    columns: a part of snapshots.Snapshots. Per-region extras not in ``extras`` are neither read nor checked
    (their fields stay empty / None). Raises on anything unusual (the caller then reads them one by one)."""

    def __init__(self, raw: list[Any], extras: frozenset[str] = EXTRAS) -> None:
        if set(map(type, raw)) != {dict}:
            raise TypeError
        per_snap = [s["regions"] for s in raw]
        if set(map(type, per_snap)) != {list}:
            raise TypeError
        nr_regions = np.fromiter(map(len, per_snap), np.int64, len(raw))
        regs = list(chain.from_iterable(per_snap))
        if regs and set(map(type, regs)) != {dict}:
            raise TypeError
        bounds = np.concatenate([[0], np.cumsum(nr_regions)])
        pairs = _ints(list(chain.from_iterable(map(_START_END, regs))), np.uint64).reshape(len(regs), 2).T
        self.first, self.last = np.ascontiguousarray(pairs[0]), np.ascontiguousarray(pairs[1])
        ours, self.counts, complete = _counts(regs)
        self.times = _ints([s["start_time"] for s in raw] + [s["end_time"] for s in raw]).reshape(2, len(raw))
        _check(self.first, self.last, self.counts, self.times, bounds)
        self.bounds, self.edges = bounds, bounds.tolist()
        cpus, tids = (_each(ours, key) if key in extras else None for key in ("cpus", "tids"))
        self.by = {"by_cpu": None if cpus is None else _By.of_dicts(cpus[0], bounds, 2**20),
                   "by_tid": None if tids is None else _By.of_dicts(tids[0], bounds, 2**32)}
        # where every region's damon_bpf has reports, writes, reads, cpus and tids, 5 keys are no more
        plain = complete and cpus is not None and tids is not None and cpus[1] and tids[1] and \
            set(map(len, ours)) <= {5}
        maps = [o.get("maps") for o in ours] if "maps" in extras and not plain else []
        self.maps: Sequence[Any] | None = ([_maps(maps[lo:hi]) for lo, hi in zip(self.edges, self.edges[1:])]
                     if maps.count(None) != len(maps) else None)
        with_funcs = "funcs" in extras and not plain and [o.get("funcs") for o in ours].count(None) != len(ours)
        self.functions: Sequence[Any] | None = \
            [_functions(s["regions"], "snapshot") for s in raw] if with_funcs else None
        self.footprints = [_footprint(s, "snapshot") for s in raw]

    @classmethod
    def of_columns(cls, times: np.ndarray, bounds: np.ndarray, first: np.ndarray, last: np.ndarray,
                   counts: np.ndarray, by: dict[str, tuple], footprints: list, maps: Sequence | None = None,
                   functions: Sequence | None = None) -> Batch:
        """A Batch of snapshots read as columns (recordfile.ourlayout): ``times`` (2, snapshots), regions'
        ``first``/``last`` (uint64) and ``counts`` (5, regions) as ``__init__`` has them, ``by`` per source
        asked for its (ids, region index, counts, id limit) entries, ``maps`` and ``functions`` (if asked
        for) per snapshot as ``__init__`` has them (a sequence that may make them when indexed). ValueError
        where ``__init__`` raises."""
        _check(first, last, counts, times, bounds)
        batch = cls.__new__(cls)
        batch.first, batch.last, batch.counts, batch.times = first, last, counts, times
        batch.bounds, batch.edges = bounds, bounds.tolist()
        batch.by = {name: _By(bounds, *by[name]) if name in by else None for name in ("by_cpu", "by_tid")}
        batch.maps, batch.functions = maps, functions
        batch.footprints = footprints
        return batch

    def __len__(self) -> int:
        return len(self.footprints)

    def snapshot(self, j: int) -> Snapshot:
        lo, hi = self.edges[j], self.edges[j + 1]
        by_cpu, by_tid = (by.of(j) if by is not None else {} for by in (self.by["by_cpu"], self.by["by_tid"]))
        counts = self.counts[:, lo:hi]
        snap = Snapshot(int(self.times[0, j]), int(self.times[1, j]), self.first[lo:hi], self.last[lo:hi],
                        counts[0], counts[1], counts[2], counts[3], counts[4], by_cpu, by_tid,
                        None if self.maps is None else self.maps[j], self.footprints[j])
        snap.functions = None if self.functions is None else self.functions[j]
        return snap

    def columns(self, a: int, b: int, sources: Sequence[str], names: bool = True) -> Columns:
        """Snapshots [a, b) as Columns: views of the batch's arrays (without ``names``, no functions or
        mappings: our layout's reader makes those per snapshot when asked, the costly part of a report that
        needs only the numbers)."""
        lo, hi = self.edges[a], self.edges[b]
        functions: list = self.each(a, b, "functions") if names else [None] * (b - a)
        mappings: list = self.each(a, b, "mappings") if names else [None] * (b - a)
        out = Columns(self.bounds[a:b + 1] - lo, self.times[0, a:b], self.times[1, a:b], self.first[lo:hi],
                      self.last[lo:hi], self.counts[0, lo:hi], self.counts[2, lo:hi], self.counts[3, lo:hi],
                      self.counts[4, lo:hi], self.each(a, b, "footprint"), functions, mappings)
        for name in sources:
            by = self.by[name]
            if by is not None:
                setattr(out, name, by.rows_over(a, b, self.bounds))
        return out

    def outline(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.times[0], self.times[1], np.diff(self.bounds)

    def function_entries(self, a: int, b: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
        """Snapshots [a, b)'s functions flat (a table of names; per entry its name's index there, its count
        and region from snapshot a's first), without a dict per region; None where only the per-snapshot
        functions tell (then Columns.functions)."""
        if self.functions is None:
            return [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        entries = getattr(self.functions, "entries", None)   # our layout's reader's (ourlayout._Named)
        return None if entries is None else entries(a, b)

    def source_ids(self, a: int, b: int, name: str) -> list[int]:
        by = self.by[name]
        return [] if by is None else by.ids[by.first[a]:by.first[b]].tolist()

    def each(self, a: int, b: int, name: str) -> list:
        """Snapshots [a, b)'s ``functions``, ``mappings`` or ``footprint``."""
        per_snapshot = {"functions": self.functions, "mappings": self.maps, "footprint": self.footprints}[name]
        return [None] * (b - a) if per_snapshot is None else list(per_snapshot[a:b])


def _maps(per_region: list) -> list[list[tuple[str, str]]] | None:
    return _snapshot_maps([_region_maps(m, "maps") for m in per_region])


def _check(first: np.ndarray, last: np.ndarray, counts: np.ndarray, times: np.ndarray,
           bounds: np.ndarray) -> None:
    """What the per-snapshot fast reader checks: times in order, regions non-empty, ordered and
    non-overlapping within a snapshot, counts in range, reads + writes <= reports."""
    if times.size and (times.min() < 0 or times.max() > MAX_NS or np.any(times[0] > times[1])):
        raise ValueError
    if not first.size:
        return
    follows = np.ones(first.size, dtype=bool)   # region i starts at or after region i-1 ends
    follows[1:] = first[1:] >= last[:-1]
    follows[bounds[:-1][bounds[:-1] < first.size]] = True   # a snapshot's first region follows nothing
    if np.any(first >= last) or not follows.all() or counts.min() < 0 or counts.max() > MAX_COUNT \
            or np.any(counts[3] + counts[4] > counts[2]):
        raise ValueError


class _By:
    """Per snapshot, per cpu/tid (sorted) its count in each of the snapshot's regions; an id is there when
    any of the snapshot's regions names it, as the per-snapshot reader has it. Kept as groups (one per
    snapshot and id, ordered so) of ``rows``: group g is rows[offset[g]:offset[g+1]], snapshot j's groups
    are [first[j], first[j+1])."""

    def __init__(self, bounds: np.ndarray, ids: np.ndarray, region: np.ndarray, values: np.ndarray,
                 limit: int) -> None:
        """From each entry's id, region index (in order) and count; ValueError on an id or count out of
        range or an id given twice in a region."""
        nr_snaps = len(bounds) - 1
        self.snap, self.ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.offset, self.rows = np.zeros(1, np.int64), np.zeros(0, np.int64)
        if len(ids):
            if ids.min() < 0 or ids.max() >= limit or values.min() < 0 or values.max() > MAX_COUNT:
                raise ValueError
            self._groups(ids, region, values, bounds)
        self.first = np.searchsorted(self.snap, np.arange(nr_snaps + 1)).tolist()

    @classmethod
    def of_dicts(cls, per_region: list, bounds: np.ndarray, limit: int) -> _By:
        """From each region's {id text: count} (decoded JSON)."""
        if per_region and set(map(type, per_region)) != {dict}:
            raise TypeError
        keys = list(chain.from_iterable(per_region))
        values = _ints(list(chain.from_iterable(map(dict.values, per_region))))
        ident_of = {k: int(k) for k in set(keys)}
        if len(set(ident_of.values())) != len(ident_of):
            raise ValueError   # e.g. "1" and "01" in one file: the per-snapshot reader's rules decide
        ids = np.fromiter(map(ident_of.__getitem__, keys), np.int64, len(keys))
        region = np.repeat(np.arange(len(per_region)), np.fromiter(map(len, per_region), np.int64, len(per_region)))
        return cls(bounds, ids, region, values, limit)

    def _groups(self, ids: np.ndarray, region: np.ndarray, values: np.ndarray, bounds: np.ndarray) -> None:
        snap = np.searchsorted(bounds, region, side="right") - 1
        order = np.lexsort((ids, snap))
        ids, region, snap, values = ids[order], region[order], snap[order], values[order]
        new_group = np.ones(len(ids), dtype=bool)
        new_group[1:] = (ids[1:] != ids[:-1]) | (snap[1:] != snap[:-1])
        if np.any(~new_group[1:] & (region[1:] == region[:-1])):
            raise ValueError   # one id twice in a region (JSON keeps the last: the general path decides)
        group = np.cumsum(new_group) - 1
        self.snap, self.ids = snap[new_group], ids[new_group]
        width = (bounds[1:] - bounds[:-1])[self.snap]   # each group is one row of its snapshot's regions
        self.offset = np.concatenate([[0], np.cumsum(width)])
        self.rows = np.zeros(int(self.offset[-1]), dtype=np.int64)
        self.rows[self.offset[group] + region - bounds[snap]] = values

    def of(self, j: int) -> dict[int, np.ndarray]:
        """Snapshot j's {id: counts}."""
        g0, g1 = self.first[j], self.first[j + 1]
        edges = self.offset[g0:g1 + 1].tolist()
        return {ident: self.rows[lo:hi] for ident, lo, hi in zip(self.ids[g0:g1].tolist(), edges, edges[1:])}

    def rows_over(self, a: int, b: int, bounds: np.ndarray) -> dict[int, np.ndarray]:
        """Per id snapshots [a, b) name, in the order they first appear, its count in each of their regions
        (0 in a snapshot that does not name it)."""
        g0, g1 = self.first[a], self.first[b]
        ids = self.ids[g0:g1].tolist()
        row_of = {ident: k for k, ident in enumerate(dict.fromkeys(ids))}
        width = np.diff(self.offset[g0:g1 + 1])
        group = np.repeat(np.arange(g1 - g0), width)
        region = (bounds[self.snap[g0:g1]] - bounds[a] - self.offset[g0:g1] + self.offset[g0])[group] + \
            np.arange(len(group))
        out = np.zeros((len(row_of), int(bounds[b] - bounds[a])), np.int64)
        out[np.fromiter(map(row_of.__getitem__, ids), np.int64, len(ids))[group], region] = \
            self.rows[self.offset[g0]:self.offset[g1]]
        return {ident: out[k] for ident, k in row_of.items()}
