"""Target processes: existing PIDs (with their descendants when followed), or a command we start.

Who is a target is decided in the kernel (bpf/report.bpf.h): a followed process's children join before
they run, an exiting process leaves at once (so a reused pid is never traced), and each fork, exec and
exit is written as a lifecycle record into a ring of its own. ``update`` reads those records after each
drain of the accesses ring and before its batch is handed on, so subscribers hear of a fork or exec
before they see the process's reports; ``publish_exits`` tells of exits only after every batch that
can hold the process's reports (see Session._loop). Why not the process-events connector (cn_proc): its messages are not ordered
with the ring's records, and a burst of forks left user space seconds behind (issue 11).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from damon_bpf.access import LIFECYCLE_KINDS
from damon_bpf import outputs
from damon_bpf.childproc import die_with_parent
from damon_bpf.errors import TargetError


@dataclass(frozen=True)
class TargetEvent:
    """A followed process forked (``pid`` is the child), exec'd or exited; ``time_ns`` is CLOCK_MONOTONIC,
    the clock of access records. Processes found at attach time are announced as forks at that time.
    A fork or exec comes before any batch holding the process's reports, an exit after all of them."""

    kind: str        # "fork" | "exec" | "exit"
    pid: int         # thread group id
    ppid: int
    comm: str
    time_ns: int


@dataclass
class TargetInfo:
    """What the run knows of one target process."""

    pid: int
    ppid: int
    comm: str
    exited: bool = False

    def as_dict(self) -> dict:
        return {"pid": self.pid, "ppid": self.ppid, "comm": self.comm, "exited": self.exited}


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """(comm, fields after comm) of /proc/PID/stat, or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def thread_group_of(pid: int) -> int:
    """The process (thread group) id of ``pid``, which may name a thread."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise TargetError(f"no process with PID {pid}") from None
    except PermissionError:
        raise TargetError(f"cannot read /proc/{pid}/status (permission denied)") from None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    raise TargetError(f"no process with PID {pid}")


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[1][0] not in "ZX"


def process_info(pid: int) -> TargetInfo | None:
    """comm and parent of a live process, from /proc."""
    fields = _stat_fields(pid)
    return None if fields is None else TargetInfo(pid, int(fields[1][1]), fields[0])


def descendants(roots: Iterable[int]) -> dict[int, TargetInfo]:
    """Every live descendant process of ``roots`` (not the roots), from one scan of /proc."""
    children: dict[int, list[TargetInfo]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := process_info(int(entry.name))) is not None:
            children.setdefault(info.ppid, []).append(info)
    found: dict[int, TargetInfo] = {}
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return found


def thread_count(pid: int) -> int:
    """Threads of process ``pid`` now (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _stderr(message: str) -> None:
    print(f"damon-bpf: {message}", file=sys.stderr)


class Targets:
    """The set of monitored processes and how they came to be."""

    def __init__(self, pids: Sequence[int] = (), command: Sequence[str] = (), follow_children: bool = False,
                 command_output: str | None = None, notify: Callable[[str], None] = _stderr) -> None:
        if bool(pids) == bool(command):
            raise TargetError("give either -p PID or a command after --, not both and not neither")
        if command_output and not command:
            raise TargetError("--command-output is for a command started after --, not for -p PID")
        self.follow_children = follow_children
        self.command = list(command)
        self.command_output = command_output
        self.notify = notify
        self.process: subprocess.Popen | None = None
        self.pids: set[int] = {thread_group_of(pid) for pid in pids}   # live targets
        self.info: dict[int, TargetInfo] = {}                            # every target the run had
        self.exited: list[int] = []
        self._subscribers: list[Callable[[TargetEvent], None]] = []
        self._exits: list[TargetEvent] = []   # known, not yet published (publish_exits)
        self._lost_seen = 0
        if self.command and shutil.which(self.command[0]) is None:
            raise TargetError(f"command not found: {self.command[0]}")

    def subscribe(self, callback: Callable[[TargetEvent], None]) -> None:
        """``callback`` gets every TargetEvent: a fork or exec before any batch holding that process's
        reports, an exit after the last such batch."""
        self._subscribers.append(callback)

    def _publish(self, event: TargetEvent) -> None:
        for callback in self._subscribers:
            callback(event)

    def attach(self, tracer) -> None:
        """Register the targets with ``tracer``; a command is started here, paused before its exec."""
        for pid in self.pids:
            tracer.add_target(pid)
            self.info[pid] = process_info(pid) or TargetInfo(pid, 0, "")
        self._drop_dead(tracer)
        if self.follow_children and self.pids:
            self._take_existing_children(tracer)
        if self.command:
            self._launch(tracer)

    def _take_existing_children(self, tracer) -> None:
        # The roots are in the kernel map already, so every child forked from now on joins there; scanning
        # until nothing new turns up also catches children forked by a descendant while we added it.
        roots = set(self.pids)
        found: dict[int, TargetInfo] = {}
        while new := {pid: info for pid, info in descendants(roots).items() if pid not in found}:
            for pid, info in new.items():
                tracer.add_target(pid)
                found[pid] = info
        now = time.monotonic_ns()
        for pid, info in found.items():
            self.pids.add(pid)
            self.info[pid] = info
            self._publish(TargetEvent("fork", pid, info.ppid, info.comm, now))
        self._drop_dead(tracer)
        threads = sum(thread_count(pid) for pid in found)
        self.notify(f"following {len(found)} existing descendant process(es) of PID "
                    f"{', '.join(map(str, sorted(roots)))} ({threads} threads)")

    def _launch(self, tracer) -> None:
        # bash (dash cannot name fds above 9) tells us it runs, then waits on a pipe; only then is its pid
        # marked in the kernel, so the exec hook takes CMD's exec and not the launcher's own (bash's startup
        # faults leaked in when the mark raced with that first exec). Then it execs the command.
        output = self._open_command_output()
        go_read, go_write = os.pipe()
        ready_read, ready_write = os.pipe()
        wrapper = ["/bin/bash", "-c",
                   f'echo >&{ready_write}; exec {ready_write}>&-; read _ <&{go_read}; exec {go_read}<&-; exec "$@"',
                   "damon-bpf-launch"]
        try:
            self.process = subprocess.Popen(wrapper + self.command, pass_fds=(go_read, ready_write), stdout=output,
                                            stderr=None if output is None else subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        except OSError as err:
            os.close(go_write)
            os.close(ready_read)
            raise TargetError(f"cannot start {self.command[0]}: {err.strerror}") from None
        finally:
            for fd in (go_read, ready_write) + ((output,) if output is not None else ()):
                os.close(fd)
        try:
            os.read(ready_read, 1)   # EOF instead if the launcher died: its exit is seen in update()
        finally:
            os.close(ready_read)
        tracer.add_on_exec(self.process.pid)
        self.pids.add(self.process.pid)
        self.info[self.process.pid] = TargetInfo(self.process.pid, os.getpid(), "damon-bpf-launch")
        os.write(go_write, b"go\n")
        os.close(go_write)

    def _open_command_output(self) -> int | None:
        """The file a launched command's stdout and stderr go to (--command-output), or None: inherited."""
        if not self.command_output:
            return None
        return outputs.open_output(self.command_output, "--command-output").fd   # 0600, no planted links

    def update(self, tracer) -> None:
        """Apply the kernel's lifecycle records up to now; call it after each ``tracer.drain()`` and before
        its batch is handed on."""
        for record in tracer.drain_lifecycle():
            self._apply(record)
        if self.process is not None and self.process.pid in self.pids and self.process.poll() is not None:
            self._gone(self.process.pid)   # also covers a launcher that died before its exec
        lost = tracer.lifecycle_lost()
        if lost != self._lost_seen:        # records were lost: ask /proc who is still there
            self._lost_seen = lost
            self._drop_dead(tracer)

    def _drop_dead(self, tracer) -> None:
        """Targets that exited while the kernel could not see it (before they were in its map, or with
        their exit record lost) leave the map and the run here."""
        for pid in [pid for pid in self.pids if not is_alive(pid) and not self._is_launcher(pid)]:
            tracer.remove_target(pid)
            self._gone(pid)

    def _is_launcher(self, pid: int) -> bool:
        return self.process is not None and pid == self.process.pid

    def _apply(self, record: np.void) -> None:
        kind, pid, time_ns = LIFECYCLE_KINDS.get(int(record["kind"])), int(record["pid"]), int(record["time_ns"])
        comm = bytes(record["comm"]).decode(errors="replace")
        if kind == "fork":
            self.pids.add(pid)
            self.info[pid] = TargetInfo(pid, int(record["ppid"]), comm)
        elif kind == "exec":
            self.info.setdefault(pid, TargetInfo(pid, 0, comm)).comm = comm
        elif kind == "exit":
            if pid in self.pids:
                self._gone(pid, time_ns)
            return
        else:
            return
        info = self.info[pid]
        self._publish(TargetEvent(kind, pid, info.ppid, info.comm, time_ns))

    def _gone(self, pid: int, time_ns: int | None = None) -> None:
        """``pid`` exited at ``time_ns`` (None: the kernel did not tell, it is known only now)."""
        self.pids.discard(pid)
        self.exited.append(pid)
        info = self.info.setdefault(pid, TargetInfo(pid, 0, ""))
        info.exited = True
        self._exits.append(TargetEvent("exit", pid, info.ppid, info.comm,
                                       time.monotonic_ns() if time_ns is None else time_ns))

    def publish_exits(self, before_ns: int | None = None) -> None:
        """Publish the exits that happened before ``before_ns`` (None: all). The session passes the time
        its previous drain began: the current batch then holds every report from before it, even one a
        producer was still writing at that drain."""
        due = [event for event in self._exits if before_ns is None or event.time_ns < before_ns]
        self._exits = [event for event in self._exits if not (before_ns is None or event.time_ns < before_ns)]
        for event in due:
            self._publish(event)

    @property
    def alive(self) -> bool:
        return bool(self.pids)

    def describe(self) -> list[dict]:
        """Every target of the run: pid, ppid, comm and whether it exited."""
        return [info.as_dict() for info in self.info.values()]

    def exit_status(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def close(self) -> None:
        """A command we started and that still runs is terminated."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
