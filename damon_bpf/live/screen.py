"""The full screen: header (target, view keys), heatmap, hottest regions table, footer (rates).

Sizes are computed here, so the heatmap knows exactly how many cells it has: 80x24 stacks the
table under the heatmap; wide terminals put it beside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import RenderableType
from rich.layout import Layout
from rich.text import Text

from damon_bpf.live.views import ANSWER_HINTS, VIEWS, View
from damon_bpf.session import cpu_seconds

SIDE_BY_SIDE_COLS = 150  # from this width the table goes beside the heatmap
SIDE_TABLE_COLS = 92
METER_PERIOD_S = 1.0  # footer rates are averaged over about this long


@dataclass
class Sizes:
    heat: tuple[int, int]  # (width, height) of the heatmap panel, border included
    table: tuple[int, int]
    side_by_side: bool


def sizes(width: int, height: int) -> Sizes:
    body = max(4, height - 2)  # header and footer lines
    if width >= SIDE_BY_SIDE_COLS:
        return Sizes((width - SIDE_TABLE_COLS, body), (SIDE_TABLE_COLS, body), True)
    table = min(14, max(5, body // 3))
    return Sizes((width, body - table), (width, table), False)


def compose(header: Text, heat: RenderableType, table: RenderableType, footer: Text, s: Sizes) -> Layout:
    root = Layout()
    body = Layout(name="body")
    root.split_column(Layout(header, size=1), body, Layout(footer, size=1))
    if s.side_by_side:
        body.split_row(Layout(heat), Layout(table, size=s.table[0]))
    else:
        body.split_column(Layout(heat), Layout(table, size=s.table[1]))
    return root


def header(view: View, pid: int | None, comm: str, target: str, paused: bool, width: int,
           answer: str | None = None, answers: bool = False, ppid: int | None = None) -> Text:
    """Target on the left, keys on the right; the target's part is what gets cut to fit."""
    keys = Text(no_wrap=True)
    for v in VIEWS.values():  # the view on screen is highlighted
        keys.append(f" {v.key}", style="bold")
        keys.append(f" {v.hint}", style="reverse" if v is view else None)
    if answers:
        keys.append(" │")
        for key, hint in ANSWER_HINTS.items():   # and the answer shown in the table's place
            keys.append(f" {key}", style="bold")
            keys.append(f" {hint}", style="reverse" if key == answer else None)
    keys.append(" │ p", style="bold")
    keys.append(" pause" if not paused else " PAUSED", style="bold reverse red" if paused else None)
    keys.append(" q", style="bold")
    keys.append(" quit")
    who = Text(no_wrap=True)
    who.append(" damon-bpf ", style="bold reverse")
    who.append(f" pid {pid} {comm}" if pid is not None else " waiting for the target")
    if pid is not None and ppid is not None:
        who.append(f" (parent {ppid})", style="dim")
    if target:
        who.append(f" {target}", style="dim")
    who.append(" │")
    room = width - keys.cell_len
    if who.cell_len > room:
        who = who[len(" damon-bpf "):]  # the badge goes first
        who.truncate(max(0, room), overflow="ellipsis")
    return Text.assemble(who, keys, no_wrap=True, overflow="ellipsis")


def _count(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def placement_parts(placement: dict) -> list[str]:
    """Where the reports went so far (Recorder.accounting): the in-region share, and each other
    counter once it is not zero."""
    placed = ("in_regions", "outside_regions", "late", "unattributed")
    total = sum(placement[k] for k in placed) + placement.get("pending", 0)
    share = 100 * (placement["in_regions"] + placement.get("pending", 0)) / total if total else 100.0
    names = {"outside_regions": "outside", "late": "late", "unattributed": "after exit"}
    return [f"in regions {share:.1f}%"] + [f"{name} {_count(placement[k])}" for k, name in names.items()
                                            if placement[k]]


class Meter:
    """Footer numbers: event rate and the collector's own CPU share over the last second or so."""

    def __init__(self, tracer) -> None:
        self.tracer = tracer
        self.start = self.at = time.monotonic()
        self.cpu_at = cpu_seconds()
        self.delivered_at = 0
        self.events_per_s = 0.0
        self.cpu_share = 0.0
        self.accounting = tracer.accounting()

    def sample(self) -> None:
        now = time.monotonic()
        if now - self.at < METER_PERIOD_S:
            return
        self.accounting = acc = self.tracer.accounting()
        cpu = cpu_seconds()
        self.events_per_s = (acc.delivered - self.delivered_at) / (now - self.at)
        self.cpu_share = (cpu - self.cpu_at) / (now - self.at)
        self.at, self.cpu_at, self.delivered_at = now, cpu, acc.delivered

    def footer(self, regions: int, snapshots: int, output: str | None, placement: dict | None = None,
               width: int = 200) -> Text:
        """One line that fits ``width``: the long spelling when it fits, else the short one, then the least
        needed parts left out (the output file, snapshots, regions, a zero filtered count) until it does."""
        acc = self.accounting
        elapsed = f" {time.monotonic() - self.start:.0f} s"
        # (long, short, may be left out): lost and the in-region share are what a user must never miss
        parts = [(f"{_count(self.events_per_s)} events/s", f"{_count(self.events_per_s)} ev/s", False),
                 (f"lost {_count(acc.lost)}", f"lost {_count(acc.lost)}", False),
                 (f"filtered {_count(acc.filtered)}", f"filt {_count(acc.filtered)}", not acc.filtered),
                 (f"regions {regions}", f"reg {regions}", True),
                 (f"collector CPU {100 * self.cpu_share:.0f}%", f"cpu {100 * self.cpu_share:.0f}%", False)]
        parts += [(p, p.replace("in regions", "in"), False) for p in placement_parts(placement or {})] \
            if placement else []
        parts += [(f"rec {output}", f"rec {output.rsplit('/', 1)[-1]}", True)] if output else []
        parts.append((f"snapshots {snapshots}", f"snaps {snapshots}", True))
        line = _fit(elapsed, parts, width)
        return Text(line, no_wrap=True, overflow="ellipsis", style="red" if acc.lost else "")


def _fit(first: str, parts: list[tuple[str, str, bool]], width: int) -> str:
    for sep, pick in ((" │ ", 0), (" │ ", 1), (" ", 1)):
        shown = list(parts)
        while True:
            line = sep.join([first, *(p[1] if pick else p[0] for p in shown)])
            if len(line) <= width or not any(p[2] for p in shown):
                break
            drop = max(i for i, p in enumerate(shown) if p[2])   # the last optional part goes first
            shown.pop(drop)
        if len(line) <= width:
            return line
    return line
