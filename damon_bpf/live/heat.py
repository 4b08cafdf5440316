"""The scrolling heatmap panel: one column per aggregation snapshot (newest on the right), the
target's address space on the rows, one small multiple per CPU / thread / access kind.

The grids, the address axis (cold gaps skipped) and the colour levels come from
``damon_bpf.reports.heatmap``, the same code as ``damon-bpf report heatmap``; this module lays
them out in a fixed number of terminal cells. Cells show the hottest part of their addresses
(``report heatmap --cell max``), so a small hot spot in a big row keeps its colour, and rows
are shared between address spans by recent heat as well as by bytes.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from rich import box
from rich.measure import Measurement
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.live.views import View
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import fmt_addr, fmt_ns
from damon_bpf.reports.heatmap import LOG_DECADES, PALETTE, Heatmap, cell, heatmaps, levels, shared_max, swatches

MIN_PANEL_COLS = 10  # narrower small multiples are unreadable: show fewer, busiest first
RECENT_COLS = 10  # "hot now", for sharing rows between address spans
GAP_MARK = "┄"  # in the separator column: addresses skipped (never accessed) below this row
_DIM = Style(dim=True)


def _sources(snaps: list[Snapshot], by: str | None) -> int:
    """How many small multiples a view has over these snapshots."""
    if by is None:
        return 1
    if by == "rw":
        return 2
    ids: set[int] = set()
    for s in snaps:
        ids.update(k for k, v in (s.by_cpu if by == "cpu" else s.by_tid).items() if v.any())
    return max(1, len(ids))


def _layout(data_w: int, wanted: int) -> tuple[int, int]:
    """(panels, columns per panel) for ``wanted`` small multiples in ``data_w`` cells."""
    fit = max(1, (data_w + 1) // (MIN_PANEL_COLS + 1))
    panels = max(1, min(wanted, fit))
    return panels, max(1, (data_w - (panels - 1)) // panels)


def _busiest(maps: list[Heatmap], keep: int) -> list[Heatmap]:
    """The ``keep`` maps with the most heat, in their original (id) order."""
    if len(maps) <= keep:
        return maps
    totals = [float(np.nansum(m.grid)) for m in maps]
    chosen = sorted(sorted(range(len(maps)), key=lambda i: -totals[i])[:keep])
    return [maps[i] for i in chosen]


def fmt_rate(x: float) -> str:
    """Three significant digits and k/M, never an exponent: 0.2, 150, 19.7k, 1.2M."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}" if x >= 0.01 else "0"


def _legend(vmax: float, unit: str, color: bool, aggr_us: int, gaps: bool) -> Text:
    legend = Text(" heat ")
    legend.append_text(swatches(color))
    legend.append(f" {fmt_rate(vmax / 10 ** LOG_DECADES)}..{fmt_rate(vmax)} {unit} (log)"
                  f" · col {fmt_ns(aggr_us * 1000)}")
    if gaps:
        legend.append(f" · {GAP_MARK} gap")
    return legend.append(" ")


def heat_panel(snaps: list[Snapshot], rec_meta: tuple[int, int | None, MonitoringAttrs], view: View,
               width: int, height: int, color: bool, label: Callable[[str], str]) -> Panel:
    """The heatmap of the newest snapshots that fit ``width`` x ``height`` cells (border included).
    ``label`` turns heatmaps()' panel names into what is shown (thread names)."""
    target_id, pid, attrs = rec_meta
    title = Text(f" {view.name} ", style="bold")
    inner_w, rows = width - 2, height - 4  # border, names line and time line
    if not snaps or rows < 1 or inner_w < 20:
        msg = "waiting for the first aggregation" if not snaps else "terminal too small"
        return Panel(Text(msg, style="dim"), title=title, box=box.ROUNDED, padding=0)
    label_w = len(fmt_addr(max((int(s.end[-1]) for s in snaps if s.nr_regions), default=0)))
    data_w = inner_w - label_w - 1
    panels, cols = _layout(data_w, _sources(snaps[-data_w:], view.by))
    if panels > 1 and _sources(snaps[-cols:], view.by) < panels:  # a source seen only earlier: drop it
        panels, cols = _layout(data_w, _sources(snaps[-cols:], view.by))
    shown = snaps[-cols:]
    rec = TargetRecord(target_id, pid, attrs.sample_interval_us, attrs.aggr_interval_us,
                       attrs.update_interval_us, shown)
    try:
        maps = heatmaps([rec], view.by, (rows, len(shown)), cell="max", recent_cols=RECENT_COLS)
        maps = _busiest(maps, panels)
    except UsageError as err:  # nothing monitored, or no report of that kind yet
        return Panel(Text(str(err), style="dim"), title=title, box=box.ROUNDED, padding=0)
    if view.by is None:  # DAMON's own ceiling: every sample of an aggregation saw an access
        vmax = 1e6 / attrs.sample_interval_us
    else:
        vmax = shared_max(maps)
    body = _grid_text(maps, [label(m.name) for m in maps], vmax, label_w, cols, rows, color, shown)
    gaps = bool(maps[0].axis.breaks)
    subtitle = _legend(vmax if vmax > 0 else 1.0, maps[0].unit, color, attrs.aggr_interval_us, gaps)
    if len(maps) < _sources(shown, view.by):
        title.append(f"· busiest {len(maps)} of {_sources(shown, view.by)} ", style="dim")
    return Panel(body, title=title, subtitle=subtitle, box=box.ROUNDED, padding=0)


class Cells:
    """Lines of pre-styled segments: the grid has thousands of cells, and building them as
    segments directly costs a fraction of rich Text's span bookkeeping."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console, options):
        newline = Segment.line()
        for line in self.lines:
            yield from line
            yield newline

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(0, options.max_width)


_BOLD, _CYAN = Style(bold=True), Style(color="cyan")


def _grid_text(maps: list[Heatmap], names: list[str], vmax: float, label_w: int, cols: int, rows: int,
               color: bool, shown: list[Snapshot]) -> Cells:
    axis = maps[0].axis
    pad = " " * (cols - maps[0].grid.shape[1])  # fewer snapshots than columns so far: newest on the right
    lvs = [levels(m.grid, vmax) for m in maps]
    lines = [[Segment(" " * (label_w + 1)), Segment(" ".join(n[:cols].ljust(cols) for n in names), _BOLD)]]
    lines += [[] for _ in range(rows - axis.rows)]  # a tiny address range has fewer rows than the screen
    breaks = set(axis.breaks)
    cells = [cell(level, color) for level in range(-1, len(PALETTE))]
    for r in range(axis.rows - 1, -1, -1):  # highest address at the top
        line = [Segment(fmt_addr(axis.lo[r]).rjust(label_w), _CYAN if r in breaks else None),
                Segment(GAP_MARK if r in breaks else " ", _DIM)]
        for i, lv in enumerate(lvs):
            line.append(Segment((" " if i else "") + pad))
            for level, run in itertools.groupby(lv[r].tolist()):  # one segment per run
                char, style = cells[level + 1]
                line.append(Segment(char * len(list(run)), style))
        lines.append(line)
    left = f"-{fmt_ns(shown[-1].end_ns - shown[0].start_ns)}"
    span = (pad + left + "now".rjust(max(1, cols - len(pad) - len(left))))[:cols]
    lines.append([Segment(" " * (label_w + 1) + " ".join(span for _ in maps), _DIM)])
    return Cells(lines)
