"""Writing a record file incrementally, crash safe (docs/design.md §8).

Each flush appends the new snapshots to the file in place (``append.AppendedStream``): its cost follows the
new data, not the file, and a ``kill -9`` at any moment leaves a complete file holding every flush that
completed. Each flush adds one part per target (a damo record with that target's new snapshots), which the
reader joins; ``close`` rewrites the file once with one record per target (temp file and rename, so readers
and a kill see the appended file or the compact one). Snapshots are never re-encoded (``stream._Piece``). The
output is checked with
``damon_bpf.outputs`` (no planted symlink, no device or FIFO replaced, no other user's file) and locked: the
current file's inode is flock-ed by the writer, and each new file is locked before it is renamed into place,
so a second recorder on the same name is refused instead of clobbering the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Callable, Iterable, Iterator

from damon_bpf import outputs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import DamonBpfError, RecordFileError, warn_stderr
from damon_bpf.recordfile.append import AppendedStream
from damon_bpf.recordfile.columnfile import write_beside
from damon_bpf.recordfile.encode import _check_snapshot, _record_head
from damon_bpf.recordfile.model import TargetRecord
from damon_bpf.recordfile.reader import read_record
from damon_bpf.recordfile.stream import _file_chunks, _Piece, _TargetState

WHAT = "record file"
# A flush never takes more than 1/_FLUSH_COST_RATIO of the wall time (see RecordWriter.maybe_flush).
_FLUSH_COST_RATIO = 50
_TEMP_SUFFIX = ".tmp"
_FINAL_ATTEMPTS = 3


def _temp_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def _fsync_dir(directory: str) -> None:
    """Make a rename durable; failure here leaves a complete file either way."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _lock_existing(path: str) -> int | None:
    """Lock the file now at ``path`` (None if there is none); refuse if another writer holds it."""
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RecordFileError(f"cannot write {WHAT} {path}: {err.strerror}") from None
        try:
            outputs.lock(fd, path, WHAT)
            if os.fstat(fd).st_ino == os.lstat(path).st_ino:
                return fd
        except FileNotFoundError:
            os.close(fd)
            continue
        except DamonBpfError as err:
            os.close(fd)
            raise RecordFileError(str(err)) from None
        os.close(fd)   # the other writer renamed a new file in meanwhile: lock that one
    raise RecordFileError(f"{WHAT} {path} keeps being replaced by another process")


class RecordWriter:
    """Writes a record file incrementally; every flush leaves a complete, readable file.

    ``maybe_flush`` flushes once ``flush_interval_s`` has passed, but never spends more than
    1/50 of the wall time flushing: when a flush gets slow (huge file, slow disk) the interval
    stretches to 50x the last flush's cost. A failed ``maybe_flush`` is said once through ``warn`` and retried
    at the next interval; the run goes on and nothing is dropped from memory.
    """

    def __init__(self, path: str, flush_interval_s: float = 2.0,
                 warn: Callable[[str], None] | None = None, columns: bool = False) -> None:
        self.path = os.fspath(path)
        self.columns = columns   # at close, also the columnar side file reports read fast (columnfile.py)
        self.flush_interval_s = flush_interval_s
        self.last_flush_cost_s = 0.0
        self.failed_flushes = 0          # in a row; 0 after a flush that worked
        self.flushed_snapshots = 0       # what the file on disk holds
        self.warn = warn or _warn_stderr
        self._targets: dict[int, _TargetState] = {}
        self._last_flush_s = time.monotonic()
        self._closed = False
        self._stream: AppendedStream | None = None   # the file we append to (None: not ours yet)
        self._unwritten: list[_Piece] = []   # parts encoded but not in the file yet (a failed flush)
        self._parts = 0                      # parts encoded so far
        self._created = False                # the file at the path was made by this writer
        self._real = self._check_writable()
        # an existing file is locked and kept until the first flush replaces it
        self._lock_fd: int | None = _lock_existing(self._real)
        if self._lock_fd is None:
            self._create()

    def _create(self) -> None:
        """Put a valid empty record at the path at once: it holds the lock, and a kill leaves a file that
        reads. Written under a temp name and linked into place, so a file someone made meanwhile is kept."""
        directory = os.path.dirname(os.path.abspath(self._real))
        fd, tmp = outputs.create_temp(directory, _temp_prefix(self._real), _TEMP_SUFFIX)
        try:
            stream = AppendedStream(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a new inode: nobody else can hold it
            os.link(tmp, self._real)
        except FileExistsError:
            os.close(fd)
            raise RecordFileError(f"cannot write {WHAT} {self.path}: another process created it meanwhile") from None
        except OSError as err:
            os.close(fd)
            raise RecordFileError(f"cannot write {WHAT} {self.path}: {err.strerror or err}") from None
        finally:
            outputs.remove_if_ours(tmp)
        self._stream, self._lock_fd, self._created = stream, fd, True

    def _check_writable(self) -> str:
        if self.path == "-":
            raise RecordFileError(f"{WHAT} cannot be '-' (stdout): it needs a file")
        outputs.check_name(self.path, WHAT)
        try:
            real = outputs.resolve(self.path, WHAT)
            if os.path.isdir(real):
                raise RecordFileError(f"cannot write {WHAT} {self.path}: it is a directory")
            outputs.check_replaceable(real, WHAT)
        except RecordFileError:
            raise
        except DamonBpfError as err:
            raise RecordFileError(str(err)) from None
        directory = os.path.dirname(os.path.abspath(real))
        try:
            fd, probe = outputs.create_temp(directory, ".damon-bpf-probe.", "")
        except OSError as err:
            raise RecordFileError(
                f"cannot write {WHAT} {self.path}: {err.strerror or err} ({directory})") from None
        os.close(fd)
        os.unlink(probe)
        # A writer killed mid-flush (kill -9, power loss) leaves its temp file behind; another user's
        # file of the same pattern is not ours to remove.
        prefix = _temp_prefix(real)
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(_TEMP_SUFFIX):
                outputs.remove_if_ours(os.path.join(directory, name))
        return real

    def add_target(self, record: TargetRecord) -> None:
        if record.target_id in self._targets:
            raise ValueError(f"target {record.target_id} added twice")
        for snap in record.snapshots:
            _check_snapshot(snap)
        state = _TargetState(record=TargetRecord(
            record.target_id, record.pid, record.sample_us, record.aggr_us, record.update_us,
            [], dict(record.meta)), head=_record_head(record))
        state.pending.extend(record.snapshots)
        self._targets[record.target_id] = state

    def add_snapshots(self, target_id: int, snapshots: Iterable[Snapshot]) -> None:
        """Queue snapshots for the next flush. A malformed one raises ValueError here, before
        anything is queued, so one bad snapshot can never wedge every later flush."""
        state = self._target(target_id)
        snapshots = list(snapshots)
        for snap in snapshots:
            _check_snapshot(snap)
        state.pending.extend(snapshots)

    def update_meta(self, target_id: int, meta: dict) -> None:
        """Merge ``meta`` into the target's meta (top-level keys); written at the next flush."""
        self._target(target_id).record.meta.update(meta)

    def _target(self, target_id: int) -> _TargetState:
        try:
            return self._targets[target_id]
        except KeyError:
            raise ValueError(f"unknown target {target_id}; call add_target first") from None

    @property
    def total_snapshots(self) -> int:
        """Snapshots added so far (in the file or waiting for the next flush)."""
        return sum(t.nr_snapshots + len(t.pending) for t in self._targets.values())

    def maybe_flush(self, now_s: float | None = None) -> bool:
        """Flush if the flush interval has passed; returns whether it flushed. A failure is warned
        about (once until a flush works again) and retried at the next interval."""
        now = time.monotonic() if now_s is None else now_s
        interval = max(self.flush_interval_s, _FLUSH_COST_RATIO * self.last_flush_cost_s)
        if now - self._last_flush_s < interval:
            return False
        try:
            self.flush()
        except RecordFileError as err:
            self.failed_flushes += 1
            if self.failed_flushes == 1:
                self.warn(f"warning: {err}; retrying every {interval:.0f} s, the recording goes on")
            return False
        finally:
            self._last_flush_s = now  # on the caller's clock; a failed flush waits a full interval too
        if self.failed_flushes:
            self.warn(f"damon-bpf: {WHAT} {self.path} written again after {self.failed_flushes} failed flushes")
            self.failed_flushes = 0
        return True

    def flush(self) -> None:
        """Append everything added since the last flush. On failure the file keeps what it had and nothing
        is lost from memory: the next flush retries."""
        begin = time.monotonic()
        states = list(self._targets.values())
        for state in states:
            piece = state.encode_pending()
            if piece is not None:
                self._unwritten.extend(state.part(piece, first=self._parts == 0))
                self._parts += 1
        try:
            if self._stream is None and (self._unwritten or not self._created):
                # the file found at the path is replaced whole, at once, by one holding this flush
                self._stream = self._replace(lambda fd: _stream_with(fd, self._unwritten))
                self._unwritten = []
            if self._unwritten:
                assert self._stream is not None   # made above when there was none
                self._stream.append(self._unwritten)
                self._unwritten = []
        except OSError as err:
            raise RecordFileError(
                f"cannot write {WHAT} {self.path}: {err.strerror or err}; the file still holds the previous "
                f"flush ({self.flushed_snapshots} snapshots)") from None
        finally:
            self._last_flush_s = time.monotonic()
            self.last_flush_cost_s = self._last_flush_s - begin
        self.flushed_snapshots = sum(t.nr_snapshots for t in states)

    def _compact(self) -> None:
        """One record per target, as damo writes them: the file is rewritten once, from the compressed
        pieces in memory (no re-encoding)."""
        chunks = _file_chunks(list(self._targets.values()))

        def fill(fd: int) -> None:
            with os.fdopen(os.dup(fd), "wb") as f:
                f.writelines(chunks)
                f.flush()
                os.fsync(f.fileno())

        self._replace(fill)
        self._stream = None

    def _replace(self, fill: Callable[[int], object]):
        """Temp file, filled by ``fill(fd)``, fsync, lock, rename: readers see old or new, never half; the
        lock moves with it. Returns what ``fill`` returned."""
        directory = os.path.dirname(os.path.abspath(self._real))
        fd, tmp = outputs.create_temp(directory, _temp_prefix(self._real), _TEMP_SUFFIX)
        try:
            filled = fill(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a new inode: nobody else can hold it
            try:
                outputs.check_replaceable(self._real, WHAT)   # nothing planted there since the last flush
            except DamonBpfError as err:
                raise OSError(0, str(err)) from None
            os.replace(tmp, self._real)
        except BaseException:
            os.close(fd)
            outputs.remove_if_ours(tmp)
            raise
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = fd
        _fsync_dir(directory)
        return filled

    @contextlib.contextmanager
    def abandoned_on_error(self) -> Iterator[None]:
        """``abandon`` if the block raises: a run that fails while it is set up leaves no file."""
        try:
            yield
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """The run failed before it recorded anything: remove the empty record this writer created (a file
        found at the path stays as it was) and release the lock. Once something was flushed, this is close."""
        if self._closed:
            return
        if self._parts or self.total_snapshots:
            self.close()
            return
        self._closed = True
        if self._lock_fd is None:
            return
        try:
            if self._created and os.lstat(self._real).st_ino == os.fstat(self._lock_fd).st_ino:
                os.unlink(self._real)
        except OSError:
            pass
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """The final flush (retried a few times), then the compact rewrite; then the lock is released. If
        the rewrite fails, the appended file (every snapshot, in parts the reader joins) stays."""
        if self._closed:
            return
        try:
            for attempt in range(_FINAL_ATTEMPTS):
                try:
                    self.flush()
                    break
                except RecordFileError as err:
                    if attempt == _FINAL_ATTEMPTS - 1:
                        raise RecordFileError(f"{err}, not the {self.total_snapshots} recorded") from None
                    time.sleep(0.2)
            try:
                self._compact()
            except OSError as err:
                self.warn(f"warning: cannot rewrite {WHAT} {self.path} compactly ({err.strerror or err}): it "
                          f"holds all {self.flushed_snapshots} snapshots in {self._parts} parts, which damon-bpf "
                          "joins and damo lists as separate records; the final accounting is missing")
            self._closed = True
        finally:
            if self._closed and self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        if self.columns:   # the file as it is now (compacted, or the parts the reader joins)
            write_beside(self.path, self.warn, read_record)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stream_with(fd: int, parts: list[_Piece]) -> AppendedStream:
    stream = AppendedStream(fd)
    if parts:
        stream.append(parts)
    return stream


def _warn_stderr(message: str) -> None:
    warn_stderr(message.removeprefix("damon-bpf: "))


def write_record(path: str, records: list[TargetRecord]) -> None:
    """Write ``records`` to ``path`` atomically (temp file, fsync, rename; mode 0600)."""
    writer = RecordWriter(path)
    for record in records:
        writer.add_target(record)
    writer.close()
