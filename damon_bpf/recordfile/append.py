"""A zlib stream that grows in place and is complete after every step (docs/design.md §8).

The file is one zlib stream: header, raw-deflate pieces ending on sync points (``stream._Piece``), and a
10-byte *tail*: a final stored block holding the text ``]`` followed by the Adler-32 trailer. An append

1. writes the new pieces, padding and a new tail after the current tail (past the stream's end, which
   zlib, damo and our reader ignore), then syncs;
2. overwrites the old tail, in one 10-byte write that never crosses a 512-byte sector (so never a page),
   with a non-final stored block of five spaces, which JSON ignores; then syncs.

A kill before step 2 leaves the old stream, complete, with bytes after it; a kill after it leaves the new
one. Step 2 is one ``pwrite`` inside one page: a process dies before or after it, never in the middle.
"""

from __future__ import annotations

import os
import struct
import zlib

from damon_bpf.recordfile.stream import _ZLIB_HEADER, _adler32_combine, _Piece

_SECTOR = 512
_CLOSE = b"]"
TAIL_LEN = 5 + len(_CLOSE) + 4


def _stored(text: bytes, final: bool) -> bytes:
    """A stored (uncompressed) deflate block; it starts and ends on a byte boundary."""
    return bytes([1 if final else 0]) + struct.pack("<HH", len(text), 0xFFFF ^ len(text)) + text


_BLANK = b" " * (TAIL_LEN - 5)
_NEUTRAL = _stored(_BLANK, final=False)   # what an old tail becomes: text that JSON skips


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


class AppendedStream:
    """Appends text to the zlib stream in ``fd`` (written from scratch here) so that it is complete at
    every moment. The text starts with ``[`` and the tail closes it with ``]``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.adler, self.length = zlib.adler32(b"["), 1   # of the text before the tail
        self.tail_at = len(_ZLIB_HEADER) + 6
        os.ftruncate(fd, 0)
        _pwrite_all(fd, _ZLIB_HEADER + _stored(b"[", final=False) + self._tail(), 0)
        os.fsync(fd)

    def _tail(self) -> bytes:
        adler = _adler32_combine(self.adler, zlib.adler32(_CLOSE), len(_CLOSE))
        return _stored(_CLOSE, final=True) + adler.to_bytes(4, "big")

    def _add_text(self, adler: int, length: int) -> None:
        self.adler = _adler32_combine(self.adler, adler, length)
        self.length += length

    @property
    def size(self) -> int:
        return self.tail_at + TAIL_LEN

    def append(self, pieces: list[_Piece]) -> None:
        """Add the pieces' text before the closing ``]``. On an error the file is as before (the bytes
        past its end are cut off where possible) and so is this object."""
        old_end, old_tail = self.size, self.tail_at
        saved = (self.adler, self.length)
        self._add_text(zlib.adler32(_BLANK), len(_BLANK))   # the old tail turns into blanks first in the text
        for piece in pieces:
            self._add_text(piece.adler, piece.length)
        data = b"".join(p.data for p in pieces)
        pad = self._padding(old_end + len(data))
        new_tail_at = old_end + len(data) + len(pad)
        try:
            _pwrite_all(self.fd, data + pad + self._tail(), old_end)
            os.fdatasync(self.fd)
            os.pwrite(self.fd, _NEUTRAL, old_tail)   # the switch: one write inside one sector
            os.fdatasync(self.fd)
        except BaseException:
            self.adler, self.length = saved
            try:
                os.ftruncate(self.fd, old_end)
            except OSError:
                pass
            raise
        self.tail_at = new_tail_at

    def _padding(self, at: int) -> bytes:
        """A stored block of blanks that moves a tail starting at ``at`` so it fits in one sector."""
        if at % _SECTOR + TAIL_LEN <= _SECTOR:
            return b""
        size = _SECTOR - at % _SECTOR
        if size < 5:
            size += _SECTOR
        blanks = b" " * (size - 5)
        self._add_text(zlib.adler32(blanks), len(blanks))
        return _stored(blanks, final=False)
