"""Reading a run of snapshots in our writer's exact layout straight into columns, with no Python object per
region or number (the general path, orjson then bulk.Batch, made a dict per region and an int per number,
which was most of a report's time on a long record).

Our writer (encode._snapshot_json) emits every snapshot with the same keys in the same order, no blanks,
integers only. So the text is read with numpy as two things: its numbers (every run of digits, in order) and
its skeleton (the text with each run of digits made one ``0``). The skeleton is checked to be EXACTLY what
the writer emits for that many snapshots, regions, per-region cpu and thread entries and footprints: then the
text is valid JSON whose every number has a known place, and the numbers are the columns. Anything else
(damo's files, a hand-edited file, an older or newer layout, maps or funcs in a region, a number of 19 digits
or more, a leading zero, a repeated id) gives None, and the caller takes the general path, which also says
what is wrong with a bad file. What this path returns is what the general path gives for the same text
(tests/test_our_layout.py).
"""

from __future__ import annotations

import functools

import numpy as np

from damon_bpf.recordfile.bulk import Batch

_SNAPSHOT_HEAD = b'{"start_time":0,"end_time":0,"regions":['
_REGION_HEAD = (b'{"start":0,"end":0,"nr_accesses":{"samples":0},"age":{"usec":0,"aggr_intervals":0},'
                b'"damon_bpf":{"reports":0,"writes":0,"reads":0,"cpus":{')
_ENDS = (b"]}", b'],"damon_bpf":{"rss":0,"pss":0}}')   # a snapshot's end without and with its footprint
_MAX_DIGITS = 18      # int64 holds every number this long; longer ones take the general path (as orjson's)
_MAX_IDS = 4096       # cpu or thread entries of one region beyond which the general path is good enough
_ZERO, _QUOTE, _COLON, _BRACE = b"0"[0], b'"'[0], b":"[0], b"{"[0]


@functools.lru_cache(maxsize=4096)
def _region_skeleton(nr_cpus: int, nr_tids: int) -> bytes:
    """One region's skeleton with that many cpu and thread entries."""
    return (_REGION_HEAD + b",".join([b'"0":0'] * nr_cpus) + b'},"tids":{' + b",".join([b'"0":0'] * nr_tids)
            + b"}}}")


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
        self.id_at = np.flatnonzero(before[1] == _QUOTE)
        opens = (before[1] == _QUOTE) & (before[2] == _BRACE)               # an object's first id
        last_open = np.maximum.accumulate(np.where(opens, np.arange(len(markers)), -1))[self.id_at]
        self.is_tid = (before[6] == b"d"[0])[last_open] & (last_open >= 0)  # "tids":{ (else "cpus":{)
        self.region_of_id = np.searchsorted(self.region_at, self.id_at, side="right") - 1
        nr_regions = len(self.region_at)
        self.nr_cpus = np.bincount(self.region_of_id[~self.is_tid] % max(nr_regions, 1), minlength=nr_regions)
        self.nr_tids = np.bincount(self.region_of_id[self.is_tid] % max(nr_regions, 1), minlength=nr_regions)
        self.bounds = np.append(np.searchsorted(self.region_at, self.snapshot_at), nr_regions)
        self.with_footprint = np.zeros(len(self.snapshot_at), bool)
        self.with_footprint[np.searchsorted(self.snapshot_at, self.footprint_at, side="right") - 1] = True

    def skeleton(self) -> bytes | None:
        """The skeleton our writer emits for these snapshots (None if no writer of ours emits it)."""
        most_ids = max(self.nr_cpus.max(initial=0), self.nr_tids.max(initial=0))
        if not len(self.snapshot_at) or self.bounds[0] != 0 or most_ids > _MAX_IDS:
            return None
        if not np.all(self.bounds[1:] > self.bounds[:-1]):   # a snapshot without regions: one by one
            regions = list(map(_region_skeleton, self.nr_cpus.tolist(), self.nr_tids.tolist()))
            edges = self.bounds.tolist()
            return b",".join([_SNAPSHOT_HEAD + b",".join(regions[lo:hi]) + _ENDS[footprint]
                              for lo, hi, footprint in zip(edges, edges[1:], self.with_footprint.tolist())])
        # each region with what follows it (a comma, or its snapshot's end and the next one's start): one
        # join over pieces looked up by number, no Python code per region
        follows = np.zeros(len(self.region_at), np.int64)
        follows[self.bounds[1:] - 1] = 1 + self.with_footprint
        follows[-1] += 2
        keys = (self.nr_cpus * (_MAX_IDS + 1) + self.nr_tids) * 5 + follows
        return _SNAPSHOT_HEAD + b"".join(map(_PIECES.__getitem__, keys.tolist()))


class _Pieces(dict):
    """A region's skeleton and what follows it, by (cpus * (_MAX_IDS + 1) + tids) * 5 + what follows: 0 a
    comma, 1/2 the end of its snapshot (without/with footprint) and the next one's start, 3/4 that end alone."""

    def __missing__(self, key: int) -> bytes:
        if len(self) >= 4096:   # bounded: a hostile file may have any number of kinds of region
            self.clear()
        ids, follows = divmod(key, 5)
        ends = [b",", *(end + b"," + _SNAPSHOT_HEAD for end in _ENDS), *_ENDS]
        self[key] = piece = _region_skeleton(*divmod(ids, _MAX_IDS + 1)) + ends[follows]
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
    if b'"maps"' in text or b'"funcs"' in text:   # `record`'s regions carry them: known at once, not after the parse
        return None
    chars = np.frombuffer(text, np.uint8)
    parsed = _numbers(chars)
    if parsed is None:
        return None
    skeleton, markers, starts, lengths = parsed
    layout = _Layout(skeleton, markers)
    if layout.skeleton() != skeleton:
        return None
    # the numbers a Batch holds (not age.usec; cpu and thread entries only if asked for), the rest left 0
    wanted = [layout.region_at[:, None] + np.array([0, 1, 2, 4, 5, 6, 7]), layout.snapshot_at[:, None] + [0, 1],
              layout.footprint_at[:, None] + [0, 1]]
    if extras & {"cpus", "tids"}:
        wanted.append(layout.id_at[:, None] + [0, 1])
    need = np.concatenate([w.ravel() for w in wanted])
    values = np.zeros(len(starts), np.int64)
    values[need] = _values(chars, starts[need] + lengths[need], lengths[need])
    at = layout.region_at
    counts = values[at + np.array([[2], [4], [5], [6], [7]])]   # samples, aggr_intervals, reports, writes, reads
    footprints = _footprints(layout, values)
    times = values[np.stack([layout.snapshot_at, layout.snapshot_at + 1])]
    try:
        return Batch.of_columns(times, layout.bounds, values[at].astype(np.uint64),
                                values[at + 1].astype(np.uint64), counts, _entries(layout, values, extras),
                                footprints)
    except ValueError:   # what Batch would refuse: out of range, out of order, an id given twice
        return None


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
