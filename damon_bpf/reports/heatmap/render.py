"""Drawing heatmaps: damo's raw text, colour levels, terminal cells and legend (shared with the live
view), the terminal rendering and the PNG."""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from rich.color import Color
from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

from damon_bpf.errors import UsageError
from damon_bpf.reports.common import fmt_addr, fmt_ns, fmt_size
from damon_bpf.reports.heatmap.axis import AddressAxis, mapping_spans
from damon_bpf.reports.heatmap.grid import Heatmap

LOG_DECADES = 3  # the log colour scale spans max/1000 .. max
# "inferno" sampled at 10 points: dark to bright, readable on dark and light terminals alike.
PALETTE = [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
           (227, 89, 51), (249, 140, 10), (249, 201, 50), (240, 240, 120), (252, 255, 164)]
PLAIN_RAMP = ".,:-=+*#%@"  # level 0 (monitored, no access) .. 9 (hottest)
_LEVEL_STYLES = [Style(bgcolor=Color.from_rgb(*rgb)) for rgb in PALETTE]
_DIM = Style(dim=True)


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


def cell(level: int, color: bool) -> tuple[str, Style | None]:
    """The character and style of one cell of ``level`` (see ``levels``); plain characters
    without ``color``."""
    if level < 0:  # not monitored at that time
        return ("·", _DIM) if color else (" ", None)
    if color:
        return " ", _LEVEL_STYLES[level]
    return PLAIN_RAMP[level], None


def swatches(color: bool, width: int = 1) -> Text:
    """The legend's colour ramp: every level from 0 to the hottest, ``width`` cells each."""
    ramp = Text()
    for level in range(len(PALETTE)):
        char, style = cell(level, color)
        ramp.append(char * width, style=style)
    return ramp


def shared_max(maps: Sequence[Heatmap]) -> float:
    """The hottest cell of all the maps (0.0 if none has heat): one colour scale for all panels,
    so panels compare."""
    return max((float(np.nanmax(m.grid)) for m in maps if not np.isnan(m.grid).all()), default=0.0)


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


MAPPING_COLS = 13   # the terminal's mapping label column (with its space), when the record names mappings


def _mapping_labels(axis: AddressAxis) -> list[str] | None:
    """Per row, the mapping's name on the first (highest) row of each span of rows it covers, else ""."""
    if axis.names is None:
        return None
    labels = [""] * axis.rows
    for _, stop, name in mapping_spans(axis.names):
        text = name if len(name) < MAPPING_COLS else name[:MAPPING_COLS - 2] + "…"
        labels[stop - 1] = text   # rows are drawn highest first: the span's top row
    return labels


def _render_one(hm: Heatmap, vmax: float, color: bool, scale: str) -> Text:
    lv = levels(hm.grid, vmax, scale)
    labels = _row_labels(hm.axis)
    names = _mapping_labels(hm.axis)
    if names is not None:
        labels = [f"{name:<{MAPPING_COLS - 1}} {label}" for name, label in zip(names, labels)]
    width = max(len(x) for x in labels) + 1
    breaks = set(hm.axis.breaks)
    out = Text()
    out.append(f"{hm.name} ({hm.unit}), {hm.who}\n", style="bold")
    for r in range(hm.axis.rows - 1, -1, -1):  # highest address at the top, like a plot
        out.append(labels[r].rjust(width) + " ")
        for level, run in itertools.groupby(lv[r].tolist()):  # one style per run: shorter output
            char, style = cell(level, color)
            out.append(char * len(list(run)), style=style)
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
    legend.append_text(swatches(color, 2 if color else 1))
    low = f"{vmax / 10 ** LOG_DECADES:.3g}" if scale == "log" else "0"
    col_ns = int(hm.time_edges_ns[1] - hm.time_edges_ns[0])
    legend.append(f"  {low}..{vmax:.3g} {unit} ({scale} scale); "
                  f"{'·' if color else 'blank'} = not monitored; "
                  f"one column = {fmt_ns(col_ns)}; time on x, address on y")
    return legend


def render(maps: Sequence[Heatmap], color: bool = True, scale: str = "log") -> RenderableType:
    """Terminal rendering of one or more heatmaps sharing one colour scale."""
    vmax = shared_max(maps)
    if vmax <= 0:
        return Text("no access was recorded in this time and address range "
                    "(try a wider --time-range or leave --address-range out)")
    parts: list[RenderableType] = [_render_one(m, vmax, color, scale) for m in maps]
    parts.append(_legend(vmax, maps[0].unit, color, scale, maps[0]))
    return Group(*parts)


def write_png(maps: Sequence[Heatmap], path, scale: str = "log", image_format: str | None = None) -> None:
    """The heatmaps side by side, sharing one colour scale, into ``path``."""
    # Figure + Agg canvas directly: no pyplot, so no global backend state and no display needed.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    vmax = shared_max(maps) or 1.0
    vmin = vmax / 10 ** LOG_DECADES
    norm = (LogNorm(vmin=vmin, vmax=vmax) if scale == "log"
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
        shown = np.where(hm.grid == 0, vmin / 10 if scale == "log" else 0, hm.grid)
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
    _png_mapping_ticks(axes[-1], maps[0].axis)
    fig.suptitle(maps[0].who)
    fig.savefig(path, dpi=100, format=image_format)   # path may be an open stream (damon_bpf.outputs)


def _png_mapping_ticks(ax, axis: AddressAxis) -> None:
    """The mappings on a right-hand axis: each span of rows labelled at its middle, bounded by a faint line."""
    if axis.names is None:
        return
    spans = mapping_spans(axis.names)
    right = ax.twinx()
    right.set_ylim(0, axis.rows)
    right.set_yticks([(first + stop) / 2 for first, stop, _ in spans], [name for _, _, name in spans],
                     fontsize="small")
    for _, stop, _ in spans:
        ax.axhline(stop, color="white", linewidth=0.3, alpha=0.5)
    right.set_ylabel("mapping")


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
