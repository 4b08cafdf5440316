"""Access heatmap: time on x, address on y, heat = access frequency averaged over each cell.

A cell's heat is computed like ``damo report heatmap``: every region of every snapshot adds
``rate x overlapping time x overlapping bytes``, and the sum is divided by the cell's time x bytes,
so the heat is the average rate (Hz) over the cell. Cells no region ever covered are NaN.
With ``cell="max"`` each row is computed as eight finer ones and shows the hottest of them, so a
small hot spot inside a big cold cell keeps its colour (what ``live`` shows).

Unlike damo, the default address axis is made of the spans that were ever accessed (plus padding):
cold gaps in between are skipped and marked, so a small hot spot far from a big one still gets
rows, and colours use a log scale by default, so a cell with any access is never drawn black.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import (bin_masses, fmt_addr, fmt_ns, fmt_size, in_time,
                                      select_target)

PAGE = 4096
GAP_FRACTION = 0.05  # a cold gap smaller than this share of the hot bytes is drawn, not skipped
PAD_FRACTION = 0.03  # padding around each drawn span, so its edges are visible
MAX_PANELS = 8  # --by cpu/tid: the busiest ones; more would be unreadable side by side
LOG_DECADES = 3  # the log colour scale spans max/1000 .. max
OVERSAMPLE = 8  # --cell max: finer rows computed per shown row, the hottest of them shown
MAX_FINE_ROWS = 400  # the cost is in the regions, not the rows, but bounded all the same
CELLS = ("mean", "max")
# "inferno" sampled at 10 points: dark to bright, readable on dark and light terminals alike.
PALETTE = [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
           (227, 89, 51), (249, 140, 10), (249, 201, 50), (240, 240, 120), (252, 255, 164)]
PLAIN_RAMP = ".,:-=+*#%@"  # level 0 (monitored, no access) .. 9 (hottest)


@dataclass
class AddressAxis:
    """Row ``r`` covers addresses ``[lo[r], hi[r])``, ascending. ``breaks`` lists the rows that
    start a new span after a skipped gap. Python ints: addresses may reach 2**64."""

    lo: list[int]
    hi: list[int]
    breaks: list[int]

    @property
    def rows(self) -> int:
        return len(self.lo)


@dataclass
class Heatmap:
    """``grid[row, col]``: rate in ``unit`` over the cell (its mean, or the hottest finer row's);
    row 0 is the lowest address."""

    name: str
    unit: str
    grid: np.ndarray
    axis: AddressAxis
    time_edges_ns: np.ndarray
    origin_ns: int  # the record's first snapshot start; times are shown relative to it
    target_id: int
    pid: int | None


@dataclass
class _Panel:
    name: str
    unit: str
    rate: Callable[[Snapshot], np.ndarray]  # per-region rate per second in one snapshot


# ---------------------------------------------------------------------------------------------
# What to draw


def _panels(rec: TargetRecord, snaps: list[Snapshot], by: str | None) -> list[_Panel]:
    per_s = 1e6 / rec.aggr_us
    if by is None:
        return [_Panel("accesses", "Hz", lambda s: s.nr_accesses * per_s)]
    if by == "rw":
        return [_Panel("reads", "reports/s", lambda s: s.reads * per_s),
                _Panel("writes", "reports/s", lambda s: s.writes * per_s)]
    if by not in ("cpu", "tid"):
        raise UsageError(f"cannot break a heatmap down by {by!r}; use cpu, tid or rw")
    totals: dict[int, int] = {}
    for s in snaps:
        for ident, counts in (s.by_cpu if by == "cpu" else s.by_tid).items():
            totals[ident] = totals.get(ident, 0) + int(counts.sum())
    if not totals:
        raise UsageError(f"the record holds no per-{by} counts in this time range")
    busiest = sorted(sorted(totals, key=lambda i: -totals[i])[:MAX_PANELS])

    def rate(ident: int) -> Callable[[Snapshot], np.ndarray]:
        def per_region(s: Snapshot) -> np.ndarray:
            counts = (s.by_cpu if by == "cpu" else s.by_tid).get(ident)
            return np.zeros(s.nr_regions) if counts is None else counts * per_s
        return per_region

    label = "cpu" if by == "cpu" else "thread"
    return [_Panel(f"{label} {i}", "reports/s", rate(i)) for i in busiest]


# ---------------------------------------------------------------------------------------------
# Axes


def _linear_axis(start: int, end: int, rows: int) -> AddressAxis:
    # Same cell arithmetic as damo (integer unit, floor), so raw outputs line up cell for cell.
    if end <= start:
        raise UsageError(f"address range end {end:#x} is not above its start {start:#x}")
    rows = min(rows, end - start)
    unit = (end - start) // rows
    lo = [start + r * unit for r in range(rows)]
    return AddressAxis(lo, [a + unit for a in lo], [])


def _touched_spans(snaps: list[Snapshot]) -> list[tuple[int, int]]:
    """Union of the regions ever accessed or reported (all regions if none was)."""
    def spans(pick: Callable[[Snapshot], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([s.start[pick(s)] for s in snaps] or [np.zeros(0, np.uint64)]),
                np.concatenate([s.end[pick(s)] for s in snaps] or [np.zeros(0, np.uint64)]))

    starts, ends = spans(lambda s: (s.nr_accesses > 0) | (s.nr_reports > 0))
    if len(starts) == 0:
        starts, ends = spans(lambda s: np.ones(s.nr_regions, dtype=bool))
    if len(starts) == 0:
        raise UsageError("no regions were monitored in the chosen time range")
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    first = np.concatenate([[True], starts[1:] > ends[:-1]])  # a new span starts past the reach
    last = np.concatenate([first[1:], [True]])
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def _keep_gaps(spans: list[tuple[int, int]], max_segments: int) -> list[tuple[int, int]]:
    """Merge spans across every gap except the widest ``max_segments - 1`` that are also wide
    enough to be worth skipping."""
    hot = sum(hi - lo for lo, hi in spans)
    gaps = sorted(range(1, len(spans)), key=lambda i: spans[i][0] - spans[i - 1][1], reverse=True)
    kept = {i for i in gaps[:max_segments - 1]
            if spans[i][0] - spans[i - 1][1] >= GAP_FRACTION * hot}
    merged = [list(spans[0])]
    for i in range(1, len(spans)):
        if i in kept:
            merged.append(list(spans[i]))
        else:
            merged[-1][1] = spans[i][1]
    return [(lo, hi) for lo, hi in merged]


def _pad(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for i, (lo, hi) in enumerate(segments):
        pad = max(PAGE, int((hi - lo) * PAD_FRACTION))
        floor_ = (segments[i - 1][1] + lo) // 2 if i else 0  # never past the gap's midpoint
        ceil_ = (hi + segments[i + 1][0]) // 2 if i + 1 < len(segments) else 2**64
        # Page aligned (when the gap allows) so the row labels read like addresses.
        start = max(floor_, (lo - pad) // PAGE * PAGE)
        end = min(ceil_, -(-(hi + pad) // PAGE) * PAGE)
        out.append((start, end))
    return out


def _share_rows(sizes: list[int], rows: int) -> list[int]:
    """One row each, the rest in proportion to size (largest remainder)."""
    extra = (rows - len(sizes)) * np.array(sizes, dtype=np.float64) / sum(sizes)
    share = np.floor(extra).astype(int)
    for i in np.argsort(-(extra - share))[:rows - len(sizes) - share.sum()]:
        share[i] += 1
    return (share + 1).tolist()


def _auto_axis(snaps: list[Snapshot], rows: int) -> AddressAxis:
    segments = _pad(_keep_gaps(_touched_spans(snaps), max(1, rows // 6)))
    lo: list[int] = []
    hi: list[int] = []
    breaks = []
    for (start, end), n in zip(segments, _share_rows([e - s for s, e in segments], rows)):
        unit = -(-(end - start) // n)  # ceil: the span's rows cover all of it
        if unit >= 32 * PAGE:  # whole pages, so labels read like addresses; overshoot <= 1/32
            unit = -(-unit // PAGE) * PAGE
        if lo:
            breaks.append(len(lo))
        lo.extend(start + r * unit for r in range(n))
        hi.extend(start + (r + 1) * unit for r in range(n))
    return AddressAxis(lo, hi, breaks)


def _time_edges(rec: TargetRecord, cols: int, time_range: tuple[int, int] | None) -> np.ndarray:
    origin = rec.snapshots[0].start_ns
    last = max(s.end_ns for s in rec.snapshots)
    if time_range is None:
        t0, t1 = origin, last
    else:
        t0, t1 = origin + int(time_range[0]), origin + int(time_range[1])
        if t0 >= last and t1 > t0:
            raise UsageError(f"time range starts at {fmt_ns(t0 - origin)}, after the record ends "
                             f"({fmt_ns(last - origin)})")
        t1 = min(t1, last)  # columns past the end would only be blank
    if t1 <= t0:
        raise UsageError(f"time range end ({fmt_ns(t1 - origin)}) is not after its start "
                         f"({fmt_ns(t0 - origin)})")
    cols = min(cols, t1 - t0)
    unit = (t1 - t0) // cols  # damo's arithmetic again
    return np.array([t0 + k * unit for k in range(cols + 1)], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# The grid


def _grids(snaps: list[Snapshot], panels: list[_Panel], axis: AddressAxis,
           edges: np.ndarray) -> list[np.ndarray]:
    lo, hi = np.array(axis.lo, dtype=np.float64), np.array(axis.hi, dtype=np.float64)
    cols = len(edges) - 1
    t0, unit = int(edges[0]), int(edges[1] - edges[0])
    heats = [np.zeros((axis.rows, cols)) for _ in panels]
    cover = np.zeros((axis.rows, cols))
    for s in snaps:
        first, last = max(0, (s.start_ns - t0) // unit), min(cols - 1, (s.end_ns - 1 - t0) // unit)
        if s.end_ns <= s.start_ns or first > last:
            continue
        size = (s.end - s.start).astype(np.float64)  # rate x bytes, for every panel at once
        covered, *masses = bin_masses(s.start, s.end, [size] + [p.rate(s) * size for p in panels],
                                      lo, hi)
        for k in range(first, last + 1):
            overlap = min(s.end_ns, int(edges[k + 1])) - max(s.start_ns, int(edges[k]))
            cover[:, k] += overlap * covered
            for heat, mass in zip(heats, masses):
                heat[:, k] += overlap * mass
    area = unit * (hi - lo)[:, None]
    return [np.where(cover > 0, heat / area, np.nan) for heat in heats]


def heatmaps(records: list[TargetRecord], by: str | None = None,
             resol: tuple[int, int] = (30, 80), address_range: tuple[int, int] | None = None,
             time_range: tuple[int, int] | None = None,
             target_id: int | None = None, cell: str = "mean",
             recent_cols: int | None = None) -> list[Heatmap]:
    """One heatmap per panel (``by``: None = accesses, "cpu", "tid", "rw"), on shared axes.

    ``resol`` is (rows, cols) = (address cells, time cells); ``time_range`` is in ns relative to
    the record's first snapshot; ``address_range`` is absolute [start, end). ``cell`` "mean" is
    damo's average over the cell; "max" computes finer rows and shows the hottest of each cell's
    (see ``pool_rows``; ``recent_cols`` is passed on to it).
    """
    rows, cols = resol
    if rows < 1 or cols < 1:
        raise UsageError(f"heatmap resolution must be at least 1x1, not {rows}x{cols}")
    if cell not in CELLS:
        raise UsageError(f"heatmap cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if cell == "max":
        fine = max(rows, min(MAX_FINE_ROWS, OVERSAMPLE * rows))
        maps = heatmaps(records, by, (fine, cols), address_range, time_range, target_id)
        return pool_rows(maps, rows, recent_cols)
    rec = select_target(records, target_id)
    if not rec.snapshots:
        raise UsageError(f"target {rec.target_id} has no snapshots")
    edges = _time_edges(rec, cols, time_range)
    rel = (int(edges[0]) - rec.snapshots[0].start_ns, int(edges[-1]) - rec.snapshots[0].start_ns)
    snaps = in_time(rec, rel)
    axis = (_linear_axis(*address_range, rows) if address_range is not None
            else _auto_axis(snaps, rows))
    panels = _panels(rec, snaps, by)
    return [Heatmap(p.name, p.unit, grid, axis, edges, rec.snapshots[0].start_ns, rec.target_id,
                    rec.pid) for p, grid in zip(panels, _grids(snaps, panels, axis, edges))]


def heatmap(records: list[TargetRecord], resol: tuple[int, int] = (30, 80),
            address_range: tuple[int, int] | None = None,
            time_range: tuple[int, int] | None = None, target_id: int | None = None) -> Heatmap:
    """The access-frequency heatmap (Hz) of one target; see ``heatmaps``."""
    return heatmaps(records, None, resol, address_range, time_range, target_id)[0]


# ---------------------------------------------------------------------------------------------
# Pooling: hot spots that a mean over a big cell would hide


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
    pooled = AddressAxis([axis.lo[a] for a, _ in groups], [axis.hi[b - 1] for _, b in groups], breaks)

    def pool(grid: np.ndarray) -> np.ndarray:
        return np.stack([np.fmax.reduce(grid[a:b], axis=0) for a, b in groups])  # fmax skips NaN

    return [replace(m, grid=pool(m.grid), axis=pooled) for m in maps]


# ---------------------------------------------------------------------------------------------
# Output


def raw_text(hm: Heatmap) -> str:
    """damo's ``--output raw``: "<time> <address> <heat>" per cell, time relative to the map's
    start (ns), absolute address, NaN for cells nothing covered; time-major like damo."""
    t0 = int(hm.time_edges_ns[0])
    lines = []
    for k in range(hm.grid.shape[1]):
        t = int(hm.time_edges_ns[k]) - t0
        for r in range(hm.axis.rows):
            v = hm.grid[r, k]
            lines.append(f"{t}\t{int(hm.axis.lo[r])}\t{'NaN' if math.isnan(v) else repr(float(v))}")
    return "\n".join(lines)


def levels(grid: np.ndarray, vmax: float, scale: str = "log") -> np.ndarray:
    """Colour level per cell: -1 not monitored, 0 monitored but never accessed, 1..9 heat.
    Any non-zero heat gets at least level 1, so sparse accesses never vanish into black."""
    top = len(PALETTE) - 1
    out = np.full(grid.shape, -1, dtype=int)
    seen = ~np.isnan(grid)
    out[seen] = 0
    hot = seen & (grid > 0)
    if vmax <= 0 or not hot.any():
        return out
    rel = grid[hot] / vmax
    if scale == "log":
        frac = 1 + np.log10(rel) / LOG_DECADES
    elif scale == "linear":
        frac = rel
    else:
        raise UsageError(f"unknown colour scale {scale!r}; use log or linear")
    out[hot] = np.clip(1 + np.floor(frac * top).astype(int), 1, top)
    return out


def _cell(level: int, color: bool) -> tuple[str, str]:
    if level < 0:
        return ("·" if color else " "), "dim"
    if not color:
        return PLAIN_RAMP[level], ""
    r, g, b = PALETTE[level]
    return " ", f"on rgb({r},{g},{b})"


def _row_labels(axis: AddressAxis) -> list[str]:
    """Label each span's first and last row and every fourth row between."""
    starts = [0, *axis.breaks]
    ends = [*axis.breaks, axis.rows]
    labels = [""] * axis.rows
    for first, stop in zip(starts, ends):
        for r in range(first, stop):
            if (r - first) % 4 == 0 or r == stop - 1:
                labels[r] = fmt_addr(axis.lo[r])
    return labels


def _render_one(hm: Heatmap, vmax: float, color: bool, scale: str) -> Text:
    lv = levels(hm.grid, vmax, scale)
    labels = _row_labels(hm.axis)
    width = max(len(x) for x in labels) + 1
    breaks = set(hm.axis.breaks)
    out = Text()
    out.append(f"{hm.name} ({hm.unit}), target {hm.target_id}"
               + (f" (pid {hm.pid})" if hm.pid is not None else "") + "\n", style="bold")
    for r in range(hm.axis.rows - 1, -1, -1):  # highest address at the top, like a plot
        out.append(labels[r].rjust(width) + " ")
        for level, run in itertools.groupby(lv[r].tolist()):  # one style per run: shorter output
            char, style = _cell(level, color)
            out.append(char * len(list(run)), style=style or None)
        out.append("\n")
        if r in breaks:
            gap = int(hm.axis.lo[r]) - int(hm.axis.hi[r - 1])
            out.append(" " * width + f" ┄┄ {fmt_size(gap)} not accessed, not drawn ┄┄\n",
                       style="dim")
    cols = lv.shape[1]
    start = int(hm.time_edges_ns[0]) - hm.origin_ns
    end = int(hm.time_edges_ns[-1]) - hm.origin_ns
    left, right = fmt_ns(start), fmt_ns(end)
    out.append(" " * (width + 1) + left + right.rjust(max(1, cols - len(left))) + "\n")
    return out


def _legend(vmax: float, unit: str, color: bool, scale: str, hm: Heatmap) -> Text:
    legend = Text("heat: ")
    for level in range(len(PALETTE)):
        char, style = _cell(level, color)
        legend.append(char * (2 if color else 1), style=style or None)
    low = f"{vmax / 10 ** LOG_DECADES:.3g}" if scale == "log" else "0"
    col_ns = int(hm.time_edges_ns[1] - hm.time_edges_ns[0])
    legend.append(f"  {low}..{vmax:.3g} {unit} ({scale} scale); "
                  f"{'·' if color else 'blank'} = not monitored; "
                  f"one column = {fmt_ns(col_ns)}; time on x, address on y")
    return legend


def shared_max(maps: Sequence[Heatmap]) -> float:
    """The hottest cell of all the maps (0.0 if none has heat): one colour scale for all panels,
    so panels compare."""
    return max((float(np.nanmax(m.grid)) for m in maps if not np.isnan(m.grid).all()), default=0.0)


def render(maps: Sequence[Heatmap], color: bool = True, scale: str = "log") -> RenderableType:
    """Terminal rendering of one or more heatmaps sharing one colour scale."""
    vmax = shared_max(maps)
    if vmax <= 0:
        return Text("no access was recorded in this time and address range "
                    "(try a wider --time-range or leave --address-range out)")
    parts: list[RenderableType] = [_render_one(m, vmax, color, scale) for m in maps]
    parts.append(_legend(vmax, maps[0].unit, color, scale, maps[0]))
    return Group(*parts)


def to_png(records: list[TargetRecord], path: str, by: str | None = None,
           resol: tuple[int, int] = (200, 400), address_range: tuple[int, int] | None = None,
           time_range: tuple[int, int] | None = None, target_id: int | None = None,
           scale: str = "log", cell: str = "mean", image_format: str | None = None) -> None:
    """Draw the heatmaps (one per cpu / thread / kind with ``by``) side by side into ``path``."""
    # Figure + Agg canvas directly: no pyplot, so no global backend state and no display needed.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    maps = heatmaps(records, by, resol, address_range, time_range, target_id, cell)
    vmax = shared_max(maps) or 1.0
    norm = (LogNorm(vmin=vmax / 10 ** LOG_DECADES, vmax=vmax) if scale == "log"
            else Normalize(vmin=0, vmax=vmax))
    inferno = colormaps["inferno"]
    # zero heat (under a log norm) darkest, not blank; not monitored light grey
    cmap = inferno.with_extremes(under=inferno(0.0), bad="#d0d0d0")
    fig = Figure(figsize=(max(6.0, 4.2 * len(maps)), 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(maps), sharey=True, squeeze=False)[0]
    for ax, hm in zip(axes, maps):
        t = (hm.time_edges_ns - hm.origin_ns) / 1e9
        # LogNorm treats 0 as invalid (drawn like "not monitored"); push it under vmin instead.
        shown = np.where(hm.grid == 0, norm.vmin / 10 if scale == "log" else 0, hm.grid)
        image = ax.imshow(np.ma.masked_invalid(shown), origin="lower", aspect="auto",
                          cmap=cmap, norm=norm, interpolation="nearest",
                          extent=(t[0], t[-1], 0, hm.axis.rows))
        for b in hm.axis.breaks:
            ax.axhline(b, color="white", linestyle="--", linewidth=0.8)
        ax.set_title(hm.name)
        ax.set_xlabel("time (s)")
    ticks = _png_ticks(maps[0].axis)
    axes[0].set_yticks([r for r, _ in ticks], [label for _, label in ticks])
    axes[0].set_ylabel("address (dashed: cold gap skipped)" if maps[0].axis.breaks else "address")
    fig.colorbar(image, ax=list(axes), label=f"{maps[0].unit} ({scale} scale)", extend="min")
    fig.suptitle(f"target {maps[0].target_id}" +
                 (f" (pid {maps[0].pid})" if maps[0].pid is not None else ""))
    fig.savefig(path, dpi=100, format=image_format)   # path may be an open stream (damon_bpf.outputs)


def _png_ticks(axis: AddressAxis) -> list[tuple[float, str]]:
    starts = [0, *axis.breaks]
    ends = [*axis.breaks, axis.rows]
    per_span = max(2, 10 // len(starts))
    ticks: list[tuple[float, str]] = []
    for first, stop in zip(starts, ends):
        for r in np.linspace(first, stop - 1, min(per_span, stop - first)).astype(int):
            if not ticks or r + 0.5 - ticks[-1][0] >= axis.rows / 20:  # labels must not overlap
                ticks.append((r + 0.5, fmt_addr(axis.lo[r])))
    return ticks
