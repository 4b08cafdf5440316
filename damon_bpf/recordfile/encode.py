"""Snapshots and records as the JSON text of damo's schema (our extras under ``"damon_bpf"`` keys)."""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Iterable

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.model import MAX_NS, TargetRecord


def _attribution_json(ids: Iterable[int], counts: dict[int, np.ndarray], nr: int) -> list[str]:
    """Per region, a JSON object of the non-zero counts of each cpu/tid (``{"3": 7}``)."""
    ids = sorted(ids)
    if not ids:
        return ["{}"] * nr
    matrix = np.stack([np.asarray(counts[i]) for i in ids], axis=1)  # regions x ids
    parts: list[list[str]] = [[] for _ in range(nr)]
    for region, col in zip(*np.nonzero(matrix)):
        parts[region].append(f'"{ids[col]}":{int(matrix[region, col])}')
    return ["{" + ",".join(p) + "}" for p in parts]


def _functions_json(functions: list[dict[str, int]] | None, nr: int) -> list[str]:
    """Per region, its top functions as ``,"funcs":{"name":reports,...}`` (nothing for a region without)."""
    if functions is None:
        return [""] * nr
    return ["" if not f else ',"funcs":' + json.dumps({k: int(v) for k, v in f.items()}, separators=(",", ":"))
            for f in functions]


def _check_snapshot(s: Snapshot) -> None:
    """Refuse to write what read_record would refuse to read: a bad file is worse than an error."""
    n = len(s.start)
    arrays = [s.end, s.nr_accesses, s.age, s.nr_reports, s.writes, s.reads,
              *s.by_cpu.values(), *s.by_tid.values()]
    if any(len(a) != n for a in arrays) or any(x is not None and len(x) != n for x in (s.mappings, s.functions)):
        raise ValueError("snapshot arrays differ in length")
    if not 0 <= s.start_ns <= s.end_ns <= MAX_NS:
        raise ValueError(f"snapshot time [{s.start_ns}, {s.end_ns}] is not a valid interval")
    if n == 0:
        return
    start = np.asarray(s.start, dtype=np.uint64)
    end = np.asarray(s.end, dtype=np.uint64)
    if np.any(start >= end) or np.any(start[1:] < end[:-1]):
        raise ValueError("snapshot regions are empty, unsorted or overlapping")
    if any(np.any(np.asarray(a) < 0) for a in arrays[1:]):
        raise ValueError("snapshot counters must not be negative")
    if np.any(np.asarray(s.writes) + np.asarray(s.reads) > np.asarray(s.nr_reports)):
        raise ValueError("snapshot writes + reads exceed nr_reports")


@functools.lru_cache(maxsize=8192)
def _pair_json(name: str, kind: str) -> str:
    return f"[{json.dumps(name)},{json.dumps(kind)}]"


def _maps_json(per_region: list[list[tuple[str, str]]]) -> list[str]:
    """Per region its ``,"maps":[[name,kind],...]`` member; neighbouring regions mostly share their mappings,
    so each distinct list is encoded once, and each pair once per run (a library is in every snapshot)."""
    done: dict[int, str] = {}
    out = []
    for per in per_region:
        text = done.get(id(per))   # core.mappings hands regions with the same mappings one list
        if text is None:
            text = done[id(per)] = ',"maps":[' + ",".join(_pair_json(name, kind) for name, kind in per) + "]"
        out.append(text)
    return out


def _snapshot_json(s: Snapshot, aggr_us: int) -> str:
    """One snapshot as compact JSON in damo's schema. Hand-formatted: ~3x faster than json.dumps."""
    n = len(s.start)
    cpus = _attribution_json(s.by_cpu, s.by_cpu, n)
    tids = _attribution_json(s.by_tid, s.by_tid, n)
    maps = [""] * n if s.mappings is None else _maps_json(s.mappings)
    funcs = _functions_json(s.functions, n)
    cols = (np.asarray(a).tolist() for a in (s.start, s.end, s.nr_accesses, s.age, s.nr_reports,
                                            s.writes, s.reads))
    regions = ",".join(
        f'{{"start":{a},"end":{b},"nr_accesses":{{"samples":{n_acc}}},'
        f'"age":{{"usec":{age * aggr_us},"aggr_intervals":{age}}},'
        f'"damon_bpf":{{"reports":{rep},"writes":{w},"reads":{r},"cpus":{c},"tids":{t}{m}{f}}}}}'
        for a, b, n_acc, age, rep, w, r, c, t, m, f in zip(*cols, cpus, tids, maps, funcs))
    ours = ("" if s.footprint is None
            else f',"damon_bpf":{{"rss":{int(s.footprint[0])},"pss":{int(s.footprint[1])}}}')
    return f'{{"start_time":{int(s.start_ns)},"end_time":{int(s.end_ns)},"regions":[{regions}]{ours}}}'


def _record_head(rec: TargetRecord) -> str:
    intervals = {"sample_us": int(rec.sample_us), "aggr_us": int(rec.aggr_us),
                 "ops_update_us": int(rec.update_us)}
    return f'{{"target_id":{int(rec.target_id)},"intervals":{json.dumps(intervals)},"snapshots":['


def _jsonable(v: Any) -> Any:
    """Meta as strict JSON: numpy values as numbers, NaN/inf as null, anything odd as a string.
    A flush must never fail (or write a file strict readers reject) because of a meta value."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _record_tail(pid: int | None, meta: dict | None) -> str:
    """The end of a record: our key with the pid and, unless None, the meta (a later part of a record
    written by appending flushes leaves out a meta it repeats: the reader keeps the last one given)."""
    ours: dict = {"version": 1, "pid": None if pid is None else int(pid)}
    if meta is not None:
        ours["meta"] = _jsonable(meta)
    return f'],"damon_bpf":{json.dumps(ours, allow_nan=False)}}}'
