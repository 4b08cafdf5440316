"""zlib streams: stitching independently compressed segments into one stream (writing), and inflating a
stream in bounded chunks (reading).

A record file is one zlib stream. The JSON text of snapshots already flushed is never re-encoded or
re-compressed: each flush compresses only the new snapshots into an independent raw-deflate piece ending
on a sync point, appended to the file (``append``) and kept for the compact rewrite at the end (see ``_Piece``).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile.encode import _record_tail, _snapshot_json
from damon_bpf.recordfile.model import BadRecord, TargetRecord

_ZLIB_HEADER = b"\x78\x9c"  # what `file` calls "zlib compressed data" (damo detects the format that way)
_ADLER_BASE = 65521


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from adler(A), adler(B) and len(B); zlib's adler32_combine (not in Python)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem
    return (sum1 % _ADLER_BASE) | ((sum2 % _ADLER_BASE) << 16)


@dataclass
class _Piece:
    """Compressed text that can be concatenated with others into one zlib stream.

    Each piece is a raw deflate stream started from an empty window and ended with Z_SYNC_FLUSH
    (byte aligned, not final), so pieces can be laid end to end; only the very last piece of a
    file is ended with Z_FINISH. The zlib trailer is the Adler-32 of all the text, which we get
    by combining the pieces' checksums without touching the text again.
    """

    data: bytes
    adler: int
    length: int

    @classmethod
    def of(cls, text: str, final: bool = False) -> "_Piece":
        raw = text.encode()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = comp.compress(raw) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        return cls(data, zlib.adler32(raw), len(raw))


_COMMA = _Piece.of(",")


@dataclass
class _TargetState:
    record: TargetRecord
    head: str
    pieces: list[_Piece] = field(default_factory=list)   # snapshot text of each flush, no leading comma
    nr_snapshots: int = 0
    pending: list[Snapshot] = field(default_factory=list)
    meta_written: str | None = None   # the meta text of the last part written (a part repeats it only if new)

    def encode_pending(self) -> _Piece | None:
        """Compress the pending snapshots into one new piece (cheap: new data only)."""
        if not self.pending:
            return None
        aggr_us = self.record.aggr_us
        piece = _Piece.of(",".join(_snapshot_json(s, aggr_us) for s in self.pending))
        self.pieces.append(piece)
        self.nr_snapshots += len(self.pending)
        self.pending = []
        return piece

    def part(self, piece: _Piece, first: bool) -> list[_Piece]:
        """The record of this target holding ``piece``'s snapshots, as the pieces appended to the file."""
        meta = _record_tail(self.record.pid, self.record.meta)
        tail = meta if meta != self.meta_written else _record_tail(self.record.pid, None)
        self.meta_written = meta
        return [_Piece.of(("" if first else ",") + self.head), piece, _Piece.of(tail)]


def _joined(pieces: list[_Piece]) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in pieces:
        out.extend((_COMMA, piece) if out else (piece,))
    return out


def _file_chunks(targets: list[_TargetState]) -> list[bytes]:
    """The whole file, one record per target, as byte chunks: zlib header, pieces, Adler-32 trailer."""
    text = [_Piece.of("[")]
    for idx, t in enumerate(targets):
        text.append(_Piece.of(("," if idx else "") + t.head))
        text.extend(_joined(t.pieces))
        text.append(_Piece.of(_record_tail(t.record.pid, t.record.meta)))
    last = _Piece.of("]", final=True)
    adler = 1
    for piece in (*text, last):
        adler = _adler32_combine(adler, piece.adler, piece.length)
    return [_ZLIB_HEADER, *(p.data for p in text), last.data, adler.to_bytes(4, "big")]


# A record file inflates to ~10-20x its size; this bounds what a damaged or hostile file (a "zlib bomb")
# can make the reader chew through. DAMON_BPF_MAX_INFLATED_MB raises it for a truly huge recording.
MAX_INFLATED = int(os.environ.get("DAMON_BPF_MAX_INFLATED_MB", "4096")) << 20
_READ_BYTES = 1 << 16
_OUT_BYTES = 1 << 20   # inflated bytes handed out at a time: the reader never holds a whole file


def inflate(stream: BinaryIO, first: bytes, limit: int = MAX_INFLATED) -> Iterator[bytes]:
    """The inflated bytes of the zlib stream ``first`` + ``stream``, at most 1 MiB at a time."""
    dec = zlib.decompressobj()
    total, data = 0, first
    while not dec.eof:
        if not data:
            data = stream.read(_READ_BYTES)
            if not data:
                raise BadRecord("is truncated (the compressed stream ends early; was the recorder killed "
                                "while writing a file that was not its own?)")
        try:
            out = dec.decompress(data, _OUT_BYTES)
        except zlib.error:
            raise BadRecord("is not a record file (neither zlib-compressed JSON, plain JSON, nor damo's "
                            "perf_script text or perf.data), or its compressed data is damaged") from None
        data = dec.unconsumed_tail
        total += len(out)
        if total > limit:
            raise BadRecord(f"inflates to more than {limit >> 20} MiB, which no recording here needs "
                            "(a damaged or hostile file?); DAMON_BPF_MAX_INFLATED_MB raises the limit")
        if out:
            yield out
    # Bytes after the stream's end are left unread, as zlib.decompress (damo) leaves them: a flush killed
    # while appending leaves its unfinished data there (docs/design.md §8).
