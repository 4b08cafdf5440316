"""A BPF ring buffer read in batches through our own mapping of it, decoded with numpy.

Why not bcc's ring_buffer_poll: it calls a Python function per event, which loses events above about
450k events/s on the CI machine; a numpy view decodes hundreds of millions of records per second.

Layout (Linux UAPI): page 0 of the map fd holds the consumer position (we advance it); from offset
PAGE_SIZE, one page with the producer position followed by the data area mapped twice in a row, so
the span between the two positions is contiguous even when it wraps. Each record is an 8-byte header
(u32 length with BUSY and DISCARD bits, u32 page offset) and the data, padded to 8 bytes. All our
records have one size, so the span is an array of fixed-stride records.
"""

from __future__ import annotations

import mmap

import numpy as np

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HEADER = 8


class RingReader:
    """Drain the records of one BPF ring-buffer map holding records of one numpy dtype."""

    def __init__(self, map_fd: int, size: int, record_dtype: np.dtype) -> None:
        if size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring size {size} is not a power-of-two number of pages")
        page = mmap.PAGESIZE
        self.size = size
        self._consumer_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer_map = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._consumer = np.frombuffer(self._consumer_map, dtype=np.uint64, count=1)
        self._producer = np.frombuffer(self._producer_map, dtype=np.uint64, count=1)
        self._data = np.frombuffer(self._producer_map, dtype=np.uint8, offset=page)
        stride = (_HEADER + record_dtype.itemsize + 7) // 8 * 8
        self._slot = np.dtype({"names": ["header", "record"], "formats": ["<u4", record_dtype],
                               "offsets": [0, _HEADER], "itemsize": stride})
        self._record_size = record_dtype.itemsize
        self._empty = np.zeros(0, dtype=record_dtype)

    def pending_bytes(self) -> int:
        return int(self._producer[0]) - int(self._consumer[0])

    def read(self) -> np.ndarray:
        """Copy out every committed record and release its space to the producers."""
        consumer = int(self._consumer[0])
        available = int(self._producer[0]) - consumer
        stride = self._slot.itemsize
        count = available // stride
        if count == 0:
            return self._empty
        offset = consumer & (self.size - 1)
        slots = self._data[offset:offset + count * stride].view(self._slot)
        headers = slots["header"]
        busy = (headers & _BUSY) != 0
        if busy.any():  # a producer reserved this slot but has not committed it yet: stop there
            count = int(np.argmax(busy))
            slots, headers = slots[:count], headers[:count]
        lengths = headers & ~np.uint32(_BUSY | _DISCARD)
        if count and (lengths != self._record_size).any():
            raise RuntimeError("ring buffer holds a record of unexpected size; reader and BPF program disagree")
        records = slots["record"][(headers & _DISCARD) == 0].copy()
        self._consumer[0] = consumer + count * stride  # release: data is copied out above
        return records

    def close(self) -> None:
        del self._consumer, self._producer, self._data
        self._consumer_map.close()
        self._producer_map.close()
