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


def jsonl_lines_per_event(batch: np.ndarray) -> str:
    """The JSON-lines format, one f-string per record: addr, time_ns, cpu, pid, tid, write (true, false, or
    null when unknown), ip (the faulting instruction). The readable statement of the format; ``jsonl_bytes``
    writes the same bytes faster (tests compare them)."""
    columns = [batch[name].tolist() for name in ("addr", "time_ns", "cpu", "pid", "tid", "write", "ip")]
    return "".join(
        f'{{"addr":{a},"time_ns":{t},"cpu":{c},"pid":{p},"tid":{i},"write":{_WRITE_WORDS.get(w, "null")},'
        f'"ip":{ip}}}\n'
        for a, t, c, p, i, w, ip in zip(*columns))


# jsonl_bytes lays each record out in a fixed-width row: every number right-aligned in as many digits as its
# type can hold, its leading zeros as NUL bytes, the write word NUL-padded. The rows back to back, with the NULs
# deleted by bytes.translate (one C pass; JSON text never holds a NUL), are the lines. Whole columns at a time: no
# Python per record.
_LAYOUT = ((b'{"addr":', "addr", 20), (b',"time_ns":', "time_ns", 20), (b',"cpu":', "cpu", 10),
           (b',"pid":', "pid", 10), (b',"tid":', "tid", 10))
_POW10 = 10 ** np.arange(19, -1, -1, dtype=np.uint64)           # 10**19 .. 1: a u64 has at most 20 digits
_POSITIONS = {width: np.arange(width, dtype=np.int8) for width in (10, 20)}
_WORDS = np.frombuffer(b"false" b"true\0" b"null\0", np.uint8).reshape(3, 5)
_WORD_OF = np.full(256, 2, np.intp)                             # any other write code: null
_WORD_OF[ACCESS_READ], _WORD_OF[ACCESS_WRITE] = 0, 1
_CHUNK = 1 << 16   # rows per pass: the fixed-width matrix (~130 bytes a row) stays small


def _decimal_u32(values: np.ndarray, out: np.ndarray) -> None:
    """Digits of ``values`` (each below 10**len(out), at most 10 digits) into the rows of ``out``, most
    significant first."""
    quotient = values.astype(np.uint32)
    for row in range(len(out) - 1, -1, -1):   # scalar divisors: numpy divides by them with SIMD
        next_quotient = quotient // np.uint32(10)
        out[row] = quotient - next_quotient * np.uint32(10)
        quotient = next_quotient


def _digits(column: np.ndarray, width: int) -> np.ndarray:
    """Each value's ASCII digits right-aligned in ``width`` columns, leading zeros as NUL."""
    column = np.ascontiguousarray(column)
    digits = np.empty((width, len(column)), np.uint8)   # a digit position per row: contiguous writes
    if width == 20:   # u64: 32-bit pieces of 2, 9 and 9 digits
        billion = np.uint64(10**9)
        high = column // billion
        top = high // billion
        _decimal_u32(top, digits[:2])
        _decimal_u32(high - top * billion, digits[2:11])
        _decimal_u32(column - high * billion, digits[11:])
    else:
        _decimal_u32(column, digits)
    count = np.searchsorted(_POW10[::-1], column, side="right").astype(np.int8)   # digits printed (0 has none)
    printed = _POSITIONS[width][:, None] >= (width - np.maximum(count, 1))[None, :]
    digits += np.uint8(ord("0"))
    digits *= printed
    return digits.T


def _jsonl_chunk(batch: np.ndarray) -> bytes:
    rows = len(batch)
    parts = []
    for text, name, width in _LAYOUT:
        parts += [np.broadcast_to(np.frombuffer(text, np.uint8), (rows, len(text))), _digits(batch[name], width)]
    parts += [np.broadcast_to(np.frombuffer(b',"write":', np.uint8), (rows, 9)), _WORDS[_WORD_OF[batch["write"]]],
              np.broadcast_to(np.frombuffer(b',"ip":', np.uint8), (rows, 6)), _digits(batch["ip"], 20),
              np.broadcast_to(np.frombuffer(b"}\n", np.uint8), (rows, 2))]
    return np.concatenate(parts, axis=1).tobytes().translate(None, b"\0")


def jsonl_bytes(batch: np.ndarray) -> bytes:
    """``jsonl_lines_per_event(batch).encode()``, built with numpy a column at a time."""
    return b"".join(_jsonl_chunk(batch[start:start + _CHUNK]) for start in range(0, len(batch), _CHUNK))


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
        data = batch.tobytes() if self.fmt == "binary" else jsonl_bytes(batch)
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
