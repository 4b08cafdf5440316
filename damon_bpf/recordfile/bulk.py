"""Turning many well-formed snapshots into Snapshots at once: one numpy array per column for a whole batch
(sliced into per-snapshot views), instead of a dozen small arrays per snapshot, whose per-call cost was most
of the reader's time on a long record.

``snapshots_in_bulk`` raises on anything it does not accept, which is at least everything the careful
per-snapshot reader (schema) rejects; the caller then reads that batch snapshot by snapshot, which says
exactly what is wrong and where. The result equals the per-snapshot reader's (tests/test_bulk_reader.py).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.model import MAX_COUNT, MAX_NS
from damon_bpf.recordfile.schema import _footprint, _functions, _region_maps, _snapshot_maps

_EMPTY: dict = {}
EXTRAS = frozenset({"cpus", "tids", "maps", "funcs"})   # per-region extras a report may go without
_COUNTS = ("samples", "age", "reports", "writes", "reads")


def _ints(values: list, dtype: type = np.int64) -> np.ndarray:
    """A column of plain ints (no bool, float or text: those take the careful way); OverflowError if out of
    the dtype's range."""
    if values and set(map(type, values)) != {int}:
        raise TypeError
    return np.array(values, dtype=dtype)


def snapshots_in_bulk(raw: list[Any], extras: frozenset[str] = EXTRAS) -> list[Snapshot]:
    """Snapshots (decoded JSON objects, damo's fake one already dropped) as Snapshot objects. Per-region
    extras not in ``extras`` are neither read nor checked (their fields stay empty / None)."""
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
    first = _ints([r["start"] for r in regs], np.uint64)
    last = _ints([r["end"] for r in regs], np.uint64)
    ours = [r.get("damon_bpf", _EMPTY) for r in regs]
    counts = np.stack([
        _ints([r["nr_accesses"]["samples"] for r in regs]), _ints([r["age"]["aggr_intervals"] for r in regs]),
        _ints([o.get("reports", 0) for o in ours]), _ints([o.get("writes", 0) for o in ours]),
        _ints([o.get("reads", 0) for o in ours])]).reshape(5, len(regs))
    times = _ints([s["start_time"] for s in raw] + [s["end_time"] for s in raw]).reshape(2, len(raw))
    _check(first, last, counts, times, bounds)
    by_cpu = _by([o.get("cpus", _EMPTY) for o in ours], bounds, 2**20) if "cpus" in extras else _none(raw)
    by_tid = _by([o.get("tids", _EMPTY) for o in ours], bounds, 2**32) if "tids" in extras else _none(raw)
    maps = [o.get("maps") for o in ours] if "maps" in extras else []
    with_maps = any(m is not None for m in maps)
    with_funcs = "funcs" in extras and any(o.get("funcs") is not None for o in ours)
    edges = bounds.tolist()
    out = []
    for j, (s, lo, hi) in enumerate(zip(raw, edges, edges[1:])):
        snap = Snapshot(s["start_time"], s["end_time"], first[lo:hi], last[lo:hi], counts[0, lo:hi],
                        counts[1, lo:hi], counts[2, lo:hi], counts[3, lo:hi], counts[4, lo:hi], by_cpu[j],
                        by_tid[j], _maps(maps[lo:hi]) if with_maps else None, _footprint(s, "snapshot"))
        snap.functions = _functions(s["regions"], "snapshot") if with_funcs else None
        out.append(snap)
    return out


def _none(raw: list) -> list[dict]:
    return [{} for _ in raw]


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


def _by(per_region: list, bounds: np.ndarray, limit: int) -> list[dict[int, np.ndarray]]:
    """Per snapshot, per cpu/tid (sorted) its count in each of the snapshot's regions; an id is there when
    any of the snapshot's regions names it, as the per-snapshot reader has it."""
    nr_snaps = len(bounds) - 1
    if per_region and set(map(type, per_region)) != {dict}:
        raise TypeError
    keys = list(chain.from_iterable(per_region))
    if not keys:
        return [{} for _ in range(nr_snaps)]
    values = _ints(list(chain.from_iterable(map(dict.values, per_region))))
    ident_of = {k: int(k) for k in set(keys)}
    if len(set(ident_of.values())) != len(ident_of) or \
            not all(0 <= i < limit for i in ident_of.values()) or values.min() < 0 or values.max() > MAX_COUNT:
        raise ValueError   # e.g. "1" and "01" in one file: the per-snapshot reader's rules decide
    ids = np.fromiter(map(ident_of.__getitem__, keys), np.int64, len(keys))
    region = np.repeat(np.arange(len(per_region)), np.fromiter(map(len, per_region), np.int64, len(per_region)))
    snap = np.searchsorted(bounds, region, side="right") - 1
    order = np.lexsort((ids, snap))
    ids, region, snap, values = ids[order], region[order], snap[order], values[order]
    new_group = np.ones(len(ids), dtype=bool)
    new_group[1:] = (ids[1:] != ids[:-1]) | (snap[1:] != snap[:-1])
    group = np.cumsum(new_group) - 1
    group_snap, group_id = snap[new_group], ids[new_group]
    width = (bounds[1:] - bounds[:-1])[group_snap]   # each group is one row of its snapshot's regions
    offset = np.concatenate([[0], np.cumsum(width)])
    rows = np.zeros(int(offset[-1]), dtype=np.int64)
    rows[offset[group] + region - bounds[snap]] = values
    out: list[dict[int, np.ndarray]] = [{} for _ in range(nr_snaps)]
    for s, ident, lo, hi in zip(group_snap.tolist(), group_id.tolist(), offset[:-1].tolist(),
                                offset[1:].tolist()):
        out[s][ident] = rows[lo:hi]
    return out
