"""Reading a record file (ours, or damo's JSON / compressed JSON) as a stream.

The file is inflated 1 MiB at a time (with a bound on the total) and parsed piece by piece: only the
record's outer structure is walked here. Snapshots in our writer's compact form are decoded by orjson a run
at a time (the whole snapshots at hand, about 1 MiB of text), others one value at a time by json's C scanner;
they are turned into numpy arrays a batch of 1000 at a time (bulk.py) and kept so: a record's snapshots
are a ``snapshots.Snapshots`` sequence, which makes a Snapshot object only when one is asked for. Memory
follows the numbers a report keeps, never the inflated text. A report that needs one snapshot (``report
access``) asks for just that one and the others are scanned, not kept.
"""

from __future__ import annotations

import codecs
import collections
import gc
import json
import os
import re
from itertools import repeat
from typing import Any, BinaryIO, Iterator

try:
    import orjson
except ImportError:   # the stdlib json alone reads every file too, slower
    orjson = None  # type: ignore[assignment]

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import RecordFileError
from damon_bpf.recordfile.bulk import EXTRAS, Batch
from damon_bpf.recordfile.columnfile import load as load_columns
from damon_bpf.recordfile.model import MAX_US, BadRecord, TargetRecord
from damon_bpf.recordfile.ourlayout import read_run
from damon_bpf.recordfile.perf_script import read_perf_script
from damon_bpf.recordfile.schema import _int, _is_damo_fake, _key, _list, _obj, _snapshot
from damon_bpf.recordfile.snapshots import Loose, Snapshots
from damon_bpf.recordfile.stream import inflate

MAX_VALUE_CHARS = 64 << 20    # one JSON value (a snapshot) this long is no recording of ours: refuse it
_WANT_AHEAD = 1 << 20         # text to have at hand before decoding a value, so most need one attempt
_OURS, _NEXT = '{"start_time":', ',{"start_time":'   # how our writer lays snapshots out
_NON_BLANK = re.compile(r"[^ \t\n\r]")
_BATCH = 1000                 # snapshots turned into arrays at once (bulk.py)


def _reject_constant(name: str) -> Any:
    raise BadRecord(f"holds {name}, which is not a valid number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class _Text:
    """JSON text pulled from byte chunks on demand; consumed text is dropped."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.done = "", 0, False
        self.dropped = 0          # characters consumed and dropped before buf
        self.one_by_one_to = 0    # the end (from the text's start) of a run orjson could not take

    def _pull(self, at_least: int) -> bool:
        """Read until ``at_least`` characters lie past pos (or the text ends); False if nothing was added."""
        if self.pos > len(self.buf) // 2:
            self.dropped += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        parts, have = [self.buf], len(self.buf) - self.pos
        while have < at_least and not self.done:
            chunk = next(self.chunks, None)
            try:
                text = self.utf8.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError as err:
                raise BadRecord(f"is not UTF-8 text after decompression ({err.reason})") from None
            self.done = chunk is None
            parts.append(text)
            have += len(text)
        grew = len(parts) > 1
        self.buf = "".join(parts)
        return grew

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the text)."""
        while True:
            found = _NON_BLANK.search(self.buf, self.pos)   # a regex: megabytes of blanks are no Python loop
            self.pos = found.start() if found else len(self.buf)
            if found or not self._pull(1):
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str, where: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            found = repr(ch) if ch else "the end of the text"
            raise BadRecord(f"is not valid JSON: expected {' or '.join(map(repr, chars))} in {where}, "
                            f"found {found}")
        self.pos += 1
        return ch

    def value(self, where: str) -> Any:
        """The next JSON value, decoded by json's C scanner; more text is pulled while it is incomplete."""
        self.peek()
        want = _WANT_AHEAD
        while True:
            self._pull(want)
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                # only an error at the end of what we have (or in a string not closed yet) may be cured by more
                if self.done or not (err.pos >= len(self.buf) - 1 or err.msg.startswith("Unterminated")):
                    raise BadRecord(f"is not valid JSON in {where}: {err.msg}") from None
                value, end = None, None
            except RecursionError:
                raise BadRecord(f"is not a record: JSON nested too deeply in {where}") from None
            except ValueError as err:   # e.g. an integer with more digits than Python converts
                raise BadRecord(f"holds an invalid number in {where}: {str(err).split(';')[0]}") from None
            if end is not None and (end < len(self.buf) or self.done):   # a number may go on in the next chunk
                self.pos = end
                return value
            if len(self.buf) - self.pos > MAX_VALUE_CHARS:
                raise BadRecord(f"holds a JSON value of more than {MAX_VALUE_CHARS >> 20} MiB in {where} "
                                "(a damaged or hostile file?)")
            want = 2 * max(want, len(self.buf) - self.pos)


    def snapshots_ahead(self, extras: frozenset[str] | None = None) -> list | Batch | None:
        """The values from pos up to the last snapshot in our writer's compact form that has text at hand,
        read in one go: with ``extras`` given, as a Batch if the text is exactly our writer's layout
        (ourlayout.py), else decoded by orjson (None if neither is possible: the caller decodes value by
        value). If ``[`` + that text + ``]`` is valid JSON, it is a run of whole values of the list being
        read, so it decodes to what value-by-value decoding would give, except numbers of 19 digits or more,
        which orjson makes floats: text with those is left to json."""
        if orjson is None or _reader_is("reference"):
            return None
        self.peek()
        if not self.buf.startswith(_OURS, self.pos) or self.dropped + self.pos < self.one_by_one_to:
            return None
        self._pull(_WANT_AHEAD)
        end = self.buf.rfind(_NEXT, self.pos + 1)
        if end < 0:
            return None
        run = self.buf[self.pos:end].encode()
        part = read_run(run, extras) if extras is not None and not _reader_is("general") else None
        if part is not None:
            self.pos = end
            return part
        try:
            if _has_long_number(run):
                raise ValueError
            values = orjson.loads(b"[" + run + b"]")
        except ValueError:   # orjson.JSONDecodeError is one: json takes this run, value by value
            self.one_by_one_to = self.dropped + end
            return None
        self.pos = end
        return values

    def raw_snapshot(self) -> str | None:
        """The text of the next value if it is a snapshot in our writer's compact form followed by another
        (found with str.find, no JSON decoding: how a report that needs one snapshot skips the rest); None
        otherwise, and the caller decodes the value."""
        self.peek()
        if not self.buf.startswith(_OURS, self.pos):
            return None
        offset = 1   # from pos: where to look for the next snapshot
        while True:
            found = self.buf.find(_NEXT, self.pos + offset)
            if found >= 0:
                break
            if self.done or len(self.buf) - self.pos > MAX_VALUE_CHARS:
                return None
            offset = max(1, len(self.buf) - self.pos - len(_NEXT))
            self._pull(len(self.buf) - self.pos + _WANT_AHEAD)
        text = self.buf[self.pos:found]
        # one snapshot, balanced (else, e.g. a record's last snapshot with the next record: decode it instead)
        if text.count('"start_time"') != 1 or text.count("{") != text.count("}") or \
                text.count("[") != text.count("]"):
            return None
        self.pos = found
        return text


def _reader_is(path: str) -> bool:
    """DAMON_BPF_READER picks a slower path, for the benchmark and the tests that compare paths: "json" (our
    layout's JSON reader, the columnar side file left), "reference" (json and per-snapshot arrays, as before
    the bulk reader) or "general" (orjson and bulk.Batch even for our writer's layout)."""
    return os.environ.get("DAMON_BPF_READER") == path


_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= c <= 0x39 else 0x30 for c in range(256))


def _has_long_number(text: bytes) -> bool:
    """Whether ``text`` holds a run of 19 ASCII digits or more (every digit made "1", the rest "0", then one
    substring search: faster than numpy over the bytes, and a regex took longer than the decoding)."""
    return b"1" * 19 in text.translate(_DIGITS_AS_ONES)


def _decode(text: str, where: str) -> Any:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise BadRecord(f"is not valid JSON in {where}: {err.msg}") from None
    except (ValueError, RecursionError) as err:
        raise BadRecord(f"holds an invalid value in {where}: {str(err).split(';')[0]}") from None


def _chunks(path: str) -> Iterator[bytes]:
    """The file's text as bytes: plain JSON as it is (damo's `json` format), anything else inflated."""
    try:
        stream: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed when the generator ends
    except FileNotFoundError:
        raise BadRecord("no such file") from None
    except IsADirectoryError:
        raise BadRecord("is a directory, not a record file") from None
    except OSError as err:
        raise BadRecord(f"cannot read: {err.strerror or err}") from None
    with stream:
        try:
            first = stream.read(1 << 16)
        except OSError as err:
            raise BadRecord(f"cannot read: {err.strerror or err}") from None
        if not first.strip():
            if not first or not stream.read(1 << 16).strip():
                raise BadRecord("is empty")
        if first.lstrip()[:1] in (b"[", b"{"):
            yield first
            yield from iter(lambda: stream.read(1 << 20), b"")
        else:
            yield from inflate(stream, first)


class _Keep:
    """Which snapshots of a record are kept: all (None), or one index (negative counts from the end).

    With all kept, each is turned into arrays as soon as it is read (once the record's intervals are known,
    which in our files and damo's come first), a batch at a time, and the record's snapshots are those
    batches (snapshots.Snapshots); one wanted snapshot is kept as parsed JSON until the end."""

    def __init__(self, index: int | None, extras: frozenset[str]) -> None:
        self.index = index
        self.extras = extras
        self.seen = 0
        self.aggr_us: int | None = None
        self.first: Any = None
        size = None if index is None else (-index if index < 0 else 1)
        self.kept: collections.deque = collections.deque(maxlen=size)   # as parsed JSON
        self.parts: list = []                    # with all kept: Batches and Loose runs, in order
        self.batch: list[tuple[Any, str, int]] = []   # decoded snapshots (record, index) not yet in arrays

    def convert(self) -> None:
        """Turn the batch into a part, in bulk; snapshot by snapshot (the careful reader says what is wrong
        and where) if anything in it is unusual."""
        if not self.batch:
            return
        assert self.aggr_us is not None
        try:
            if _reader_is("reference"):
                raise ValueError
            self.parts.append(Batch([snap for snap, _, _ in self.batch], self.extras))
        except Exception:  # noqa: BLE001 - anything unusual: the per-snapshot reader decides
            self.parts.append(_loose(((snap, f"{where} snapshot {i}") for snap, where, i in self.batch),
                                     self.aggr_us))
        self.batch = []

    def add(self, snap: Any, where: str) -> None:
        """The next snapshot of record ``where``."""
        if _damo_fake(snap):
            return
        if self.seen == 0:
            self.first = snap
        if self.index is None and self.aggr_us is not None:
            self.batch.append((snap, where, self.seen))
            if len(self.batch) >= _BATCH:
                self.convert()
        elif self.index is None or self.index < 0 or self.seen == self.index:
            self.kept.append(snap)   # with all kept: a record whose intervals come after its snapshots
        self.seen += 1

    def add_run(self, run: list, where: str) -> None:
        """The next snapshots, decoded together: as ``add`` each, without a call each."""
        if self.index is not None or self.aggr_us is None or self.seen == 0:
            for snap in run:
                self.add(snap, where)
            return
        fresh = [snap for snap in run if not _damo_fake(snap)]
        self.batch += zip(fresh, repeat(where), range(self.seen, self.seen + len(fresh)))
        self.seen += len(fresh)
        if len(self.batch) >= _BATCH:
            self.convert()

    def add_part(self, part: Batch) -> None:
        """The next snapshots, read as a Batch already (ourlayout.py)."""
        self.convert()
        self.parts.append(part)
        self.seen += len(part)

    def result(self, where: str, aggr_us: int) -> Snapshots | list:
        """The kept snapshots: all as Snapshots, or the one wanted in a list (empty if there is none)."""
        self.convert()
        if self.index is None:
            # parts of one target all know their intervals, so kept ones are a record's only snapshots
            first = self.seen - len(self.kept)
            self.parts.append(_loose(((s, f"{where} snapshot {first + i}") for i, s in enumerate(self.kept)),
                                     aggr_us))
            self.kept.clear()
            return Snapshots(self.parts)
        if self.index < 0 and len(self.kept) < -self.index:
            return []
        first = self.seen - len(self.kept) if self.index < 0 else self.index
        found = self._snapshot(self.kept[0], f"{where} snapshot {first}", aggr_us) if self.kept else None
        return [] if found is None else [found]

    @staticmethod
    def _snapshot(snap: Any, where: str, aggr_us: int) -> Snapshot | None:
        if isinstance(snap, Snapshot):
            return snap
        return _snapshot(_decode(snap, where) if isinstance(snap, str) else snap, where, aggr_us)

    def origin_ns(self, where: str, aggr_us: int) -> int | None:
        """When the record's first snapshot began (None without snapshots)."""
        first = self._snapshot(self.first, f"{where} snapshot 0", aggr_us) if self.seen else None
        return None if first is None else first.start_ns


def _damo_fake(snap: Any) -> bool:
    return isinstance(snap, dict) and isinstance(snap.get("regions"), list) and _is_damo_fake(snap["regions"])


def _loose(snaps: Iterator[tuple[Any, str]], aggr_us: int) -> Loose:
    """Snapshots read one by one by the careful reader (damo's fake closing one left out)."""
    return Loose([s for s in (_snapshot(snap, where, aggr_us) for snap, where in snaps) if s is not None])


def _snapshots(text: _Text, where: str, keep: _Keep) -> None:
    text.expect("[", f"{where} snapshots")
    if text.peek() == "]":
        text.pos += 1
        return
    while True:
        as_columns = keep.extras if keep.aggr_us is not None else None
        run = text.snapshots_ahead(as_columns) if keep.index is None else None
        if isinstance(run, Batch):
            keep.add_part(run)
        elif run:
            keep.add_run(run, where)
        else:
            raw = text.raw_snapshot() if keep.index is not None else None
            keep.add(raw if raw is not None else text.value(f"{where} snapshot {keep.seen}"), where)
        if text.expect(",]", f"{where} snapshots") == "]":
            return


def _record(text: _Text, where: str, index: int | None, extras: frozenset[str],
            keeps: dict, position: int) -> tuple[TargetRecord, tuple | None]:
    """One record and its part key; snapshots are kept as parsed JSON only until its intervals are known
    (ours come first). Parts of one target (same key, as damo's ``can_merge``) share one ``_Keep``."""
    if text.peek() != "{":
        _obj(text.value(where), where)   # says what it is instead (or why it is no JSON at all)
    text.expect("{", where)
    fields: dict = {}
    keep, part_key = None, None
    while text.peek() != "}":
        key = text.value(f"{where} (a key)")
        if not isinstance(key, str):
            raise BadRecord(f"is not valid JSON in {where}: a key must be a string")
        text.expect(":", where)
        if key == "snapshots" and keep is None:
            part_key = _part_key(fields)
            keep = _Keep(index, extras) if part_key is None else keeps.setdefault(part_key, _Keep(index, extras))
            keep.aggr_us = _aggr_us(fields, where) if "intervals" in fields else None
            _snapshots(text, where, keep)
            fields[key] = True
        else:
            fields[key] = text.value(f"{where} {key}")
        if text.expect(",}", where) == "}":
            break
    else:
        text.pos += 1
    return _build(fields, where, keep or _Keep(index, extras), position), part_key


def _part_key(fields: dict) -> tuple | None:
    """What makes two records parts of one (damo's DamonRecord.can_merge); None if the target is unknown
    before the snapshots (then it is a record of its own)."""
    if "target_id" not in fields or "intervals" not in fields:
        return None
    return tuple(json.dumps(fields.get(k), sort_keys=True)
                 for k in ("kdamond_idx", "context_idx", "scheme_idx", "target_id", "intervals"))


def _build(rec: dict, where: str, keep: _Keep, position: int) -> TargetRecord:
    target_id = _key(rec, "target_id", where)
    # damo's records of a snapshot (`damo record --snapshot`, DAMOS tried regions) name no target: the
    # record's place in the file stands for it, as it tells damo's records apart
    target_id = position if target_id is None else _int(target_id, f"{where} target_id", 0, 2**64 - 1)
    iv = _obj(_key(rec, "intervals", where), f"{where} intervals")
    sample_us = _int(_key(iv, "sample_us", f"{where} intervals"), f"{where} sample_us", 1, MAX_US, unit_ns=1000)
    aggr_us = _aggr_us(rec, where)
    update_us = _int(iv.get("ops_update_us", 0), f"{where} ops_update_us", 0, MAX_US, unit_ns=1000)
    ours = _obj(rec.get("damon_bpf", {}), f"{where} damon_bpf")
    pid = ours.get("pid")
    if pid is not None:
        pid = _int(pid, f"{where} damon_bpf.pid", 0, 2**32)
    meta = _obj(ours.get("meta", {}), f"{where} damon_bpf.meta")
    _key(rec, "snapshots", where)
    snapshots = keep.result(where, aggr_us)
    if keep.index is None:
        return TargetRecord(target_id, pid, sample_us, aggr_us, update_us, snapshots, meta)
    return TargetRecord(target_id, pid, sample_us, aggr_us, update_us, snapshots, meta, keep.seen,
                        keep.origin_ns(where, aggr_us))


def _aggr_us(rec: dict, where: str) -> int:
    iv = _obj(_key(rec, "intervals", where), f"{where} intervals")
    return _int(_key(iv, "aggr_us", f"{where} intervals"), f"{where} aggr_us", 1, MAX_US, unit_ns=1000)


def _records(text: _Text, snapshot: int | None, extras: frozenset[str]) -> list[TargetRecord]:
    """Every record; parts of one target (a file whose appending flushes were not compacted: a killed run)
    are joined into one record in the place of the first, with the meta of the last part that has one."""
    if text.peek() != "[":
        doc = text.value("the top level")   # not a list: say what it is, as a whole-document reader would
        _list(doc, "the top level")
    text.expect("[", "the top level")
    records: list[TargetRecord] = []
    keeps: dict = {}
    place: dict = {}   # part key -> index in records
    if text.peek() == "]":
        text.pos += 1
    else:
        while True:
            record, part_key = _record(text, f"record {len(records)}", snapshot, extras, keeps,
                                        len(records))
            if part_key in place:
                earlier = records[place[part_key]]
                record.meta = record.meta or earlier.meta
                record.target_id = earlier.target_id   # the same, or the first part's place (no id in damo's)
                records[place[part_key]] = record   # its _Keep holds every part's snapshots
            else:
                if part_key is not None:
                    place[part_key] = len(records)
                records.append(record)
            if text.expect(",]", "the top level") == "]":
                break
    if text.peek():
        raise BadRecord("is not valid JSON: extra data after the records")
    return records


def read_record(path: str, snapshot: int | None = None, extras: frozenset[str] = EXTRAS,
                use_columns: bool = True) -> list[TargetRecord]:
    """Read a record file (ours or damo's JSON/compressed JSON/perf_script/perf_data). Any problem ->
    RecordFileError.

    ``snapshot`` keeps only that snapshot of each record (negative counts from the end; a record without it
    keeps none); None keeps all. A report that needs no per-region ``cpus``, ``tids``, ``maps`` or ``funcs``
    leaves them out of ``extras``: they are then skipped unread where the snapshots are read in bulk (and may
    be empty in what it gets). ``use_columns``: take the record's columnar side file (columnfile.py) when
    it matches the record (DAMON_BPF_READER=json or any other slower path leaves it too)."""
    path = os.fspath(path)
    if use_columns and os.environ.get("DAMON_BPF_READER") not in ("json", "general", "reference"):
        from_columns = load_columns(path, snapshot, extras)
        if from_columns is not None:
            return from_columns
    collecting = gc.isenabled()
    gc.disable()   # the reader makes no reference cycles; collections over its growing heap cost ~20%
    try:
        traced = read_perf_script(path, snapshot)   # damo's perf_script / perf_data formats, or None
        return traced if traced is not None else _records(_Text(_chunks(path)), snapshot, extras)
    except BadRecord as err:
        raise RecordFileError(f"record file {path}: {err}") from None
    except MemoryError:
        raise RecordFileError(f"record file {path}: too large to load into memory") from None
    finally:
        if collecting:
            gc.enable()
