"""NUMA-balancing settings: read, change, and put back, surviving a crash of the process that changed them.

Before the first change the old values go to a state file (written atomically); a clean exit restores
them and removes the file. If damon-bpf dies first (kill -9, power is kept), the next damon-bpf that
starts finds the file and restores them. A lock held for the whole session tells a live owner from a
dead one. The state lives under /run: after a reboot the kernel's defaults are back anyway.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from damon_bpf import outputs
from damon_bpf.errors import DamonBpfError, HostError

# The scanner's tunables moved from sysctls to debugfs in Linux 5.13.
KNOBS = ("scan_delay_ms", "scan_period_min_ms", "scan_period_max_ms", "scan_size_mb")
SWITCH = "numa_balancing"
STATE_NAME = "numa-balancing.json"
_VALUE = re.compile(r"[0-9]{1,12}")   # every setting we change is a small decimal number
LOCK_NAME = "numa-balancing.lock"


@dataclass
class NumaPaths:
    proc_sys: Path = Path("/proc/sys/kernel")
    debugfs: Path = Path("/sys/kernel/debug")
    state_dir: Path = Path(os.environ.get("DAMON_BPF_RUN_DIR", "/run/damon-bpf"))

    @property
    def switch(self) -> Path:
        return self.proc_sys / "numa_balancing"

    def knob(self, name: str) -> Path:
        """debugfs sched/numa_balancing/NAME (5.13+), else the old sysctl numa_balancing_NAME."""
        new = self.debugfs / "sched" / "numa_balancing" / name
        return new if new.exists() else self.proc_sys / f"numa_balancing_{name}"

    def path_of(self, name: str) -> Path:
        """The fixed path of a known setting (the state file holds names and values, never paths)."""
        if name == SWITCH:
            return self.switch
        if name in KNOBS:
            return self.knob(name)
        raise ValueError(f"{name!r} is not a NUMA-balancing setting damon-bpf changes")

    def name_of(self, path: Path) -> str:
        for name in (SWITCH, *KNOBS):
            if self.path_of(name) == path:
                return name
        raise ValueError(f"{path} is not a NUMA-balancing setting damon-bpf changes")


def ensure_debugfs(paths: NumaPaths) -> None:
    if (paths.debugfs / "sched").is_dir() or not paths.debugfs.is_dir() or os.path.ismount(paths.debugfs):
        return
    subprocess.run(["mount", "-t", "debugfs", "none", str(paths.debugfs)], capture_output=True)


@dataclass
class NumaSettings:
    """The settings this session changed, and the lock that says it is alive."""

    paths: NumaPaths = field(default_factory=NumaPaths)
    saved: dict[str, str] = field(default_factory=dict)    # setting name (SWITCH or a KNOB) -> old value
    _lock_fd: int | None = None

    @property
    def state_file(self) -> Path:
        return self.paths.state_dir / STATE_NAME

    def _lock(self, blocking: bool) -> bool:
        try:
            outputs.private_dir(self.paths.state_dir, "the state directory")
            fd = os.open(self.paths.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except DamonBpfError as err:
            raise HostError(f"the numa-hint sampler cannot keep its state: {err}") from None
        except OSError as err:
            raise HostError(f"the numa-hint sampler cannot keep its state in {self.paths.state_dir}: "
                            f"{err.strerror} (it changes kernel settings: run as root)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self, warn: Callable[[str], None], keep_lock: bool = False) -> None:
        """Restore what a dead session left behind; raise if a live one holds the settings."""
        if not self._lock(blocking=False):
            owner = _state_owner(self.state_file)
            raise HostError(f"another damon-bpf (PID {owner or '?'}) is using the numa-hint sampler and holds "
                            "the NUMA-balancing settings; wait for it to end")
        try:
            if self.state_file.exists():
                pid, saved = _load_state(self.state_file, warn)
                if saved:
                    self._write_all(saved)
                    warn(f"restored the NUMA-balancing settings left changed by damon-bpf PID {pid}, "
                         f"which did not exit cleanly: {_describe(saved)}")
                self.state_file.unlink(missing_ok=True)
        except OSError as err:
            self._unlock()
            raise HostError(f"cannot restore the NUMA-balancing settings saved in {self.state_file}: {err}") from None
        if not keep_lock:
            self._unlock()

    def apply(self, wanted: dict[Path, str]) -> None:
        """Save the current values (on disk first), then write the wanted ones. Takes the lock."""
        if self._lock_fd is None:
            self.recover(lambda _: None, keep_lock=True)
        try:
            self.saved = {self.paths.name_of(path): path.read_text().strip() for path in wanted}
        except OSError as err:
            self._unlock()
            raise HostError(f"cannot read the NUMA-balancing setting {err.filename}: {err.strerror}") from None
        fd, tmp = outputs.create_temp(str(self.paths.state_dir), ".numa-balancing.", ".tmp")
        with os.fdopen(fd, "w") as stream:
            stream.write(json.dumps({"pid": os.getpid(), "saved": self.saved}))
        os.replace(tmp, self.state_file)
        _fsync_dir(self.paths.state_dir)
        try:
            _write_paths(wanted)
        except OSError as err:
            self.restore()
            raise HostError(f"cannot change the NUMA-balancing setting {err.filename}: {err.strerror}") from None

    def restore(self) -> str | None:
        """Put the saved values back and drop the state file; returns an error text instead of raising."""
        error = None
        try:
            if self.saved:
                self._write_all(self.saved)
            self.state_file.unlink(missing_ok=True)
        except OSError as err:  # leave the file: the next start retries
            error = f"cannot restore {err.filename}: {err.strerror}; the next damon-bpf run retries"
        self.saved = {}
        self._unlock()
        return error


    def _write_all(self, values: dict[str, str]) -> None:
        _write_paths({self.paths.path_of(name): value for name, value in values.items()})


def _write_paths(values: dict[Path, str]) -> None:
    # The switch last on the way in (knobs first) and first on the way out does not matter for
    # correctness; the kernel reads them on every scan.
    for path, value in values.items():
        path.write_text(value)


def _load_state(state_file: Path, warn: Callable[[str], None]) -> tuple[object, dict[str, str]]:
    """The pid and the saved settings of a state file; only known names with plain numbers are kept. A file
    that is not ours in shape is set aside (renamed ``.bad``) with a warning, never trusted."""
    try:
        state = json.loads(state_file.read_text())
        saved = state["saved"]
        if not isinstance(saved, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        bad = state_file.with_suffix(".bad")
        os.replace(state_file, bad)
        warn(f"warning: {state_file} is malformed; set aside as {bad.name}, nothing restored from it")
        return None, {}
    known = {k: v for k, v in saved.items()
             if (k == SWITCH or k in KNOBS) and isinstance(v, str) and _VALUE.fullmatch(v)}
    if len(known) < len(saved):
        warn(f"warning: {state_file} names settings or values damon-bpf never saves; only "
             f"{', '.join(known) or 'none'} restored")
    return state.get("pid"), known


def _describe(values: dict[str, str]) -> str:
    return ", ".join(f"{name}={v}" for name, v in values.items())


def _state_owner(state_file: Path) -> int | None:
    try:
        return int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_stale(warn: Callable[[str], None], paths: NumaPaths | None = None) -> None:
    """Called at every monitor start: put back settings a crashed run left changed. Quiet when there is
    nothing to do; never fails a run that does not use numa-hint when another live one does."""
    paths = paths or NumaPaths()
    try:
        if not (paths.state_dir / STATE_NAME).exists():
            return
    except PermissionError:   # not root: the 0700 state directory is closed, and nothing to restore is ours
        return
    try:
        NumaSettings(paths).recover(warn)
    except HostError as err:
        if "another damon-bpf" not in str(err):
            warn(f"warning: {err}")
