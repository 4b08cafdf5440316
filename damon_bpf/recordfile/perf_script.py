"""damo's ``perf_script`` and ``perf_data`` record formats: kernel DAMON's ``damon:damon_aggregated`` tracepoint,
one line per region, as ``perf script`` prints it (``perf_data`` is ``perf record``'s file, turned into that
text by running ``perf script``, as damo does).

    kdamond.0  4452 [000] 82877.315633: damon:damon_aggregated: target_id=0 nr_regions=17 4096-8192: 3 12

A line gives the target, how many regions its aggregation has, one region, its nr_accesses (samples) and
age (aggregation intervals; kernels before 5.16 print none). A target's ``nr_regions`` lines in a row make
one snapshot, which ends at its first line's time and starts where the target's previous one ended; the
first starts one mean snapshot length before its end (damo's reading, ``parse_damon_trace``). damo's writer
closes a record of one snapshot with a placeholder ``0-0: -1 -1`` snapshot for that, dropped here as damo
drops it. `damo record --snapshot` writes its records of one snapshot each with ``target_id=None``, each closed
by a placeholder (damo's own reader refuses them): read as one target whose id is its place in the file, each
snapshot as long as its placeholder says (they are seconds apart, not back to back).
``damon:damon_monitor_intervals_tune`` lines give the sample interval in use; lines of other events are counted
in the record's meta (``other_events``), not read.

The text holds no intervals; damo's ``FILE.kdamonds`` side file (``damo record`` writes it) gives them and
each target's pid. Without it the aggregation interval is the median snapshot length and the sample interval
a 20th of it, DAMON's default ratio (less if a region's nr_accesses says there were more samples), and the meta
says so (``"intervals": "inferred"``).

Read line by line, 1 MiB at a time, so memory follows the snapshots kept, as for the JSON formats; every
problem (a line that is no event, a region out of order, a snapshot cut short at the end) is a BadRecord
naming the line.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import stat
import statistics
import subprocess
import tempfile
from array import array
from typing import Any, BinaryIO, Iterator

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.model import MAX_ADDR, MAX_COUNT, MAX_NS, MAX_US, BadRecord, TargetRecord
from damon_bpf.recordfile.schema import _int, _key, _list, _obj

PERF_DATA_MAGIC = b"PERFILE2"        # perf.data's first bytes (perf's header, v2: every perf since 2010)
MAX_LINE = 4096                      # a real line is ~120 bytes; longer is no perf script text
DEFAULT_AGGR_US = 100_000            # DAMON's defaults, for text that says nothing of its intervals: 100 ms
DEFAULT_SAMPLES = 20                 # aggregations of 20 samples (5 ms)
MAX_SIDE_FILE = 1 << 20              # a .kdamonds file is a few KiB
_CHUNK = 1 << 20
_SNIFF = 1 << 16

# "<comm> <pid> [<cpu>] <secs>.<frac>: [<period>] <event>: <fields>"; the comm may hold blanks, the time
# is the first "<digits>.<digits>:" after a blank (or at the start, for `perf script -F time,event,trace`)
_EVENT_LINE = re.compile(rb"(?:^|\s)(\d{1,12})\.(\d{1,9}):\s+(?:\d+\s+)?(\S+):(?:\s+(.*?))?\s*$")
_AGGREGATED = re.compile(rb"target_id=(\d{1,20}|None)\s+nr_regions=(\d{1,10})\s+(\d{1,20})-(\d{1,20}):\s+(-?\d{1,20})"
                         rb"(?:\s+(-?\d{1,20}))?")
_TUNE = re.compile(rb"sample_us=(\d{1,20})")
AGGREGATED, TUNE = b"damon:damon_aggregated", b"damon:damon_monitor_intervals_tune"
_FAKE = (0, 0, -1, -1)               # damo's placeholder region


def sniff(first: bytes) -> str | None:
    """``"perf_data"``, ``"perf_script"`` or None (not one of these) for a file starting with ``first``."""
    if first.startswith(PERF_DATA_MAGIC):
        return "perf_data"
    line = first.lstrip().split(b"\n", 1)[0]
    if not line or line[:1] in (b"[", b"{") or len(line) > MAX_LINE or not _is_text(line):
        return None   # JSON, compressed JSON, or no perf script line
    return "perf_script" if _EVENT_LINE.search(line) else None


def _is_text(line: bytes) -> bool:
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return False
    return text.replace("\t", " ").replace("\r", "").isprintable()


class _Target:
    """One target's snapshots as its lines come: the one being filled, the ones kept, the times seen."""

    def __init__(self, target_id: int, keep_index: int | None, lenient: bool, apart: bool = False) -> None:
        self.target_id = target_id
        self.apart = apart              # damo's snapshots (target_id=None): each closed by its own placeholder
        self.index = keep_index
        self.lenient = lenient          # a trace of ours (perf_data): perf may start or stop within a snapshot
        self.cut = [0, 0]               # ... so many regions of the snapshot it started / stopped in, dropped
        size = None if keep_index is None else (-keep_index if keep_index < 0 else 1)
        self.kept: collections.deque = collections.deque(maxlen=size)
        self.first: Snapshot | None = None
        self.rows: list[tuple[int, int, int, int]] = []
        self.nr_regions = 0
        self.end_ns = 0
        self.last_end: int | None = None
        self.first_end: int | None = None
        self.nr_ends = 0                # snapshots seen, damo's placeholder too (it times the one before it)
        self.seen = 0                   # real snapshots
        self.lengths = array("q")       # each snapshot's length (ns) after the first
        self.max_accesses = 0
        self.closed_at: int | None = None   # the line of damo's placeholder: nothing may follow it
        self.no_age = False

    def add(self, lineno: int, end_ns: int, nr_regions: int, row: tuple[int, int, int, int]) -> None:
        if self.closed_at is not None and self.apart:
            self.closed_at = None
        if self.closed_at is not None:
            raise BadRecord(f"line {lineno}: target {self.target_id} has a region after damo's placeholder "
                            f"snapshot (line {self.closed_at}), which only ends a record")
        if not self.rows:
            if self.last_end is not None and end_ns < self.last_end and not self.apart:
                raise BadRecord(f"line {lineno}: target {self.target_id}'s snapshot ends before its previous one "
                                "(the text is not sorted by time)")
            self.nr_regions, self.end_ns = nr_regions, end_ns
        elif self.lenient and self.nr_ends == 0 and (nr_regions != self.nr_regions or row[0] < self.rows[-1][1]):
            self.cut[0] += len(self.rows)   # those were the tail of a snapshot perf began to trace within
            self.rows, self.nr_regions, self.end_ns = [], nr_regions, end_ns
        elif nr_regions != self.nr_regions:
            raise BadRecord(f"line {lineno}: nr_regions={nr_regions} within a snapshot of {self.nr_regions} "
                            f"regions of target {self.target_id} (a snapshot cut short?)")
        self.rows.append(row)
        if len(self.rows) == self.nr_regions:
            self._close(lineno)

    def _close(self, lineno: int) -> None:
        rows, self.rows = self.rows, []
        if rows == [_FAKE]:
            self.closed_at = lineno
            if self.apart and self.last_end is not None:   # the placeholder times the snapshot it closes
                self.lengths.append(self.end_ns - self.last_end)
                if self.kept and self.kept[-1].end_ns == self.last_end:
                    self.kept[-1].start_ns = max(0, self.last_end - self.lengths[-1])
        else:
            self._keep(self._snapshot(rows, lineno))
        if self.last_end is not None and not self.apart:
            self.lengths.append(self.end_ns - self.last_end)
        else:
            self.first_end = self.end_ns
        self.last_end = self.end_ns
        self.nr_ends += 1

    def _snapshot(self, rows: list[tuple[int, int, int, int]], lineno: int) -> Snapshot:
        cols = list(zip(*rows))   # checked as Python ints: numpy would make floats of some mixes
        if max(cols[0]) > MAX_ADDR or max(cols[1]) > MAX_ADDR or min(cols[2]) < 0 or min(cols[3]) < 0 \
                or max(cols[2]) > MAX_COUNT or max(cols[3]) > MAX_COUNT:
            raise BadRecord(f"line {lineno}: a region of target {self.target_id}'s snapshot has a value out of range")
        start, end = np.array(cols[0], dtype=np.uint64), np.array(cols[1], dtype=np.uint64)
        accesses, age = np.array(cols[2], dtype=np.int64), np.array(cols[3], dtype=np.int64)
        if np.any(start >= end) or np.any(start[1:] < end[:-1]):
            raise BadRecord(f"line {lineno}: target {self.target_id}'s snapshot has an empty region, or regions out "
                            "of address order or overlapping")
        self.max_accesses = max(self.max_accesses, int(accesses.max()))
        n = len(rows)
        zeros = np.zeros(n, dtype=np.int64)
        start_ns = self.last_end if self.last_end is not None else self.end_ns   # the first is fixed at the end
        return Snapshot(start_ns, self.end_ns, start, end, accesses, age, zeros, zeros.copy(), zeros.copy())

    def _keep(self, snapshot: Snapshot) -> None:
        if self.seen == 0:
            self.first = snapshot
        if self.index is None or self.index < 0 or self.seen == self.index:
            self.kept.append(snapshot)
        self.seen += 1

    def first_length_ns(self, aggr_us: int) -> int:
        """damo's guess at the first snapshot's length: the mean over the others (the placeholder's too)."""
        if self.apart and self.lengths:
            return self.lengths[0]
        if self.nr_ends < 2 or self.first_end is None or self.last_end is None:
            return aggr_us * 1000
        return (self.last_end - self.first_end) // (self.nr_ends - 1)


class _Reader:
    """The state of one file being read: its targets in the order they first appear, what else it holds."""

    def __init__(self, keep_index: int | None, lenient: bool = False) -> None:
        self.index = keep_index
        self.lenient = lenient
        self.targets: dict[int | None, _Target] = {}   # None: damo's snapshots (target_id=None)
        self.other_events: dict[str, int] = {}
        self.tuned_sample_us: int | None = None
        self.lineno = 0

    def line(self, line: bytes) -> None:
        self.lineno += 1
        if not line.strip():
            return
        if len(line) > MAX_LINE:
            raise BadRecord(f"line {self.lineno} is longer than {MAX_LINE} bytes: not perf script text")
        found = _EVENT_LINE.search(line)
        if found is None:
            raise BadRecord(f"line {self.lineno} is not a `perf script` event line ({_show(line)})")
        secs, frac, event, fields = found.groups()
        end_ns = int(secs) * 10**9 + int(frac.ljust(9, b"0"))
        if end_ns > MAX_NS:
            raise BadRecord(f"line {self.lineno}: time {_show(secs + b'.' + frac)} s is out of range")
        if event == AGGREGATED:
            self._aggregated(end_ns, fields or b"")
        elif event == TUNE:
            tuned = _TUNE.fullmatch(fields or b"")
            if tuned is None or not 1 <= int(tuned[1]) <= MAX_US:
                raise BadRecord(f"line {self.lineno}: {event.decode()} without a valid sample_us ({_show(line)})")
            self.tuned_sample_us = int(tuned[1])
        else:
            name = event.decode("utf-8", "replace")
            self.other_events[name] = self.other_events.get(name, 0) + 1

    def _aggregated(self, end_ns: int, fields: bytes) -> None:
        found = _AGGREGATED.fullmatch(fields)
        if found is None:
            raise BadRecord(f"line {self.lineno}: damon_aggregated fields not understood ({_show(fields)})")
        key: int | None = None if found[1] == b"None" else int(found[1])
        nr_regions, start, end, accesses = (int(v) for v in found.groups()[1:5])
        age = int(found[6]) if found[6] is not None else 0
        if (key or 0) > 2**64 - 1 or not 1 <= nr_regions <= MAX_COUNT:
            raise BadRecord(f"line {self.lineno}: target_id or nr_regions out of range ({_show(fields)})")
        target = self.targets.get(key)
        if target is None:
            target_id = len(self.targets) if key is None else key   # damo's snapshots: the place is the id
            target = self.targets[key] = _Target(target_id, self.index, self.lenient, apart=key is None)
        target.no_age |= found[6] is None
        target.add(self.lineno, end_ns, nr_regions, (start, end, accesses, age))

    def finish(self) -> None:
        for target in self.targets.values():
            if target.rows and self.lenient:   # perf stopped within a snapshot
                target.cut[1], target.rows = len(target.rows), []
            if target.rows:
                raise BadRecord(f"is truncated: target {target.target_id}'s last snapshot has {len(target.rows)} of "
                                f"its {target.nr_regions} regions (line {self.lineno})")

    def records(self, fmt: str, side: dict) -> list[TargetRecord]:
        self.finish()
        if not self.targets:
            others = ", ".join(f"{n} x {name}" for name, n in sorted(self.other_events.items())[:3])
            raise BadRecord(f"holds no {AGGREGATED.decode()} event" + (f" (only {others}"
                            f"{', ...' if len(self.other_events) > 3 else ''})" if others else ""))
        return [self._record(t, fmt, side) for t in self.targets.values()]

    def _record(self, target: _Target, fmt: str, side: dict) -> TargetRecord:
        meta: dict[str, Any] = {"view": "kernel-damon", "file_format": fmt}
        if self.other_events:
            meta["other_events"] = dict(self.other_events)
        if any(target.cut):
            meta["cut_short"] = {"at_start": target.cut[0], "at_end": target.cut[1],
                                 "why": "regions of a snapshot perf began or stopped tracing within, left out"}
        if target.no_age:
            meta["age"] = "not in the trace (a kernel before 5.16): read as 0"
        if side:
            sample_us, aggr_us, update_us = side["sample_us"], side["aggr_us"], side["update_us"]
            meta["intervals"] = "kdamonds file"
        else:
            median_us = round(statistics.median(target.lengths) / 1000) if target.lengths else DEFAULT_AGGR_US
            aggr_us = min(MAX_US, max(1, median_us))
            # DAMON's ratio, unless a region's nr_accesses (samples) says there were more samples
            sample_us = self.tuned_sample_us or aggr_us // max(DEFAULT_SAMPLES, target.max_accesses)
            sample_us = max(1, min(sample_us, aggr_us))
            update_us = 0
            meta["intervals"] = "inferred"
        kept = list(target.kept)
        first_start = None
        if target.first is not None:
            first_start = max(0, target.first.end_ns - target.first_length_ns(aggr_us))
            target.first.start_ns = first_start
        pids = side.get("pids", [])
        pid = pids[target.target_id] if target.target_id < len(pids) else None
        snapshots = kept[:1] if self.index is not None else kept
        if self.index is not None and self.index < 0 and len(kept) < -self.index:
            snapshots = []
        if self.index is None:
            return TargetRecord(target.target_id, pid, sample_us, aggr_us, update_us, snapshots, meta)
        return TargetRecord(target.target_id, pid, sample_us, aggr_us, update_us, snapshots, meta, target.seen,
                            first_start)


def _show(text: bytes) -> str:
    shown = text[:60].decode("utf-8", "replace")
    return repr(shown + ("..." if len(text) > 60 else ""))


def _lines(chunks: Iterator[bytes], reader: _Reader) -> None:
    """Feed ``reader`` the text's lines; a last line without its newline is a file cut short."""
    tail = b""
    for chunk in chunks:
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE:
            raise BadRecord(f"line {reader.lineno + len(lines) + 1} is longer than {MAX_LINE} bytes: "
                            "not perf script text")
        for line in lines:
            reader.line(line)
    if tail.strip():
        raise BadRecord(f"is truncated: its last line (line {reader.lineno + 1}) has no end ({_show(tail)})")


def _file_chunks(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    yield first
    yield from iter(lambda: stream.read(_CHUNK), b"")


def side_intervals(path: str) -> dict:
    """Intervals and target pids from damo's ``PATH.kdamonds`` (its first kdamond's first context, as damo
    reads them); {} when there is no such file."""
    side = path + ".kdamonds"
    where = f"damo's side file {side}"
    try:
        fd = os.open(side, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise BadRecord(f"has {where}, which cannot be read: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise BadRecord(f"has {where}, which is not a regular file")
        raw = stream.read(MAX_SIDE_FILE + 1)
    if len(raw) > MAX_SIDE_FILE:
        raise BadRecord(f"has {where}, larger than {MAX_SIDE_FILE >> 20} MiB: no kdamonds file of damo's")
    try:
        kdamonds = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRecord(f"has {where}, which is not valid JSON") from None
    try:
        kdamond = _obj(_list(kdamonds, "the top level")[0], "kdamond 0")
        ctx = _obj(_list(_key(kdamond, "contexts", "kdamond 0"), "kdamond 0 contexts")[0], "context 0")
        iv = _obj(_key(ctx, "intervals", "context 0"), "intervals")
        return {"sample_us": _int(_key(iv, "sample_us", "intervals"), "sample_us", 1, MAX_US, unit_ns=1000),
                "aggr_us": _int(_key(iv, "aggr_us", "intervals"), "aggr_us", 1, MAX_US, unit_ns=1000),
                "update_us": _int(iv.get("ops_update_us", 0), "ops_update_us", 0, MAX_US, unit_ns=1000),
                "pids": [_pid(t) for t in _list(ctx.get("targets", []), "targets")]}
    except (BadRecord, IndexError) as err:
        raise BadRecord(f"has {where}, which is not damo's: {err if isinstance(err, BadRecord) else 'no context'}") \
            from None


def _pid(target: Any) -> int | None:
    pid = target.get("pid") if isinstance(target, dict) else None
    return None if pid is None else _int(pid, "target pid", 0, 2**32)


def read_perf_script(path: str, snapshot: int | None = None) -> list[TargetRecord] | None:
    """The records of a perf_script or perf_data file; None if ``path`` is neither (or cannot be opened:
    the JSON reader then says why). ``snapshot`` as read_record's. Only a regular file is looked into: a
    pipe's first bytes, once read here, would be lost to the JSON reader."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        stream.close()
        return None
    with stream:
        try:
            first = stream.read(_SNIFF)
        except OSError:
            return None
        fmt = sniff(first)
        if fmt is None:
            return None
        reader = _Reader(snapshot, lenient=fmt == "perf_data")
        if fmt == "perf_script":
            _lines(_file_chunks(stream, first), reader)
        else:
            _perf_script_of(path, reader)
    return reader.records(fmt, side_intervals(path))


def _perf_script_of(path: str, reader: _Reader) -> None:
    """Run `perf script` on a perf.data file (as damo does, with --force: the file may belong to someone
    else) and read its text; times with --ns, to the nanosecond."""
    perf = shutil.which("perf")
    if perf is None:
        raise BadRecord("is a perf.data file (damo's perf_data format); reading it needs `perf` "
                        "(Debian: linux-perf), which is not installed")
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([perf, "script", "--force", "--ns", "-i", os.path.abspath(path)],   # never "-"
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            _lines(iter(lambda: proc.stdout.read(_CHUNK), b""), reader)   # type: ignore[union-attr]
        except BaseException:   # the text is refused (or we are interrupted): perf need not go on
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            errors.seek(0)
            said = [ln for ln in errors.read()[-4096:].decode("utf-8", "replace").splitlines() if ln.strip()]
            raise BadRecord(f"is a perf.data file that `perf script` could not read (exit {status}"
                            f"{': ' + said[-1].strip() if said else ''})")
