"""Which CPU and thread each report came from, and whether it read or wrote, per region.

Every CPU owns three rows of ``Regions.counts`` (reads, writes, unknown) and every thread one
row, allocated in the order they appear during an aggregation. Keys become rows through a
lookup table indexed by the key itself, so attributing a batch is a gather and two
np.bincount calls, never a sort; totals and read/write splits are sums of CPU rows.
"""

from __future__ import annotations

import numpy as np

from damon_bpf.core.events import Kind

READ, WRITE, UNKNOWN = 0, 1, 2  # offsets inside a CPU's block of rows
_KIND = np.full(256, UNKNOWN, np.intp)  # report ``write`` byte (a Kind) -> offset
_KIND[Kind.READ] = READ
_KIND[Kind.WRITE] = WRITE


class _KeyTable:
    """Non-negative integer key -> first row, growing with the largest key seen (tids < pid_max)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: dict[int, int] = {}
        self._lut = np.full(64, -1, np.intp)

    def lookup(self, keys: np.ndarray, next_row: int) -> tuple[np.ndarray, int]:
        """Rows of ``keys`` (allocating rows from ``next_row`` for new keys) and the next free row."""
        top = int(keys.max()) + 1
        if top > len(self._lut):
            grown = np.full(max(top, 2 * len(self._lut)), -1, np.intp)
            grown[: len(self._lut)] = self._lut
            self._lut = grown
        rows = self._lut[keys]
        if rows.min() < 0:
            new = np.unique(keys[rows < 0])  # only keys first seen in this batch: few
            first = np.arange(len(new)) * self.width + next_row
            self._lut[new] = first
            self.rows.update(zip(new.tolist(), first.tolist()))
            next_row += len(new) * self.width
            rows = self._lut[keys]
        return rows, next_row

    def clear(self) -> None:
        self._lut[list(self.rows)] = -1
        self.rows.clear()


class Attribution:
    """Row allocation and counting for the CPUs and threads of the current aggregation."""

    def __init__(self) -> None:
        self._cpu = _KeyTable(width=3)
        self._tid = _KeyTable(width=1)
        self.nr_rows = 0

    def count(self, counts: np.ndarray, idx: np.ndarray, cpu: np.ndarray, tid: np.ndarray,
              write: np.ndarray, stride: int) -> np.ndarray:
        """Add reports (region ``idx``, in columns of width ``stride``) to ``counts``, first
        growing it to ``nr_rows`` rows; returns the (possibly new) matrix."""
        cpu_rows, self.nr_rows = self._cpu.lookup(cpu, self.nr_rows)
        tid_rows, self.nr_rows = self._tid.lookup(tid, self.nr_rows)
        if counts.shape[0] < self.nr_rows:
            counts = np.vstack([counts, np.zeros((self.nr_rows - counts.shape[0], counts.shape[1]), np.int64)])
        bins = self.nr_rows * stride
        by_cpu = np.bincount((cpu_rows + _KIND[write]) * stride + idx, minlength=bins)
        by_tid = np.bincount(tid_rows * stride + idx, minlength=bins)
        counts += (by_cpu + by_tid).reshape(self.nr_rows, stride)[:, : counts.shape[1]]
        return counts

    def nr_reports(self, counts: np.ndarray) -> int:
        """Reports counted in ``counts`` (each is in exactly one CPU row)."""
        return sum(int(counts[row : row + 3].sum()) for row in self._cpu.rows.values())

    def views(self, counts: np.ndarray) -> dict:
        """Snapshot fields ``nr_reports``, ``writes``, ``reads``, ``by_cpu``, ``by_tid``.
        Keys whose reports all left with their region (a layout update dropped it) are left out."""
        cpus = sorted(self._cpu.rows.items())
        first = np.array([row for _, row in cpus], np.intp)
        zeros = np.zeros(counts.shape[1], np.int64)
        by_cpu = {cpu: counts[row : row + 3].sum(axis=0) for cpu, row in cpus}
        by_tid = {tid: counts[row] for tid, row in sorted(self._tid.rows.items())}
        return {
            "nr_reports": sum(by_cpu.values(), zeros),
            "writes": counts[first + WRITE].sum(axis=0) if len(first) else zeros,
            "reads": counts[first + READ].sum(axis=0) if len(first) else zeros,
            "by_cpu": {k: v for k, v in by_cpu.items() if v.any()},
            "by_tid": {k: v for k, v in by_tid.items() if v.any()},
        }

    def clear(self) -> None:
        """Forget every key: rows are allocated afresh in the next aggregation."""
        self._cpu.clear()
        self._tid.clear()
        self.nr_rows = 0
