"""The two displays ``damon-bpf live`` drives from the session's tick (every 10-50 ms, same thread
as the collector, so drawing is throttled and cached):

- ``LiveScreen``: the full-screen view on a terminal, with keys;
- ``SnapshotPrinter``: one line per aggregation snapshot when the output is not a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.live.answers import ANSWERS, answer_panel
from damon_bpf.live.heat import heat_panel
from damon_bpf.live.keys import KeyReader
from damon_bpf.live.lines import snapshot_line
from damon_bpf.live.model import LiveModel
from damon_bpf.live.screen import Meter, compose, header, sizes
from damon_bpf.live.table import hottest_table
from damon_bpf.live.views import VIEWS
from damon_bpf.reports.recent import RecentRecords

KEY_FRAME_S = 0.05  # a key redraws at once, but not faster than this (keys held down)
FOOTER_PERIOD_S = 1.0  # with nothing new to show, the footer still moves this often
TABLE_PERIOD_S = 1.0  # the table sums the last 2 s of snapshots: redoing it each frame shows little
DRAW_BUDGET = 0.1  # drawing may take this share of a core at most (it shares the collector's thread)


def wants_color(console: Console) -> bool:
    """Colours unless NO_COLOR is set (non-empty, as no-color.org says) or the terminal has none."""
    return os.environ.get("NO_COLOR", "") == "" and console.color_system is not None


def _comm(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() if pid else ""
    except OSError:
        return ""


def _ppid(pid: int | None) -> int | None:
    """The parent of ``pid`` from /proc/PID/stat (its 4th field, after the parenthesised comm)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) if pid else None
    except (OSError, ValueError, IndexError):
        return None


class LiveScreen:
    """The full-screen view. ``on_tick`` reads keys and redraws when something changed, at most
    ``refresh_hz`` times a second; the heatmap and table are rebuilt only when their snapshots,
    the view or the terminal size changed."""

    def __init__(self, model: LiveModel, attrs: MonitoringAttrs, tracer, console: Console,
                 stop: Callable[[str], None], view: str = "a", refresh_hz: float = 4.0,
                 output: str | None = None, keys: KeyReader | None = None,
                 placement: Callable[[], dict] | None = None, recent: RecentRecords | None = None) -> None:
        self.model, self.attrs, self.console, self.stop = model, attrs, console, stop
        self.view = VIEWS[view]
        self.period = 1.0 / refresh_hz
        self.output = output
        self.placement = placement   # where the reports went so far, for the footer (Recorder.accounting)
        self.recent = recent   # the live aggregation the answer keys (d, s, m) read
        self.answer: str | None = None   # the answer shown in the table's place
        self.color = wants_color(console)
        self.keys = keys or KeyReader()
        self.meter = Meter(tracer)
        self.live = Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                         redirect_stderr=False)
        self.next_frame = 0.0
        self.next_footer = 0.0
        self.dirty = True
        self._body_key: tuple = ()
        self._body: tuple = ()
        self._table: Panel | None = None
        self._table_key: tuple = ()
        self._table_due = 0.0
        self._comms: dict[int | None, str] = {}
        self._ppids: dict[int | None, int | None] = {}

    # -- lifetime: the terminal is given back whatever ends the run --------------------------------

    def __enter__(self) -> "LiveScreen":
        self.keys.__enter__()
        try:
            self.live.start()
        except BaseException:
            self.keys.restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.live.stop()
        finally:
            self.keys.restore()

    # -- driven by the session ---------------------------------------------------------------------

    def on_tick(self, _now_ns: int) -> None:
        for key in self.keys.read():
            self.on_key(key)
        now = time.monotonic()
        if now < self.next_frame:
            return
        size = (self.console.size.width, self.console.size.height)
        if not (self.dirty or now >= self.next_footer or self._body_key[:3] != (self.model.version, self.view, size)):
            return
        cpu = time.process_time()
        self.draw(size)
        self.dirty = False
        took = time.process_time() - cpu  # CPU, not wall time: on a busy machine waiting is not cost
        self.next_frame = now + max(self.period, took / DRAW_BUDGET)  # a huge target: draw less often
        self.next_footer = now + FOOTER_PERIOD_S

    def on_key(self, key: str) -> None:
        key = key.lower()
        if key == "q":
            self.stop("quit")
        elif key in VIEWS and VIEWS[key] is not self.view:
            self.view = VIEWS[key]
        elif key == "p":
            self.model.toggle_pause()
        elif key == "n":
            self.model.next_target()
        elif key in ANSWERS and self.recent is not None:   # the same key again: back to the hottest regions
            self.answer = None if self.answer == key else key
        else:
            return
        self.dirty = True
        self.next_frame = min(self.next_frame, time.monotonic() + KEY_FRAME_S)

    # -- drawing -----------------------------------------------------------------------------------

    def draw(self, size: tuple[int, int]) -> None:
        self.meter.sample()
        heat, table, s = self.body(size)
        window = self.model.window()
        pid = window.pid if window else None
        self._comms[pid] = _comm(pid) or self._comms.get(pid, "")  # re-read: it changes at exec
        ids = sorted(self.model.targets)
        which = f"[{ids.index(window.target_id) + 1}/{len(ids)}, n: next]" if window and len(ids) > 1 else ""
        self._ppids[pid] = _ppid(pid) or self._ppids.get(pid)
        top = header(self.view, pid, self._comms[pid], which, self.model.paused, size[0],
                     self.answer, self.recent is not None, self._ppids[pid])
        snaps = self.model.shown(1)
        regions = snaps[-1].nr_regions if snaps else 0
        footer = self.meter.footer(regions, window.seen if window else 0, self.output,
                                   self.placement() if self.placement else None, size[0])
        self.live.update(compose(top, heat, table, footer, s), refresh=True)

    def body(self, size: tuple[int, int]) -> tuple:
        """Heatmap and table panels, rebuilt only when what they show changed."""
        key = (self.model.version, self.view, size, self.color, self.model.current, self.answer)
        if key == self._body_key:
            return self._body
        s = sizes(*size)
        window = self.model.window()
        meta = (window.target_id, window.pid, self.attrs) if window else (0, None, self.attrs)
        snaps = self.model.shown(s.heat[0])  # never more snapshots than columns
        heat = heat_panel(snaps, meta, self.view, *s.heat, self.color, self._panel_label)
        # The table sums the last seconds: once a second is enough, unless what it shows changed.
        table_key = (key[2:], self.model.paused)
        now = time.monotonic()
        if table_key != self._table_key or now >= self._table_due:
            if self.answer is not None and self.recent is not None:
                self._table = answer_panel(self.answer, self.recent, window.target_id if window else None, *s.table)
            else:
                self._table = hottest_table(snaps, meta, *s.table, self.model.thread_label)
            self._table_key, self._table_due = table_key, now + TABLE_PERIOD_S
        self._body_key, self._body = key, (heat, self._table, s)
        return self._body

    def _panel_label(self, name: str) -> str:
        # heatmaps() names per-thread panels "thread <tid>": add the thread's name
        if name.startswith("thread "):
            return "thread " + self.model.thread_label(int(name.split()[1]))
        return name


class SnapshotPrinter:
    """Prints each snapshot as it closes; stops the run quietly if the reader goes away. ``comm_of(target_id)``
    names the target's process (``RecentRecords.comm``: the recorder's meta, which outlives the process)."""

    def __init__(self, origin_ns: int, stop: Callable[[str], None], stream: TextIO = sys.stdout,
                 comm_of: Callable[[int], str | None] | None = None) -> None:
        self.origin_ns, self.stop, self.stream = origin_ns, stop, stream
        self.comm_of = comm_of
        self.closed = False

    def __enter__(self) -> "SnapshotPrinter":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def on_snapshot(self, target_id: int, pid: int, snapshot: Snapshot) -> None:
        if self.closed:
            return
        try:
            comm = self.comm_of(target_id) if self.comm_of is not None else None
            self.stream.write(snapshot_line(target_id, pid, snapshot, self.origin_ns, comm) + "\n")
            self.stream.flush()  # a reader (tail -f, a test) sees each snapshot as it closes
        except BrokenPipeError:
            self.closed = True
            # Python would fail again flushing stdout at exit: point it at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            self.stop("output-closed")

    def on_tick(self, _now_ns: int) -> None:
        pass
