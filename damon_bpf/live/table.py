"""The hottest regions table: range, size, access rate, age, top CPU and thread, write share, mapping, top
function.

Numbers come from ``damon_bpf.reports.breakdown`` (what ``damon-bpf report breakdown`` prints):
reports of the last few snapshots summed onto the newest snapshot's regions, because a single
aggregation interval holds few page-fault reports.
"""

from __future__ import annotations

from typing import Callable

from rich import box
from rich.panel import Panel
from rich.text import Text

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.mappings import region_label
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.breakdown import RegionShare, breakdown
from damon_bpf.reports.common import fmt_addr, fmt_ns, fmt_size

TABLE_SPAN_S = 2.0  # the table sums the snapshots of this much recent time
WIDE = 96  # inner width from which the range column shows both ends
LEFT = {0, 4, 5, 7, 8}  # left-aligned columns; numbers are right-aligned
THREAD_COL = 5
MAPPING_W = (10, 24)  # the mapping column's widest label: narrow, wide screens
CODE_COL = 8
MIN_CODE = 8  # the code column is cut to this before the thread column gives up width


def _top(shares: dict, name: Callable) -> str:
    if not shares:
        return "-"
    ident, share = next(iter(shares.items()))  # biggest first
    return f"{name(ident)} {share:.0%}"


def _top_code(shares: dict[str, float]) -> str:
    """The top function, its share first: a long name is cut at the column's end, the share stays."""
    if not shares:
        return "-"
    name, share = next(iter(shares.items()))
    return f"{share:.0%} {name}"


def _write_share(r: RegionShare) -> str:
    return f"{r.writes / r.reports:.0%}" if r.reports > 0 else "-"


def table_snapshots(snaps: list[Snapshot], attrs: MonitoringAttrs) -> list[Snapshot]:
    keep = max(1, round(TABLE_SPAN_S * 1e6 / attrs.aggr_interval_us))
    return snaps[-keep:]


def hottest_table(snaps: list[Snapshot], rec_meta: tuple[int, int | None, MonitoringAttrs], width: int,
                  height: int, thread_name: Callable[[int], str]) -> Panel:
    """A bordered table of the hottest regions that fills ``width`` x ``height`` cells."""
    target_id, pid, attrs = rec_meta
    recent = table_snapshots(snaps, attrs)
    rows = height - 3  # border and header
    span = fmt_ns(recent[-1].end_ns - recent[0].start_ns) if recent else "-"
    title = Text(f" hottest regions · last {span} ", style="bold")
    if not recent or rows < 1:
        return Panel(Text("no snapshot yet", style="dim"), title=title, box=box.ROUNDED, padding=0)
    rec = TargetRecord(target_id, pid, attrs.sample_interval_us, attrs.aggr_interval_us,
                       attrs.update_interval_us, recent)
    result = breakdown([rec], top=rows)
    layout = recent[-1]
    ages = dict(zip(layout.start.tolist(), layout.age.tolist()))
    wide = width - 2 >= WIDE
    head = ["range" if wide else "start", "size", "rate", "age", "top cpu", "top thread", "write", "mapping",
            "top code"]
    cells = [head]
    dim = []
    for r in result.regions:
        age = ages.get(r.start)
        cells.append([f"{fmt_addr(r.start)}-{fmt_addr(r.end)}" if wide else fmt_addr(r.start), fmt_size(r.size),
                      f"{r.hz:.3g} Hz", "-" if age is None else fmt_ns(age * attrs.aggr_interval_us * 1000),
                      _top(r.by_cpu, str), _top(r.by_tid, thread_name), _write_share(r),
                      region_label(r.mappings, MAPPING_W[wide]), _top_code(r.functions)])
        dim.append(r.hz <= 0 and r.reports <= 0)
    return Panel(_columns(cells, dim, width - 2), title=title, box=box.ROUNDED, padding=0)


def _columns(cells: list[list[str]], dim: list[bool], width: int) -> Text:
    """Cells in aligned columns, the first row bold, extra width to the thread column (the code column is cut
    first when too narrow). Plain
    padded text: a rich Table measures every cell on every frame, ten times the cost."""
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    spare = width - sum(widths) - (len(widths) - 1)
    if spare < 0:   # long function names give way first
        cut = min(-spare, max(0, widths[CODE_COL] - MIN_CODE))
        widths[CODE_COL] -= cut
        spare += cut
    widths[THREAD_COL] = max(4, widths[THREAD_COL] + spare)  # negative: the thread name is cut
    out = Text(no_wrap=True, overflow="crop")
    for i, row in enumerate(cells):
        line = " ".join(cell.ljust(w)[:w] if c in LEFT else cell.rjust(w)[-w:]
                        for c, (cell, w) in enumerate(zip(row, widths)))
        out.append(line, style="bold" if i == 0 else ("dim" if dim[i - 1] else None))
        if i + 1 < len(cells):
            out.append("\n")
    return out
