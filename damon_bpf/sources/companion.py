"""What a companion offers a monitor: something that runs beside the access source for the session's
length (kernel DAMON's own kdamond) and may produce DAMON snapshots of its own.

The session drives it through the same four hooks as a sampler (start, tick, close, summary); a
companion that makes snapshots says so with ``snapshot_meta`` and delivers them to the sinks it is
given, so the monitor can file them next to its own without asking what kind of object it holds.
"""

from __future__ import annotations

from typing import Callable, Protocol

from damon_bpf.core.snapshot import Snapshot

SnapshotSink = Callable[[int, Snapshot], None]   # (pid, snapshot)


class Companion(Protocol):
    name: str
    # None: no snapshots of its own; otherwise the metadata of the records made from them
    snapshot_meta: dict | None

    def start(self, targets) -> None:
        """Called once the targets exist (``targets.pids``)."""

    def tick(self, now_ns: int) -> None:
        """Called after every drain of the source."""

    def close(self) -> None:
        """Stop and put back what was changed; called on every exit path, must not raise."""

    def summary(self) -> dict:
        """Stored with the run's accounting (RunResult.samplers)."""

    def add_snapshot_sink(self, sink: SnapshotSink) -> None:
        """Deliver every snapshot this companion makes to ``sink`` too (none if ``snapshot_meta`` is None)."""
