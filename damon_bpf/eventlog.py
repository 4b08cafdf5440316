"""Event streams written by ``damon-bpf trace``: JSON lines or raw access records.

The binary format is the records themselves, back to back, in ``access_dtype()`` layout (see
bpf/access.h): ``numpy.fromfile(path, dtype=damon_bpf.access.ACCESS_DTYPE)`` reads it.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import numpy as np

from damon_bpf.access import ACCESS_DTYPE, ACCESS_READ, ACCESS_WRITE
from damon_bpf.errors import DamonBpfError
from damon_bpf.outputs import open_output_stream

FORMATS = ("jsonl", "binary")
_WRITE_WORDS = {ACCESS_READ: "false", ACCESS_WRITE: "true"}


def jsonl_lines(batch: np.ndarray) -> str:
    """One JSON object per record: addr, time_ns, cpu, pid, tid, write (true, false, or null when unknown)."""
    columns = [batch[name].tolist() for name in ("addr", "time_ns", "cpu", "pid", "tid", "write")]
    return "".join(
        f'{{"addr":{a},"time_ns":{t},"cpu":{c},"pid":{p},"tid":{i},"write":{_WRITE_WORDS.get(w, "null")}}}\n'
        for a, t, c, p, i, w in zip(*columns))


class EventWriter:
    """Writes batches to a file (or stdout for ``-``) in one of FORMATS."""

    def __init__(self, path: str, fmt: str = "jsonl") -> None:
        if fmt not in FORMATS:
            raise DamonBpfError(f"unknown format '{fmt}' (use {' or '.join(FORMATS)})")
        self.fmt = fmt
        self.path = path
        # a planted symlink, another user's file or a device is handled by outputs (0600, never replaced)
        self.stream: BinaryIO = sys.stdout.buffer if path == "-" else open_output_stream(path, "trace output")
        self.records = 0

    def write(self, batch: np.ndarray) -> None:
        if batch.dtype != ACCESS_DTYPE:
            raise TypeError("batch is not an array of access records")
        data = batch.tobytes() if self.fmt == "binary" else jsonl_lines(batch).encode()
        try:
            self.stream.write(data)
        except BrokenPipeError:
            raise DamonBpfError(f"output {self.path} closed by its reader") from None
        except OSError as err:
            raise DamonBpfError(f"cannot write to {self.path}: {err.strerror}") from None
        self.records += len(batch)

    def close(self) -> None:
        try:
            self.stream.flush()
        except OSError as err:
            raise DamonBpfError(f"cannot write to {self.path}: {err.strerror}") from None
        finally:
            if self.stream is not sys.stdout.buffer:
                self.stream.close()
