"""Pooling: fewer rows, each the hottest of the finer rows it covers, so a hot spot that a mean over
a big cell would hide keeps its colour (``report heatmap --cell max`` and ``live``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from damon_bpf.reports.heatmap.axis import AddressAxis
from damon_bpf.reports.heatmap.grid import Heatmap


def _kept_breaks(axis: AddressAxis, rows: int) -> list[int]:
    """The widest skipped gaps, at most one per two pooled rows (each span needs rows of its own)."""
    gap = {b: axis.lo[b] - axis.hi[b - 1] for b in axis.breaks}
    return sorted(sorted(gap, key=gap.__getitem__, reverse=True)[:max(0, rows // 2)])


def _span_rows(have: np.ndarray, heat: np.ndarray, rows: int) -> np.ndarray:
    """Pooled rows per span: at least one each, the rest half by bytes (fine rows), half by heat,
    so a big span touched once at start-up does not leave the hot one a single row."""
    weight = have / have.sum() + (heat / heat.sum() if heat.sum() > 0 else have / have.sum())
    want = rows * weight / weight.sum()
    share = np.minimum(have, np.maximum(1, np.floor(want).astype(int)))
    while share.sum() > rows:  # the minimum of one row each overshot: take from the biggest
        share[np.argmax(share)] -= 1
    for i in np.argsort(-(want - share)):  # largest remainders, where rows are left to split
        if share.sum() >= rows:
            break
        share[i] += share[i] < have[i]
    return share


def pool_rows(maps: list[Heatmap], rows: int, recent_cols: int | None = None) -> list[Heatmap]:
    """The same heatmaps on ``rows`` rows, each the hottest of the fine rows it pools (NaN only if
    none of them was monitored), so a hot spot stays as bright as it is. Spans between skipped
    gaps keep their gap marks; rows are shared by bytes and by the heat of the last
    ``recent_cols`` columns (all of them if None)."""
    axis = maps[0].axis
    if axis.rows <= rows:
        return maps
    kept = _kept_breaks(axis, rows)
    starts, ends = [0, *kept], [*kept, axis.rows]
    have = np.array([e - s for s, e in zip(starts, ends)])
    recent = [np.nan_to_num(m.grid[:, -(recent_cols or m.grid.shape[1]):]).sum(axis=1) for m in maps]
    heat = np.array([sum(float(h[s:e].sum()) for h in recent) for s, e in zip(starts, ends)])
    groups: list[tuple[int, int]] = []
    breaks = []
    for s, n, m in zip(starts, have.tolist(), _span_rows(have, heat, rows).tolist()):
        if groups:
            breaks.append(len(groups))
        cuts = [s + (k * n) // m for k in range(m + 1)]
        groups.extend(zip(cuts[:-1], cuts[1:]))
    names = None if axis.names is None else [axis.names[(a + b - 1) // 2] for a, b in groups]
    pooled = AddressAxis([axis.lo[a] for a, _ in groups], [axis.hi[b - 1] for _, b in groups], breaks, names)

    def pool(grid: np.ndarray) -> np.ndarray:
        return np.stack([np.fmax.reduce(grid[a:b], axis=0) for a, b in groups])  # fmax skips NaN

    return [replace(m, grid=pool(m.grid), axis=pooled) for m in maps]
