"""Reading a run of snapshots in our writer's exact layout straight into columns, with no Python object per
region or number (the general path, orjson then bulk.Batch, made a dict per region and an int per number,
which was most of a report's time on a long record).

Our writer (encode._snapshot_json) emits every snapshot with the same keys in the same order, no blanks,
integers only. So the text is read with numpy as two things: its numbers (every run of digits, in order) and
its skeleton (the text with each run of digits made one ``0``). The skeleton is checked to be EXACTLY what
the writer emits for that many snapshots, regions, per-region cpu and thread entries and footprints: then the
text is valid JSON whose every number has a known place, and the numbers are the columns. Anything else
(damo's files, a hand-edited file, an older or newer layout, a number of 19 digits or more, a leading zero, a
repeated id, a name with an escape or a character outside printable ASCII) gives None, and the caller takes
the general path, which also says what is wrong with a bad file. What this path returns is what the general
path gives for the same text (tests/test_our_layout.py).

Regions that `record` wrote also name their mappings (``"maps":[["name","kind"],...]``) and top functions
(``"funcs":{"name":reports,...}``). Those strings are found from the text's quotes in bulk and cut out before
the numbers are read (each leaves its opening quote in the skeleton, which must then hold exactly the
``["",""]`` pairs and ``"":N`` entries our writer emits); with no backslash in the text and only printable
ASCII, each is what json.dumps makes of it. Each region's names are kept as one interned tuple (neighbouring
regions and later snapshots repeat them) and a snapshot's mappings and functions are made from them only when
a report asks for them (``_Named``); a report that leaves ``maps`` and ``funcs`` out of its extras keeps none.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from damon_bpf.recordfile.bulk import Batch
from damon_bpf.recordfile.model import MAX_COUNT

_SNAPSHOT_HEAD = b'{"start_time":0,"end_time":0,"regions":['
_REGION_HEAD = (b'{"start":0,"end":0,"nr_accesses":{"samples":0},"age":{"usec":0,"aggr_intervals":0},'
                b'"damon_bpf":{"reports":0,"writes":0,"reads":0,"cpus":{')
_ENDS = (b"]}", b'],"damon_bpf":{"rss":0,"pss":0}}')   # a snapshot's end without and with its footprint
_MAX_DIGITS = 18      # int64 holds every number this long; longer ones take the general path (as orjson's)
_MAX_IDS = 4096       # cpu or thread entries of one region beyond which the general path is good enough
_KINDS = _MAX_IDS + 2  # the radix of a region's kind in _Pieces' keys (cpus, tids, maps + 1, funcs)
_ZERO, _QUOTE, _COLON, _BRACE = b"0"[0], b'"'[0], b":"[0], b"{"[0]
_COMMA, _OPEN, _CLOSE = b","[0], b"["[0], b"]"[0]


@functools.lru_cache(maxsize=4096)
def _region_skeleton(nr_cpus: int, nr_tids: int, nr_maps: int = -1, nr_funcs: int = 0) -> bytes:
    """One region's skeleton with that many cpu and thread entries, mappings (-1: no ``maps`` key) and
    functions (0: no ``funcs`` key, as our writer leaves it out), each name cut down to its opening quote."""
    maps = b"" if nr_maps < 0 else b',"maps":[' + b",".join([b'[","]'] * nr_maps) + b"]"
    funcs = b"" if nr_funcs <= 0 else b',"funcs":{' + b",".join([b'":0'] * nr_funcs) + b"}"
    return (_REGION_HEAD + b",".join([b'"0":0'] * nr_cpus) + b'},"tids":{' + b",".join([b'"0":0'] * nr_tids)
            + b"}" + maps + funcs + b"}}")


def _numbers(text: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray] | None:
    """The text's skeleton (each run of digits made one ``0``), where in it each number is, and where in the
    text each starts and how long it is; None if a number is too long or has a leading zero."""
    digit = (text - np.uint8(_ZERO)) < 10
    edges = np.flatnonzero(digit[1:] != digit[:-1]) + 1
    if not len(text) or digit[0] or digit[-1] or not len(edges):
        return None
    starts, lengths = edges[0::2], edges[1::2] - edges[0::2]
    if starts[0] < 8 or lengths.max() > _MAX_DIGITS or np.any((text[starts] == _ZERO) & (lengths > 1)):
        return None
    keep = ~digit
    keep[starts] = True
    skeleton = text[keep]
    markers = starts - (np.cumsum(lengths - 1) - (lengths - 1))
    skeleton[markers] = _ZERO
    return skeleton.tobytes(), markers, starts, lengths


def _eight_digits(chunks: np.ndarray) -> np.ndarray:
    """The numbers 8 ASCII digits each (uint64, first digit in the lowest byte; non-digits made 0) stand for:
    pairs, then fours, then all eight combined in a few operations on the whole array (SWAR)."""
    chunks = chunks & np.uint64(0x0F0F0F0F0F0F0F0F)
    chunks = (chunks * np.uint64(10) + (chunks >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    chunks = (chunks * np.uint64(100) + (chunks >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (chunks * np.uint64(10000) + (chunks >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _values(text: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The numbers (at most 18 digits) that end before ``ends``: each read as up to three 8-byte words, the
    characters before its first digit masked to 0. The first number must start at 8 or later (a word
    before it is then still in the text)."""
    words = np.ndarray((len(text) - 7,), "<u8", text, 0, (1,))   # words[i]: text[i:i + 8]
    values = _last_eight(words, ends - 8, lengths)
    for part in (1, 2):   # the 8 digits before the last 8, and the rest (at most 2)
        longer = np.flatnonzero(lengths > 8 * part)
        if len(longer):
            values[longer] += _last_eight(words, ends[longer] - 8 - 8 * part, lengths[longer] - 8 * part) * \
                np.uint64(10 ** (8 * part))
    return values.view(np.int64)


def _last_eight(words: np.ndarray, at: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The numbers the last (up to) 8 of ``lengths`` digits in the words ``at`` make."""
    unused = (64 - 8 * np.minimum(lengths, 8)).astype(np.uint64)   # bits before the number (lengths >= 1)
    mask = ~np.uint64(0) << unused
    return _eight_digits(words[at] & mask)


class _Layout:
    """Where each number of a skeleton in our layout is: the index (into the numbers) of each snapshot's
    start_time, each region's start, each cpu/thread id and each footprint's rss; and per region how many
    cpu and thread entries it has. Derived from the characters before each number, which are right for
    our layout; for other text they may be anything, and ``skeleton`` then differs from the text's."""

    def __init__(self, skeleton: bytes, markers: np.ndarray) -> None:
        chars = np.frombuffer(skeleton, np.uint8)
        before = {k: chars[markers - k] for k in (1, 2, 3, 4, 6)}   # [k]: the character k before each number
        named = (before[1] == _COLON) & (before[3] != _ZERO)    # "key":N, not an id's "N":N
        self.region_at = np.flatnonzero(named & (before[3] == b"t"[0]))      # "start":
        times = np.flatnonzero(named & (before[3] == b"e"[0]))               # "start_time":, "end_time":
        footprint = np.flatnonzero(named & (before[3] == b"s"[0]) & (before[4] == b"s"[0]))  # rss, pss
        self.snapshot_at, self.footprint_at = times[0::2], footprint[0::2]
        self.func_at = np.flatnonzero((before[1] == _COLON) & (before[2] == _QUOTE) &
                                      ((before[3] == _BRACE) | (before[3] == _COMMA)))  # a function's ":N
        self.id_at = np.flatnonzero(before[1] == _QUOTE)
        opens = (before[1] == _QUOTE) & (before[2] == _BRACE)               # an object's first id
        last_open = np.maximum.accumulate(np.where(opens, np.arange(len(markers)), -1))[self.id_at]
        self.is_tid = (before[6] == b"d"[0])[last_open] & (last_open >= 0)  # "tids":{ (else "cpus":{)
        self.region_of_id = np.searchsorted(self.region_at, self.id_at, side="right") - 1
        nr_regions = len(self.region_at)
        self.nr_cpus = np.bincount(self.region_of_id[~self.is_tid] % max(nr_regions, 1), minlength=nr_regions)
        self.nr_tids = np.bincount(self.region_of_id[self.is_tid] % max(nr_regions, 1), minlength=nr_regions)
        self.region_of_func = np.searchsorted(self.region_at, self.func_at, side="right") - 1
        self.nr_funcs = np.bincount(self.region_of_func % max(nr_regions, 1), minlength=nr_regions)
        self.nr_maps = np.full(nr_regions, -1)   # set by the caller where the text names mappings
        self.bounds = np.append(np.searchsorted(self.region_at, self.snapshot_at), nr_regions)
        self.with_footprint = np.zeros(len(self.snapshot_at), bool)
        self.with_footprint[np.searchsorted(self.snapshot_at, self.footprint_at, side="right") - 1] = True

    def skeleton(self) -> bytes | None:
        """The skeleton our writer emits for these snapshots (None if no writer of ours emits it)."""
        most_ids = max(self.nr_cpus.max(initial=0), self.nr_tids.max(initial=0), self.nr_maps.max(initial=0),
                       self.nr_funcs.max(initial=0))
        if not len(self.snapshot_at) or self.bounds[0] != 0 or most_ids > _MAX_IDS:
            return None
        if not np.all(self.bounds[1:] > self.bounds[:-1]):   # a snapshot without regions: one by one
            regions = list(map(_region_skeleton, self.nr_cpus.tolist(), self.nr_tids.tolist(), self.nr_maps.tolist(),
                               self.nr_funcs.tolist()))
            edges = self.bounds.tolist()
            return b",".join([_SNAPSHOT_HEAD + b",".join(regions[lo:hi]) + _ENDS[footprint]
                              for lo, hi, footprint in zip(edges, edges[1:], self.with_footprint.tolist())])
        # each region with what follows it (a comma, or its snapshot's end and the next one's start): one
        # join over pieces looked up by number, no Python code per region
        follows = np.zeros(len(self.region_at), np.int64)
        follows[self.bounds[1:] - 1] = 1 + self.with_footprint
        follows[-1] += 2
        kinds = ((self.nr_cpus * _KINDS + self.nr_tids) * _KINDS + np.maximum(self.nr_maps + 1, 0)) * _KINDS + \
            self.nr_funcs
        keys = kinds * 5 + follows
        return _SNAPSHOT_HEAD + b"".join(map(_PIECES.__getitem__, keys.tolist()))


class _Pieces(dict):
    """A region's skeleton and what follows it, by its kind (cpus, tids, maps + 1 and funcs, digits of radix
    _KINDS) * 5 + what follows: 0 a comma, 1/2 the end of its snapshot (without/with footprint) and the next
    one's start, 3/4 that end alone."""

    def __missing__(self, key: int) -> bytes:
        if len(self) >= 4096:   # bounded: a hostile file may have any number of kinds of region
            self.clear()
        kind, follows = divmod(key, 5)
        counts = []
        for _ in range(4):
            kind, count = divmod(kind, _KINDS)
            counts.append(count)
        nr_funcs, maps, nr_tids, nr_cpus = counts
        ends = [b",", *(end + b"," + _SNAPSHOT_HEAD for end in _ENDS), *_ENDS]
        self[key] = piece = _region_skeleton(nr_cpus, nr_tids, maps - 1, nr_funcs) + ends[follows]
        return piece


_PIECES = _Pieces()


def read_run(text: bytes, extras: frozenset[str]) -> Batch | None:
    """Snapshots ``text`` (snapshots in our layout joined by commas) as a Batch, as bulk.Batch would read
    them from their JSON with ``extras``; None if the text is not exactly our layout or Batch would refuse
    them (the general path then reads them and says what is wrong)."""
    try:
        return _read_run(text, extras)
    except Exception:  # noqa: BLE001 - text no writer of ours made (the checks above missed it): the general path
        return None


def _read_run(text: bytes, extras: frozenset[str]) -> Batch | None:
    chars = np.frombuffer(text, np.uint8)
    cut = None
    if b'"maps"' in text or b'"funcs"' in text:   # `record`'s regions name their mappings and functions
        # only printable ASCII and no escapes: then every name is what json.dumps makes of it
        if b"\\" in text or np.any((chars - np.uint8(0x20)) > 0x5E):
            return None
        cut = _Cut.of(chars)
        if cut is None:
            return None
    body = chars if cut is None else cut.rest
    parsed = _numbers(body)
    if parsed is None:
        return None
    skeleton, markers, starts, lengths = parsed
    layout = _Layout(skeleton, markers)
    if cut is not None and not cut.shape(layout):
        return None
    if layout.skeleton() != skeleton:
        return None
    # the numbers a Batch holds (not age.usec; cpu and thread entries only if asked for), the rest left 0
    wanted = [layout.region_at[:, None] + np.array([0, 1, 2, 4, 5, 6, 7]), layout.snapshot_at[:, None] + [0, 1],
              layout.footprint_at[:, None] + [0, 1]]
    if extras & {"cpus", "tids"}:
        wanted.append(layout.id_at[:, None] + [0, 1])
    if "funcs" in extras:
        wanted.append(layout.func_at[:, None])
    need = np.concatenate([w.ravel() for w in wanted])
    values = np.zeros(len(starts), np.int64)
    values[need] = _values(body, starts[need] + lengths[need], lengths[need])
    at = layout.region_at
    counts = values[at + np.array([[2], [4], [5], [6], [7]])]   # samples, aggr_intervals, reports, writes, reads
    footprints = _footprints(layout, values)
    times = values[np.stack([layout.snapshot_at, layout.snapshot_at + 1])]
    named = {} if cut is None else cut.named(chars, layout, values, extras)
    if named is None:
        return None
    try:
        return Batch.of_columns(times, layout.bounds, values[at].astype(np.uint64),
                                values[at + 1].astype(np.uint64), counts, _entries(layout, values, extras),
                                footprints, **named)
    except ValueError:   # what Batch would refuse: out of range, out of order, an id given twice
        return None


class _Cut:
    """The names (strings in a region's ``maps`` and ``funcs``) of a run's text, cut out of it: what is left
    (``rest``: each name down to its opening quote), and per name its region (in the run) and length with
    its closing quote. Found from the quotes, all at once: a name is a string after a ``"maps":[`` or
    ``"funcs":{`` key and before the next object's first key (a region's or snapshot's ``{"start...``) or a
    footprint's ``],"damon_bpf"``. That is right for our layout; for other text, the skeleton check fails."""

    def __init__(self, rest: np.ndarray, removed: np.ndarray, region: np.ndarray, size: np.ndarray,
                 maps_region: np.ndarray) -> None:
        self.rest, self.removed, self.region, self.size, self.maps_region = rest, removed, region, size, maps_region

    @classmethod
    def of(cls, chars: np.ndarray) -> _Cut | None:
        quotes = np.flatnonzero(chars == _QUOTE)
        if len(quotes) % 2 or not len(quotes) or quotes[0] < 1 or quotes[-1] + 2 >= len(chars):
            return None
        opens, closes = quotes[0::2], quotes[1::2]
        size = closes - opens - 1
        first, after, then = chars[opens + 1], chars[closes + 1], chars[closes + 2]
        before, before2 = chars[opens - 1], chars[np.maximum(opens - 2, 0)]
        opening = (after == _COLON) & (((size == 4) & (first == b"m"[0]) & (then == _OPEN)) |
                                       ((size == 5) & (first == b"f"[0]) & (then == _BRACE)))
        object_start = (before == _BRACE) & ((before2 == _COMMA) | (before2 == _OPEN))
        marker = opening | object_start | ((before == _COMMA) & (before2 == _CLOSE))
        last = np.maximum.accumulate(np.where(marker, np.arange(len(opens)), -1))
        names = opening[last] & (last >= 0) & ~marker
        region = np.cumsum(object_start & (size == 5)) - 1   # per string, the region it is in ("start")
        # the text as spans, kept and cut in turn (np.repeat of their lengths: faster than a cumsum over it)
        edges = np.empty(2 * int(names.sum()) + 2, np.int64)
        edges[0], edges[-1] = 0, len(chars)
        edges[1:-1:2], edges[2:-1:2] = opens[names] + 1, closes[names] + 1
        removed = np.repeat(np.arange(len(edges) - 1) % 2 == 1, np.diff(edges))
        is_maps = opening & (size == 4)
        return cls(chars[~removed], removed, region[names], size[names] + 1, region[is_maps])

    def shape(self, layout: _Layout) -> bool:
        """Set the layout's number of mappings per region (False if the names fit no region)."""
        nr_regions = len(layout.region_at)
        if (len(self.region) and (self.region.min() < 0 or self.region.max() >= nr_regions)) or \
                (len(self.maps_region) and (self.maps_region.min() < 0 or self.maps_region.max() >= nr_regions)):
            return False
        nr_names = np.bincount(self.region, minlength=nr_regions)
        with_maps = np.bincount(self.maps_region, minlength=nr_regions) > 0
        layout.nr_maps = np.where(with_maps, np.maximum(nr_names - layout.nr_funcs, 0) // 2, -1)
        return True

    def named(self, chars: np.ndarray, layout: _Layout, values: np.ndarray,
              extras: frozenset[str]) -> dict[str, _Named] | None:
        """Batch.of_columns' ``maps`` and ``functions`` for ``extras`` (None: a count out of range)."""
        kinds = [kind for kind in ("maps", "funcs") if kind in extras]
        if not kinds:
            return {}
        counts = values[layout.func_at]
        if len(counts) and counts.max() > MAX_COUNT:
            return None
        nr_regions = len(layout.region_at)
        blob = chars[self.removed].tobytes()
        edges = np.concatenate([[0], np.cumsum(np.bincount(self.region, self.size, nr_regions))]).astype(np.int64)
        edges_list = edges.tolist()
        names = list(map(_NAMES.__getitem__, [blob[a:b] for a, b in zip(edges_list, edges_list[1:])]))
        func_edges = np.concatenate([[0], np.cumsum(layout.nr_funcs)])
        bounds = layout.bounds.tolist()
        return {{"maps": "maps", "funcs": "functions"}[kind]:
                _Named(kind, bounds, names, layout.nr_maps, counts, func_edges) for kind in kinds}


class _Interned(dict):
    """Each region's names (its mappings' names and kinds, then its functions) by their text, each
    ``name"``: one tuple for every region that names the same."""

    def __missing__(self, key: bytes) -> tuple[str, ...]:
        if len(self) >= 1 << 16:   # bounded: a file may name anything
            self.clear()
        self[key] = names = tuple(key.decode("ascii").split('"')[:-1])
        return names


_NAMES = _Interned()


@functools.lru_cache(maxsize=1 << 16)
def _pairs(names: tuple[str, ...], nr_maps: int) -> list[tuple[str, str]]:
    """A region's mappings, as (name, kind) (shared by the regions that name the same: read-only)."""
    return list(zip(names[0:2 * nr_maps:2], names[1:2 * nr_maps:2]))


class _Named(Sequence):
    """Per snapshot of a Batch, its regions' mappings (``kind`` "maps") or functions ("funcs") as the general
    path has them (None for a snapshot whose regions name none), made when one is asked for (functions each
    time: a dict per region for every snapshot is the memory the general path took)."""

    def __init__(self, kind: str, bounds: list[int], names: list[tuple[str, ...]], nr_maps: np.ndarray,
                 counts: np.ndarray, func_edges: np.ndarray) -> None:
        self.kind, self.bounds, self.names = kind, bounds, names
        self.nr_maps, self.counts, self.func_edges = nr_maps, counts, func_edges
        self.made: dict[int, list | None] = {}
        self.known: tuple[list[str], np.ndarray] | None = None   # entries()' table and ids for all, if known

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        return self._one(range(len(self))[i])

    def entries(self, a: int, b: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
        """Snapshots [a, b)'s functions flat, as their dicts list them in order: a table of names, and per
        entry its name's index in it, its count and its region (from snapshot a's first); None where a
        region names one function twice. Worked out once per distinct region (names repeat), not per region."""
        lo, hi = self.bounds[a], self.bounds[b]
        nr_funcs = np.diff(self.func_edges[lo:hi + 1])
        if self.known is not None:   # worked out when the columnar side file was written (columnfile.py)
            known_table, ids = self.known
            return known_table, ids[self.func_edges[lo]:self.func_edges[hi]], \
                self.counts[self.func_edges[lo]:self.func_edges[hi]], np.repeat(np.arange(hi - lo), nr_funcs)
        names = self.names[lo:hi]
        # a region's kind: its names tuple (by identity: they are interned, equal ones mostly the same object)
        # and number of functions
        identity = np.fromiter(map(id, names), np.uint64, hi - lo)
        _, where, kind = np.unique(np.stack([identity, nr_funcs.astype(np.uint64)], 1), axis=0,
                                   return_index=True, return_inverse=True)
        kind = kind.reshape(-1)
        maybe = [_function_names(names[k], n) for k, n in zip(where.tolist(), nr_funcs[where].tolist())]
        per_kind = [functions for functions in maybe if functions is not None]
        if len(per_kind) != len(maybe):
            return None
        table: dict[str, int] = {}
        flat = np.fromiter((table.setdefault(name, len(table)) for functions in per_kind for name in functions),
                           np.int64)
        size = np.fromiter(map(len, per_kind), np.int64, len(per_kind))
        first = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
        sizes = size[kind]   # each region's number of functions
        ends = np.cumsum(sizes)
        at = np.repeat(first[kind] - (ends - sizes), sizes) + np.arange(int(ends[-1]) if len(ends) else 0)
        counts = self.counts[self.func_edges[lo]:self.func_edges[hi]]
        return list(table), flat[at], counts, np.repeat(np.arange(hi - lo), sizes)

    def _one(self, j: int) -> list | None:
        lo, hi = self.bounds[j], self.bounds[j + 1]
        if self.kind == "maps":   # kept once made: a list of shared lists per snapshot is small
            if j not in self.made:
                nr_maps = self.nr_maps[lo:hi].tolist()
                self.made[j] = None if max(nr_maps, default=-1) < 0 else \
                    [_pairs(names, n) if n >= 0 else [] for names, n in zip(self.names[lo:hi], nr_maps)]
            return self.made[j]
        edges = self.func_edges[lo:hi + 1].tolist()
        if edges[0] == edges[-1]:
            return None
        counts = self.counts[edges[0]:edges[-1]].tolist()
        base = edges[0]
        return [dict(zip(names[len(names) - (b - a):], counts[a - base:b - base]))
                for names, a, b in zip(self.names[lo:hi], edges, edges[1:])]


@functools.lru_cache(maxsize=1 << 16)
def _function_names(names: tuple[str, ...], nr_funcs: int) -> tuple[str, ...] | None:
    """A region's function names (its names' last ``nr_funcs``); None if one repeats (a dict keeps one)."""
    functions = names[len(names) - nr_funcs:] if nr_funcs else ()
    return functions if len(set(functions)) == len(functions) else None


def _entries(layout: _Layout, values: np.ndarray, extras: frozenset[str]) -> dict[str, tuple]:
    """Per source in ``extras``, its (ids, region index, counts, id limit) for Batch.of_columns."""
    out = {}
    for name, tid, limit in (("by_cpu", False, 2**20), ("by_tid", True, 2**32)):
        if name[3:] + "s" in extras:
            which = layout.is_tid == tid
            out[name] = (values[layout.id_at[which]], layout.region_of_id[which], values[layout.id_at[which] + 1],
                         limit)
    return out


def _footprints(layout: _Layout, values: np.ndarray) -> list[tuple[int, int] | None]:
    """Each snapshot's (rss, pss), or None."""
    footprints: list = [None] * len(layout.snapshot_at)
    where = np.searchsorted(layout.snapshot_at, layout.footprint_at, side="right") - 1
    for snapshot, rss, pss in zip(where.tolist(), values[layout.footprint_at].tolist(),
                                  values[layout.footprint_at + 1].tolist()):
        footprints[snapshot] = (rss, pss)
    return footprints
