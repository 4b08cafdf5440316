"""The long-running monitor (``damon-bpf monitor``, meant for systemd): one Monitor after another until
SIGTERM, with no record file, its state served as metrics by whoever ``on_monitor`` attaches.

- Targets by pid and by command name; every ``rescan_s`` processes with a wanted command name that
  appeared since (a service restarted) are adopted, and targets that ended are forgotten (their counts
  stay in the accounting), so memory does not grow with the processes the host ever ran.
- SIGHUP re-reads the configuration (``configure``) while the running monitor goes on; only a valid one
  replaces it: that monitor stops ("reload"), the new one is built (targets resolved afresh) and runs. A
  new configuration that cannot be built gives way to the previous one.
- SIGTERM or SIGINT ends the run cleanly: samplers and companions put back what they changed, the BPF
  programs are unloaded. State a killed run leaves behind is put back by the next start (Monitor)."""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Callable

from damon_bpf.errors import DamonBpfError
from damon_bpf.monitor import Monitor, MonitorConfig
from damon_bpf.session import RunResult
from damon_bpf.sources.targets import pids_by_comm

RELOAD = "reload"


class StandingMonitor:
    def __init__(self, configure: Callable[[], MonitorConfig], on_monitor: Callable[[Monitor], None],
                 rescan_s: float, say: Callable[[str], None]) -> None:
        self.configure = configure
        self.on_monitor = on_monitor
        self.rescan_s = rescan_s
        self.say = say
        self.monitor: Monitor | None = None
        self.stopping = False
        self._hangup = False
        self._next_config: MonitorConfig | None = None
        self._next_scan = 0.0

    def run(self) -> RunResult | None:
        """Run until a signal or the configuration's duration ends it; returns the last run's result."""
        handlers = {signal.SIGHUP: self._on_hangup, signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            return self._loop(self.configure())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, config: MonitorConfig) -> RunResult | None:
        began, good, result = time.monotonic(), None, None
        while not self.stopping:
            left = None if config.duration_s is None else config.duration_s - (time.monotonic() - began)
            if left is not None and left <= 0:
                break
            self.monitor, config = self._build(dataclasses.replace(config, duration_s=left), good)
            good = config
            self.on_monitor(self.monitor)
            if self.stopping:   # a signal while the BPF program was built: nothing ran, unload it
                self.monitor.tracer.close()
                break
            self._next_scan = time.monotonic() + self.rescan_s
            result = self.monitor.run(on_tick=self._tick)
            self.say(f"{result.summary_line()}; {len(result.exited)} target process(es) ended")
            self.say(result.placement_line())
            if result.reason != RELOAD:
                break
            assert self._next_config is not None   # a reload stops the monitor only once configure() gave one
            config = self._next_config
        return result

    def _build(self, config: MonitorConfig, good: MonitorConfig | None) -> tuple[Monitor, MonitorConfig]:
        try:
            return Monitor(config, warn=self.say), config
        except DamonBpfError as err:
            if good is None:
                raise
            self.say(f"warning: the new configuration failed ({err}): running the previous one")
            return Monitor(dataclasses.replace(good, duration_s=config.duration_s), warn=self.say), good

    def _on_hangup(self, *_signal) -> None:
        self._hangup = True

    def _on_stop(self, *_signal) -> None:
        self.stopping = True
        if self.monitor is not None:
            self.monitor.request_stop()

    def _tick(self, _now_ns: int) -> None:
        if self._hangup:
            self._hangup = False
            self._reload()
        if time.monotonic() >= self._next_scan:
            self._next_scan = time.monotonic() + self.rescan_s
            self._rescan()

    def _reload(self) -> None:
        try:
            self._next_config = self.configure()
        except DamonBpfError as err:
            self.say(f"warning: SIGHUP: keeping the running configuration: {err}")
            return
        self.say("SIGHUP: reloading the configuration")
        assert self.monitor is not None   # called from the running monitor's tick
        self.monitor.request_stop(RELOAD)

    def _rescan(self) -> None:
        monitor = self.monitor
        assert monitor is not None and monitor.recorder is not None   # the running monitor's tick; it records
        monitor.recorder.forget_gone()
        fresh = pids_by_comm(monitor.config.targets.comms) - monitor.targets.pids
        adopted = monitor.adopt(sorted(fresh))
        if adopted:
            self.say(f"monitoring new process(es) {', '.join(map(str, adopted))}")
