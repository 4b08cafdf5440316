"""`damon-bpf live` end to end: the installed command, real BPF, a real terminal (tmux).

Each terminal test starts the command in a detached tmux server of its own at a fixed size, reads the
screen with capture-pane, presses keys with send-keys, and checks the exit status and the terminal
state (alternate screen off, cbreak undone) that the shell sees afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DAMON_BPF

pytestmark = pytest.mark.bpf

HOT_KIB, COLD_KIB = 256, 4096
AGGR_S = 0.1   # DAMON's default aggregation interval, live's too
PLAIN_HEAT = ".,:-=+*#%@"  # damon_bpf.reports.heatmap.PLAIN_RAMP: level 0 .. 9
ROW = re.compile(r"^│(0x[0-9a-f]+)(.)(.*?)│")  # a heatmap row: address label, gap mark, cells


class Tmux:
    """A private tmux server (its own socket, no config) holding one shell at a fixed size."""

    def __init__(self, tmp: Path, width: int, height: int) -> None:
        self.socket = f"damon-bpf-live-test-{os.getpid()}-{time.monotonic_ns()}"
        self.tmp = tmp
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                 "bash --norc --noprofile")
        self.run("set-option", "-g", "status", "off")  # the pane gets every line of the window

    def run(self, *args: str, timeout: float = 10) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=timeout).stdout

    def type(self, line: str) -> None:
        self.run("send-keys", "-t", "t", "-l", line)
        self.run("send-keys", "-t", "t", "Enter")

    def key(self, key: str) -> None:
        self.run("send-keys", "-t", "t", key)

    def screen(self, escapes: bool = False) -> list[str]:
        return self.run("capture-pane", "-p", "-t", "t", *(["-e"] if escapes else [])).splitlines()

    def show(self, name: str) -> str:
        return self.run("display-message", "-p", "-t", "t", f"#{{{name}}}").strip()

    def wait_for(self, channel: str, timeout: float) -> None:
        self.run("wait-for", channel, timeout=timeout)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{self.socket}").unlink(missing_ok=True)  # tmux leaves it behind


@dataclass
class LiveRun:
    tmux: Tmux
    dir: Path

    def info(self) -> dict:
        return json.loads((self.dir / "info.json").read_text().splitlines()[0])

    def hot(self) -> tuple[int, int]:
        t = next(t for t in self.info()["threads"] if t["name"] == "hot")
        return t["start"], t["end"]

    def finish(self, timeout: float = 15) -> tuple[int, str, str]:
        """Exit status, `stty -a` right after, and stderr of the run."""
        self.tmux.wait_for("done", timeout)
        return (int((self.dir / "rc").read_text()), (self.dir / "stty").read_text(),
                (self.dir / "stderr").read_text())


@pytest.fixture
def live_in_tmux(accessgen, tmp_path):
    """Start `damon-bpf live ARGS -- accessgen (hot written range, cold read-once range)` in tmux."""
    servers = []

    def start(width: int, height: int, *args: str, color: bool = False, duration: float = 10) -> LiveRun:
        tmux = Tmux(tmp_path, width, height)
        servers.append(tmux)
        workload = (f"exec {shlex.quote(accessgen)} --duration {duration} hot:0:w:{HOT_KIB}:0 "
                    f"cold:1:r:{COLD_KIB}:1 > info.json")
        env = "" if color else "NO_COLOR=1 "
        script = tmp_path / "run.sh"
        script.write_text(
            f"cd {shlex.quote(str(tmp_path))}\n"
            f"{env}{shlex.quote(DAMON_BPF)} live {' '.join(map(shlex.quote, args))} "
            f"-- sh -c {shlex.quote(workload)} 2> stderr\n"
            "echo $? > rc\n"
            "stty -a > stty\n"
            f"tmux -L {tmux.socket} wait-for -S done\n")
        # sourced, so the pane's own shell runs it: its tty is the one live must restore
        tmux.type(f"source {shlex.quote(str(script))}")
        return LiveRun(tmux, tmp_path)

    yield start
    for tmux in servers:
        tmux.close()


def wait_screen(run: LiveRun, predicate, timeout: float = 8, escapes: bool = False) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        screen = run.tmux.screen(escapes)
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            stderr = (run.dir / "stderr").read_text() if (run.dir / "stderr").exists() else ""
            raise AssertionError("screen never matched:\n" + "\n".join(screen) + "\nstderr:\n" + stderr)
        time.sleep(0.2)


def heat_lines(screen: list[str]) -> list[str]:
    """The heatmap's rows as drawn (not the table's, which also start with addresses)."""
    panel = screen[:next(i for i, line in enumerate(screen) if line.startswith("╰"))]
    return [line for line in panel if ROW.match(line)]


def heat_rows(screen: list[str]) -> list[tuple[int, int, str]]:
    """(low address, high address, cells) of each heatmap row, highest address first. A row ends
    where the row above starts, except above a skipped gap (marked ┄), where its size is assumed to
    be that of the row below it."""
    found = [(int(m.group(1), 16), m.group(2), m.group(3)) for m in map(ROW.match, heat_lines(screen))]
    rows = []
    for i, (lo, _, cells) in enumerate(found):
        above = found[i - 1] if i else None
        if above is None or above[1] == "┄":  # top of a span: guess from the row below
            below = found[i + 1][0] if i + 1 < len(found) and found[i][1] != "┄" else lo - 4096
            hi = lo + (lo - below)
        else:
            hi = above[0]
        rows.append((lo, hi, cells))
    return rows


def level(cells: str) -> int:
    """Hottest plain-character level among cells (-1 when none is monitored)."""
    return max((PLAIN_HEAT.index(c) for c in cells if c in PLAIN_HEAT), default=-1)


def panel_cells(cells: str, panel: int, panels: int) -> str:
    width = (len(cells) - (panels - 1)) // panels
    return cells[panel * (width + 1):panel * (width + 1) + width]


def recent(cells: str, n: int = 8) -> str:
    return cells.rstrip()[-n:]


def elapsed(screen: list[str]) -> int:
    """Seconds shown at the start of the footer (0 before the first frame)."""
    m = re.match(r"\s*(\d+) s │", screen[-1]) if screen else None
    return int(m.group(1)) if m else 0


def unwrapped(screen: list[str]) -> str:
    """The screen's lines joined by one space, box borders and runs of blanks dropped: a caption rich wrapped at
    its panel's width reads as one line again (where it wraps depends on how many digits the pids have)."""
    return re.sub(r"\s+", " ", " ".join(line.strip().strip("│").strip() for line in screen))


def title(screen: list[str]) -> str:
    return screen[1]


def assert_restored(run: LiveRun, rc: int, stty: str) -> None:
    assert rc == 0
    assert re.search(r"(?<!-)icanon\b", stty) and re.search(r"(?<!-)echo\b", stty), stty
    assert run.tmux.show("alternate_on") == "0"  # back from the alternate screen
    assert run.tmux.show("cursor_flag") == "1"  # cursor shown again


def test_heatmap_and_table_show_the_hot_range_views_switch_and_q_quits(live_in_tmux):
    run = live_in_tmux(120, 40)
    # several snapshots after the workload started: the hot rows have recent heat
    screen = wait_screen(run, lambda s: elapsed(s) >= 3, timeout=12)
    assert len(screen) == 40 and all(len(line) <= 120 for line in screen)
    assert "all accesses" in title(screen) and "q quit" in screen[0] and "accessgen" in screen[0]
    assert "events/s" in screen[-1] and "collector CPU" in screen[-1]
    hot_lo, hot_hi = run.hot()
    rows = heat_rows(screen)
    assert len(rows) >= 15  # a 40-line terminal gives the heatmap most of its lines
    hot = [recent(c) for lo, hi, c in rows if lo < hot_hi and hi > hot_lo]
    cold = [recent(c) for lo, hi, c in rows if not (lo < hot_hi and hi > hot_lo)]
    assert hot, f"no heatmap row covers the hot range {hot_lo:#x}-{hot_hi:#x}"
    assert level("".join(hot)) >= PLAIN_HEAT.index("#")  # hot range: near DAMON's maximum rate
    assert level("".join(hot)) >= level("".join(cold))  # and nothing is hotter

    # the table's hottest region overlaps the hot range, is all writes, by the "hot" thread, in anonymous memory
    header = next(i for i, line in enumerate(screen) if line.startswith("│range"))
    first = screen[header + 1]
    start, end = (int(a, 16) for a in re.match(r"│(0x[0-9a-f]+)-(0x[0-9a-f]+)", first).groups())
    assert start < hot_hi and end > hot_lo, first
    # all writes, the mapping, then the top code: one of accessgen's own functions (its name may be cut)
    assert "hot 100%" in first and "top code" in screen[header]
    assert re.search(r"\s100% +anon +\d+% \w+\s*│$", first), first

    run.tmux.key("t")
    screen = wait_screen(run, lambda s: "by thread" in title(s))
    hot_tid = next(t["tid"] for t in run.info()["threads"] if t["name"] == "hot")
    assert f"thread {hot_tid} hot" in screen[2]
    run.tmux.key("c")
    screen = wait_screen(run, lambda s: "by CPU" in title(s))
    assert "cpu 0" in screen[2]
    run.tmux.key("w")
    screen = wait_screen(run, lambda s: "reads vs writes" in title(s))
    assert re.search(r"reads +writes", screen[2])
    rows = heat_rows(screen)
    hot = [c for lo, hi, c in rows if lo < hot_hi and hi > hot_lo]
    assert level("".join(recent(panel_cells(c, 1, 2)) for c in hot)) >= PLAIN_HEAT.index("#")  # writes
    assert level("".join(recent(panel_cells(c, 0, 2)) for c in hot)) <= 0  # no reads there

    run.tmux.key("q")
    rc, stty, stderr = run.finish()
    assert_restored(run, rc, stty)
    assert "ended: quit" in stderr and "Traceback" not in stderr


def test_80x24_colour_pause_and_ctrl_c(live_in_tmux):
    run = live_in_tmux(80, 24, color=True)
    coloured = wait_screen(run, lambda s: elapsed(s) >= 3, timeout=12, escapes=True)
    screen = [re.sub(r"\x1b\[[0-9;:]*m", "", line) for line in coloured]
    assert len(screen) == 24
    assert screen[0].rstrip().endswith("q quit")  # the header fits 80 columns
    assert "all accesses" in title(screen) and "hottest regions" in "\n".join(screen)
    assert len(heat_rows(screen)) >= 8
    # colour: cells are background colours, not characters; the hot rows are coloured
    hot_lo, hot_hi = run.hot()
    rows = heat_rows(screen)
    assert all(set(cells) <= set(" ·") for _, _, cells in rows)
    backgrounds = re.compile(r"\x1b\[[0-9;]*?((?:4|10)[0-7]|48;[25];[0-9;]+)m")
    drawn = [coloured[screen.index(line)] for line in heat_lines(screen)]
    hot = [drawn[i] for i, (lo, hi, _) in enumerate(rows) if lo < hot_hi and hi > hot_lo]
    assert hot and all(backgrounds.search(line) for line in hot)
    assert len({m.group(1) for line in drawn for m in backgrounds.finditer(line)}) >= 3  # a colour scale

    run.tmux.key("p")
    paused = wait_screen(run, lambda s: "PAUSED" in s[0])
    time.sleep(1.5)
    later = run.tmux.screen()
    assert later[1:-1] == paused[1:-1]  # heatmap and table frozen...
    assert later[-1] != paused[-1]  # ...while the footer (the recording) goes on
    run.tmux.key("p")
    wait_screen(run, lambda s: "PAUSED" not in s[0] and s[1:-1] != paused[1:-1])

    run.tmux.key("C-c")
    rc, stty, stderr = run.finish()
    assert_restored(run, rc, stty)
    assert "ended: interrupted" in stderr and "Traceback" not in stderr


def test_target_exit_ends_and_restores_the_terminal(live_in_tmux):
    run = live_in_tmux(100, 30, "--view", "thread", duration=2)
    wait_screen(run, lambda s: "by thread" in title(s), timeout=10)
    rc, stty, stderr = run.finish(timeout=15)
    assert_restored(run, rc, stty)
    assert "ended: targets-exited" in stderr and "Traceback" not in stderr


# Any failure while the screen is up (here: drawing, made to fail after a few frames) must still
# give the terminal back and end the target.
_FAILING_DRAW = """
import sys
import damon_bpf.live.app as app
real, frames = app.heat_panel, []
def failing(*args, **kwargs):
    frames.append(1)
    if len(frames) > 3:
        raise RuntimeError("injected drawing failure")
    return real(*args, **kwargs)
app.heat_panel = failing
sys.argv[0] = "damon-bpf"
from cli.main import main
main()
"""


def test_an_error_while_drawing_restores_the_terminal(accessgen, tmp_path):
    tmux = Tmux(tmp_path, 80, 24)
    try:
        (tmp_path / "failing.py").write_text(_FAILING_DRAW)
        python = str(Path(DAMON_BPF).parent / "python")
        workload = f"exec {shlex.quote(accessgen)} --duration 30 hot:0:w:64:0 > /dev/null"
        tmux.type(f"cd {shlex.quote(str(tmp_path))}; {shlex.quote(python)} failing.py live -- "
                  f"sh -c {shlex.quote(workload)} 2> stderr; echo $? > rc; "
                  f"stty -a > stty; tmux -L {tmux.socket} wait-for -S done")
        tmux.wait_for("done", timeout=20)  # long before the workload's 30 s: the target was ended
        assert int((tmp_path / "rc").read_text()) == 70   # an internal error: one line, no traceback
        stderr = (tmp_path / "stderr").read_text()
        assert "internal error" in stderr and "injected drawing failure" in stderr and "Traceback" not in stderr
        stty = (tmp_path / "stty").read_text()
        assert re.search(r"(?<!-)icanon\b", stty) and re.search(r"(?<!-)echo\b", stty), stty
        assert tmux.show("alternate_on") == "0" and tmux.show("cursor_flag") == "1"
    finally:
        tmux.close()


def test_not_a_terminal_prints_snapshot_lines_and_records(accessgen, tmp_path):
    record = tmp_path / "live.data"
    result = subprocess.run([DAMON_BPF, "live", "-o", str(record), "--", accessgen, "--duration", "2",
                             f"hot:0:w:{HOT_KIB}:0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # the workload shares stdout (its ground truth first, its threads' passes at its end); snapshot lines
    # may come before its first line
    info, done = (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))
    hot, passes = info["threads"][0], done["threads"][0]
    lines = [dict(f.split("=", 1) for f in line.split()) for line in result.stdout.splitlines()
             if line.startswith("t=")]
    assert {"t", "target", "pid", "regions", "accessed", "reports", "reads", "writes", "hottest"} <= set(lines[0])
    assert all(int(f["pid"]) == info["pid"] for f in lines)
    # One line per 100 ms aggregation from the run's start (t is the window's end, 3 decimals), none missed
    # or repeated, the last one the partial window the workload's exit closed. How many there are follows
    # from how long the run lasted: the workload's 2 s of passes plus its start-up and exit, which a loaded
    # machine stretches; at least the 2 s of passes are covered (checked against the record below).
    times = [float(f["t"]) for f in lines]
    assert times[:-1] == pytest.approx([AGGR_S * (i + 1) for i in range(len(times) - 1)], abs=0.0015), times
    assert times[-2] < times[-1] <= times[-2] + AGGR_S + 0.0015, times
    assert len(lines) >= 2.0 / AGGR_S
    busy = [f for f in lines if f["hottest"] != "-" and int(f["writes"]) > 0]
    assert busy
    # Once DAMON's regions have settled the hottest covers the hot range; the last snapshot is left out: it
    # can hold only the exit path's writes (stdout, free) after the hot loop's final pass.
    for f in busy[len(busy) // 2:-1]:
        lo, hi = (int(a, 16) for a in f["hottest"].split("-"))
        assert lo < hot["end"] and hi > hot["start"]
    assert "\x1b[" not in result.stdout  # no screen control codes in a pipe

    from damon_bpf.recordfile import read_record

    (rec,) = read_record(str(record))
    assert rec.pid == info["pid"] and len(rec.snapshots) == len(lines)
    assert rec.snapshots[0].start_ns <= passes["go_ns"] and rec.snapshots[-1].end_ns >= passes["done_ns"]
    assert sum(int(s.writes.sum()) for s in rec.snapshots) == sum(int(f["writes"]) for f in lines)
    assert rec.meta["accounting"]["reason"] == "targets-exited"
    acc = rec.meta["accounting"]  # every delivered report is in one counter, and the last line says so
    assert acc["in_regions"] + acc["outside_regions"] + acc["late"] + acc["unattributed"] == acc["delivered"] > 0
    assert acc["pending"] == acc["unaccounted"] == 0
    assert f"of {acc['delivered']} delivered: {acc['in_regions']} in regions" in result.stderr
    assert sum(int(s.nr_reports.sum()) for s in rec.snapshots) == acc["in_regions"]


# ---------------------------------------------------------------------------------------------
# The pieces on their own (no BPF, fast): layout at many sizes, row pooling, keys on a real pty.


def _snapshots(n: int, regions: int, seed: int = 1) -> list:
    import numpy as np

    from damon_bpf.core.snapshot import Snapshot

    rng = np.random.default_rng(seed)
    base, span = 0x7F0000000000, 50000
    out = []
    for i in range(n):
        cuts = np.sort(rng.choice(np.arange(1, span), regions - 1, replace=False)) * 4096 + base
        start = np.concatenate([[base], cuts]).astype(np.uint64)
        end = np.concatenate([cuts, [base + span * 4096]]).astype(np.uint64)
        reports = rng.integers(0, 40, regions)
        writes = reports // 2
        out.append(Snapshot(i * 100_000_000, (i + 1) * 100_000_000, start, end, rng.integers(0, 21, regions),
                            rng.integers(0, 9, regions), reports, writes, reports - writes,
                            {0: reports // 2, 1: reports - reports // 2},
                            {tid: reports // 4 for tid in (11, 12, 13, 14)},
                            functions=[{"__memset_avx2_unaligned_erms": int(r)} if r else {} for r in reports]))
    return out


@pytest.mark.parametrize("color", [True, False])
def test_the_screen_fills_every_terminal_size_exactly(color):
    import io

    from rich.console import Console

    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.live.app import LiveScreen
    from damon_bpf.live.model import LiveModel
    from damon_bpf.live.views import VIEWS

    class Accounting:
        delivered = lost = filtered = 0

    class Tracer:
        def accounting(self):
            return Accounting()

    model = LiveModel()
    for snap in _snapshots(250, 300):
        model.on_snapshot(0, os.getpid(), snap)
    for width, height in [(80, 24), (120, 40), (200, 60), (60, 16), (150, 24), (300, 80)]:
        console = Console(file=io.StringIO(), width=width, height=height, force_terminal=True,
                          color_system="truecolor" if color else None)
        screen = LiveScreen(model, MonitoringAttrs(), Tracer(), console, lambda reason: None)
        screen.color = color
        for key in "actw":
            screen.on_key(key)
            screen.draw((width, height))
            lines = console.render_lines(screen.live.renderable, console.options.update(height=height), pad=False)
            assert len(lines) == height
            text = ["".join(seg.text for seg in line) for line in lines]
            assert all(len(line) == width for line in text), (width, height, key)
            assert VIEWS[key].name in text[1] and "q quit" in text[0] and "events/s" in text[-1]
            if width >= 80:  # at least this much heatmap on a standard terminal
                assert sum(line.startswith("│0x") for line in text) >= 8


def test_keys_come_one_by_one_without_echo_and_the_terminal_is_restored():
    import pty
    import termios

    from damon_bpf.live.keys import KeyReader

    controller, terminal = pty.openpty()
    try:
        stream = os.fdopen(terminal, "r", closefd=False)
        before = termios.tcgetattr(terminal)
        with KeyReader(stream) as keys:
            assert keys.read() == ""  # nothing pressed: no blocking
            mode = termios.tcgetattr(terminal)
            assert not mode[3] & (termios.ICANON | termios.ECHO) and mode[3] & termios.ISIG
            assert not mode[0] & termios.IXON  # Ctrl-S must not freeze the screen and the collector
            os.write(controller, b"t\x1b[Aq")  # arrow up between two keys
            time.sleep(0.05)
            assert keys.read() == "tq"
        assert termios.tcgetattr(terminal) == before
    finally:
        os.close(controller)
        os.close(terminal)


def test_footer_says_where_the_reports_went():
    from damon_bpf.live.screen import placement_parts

    placement = {"in_regions": 9990, "outside_regions": 0, "late": 7, "unattributed": 3, "pending": 0}
    assert placement_parts(placement) == ["in regions 99.9%", "late 7", "after exit 3"]
    assert placement_parts({**placement, "late": 0, "unattributed": 0}) == ["in regions 100.0%"]
    assert placement_parts({k: 0 for k in placement}) == ["in regions 100.0%"]


def test_answer_keys_show_dirty_rate_sharing_and_numa_from_the_live_aggregation(live_in_tmux):
    """d, s and m put the offline reports' answers (reports.dirty_rate, sharing, numa over the last snapshots)
    in the table's place; the key again brings the hottest regions back. With --apply on this one-node host
    the end says plainly that there is nothing to move."""
    run = live_in_tmux(120, 40, "--apply")
    wait_screen(run, lambda s: elapsed(s) >= 3, timeout=12)
    pid = run.info()["pid"]
    run.tmux.key("d")
    screen = wait_screen(run, lambda s: any("dirty rate per target" in line for line in s))
    assert f"move first: target 0 (pid {pid} " in unwrapped(screen), "\n".join(screen)
    assert any(re.search(rf"│\s+0\s+{pid}\s+\S+\s+\d", line) for line in screen), "\n".join(screen)
    run.tmux.key("s")
    screen = wait_screen(run, lambda s: any("threads sharing memory" in line for line in s))
    assert any("suggested groups" in line for line in screen)
    run.tmux.key("m")
    screen = wait_screen(run, lambda s: any("NUMA placement" in line for line in s))
    # the title wraps at the table's width
    assert re.search(rf"target 0 \(pid {pid} accessgen, parent \d+\): nothing to move: this host has one",
                     unwrapped(screen)), "\n".join(screen)
    run.tmux.key("m")
    wait_screen(run, lambda s: any(" hottest regions · last" in line for line in s))
    run.tmux.key("q")
    rc, stty, stderr = run.finish()
    assert_restored(run, rc, stty)
    assert "--apply: nothing to move: this host has one NUMA node, every page is local" in stderr
    assert "Traceback" not in stderr


def test_footer_fits_80_and_120_columns_and_keeps_lost_and_the_share():
    from types import SimpleNamespace

    from damon_bpf.live.screen import Meter
    from damon_bpf.sources.tracer import Accounting

    rejected = SimpleNamespace(spec="cpumask:true:false:0", passed=1, rejected=123456)
    tracer = SimpleNamespace(accounting=lambda: Accounting(seen=10**7, delivered=9 * 10**6, lost=10**6,
                                                           filters=[rejected]))
    meter = Meter(tracer)
    meter.events_per_s, meter.cpu_share = 1234567.0, 0.163
    placement = {"in_regions": 9990, "outside_regions": 2, "late": 7, "unattributed": 3, "pending": 0}
    for width in (80, 120, 200):
        line = meter.footer(1234, 56789, "/some/long/directory/name/damon.data", placement, width).plain
        assert len(line) <= width, (width, line)
        assert "lost 1M" in line and "99.9%" in line and ("filtered" in line or "filt" in line), line
        assert "late 7" in line, line
    wide = meter.footer(1234, 56789, "damon.data", placement, 200).plain
    assert "snapshots 56789" in wide and "rec damon.data" in wide and "collector CPU 16%" in wide


# ---------------------------------------------------------------------------------------------
# The process's name wherever live shows a target (issue 13): snapshot lines and the answers.


def test_snapshot_lines_name_the_process(accessgen):
    """Not a terminal: each snapshot line says the target's comm, as the recorder knows it (after its exec)."""
    result = subprocess.run([DAMON_BPF, "live", "--", accessgen, "--duration", "2", f"hot:0:w:{HOT_KIB}:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [dict(f.split("=", 1) for f in line.split()) for line in result.stdout.splitlines()
             if line.startswith("t=")]
    assert len(lines) >= 10 and {f["comm"] for f in lines} == {"accessgen"}, lines[:3]


def test_a_snapshot_line_keeps_one_field_per_word():
    from damon_bpf.live.lines import snapshot_line

    (snap,) = _snapshots(1, 4)
    line = snapshot_line(0, 42, snap, 0, "Web Content\tx")
    assert " comm=Web_Content_x " in line and dict(f.split("=", 1) for f in line.split())["pid"] == "42"
    assert " comm=- " in snapshot_line(0, 42, snap, 0)


def test_answer_keys_name_the_process(live_in_tmux):
    """d and s name the target as the recorder knows it: comm and parent, not "-"."""
    run = live_in_tmux(120, 40)
    wait_screen(run, lambda s: elapsed(s) >= 3, timeout=12)
    pid = run.info()["pid"]
    run.tmux.key("d")
    screen = wait_screen(run, lambda s: any("dirty rate per target" in line for line in s))
    assert any(re.search(rf"│\s+0\s+{pid}\s+accessgen\s+\d", line) for line in screen), "\n".join(screen)
    assert re.search(rf"move first: target 0 \(pid {pid} accessgen, parent \d+\)", unwrapped(screen)), \
        "\n".join(screen)
    run.tmux.key("s")
    screen = wait_screen(run, lambda s: any("threads sharing memory" in line for line in s))
    assert f"of target 0 (pid {pid} accessgen" in unwrapped(screen), "\n".join(screen)
    run.tmux.key("q")
    rc, stty, stderr = run.finish()
    assert_restored(run, rc, stty)
