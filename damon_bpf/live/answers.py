"""The answers in the live view: the dirty rate per target (d), the threads that share memory (s) and the
NUMA placement (m), each computed by the offline report's own function (``damon_bpf.reports``) over the
live aggregation (``reports.recent.RecentRecords``: the last minute of snapshots), shown in the table's place.
"""

from __future__ import annotations

from typing import Callable

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from damon_bpf.errors import DamonBpfError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import dirty_rate, numa, sharing
from damon_bpf.reports.common import fmt_ns
from damon_bpf.reports.recent import RecentRecords


def _dirty(records: list[TargetRecord], _target_id: int, rows: int) -> RenderableType:
    return dirty_rate.table(dirty_rate.dirty_rate(records))


def _sharing(records: list[TargetRecord], target_id: int, rows: int) -> RenderableType:
    return sharing.table(sharing.sharing(records, target_id=target_id), top=max(1, rows))


def _numa(records: list[TargetRecord], target_id: int, rows: int) -> RenderableType:
    return numa.table(numa.numa(records, target_id), top=max(1, rows))


# key: (title, the report's function over the recent records of every target, the one on screen, rows)
ANSWERS: dict[str, tuple[str, Callable[[list[TargetRecord], int, int], RenderableType]]] = {
    "d": ("dirty rate per target", _dirty),
    "s": ("threads sharing memory", _sharing),
    "m": ("NUMA placement", _numa),
}


def answer_panel(key: str, recent: RecentRecords, target_id: int | None, width: int, height: int) -> Panel:
    """The answer of ``key`` over the recent snapshots, in a bordered panel of ``width`` x ``height``."""
    name, compute = ANSWERS[key]
    records = recent.records()
    mine = next((r for r in records if r.target_id == target_id), None)
    span = fmt_ns(mine.snapshots[-1].end_ns - mine.snapshots[0].start_ns) if mine else "-"
    title = Text(f" {name} · last {span} · {key} again: hottest regions ", style="bold")
    body: RenderableType
    if mine is None or target_id is None:
        body = Text("no snapshot yet", style="dim")
    else:
        try:
            body = compute(records, target_id, height - 6)   # border, title, header, caption
        except DamonBpfError as err:   # e.g. the process is gone: said in the panel, never a crash
            body = Text(str(err), style="dim")
    return Panel(Group(body), title=title, box=box.ROUNDED, padding=0, width=width, height=height)
