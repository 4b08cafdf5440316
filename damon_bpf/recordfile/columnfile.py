"""The columnar side file ``FILE.columns.npz`` beside a record file: the snapshots as read_record's bulk parts
hold them (bulk.Batch: one numpy array per column, per-id counts, the regions' names as a table), so a report
loads arrays instead of parsing JSON (the JSON of a one-hour record took 2.5-3.5 s of every report's time).

The record file stays what it was (damo reads it); the side file only repeats it. ``record`` writes it when
it closes the file, from the file it wrote read back (so it holds exactly what read_record gives), and binds
it to that file by its size and SHA-256 (a 15 MB record hashes in ~40 ms). read_record uses it only if the
record still has that size and hash, the side file is a regular file of the record's owner (or ours) that
nobody else may write, and everything in it is well-formed; else (a record rewritten by damo or by hand, a
crashed run, an older record, a damaged side file) it reads the JSON as before.

It is written through ``damon_bpf.outputs`` (0600, no symlink followed, never replacing a non-regular file)
and read with ``allow_pickle=False`` (plain arrays only), each member's inflated size bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from typing import Any, Callable

import numpy as np

from damon_bpf import outputs
from damon_bpf.errors import DamonBpfError
import damon_bpf.recordfile.bulk as bulk
import damon_bpf.recordfile.ourlayout as ourlayout
from damon_bpf.recordfile.model import TargetRecord
from damon_bpf.recordfile.snapshots import Snapshots
from damon_bpf.recordfile.stream import MAX_INFLATED

SUFFIX = ".columns.npz"
VERSION = 1
WHAT = "columnar side file"
_SOURCES = (("by_cpu", "cpus"), ("by_tid", "tids"))


def side_path(path: str) -> str:
    return os.fspath(path) + SUFFIX


def fingerprint(path: str) -> tuple[int, str]:
    """The record's size and SHA-256 (hex), read through one descriptor."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return size, digest.hexdigest()


# --- writing -------------------------------------------------------------------------------------------

def write_beside(path: str, warn: Callable[[str], None], read: Callable[..., list[TargetRecord]]) -> bool:
    """Write ``path``'s side file from the record read back by ``read`` (reader.read_record, which imports
    this module; nothing if the record is not all in bulk batches); a failure is one warning, the record
    file is never affected. True if written."""
    try:
        before = fingerprint(path)
        records = read(path, use_columns=False)
        arrays = _arrays(records)
        if arrays is None or fingerprint(path) != before:
            return False
        arrays["binding"] = _text(json.dumps({"version": VERSION, "size": before[0], "sha256": before[1]}))
        data = io.BytesIO()
        np.savez(data, **arrays)   # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
        outputs.replace_file(side_path(path), data.getvalue(), WHAT)
        return True
    except (DamonBpfError, OSError) as err:
        warn(f"warning: no {WHAT} for {path} ({err}); reports read the record's JSON instead")
        return False


def _text(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8)


def _arrays(records: list[TargetRecord]) -> dict[str, np.ndarray] | None:
    """Every record's parts as named arrays, each field of all its parts joined into one array (a member
    each costs a header parse to load); None if any part is not a bulk Batch."""
    out: dict[str, np.ndarray] = {}
    heads = []
    for r, rec in enumerate(records):
        snaps = rec.snapshots
        if not isinstance(snaps, Snapshots) or snaps.positions is not None:
            return None
        parts = snaps.parts
        table: dict[tuple[str, ...], int] = {}
        maybe = [_part_arrays(part, table) for part in parts]
        got = [g for g in maybe if g is not None]
        if len(got) != len(maybe):
            return None
        fields = sorted(set().union(*(arrays for arrays, _ in got)))
        out[f"r{r}_lens"] = np.array([[arrays[f].shape[-1] if f in arrays else -1 for arrays, _ in got]
                                      for f in fields], np.int64).reshape(len(fields), len(parts))
        for f in fields:
            out[f"r{r}_{f}"] = np.concatenate([arrays[f] for arrays, _ in got if f in arrays], axis=-1)
        out[f"r{r}_names_table"] = _text("\n".join('"'.join(t) + '"' for t in table))
        heads.append({"target_id": rec.target_id, "pid": rec.pid, "sample_us": rec.sample_us,
                      "aggr_us": rec.aggr_us, "update_us": rec.update_us, "meta": rec.meta, "fields": fields,
                      "parts": [about for _, about in got]})
    out["records"] = _text(json.dumps(heads))
    return out


def _part_arrays(part: Any, table: dict) -> tuple[dict[str, np.ndarray], dict] | None:
    """A part's arrays (each along its last axis: a part's slice of the joined one) and what else it has
    (which names it holds; the general path's names, few, as JSON)."""
    if not isinstance(part, bulk.Batch):
        return None
    named: list[Any] = [x for x in (part.maps, part.functions) if x is not None]
    listed = {kind: x for kind, x in (("maps", part.maps), ("functions", part.functions)) if isinstance(x, list)}
    if any(not isinstance(x, (ourlayout._Named, list)) for x in named):
        return None
    footprints = np.array([(-1, -1) if f is None else f for f in part.footprints], np.int64).reshape(-1, 2)
    out = {"times": part.times, "bounds": part.bounds, "first": part.first, "last": part.last,
           "counts": part.counts, "footprints": footprints.T}
    for source, _ in _SOURCES:
        by = part.by[source]
        if by is not None:
            out.update({f"{source}_{k}": getattr(by, k) for k in ("snap", "ids", "offset", "rows")})
    about: dict = {"listed": listed, "kinds": []}
    if named and not listed:
        names: Any = named[0]
        index = np.fromiter(map(lambda t: table.setdefault(t, len(table)), names.names), np.int64, len(names.names))
        out.update(names_index=index, nr_maps=names.nr_maps, func_counts=names.counts, func_edges=names.func_edges)
        about["kinds"] = [x.kind for x in named]
        entries = names.entries(0, len(names))   # breakdown's flat functions, worked out once here
        if entries is not None:
            out["func_ids"], about["func_table"] = entries[1], entries[0]
    return out, about


# --- reading -------------------------------------------------------------------------------------------

class _Stale(Exception):
    """The side file does not match the record or is not usable: read the JSON."""


def load(path: str, snapshot: int | None, extras: frozenset[str]) -> list[TargetRecord] | None:
    """read_record's result from ``path``'s side file, or None if there is none that is usable."""
    side = side_path(path)
    try:
        fd = os.open(side, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            return _load(path, f, snapshot, extras)
    except (_Stale, OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile, EOFError,
            UnicodeDecodeError, OverflowError, MemoryError):
        return None


def _load(path: str, f: Any, snapshot: int | None, extras: frozenset[str]) -> list[TargetRecord]:
    st, record_st = os.fstat(f.fileno()), os.stat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (record_st.st_uid, os.geteuid()) or st.st_mode & 0o022:
        raise _Stale
    with np.load(f, allow_pickle=False) as npz:
        if sum(info.file_size for info in npz.zip.infolist()) > MAX_INFLATED:
            raise _Stale
        binding = json.loads(npz["binding"].tobytes())
        if binding.get("version") != VERSION or binding.get("size") != record_st.st_size or \
                [binding["size"], binding["sha256"]] != list(fingerprint(path)):
            raise _Stale
        keep = extras if snapshot is None else bulk.EXTRAS   # one snapshot: whole, as the JSON path gives it
        records = [_record(npz, r, head, keep) for r, head in enumerate(json.loads(npz["records"].tobytes()))]
    return records if snapshot is None else [_one(rec, snapshot) for rec in records]


def _record(npz: Any, r: int, head: dict, extras: frozenset[str]) -> TargetRecord:
    fields, lens = head["fields"], npz[f"r{r}_lens"]
    if lens.dtype != np.int64 or lens.shape != (len(fields), len(head["parts"])):
        raise _Stale
    joined = {f: npz[f"r{r}_{f}"] for f in fields}
    table = [tuple(key.split('"')[:-1]) for key in npz[f"r{r}_names_table"].tobytes().decode("ascii").split("\n")]
    ends = np.cumsum(np.maximum(lens, 0), axis=1)
    parts = []
    for p, about in enumerate(head["parts"]):
        arrays = {f: joined[f][..., ends[k, p] - lens[k, p]:ends[k, p]]
                  for k, f in enumerate(fields) if lens[k, p] >= 0}
        parts.append(_part(arrays, about, table, extras))
    return TargetRecord(int(head["target_id"]), head["pid"], int(head["sample_us"]), int(head["aggr_us"]),
                        int(head["update_us"]), Snapshots(parts), dict(head["meta"]))


def _one(rec: TargetRecord, index: int) -> TargetRecord:
    """The record with only snapshot ``index`` kept, as read_record(path, snapshot=index) gives it."""
    snaps = rec.snapshots
    n = len(snaps)
    rec.nr_in_file, rec.origin_ns = n, (snaps[0].start_ns if n else None)
    rec.snapshots = [snaps[index]] if -n <= index < n else []
    return rec


def _part(arrays: dict[str, np.ndarray], about: dict, table: list, extras: frozenset[str]) -> bulk.Batch:
    def get(name: str, dtype: Any) -> np.ndarray:
        value = arrays[name]
        if value.dtype != dtype:
            raise _Stale
        return value

    times, bounds = get("times", np.int64), get("bounds", np.int64)
    first, last, counts = get("first", np.uint64), get("last", np.uint64), get("counts", np.int64)
    nr_snaps, nr_regions = len(bounds) - 1, len(first)
    if times.shape != (2, nr_snaps) or counts.shape != (5, nr_regions) or last.shape != first.shape or \
            bounds[0] != 0 or bounds[-1] != nr_regions or np.any(np.diff(bounds) < 0):
        raise _Stale
    footprints = get("footprints", np.int64).T
    if footprints.shape != (nr_snaps, 2):
        raise _Stale
    listed = [None if rss < 0 else (rss, pss) for rss, pss in footprints.tolist()]
    names: dict[str, Any] = _names(get, bounds, about["kinds"], table, extras) if about["kinds"] else \
        _listed_names(about["listed"], extras)
    if "functions" in names and "func_table" in about:
        ids = get("func_ids", np.int64)
        func_table = [str(name) for name in about["func_table"]]
        out_of_table = len(ids) and (ids.min() < 0 or ids.max() >= len(func_table))
        if ids.shape != names["functions"].counts.shape or out_of_table:
            raise _Stale
        names["functions"].known = func_table, ids
    batch = bulk.Batch.of_columns(times, bounds, first, last, counts, {}, listed, **names)
    for source, extra in _SOURCES:
        if extra in extras and source + "_rows" in arrays:
            batch.by[source] = _by(get, source, bounds)
    return batch


def _by(get: Callable, source: str, bounds: np.ndarray) -> bulk._By:
    """A bulk._By from its arrays, checked to be consistent (a wrong one would fail in a report)."""
    by = bulk._By.__new__(bulk._By)
    by.snap, by.ids, by.offset, by.rows = (get(f"{source}_{k}", np.int64) for k in ("snap", "ids", "offset", "rows"))
    nr_snaps = len(bounds) - 1
    width = np.diff(bounds)
    if by.snap.shape != by.ids.shape or by.offset.shape != (len(by.snap) + 1,) or by.offset[0] != 0 or \
            by.offset[-1] != len(by.rows) or (len(by.snap) and (by.snap.min() < 0 or by.snap.max() >= nr_snaps
                                                               or np.any(np.diff(by.snap) < 0))) or \
            np.any(np.diff(by.offset) != width[by.snap]):
        raise _Stale
    by.first = np.searchsorted(by.snap, np.arange(nr_snaps + 1)).tolist()
    return by


def _listed_names(listed: dict, extras: frozenset[str]) -> dict[str, list]:
    """Batch.of_columns' ``maps`` and ``functions`` kept as JSON (mappings are (name, kind) tuples)."""
    out: dict[str, list] = {}
    if "maps" in extras and "maps" in listed:
        out["maps"] = [None if snap is None else [[tuple(pair) for pair in region] for region in snap]
                       for snap in listed["maps"]]
    if "funcs" in extras and "functions" in listed:
        out["functions"] = listed["functions"]
    return out


def _names(get: Callable, bounds: np.ndarray, kinds: list[str], table: list,
           extras: frozenset[str]) -> dict[str, ourlayout._Named]:
    """Batch.of_columns' ``maps`` and ``functions`` (those of ``kinds`` in ``extras``) from the names table."""
    kinds = [kind for kind in kinds if kind in extras]
    if not kinds:
        return {}
    index, nr_maps = get("names_index", np.int64), get("nr_maps", np.int64)
    counts, func_edges = get("func_counts", np.int64), get("func_edges", np.int64)
    nr_regions = int(bounds[-1])
    if index.shape != (nr_regions,) or nr_maps.shape != (nr_regions,) or func_edges.shape != (nr_regions + 1,) \
            or func_edges[0] != 0 or func_edges[-1] != len(counts) or np.any(np.diff(func_edges) < 0) or \
            (nr_regions and (index.min() < 0 or index.max() >= len(table))):
        raise _Stale
    names = list(map(table.__getitem__, index.tolist()))
    edges = bounds.tolist()
    return {{"maps": "maps", "funcs": "functions"}[kind]:
            ourlayout._Named(kind, edges, names, nr_maps, counts, func_edges) for kind in kinds}
