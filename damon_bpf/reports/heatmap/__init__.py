"""Access heatmap: time on x, address on y, heat = access frequency averaged over each cell.

A cell's heat is computed like ``damo report heatmap``: every region of every snapshot adds
``rate x overlapping time x overlapping bytes``, and the sum is divided by the cell's time x bytes,
so the heat is the average rate (Hz) over the cell. Cells no region ever covered are NaN.
With ``cell="max"`` each row is computed as eight finer ones and shows the hottest of them, so a
small hot spot inside a big cold cell keeps its colour (what ``live`` shows).

Unlike damo, the default address axis is made of the spans that were ever accessed (plus padding):
cold gaps in between are skipped and marked, so a small hot spot far from a big one still gets
rows, and colours use a log scale by default, so a cell with any access is never drawn black.

One module per concern: ``axis`` (address rows, time columns), ``grid`` (panels and each cell's
mean), ``pooling`` (hottest of finer rows) and ``render`` (raw text, terminal cells and legend, PNG);
the live view reuses ``render``'s cells and legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.heatmap.axis import AddressAxis
from damon_bpf.reports.heatmap.grid import Heatmap, mean_heatmaps
from damon_bpf.reports.heatmap.pooling import pool_rows
from damon_bpf.reports.heatmap.render import (LOG_DECADES, MAPPING_COLS, PALETTE, PLAIN_RAMP, cell, levels, raw_text,
                                              render, shared_max, swatches, write_png)

CELLS = ("mean", "max")
OVERSAMPLE = 8  # --cell max: finer rows computed per shown row, the hottest of them shown
MAX_FINE_ROWS = 400  # the cost is in the regions, not the rows, but bounded all the same


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
        maps = mean_heatmaps(records, by, (fine, cols), address_range, time_range, target_id)
        return pool_rows(maps, rows, recent_cols)
    return mean_heatmaps(records, by, resol, address_range, time_range, target_id)


def heatmap(records: list[TargetRecord], resol: tuple[int, int] = (30, 80),
            address_range: tuple[int, int] | None = None,
            time_range: tuple[int, int] | None = None, target_id: int | None = None) -> Heatmap:
    """The access-frequency heatmap (Hz) of one target; see ``heatmaps``."""
    return heatmaps(records, None, resol, address_range, time_range, target_id)[0]


def to_png(records: list[TargetRecord], path: str, by: str | None = None,
           resol: tuple[int, int] = (200, 400), address_range: tuple[int, int] | None = None,
           time_range: tuple[int, int] | None = None, target_id: int | None = None,
           scale: str = "log", cell: str = "mean", image_format: str | None = None) -> None:
    """Draw the heatmaps (one per cpu / thread / kind with ``by``) side by side into ``path``."""
    write_png(heatmaps(records, by, resol, address_range, time_range, target_id, cell), path, scale, image_format)


def to_json(maps: list[Heatmap]) -> dict:
    """The heatmaps as plain numbers: rows (address bounds, mapping), column edges (ns from the record's start),
    and per panel its grid (rows x columns, lowest address first; null = not monitored)."""
    first = maps[0]
    axis = first.axis
    names: Sequence[str | None] = axis.names or [None] * axis.rows
    return {"target_id": first.target_id, "pid": first.pid, "comm": first.comm, "ppid": first.ppid,
            "unit": first.unit,
            "rows": [{"start": lo, "end": hi, "mapping": name} for lo, hi, name in zip(axis.lo, axis.hi, names)],
            "gap_before_rows": list(axis.breaks),
            "time_edges_ns": [int(t) - first.origin_ns for t in first.time_edges_ns],
            "panels": [{"name": m.name, "unit": m.unit,
                        "grid": [[None if math.isnan(v) else v for v in row] for row in m.grid.tolist()]}
                       for m in maps]}


__all__ = ["CELLS", "LOG_DECADES", "MAPPING_COLS", "PALETTE", "PLAIN_RAMP", "AddressAxis", "Heatmap", "cell", "heatmap",
           "heatmaps", "levels", "pool_rows", "raw_text", "render", "shared_max", "swatches", "to_json", "to_png"]
