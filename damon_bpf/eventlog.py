"""Event streams written by ``damon-bpf trace``: JSON lines or raw access records.

The binary format is the records themselves, back to back, in ``access_dtype()`` layout (see
bpf/access.h): ``numpy.fromfile(path, dtype=damon_bpf.access.ACCESS_DTYPE)`` reads it.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import BinaryIO

import numpy as np

from damon_bpf.access import ACCESS_DTYPE, ACCESS_READ, ACCESS_WRITE
from damon_bpf.errors import DamonBpfError
from damon_bpf.outputs import open_output_stream

FORMATS = ("jsonl", "binary")


def json_fields(dtype: np.dtype) -> tuple[str, ...]:
    """The fields a JSON line holds: every field of the record but the padding, in the struct's order."""
    assert dtype.names is not None   # a record's dtype is structured
    return tuple(name for name in dtype.names if not name.startswith("pad"))


_WRITE_WORDS = {ACCESS_READ: "false", ACCESS_WRITE: "true"}


def _json_value(name: str, value: int) -> str:
    return _WRITE_WORDS.get(value, "null") if name == "write" else str(value)


def jsonl_lines_per_event(batch: np.ndarray) -> str:
    """The JSON-lines format, record by record: one object per access record with every field of
    ``struct access_record`` but the padding, in the struct's order (addr, time_ns, cpu, pid, tid, write, ...):
    numbers in decimal, ``write`` as true, false, or null when unknown. The readable statement of the format;
    ``jsonl_bytes`` writes the same bytes faster (tests compare them)."""
    names = json_fields(batch.dtype)
    columns = [batch[name].tolist() for name in names]
    return "".join(
        "{" + ",".join(f'"{name}":{_json_value(name, value)}' for name, value in zip(names, values)) + "}\n"
        for values in zip(*columns))


# jsonl_bytes lays each record out as a row of 4-byte cells: the text between values NUL-padded to whole cells, a
# number as one cell per 4-digit group (looked up in a table), its leading zeros as NUL bytes, the write word
# NUL-padded. The rows back to back, with the NULs deleted by bytes.translate (one C pass; JSON text never holds a
# NUL), are the lines. Whole columns at a time, no Python per record; a cell is 4 bytes so numpy handles a quarter
# of the elements a byte matrix would take. The cells follow the dtype: a new unsigned field in access.h becomes a
# column with no change here.
_GROUP = 10_000   # a cell holds one 4-digit group


def _group_table() -> np.ndarray:
    """Cell of each group value, in four sections of _GROUP: a leading group (leading zeros as NUL, 0 all NUL),
    an inner group (every digit), a lone last group (as leading, but 0 is "0": the value 0), and inner again; a
    group's index is ``value + _GROUP * inner + 2 * _GROUP * last``."""
    lead = [f"{value:>4}".replace(" ", "\0") if value else "\0" * 4 for value in range(_GROUP)]
    full = [f"{value:04}" for value in range(_GROUP)]
    last = ["\0\0\0" "0", *lead[1:]]
    return np.frombuffer("".join(lead + full + last + full).encode(), "<u4")


_TABLE = _group_table()
_WORDS = np.frombuffer(b"false\0\0\0" b"true\0\0\0\0" b"null\0\0\0\0", "<u4").reshape(3, 2)
_WORD_OF = np.full(256, 2, np.intp)   # any other write code: null
_WORD_OF[ACCESS_READ], _WORD_OF[ACCESS_WRITE] = 0, 1
_CHUNK = 1 << 13   # rows per pass: the row matrix (~150 bytes a row) stays in the cache


def _text_cells(text: bytes) -> list[int]:
    return np.frombuffer(text.ljust(-(-len(text) // 4) * 4, b"\0"), "<u4").tolist()


def _groups(value: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` 4-digit groups of each value, least significant first, as u32 (u64 divisions only
    between 8-digit pieces)."""
    groups: list[np.ndarray] = []
    rest = value
    while len(groups) < count:
        above = rest // rest.dtype.type(10**8)
        piece = (rest - above * rest.dtype.type(10**8)).astype(np.uint32)
        high = piece // np.uint32(_GROUP)
        groups += [piece - high * np.uint32(_GROUP), high]
        rest = above
    return groups[:count]


def _number_cells(column: np.ndarray) -> list[np.ndarray]:
    """A column's cells, most significant group first: as many as its type's largest value has groups."""
    largest = int(np.iinfo(column.dtype).max)
    value = np.ascontiguousarray(column, np.uint64 if column.dtype.itemsize == 8 else np.uint32)
    cells = []
    for position, group in enumerate(_groups(value, _cell_count(column.dtype))):
        above = _GROUP ** (position + 1)   # a value this big has digits left of this group: print all four
        index = group + (value >= above).view(np.uint8) * np.uint32(_GROUP) if above <= largest else group
        cells.append(_TABLE[index + np.uint32(2 * _GROUP) if position == 0 else index])
    return cells[::-1]


def _cell_count(dtype: np.dtype | None) -> int:
    return 2 if dtype is None else -(-len(str(np.iinfo(dtype).max)) // 4)   # None: the write word


@lru_cache(maxsize=8)
def _template(dtype: np.dtype) -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    """_CHUNK rows holding the text cells of ``dtype``'s lines (the values' cells zero), and the first cell of
    each field: a chunk starts as a copy of it, so only the values are written per chunk."""
    row: list[int] = []
    starts = []
    for index, name in enumerate(json_fields(dtype)):
        row += _text_cells(f'{"," if index else "{"}"{name}":'.encode())
        starts.append((name, len(row)))
        row += [0] * _cell_count(None if name == "write" else dtype[name])
    row += _text_cells(b"}\n")
    return np.tile(np.array(row, "<u4"), (_CHUNK, 1)), tuple(starts)


def _jsonl_chunk(batch: np.ndarray) -> bytes:
    template, starts = _template(batch.dtype)
    rows = template[:len(batch)].copy()
    for name, start in starts:
        cells = list(_WORDS[_WORD_OF[batch[name]]].T) if name == "write" else _number_cells(batch[name])
        for offset, cell in enumerate(cells):
            rows[:, start + offset] = cell
    return rows.tobytes().translate(None, b"\0")


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
