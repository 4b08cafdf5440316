"""What the live view keeps: the latest snapshots of each target, and a frozen copy while paused."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from damon_bpf.core.snapshot import Snapshot

# Snapshots kept per target. The heatmap shows one snapshot per column, so this only has to be wider
# than any terminal; older ones are dropped (the record file, with -o, keeps everything).
KEEP = 512
NAME_TTL_S = 2.0


@dataclass
class TargetWindow:
    target_id: int
    pid: int
    snapshots: deque = field(default_factory=lambda: deque(maxlen=KEEP))
    seen: int = 0  # snapshots received, including the dropped ones


class LiveModel:
    """Collects snapshots (``on_snapshot`` is a Recorder listener) and says which ones to show."""

    def __init__(self) -> None:
        self.targets: dict[int, TargetWindow] = {}
        self.current: int | None = None  # the target on screen
        self.frozen: list[Snapshot] | None = None  # the current target's window at pause time
        self.version = 0  # changes whenever what is shown changes
        self._names: dict[int, tuple[str, float]] = {}  # tid: (comm, when read)

    def on_snapshot(self, target_id: int, pid: int, snapshot: Snapshot) -> None:
        window = self.targets.get(target_id)
        if window is None:
            window = self.targets[target_id] = TargetWindow(target_id, pid)
        window.snapshots.append(snapshot)
        window.seen += 1
        if self.current is None:
            self.current = target_id
        if target_id == self.current and self.frozen is None:
            self.version += 1

    @property
    def paused(self) -> bool:
        return self.frozen is not None

    def toggle_pause(self) -> None:
        """Freeze what is shown; snapshots keep arriving (and being recorded) meanwhile."""
        window = self.window()
        self.frozen = None if self.paused else list(window.snapshots if window else ())
        self.version += 1

    def next_target(self) -> None:
        ids = sorted(self.targets)
        if len(ids) > 1 and self.current is not None:
            self.current = ids[(ids.index(self.current) + 1) % len(ids)]
            if self.paused:
                self.frozen = list(self.targets[self.current].snapshots)
            self.version += 1

    def window(self) -> TargetWindow | None:
        return self.targets.get(self.current) if self.current is not None else None

    def shown(self, last: int) -> list[Snapshot]:
        """The newest ``last`` snapshots of the target on screen (as of the pause, when paused)."""
        if last <= 0:
            return []
        if self.frozen is not None:
            return self.frozen[-last:]
        window = self.window()
        if window is None:
            return []
        snaps = window.snapshots
        return list(snaps)[-last:] if len(snaps) > last else list(snaps)

    def thread_name(self, tid: int) -> str:
        """``comm`` of a thread of the target on screen. Read again after a while: a thread names
        itself after it starts, and a thread that is gone keeps its last known name."""
        now = time.monotonic()
        known = self._names.get(tid)
        if known is not None and now - known[1] < NAME_TTL_S:
            return known[0]
        window = self.window()
        try:
            name = Path(f"/proc/{window.pid}/task/{tid}/comm").read_text().strip() if window else ""
        except OSError:
            name = known[0] if known else ""
        self._names[tid] = (name, now)
        return name

    def thread_label(self, tid: int) -> str:
        name = self.thread_name(tid)
        return f"{tid} {name}" if name else str(tid)
