"""Target processes: an existing PID, or a command we start; children followed through cn_proc.

The BPF side already adds forked children before they run (bpf/report.bpf.h); the process-events
connector tells user space about forks and exits, so it knows which targets exist, can stop when they
are all gone, and can drop exited ids from the kernel's target set.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Sequence

from damon_bpf import outputs
from damon_bpf.childproc import die_with_parent
from damon_bpf.errors import TargetError

PROC_EVENT_FORK = 0x1
PROC_EVENT_EXIT = 0x80000000


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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


class _ProcEvents:
    """Fork and exit notices from the kernel's process-events connector (pyroute2)."""

    def __init__(self) -> None:
        from pyroute2.netlink.connector.cn_proc import ProcEventSocket  # noqa: PLC0415 - netlink only when tracing

        self.socket = ProcEventSocket()
        self.socket.bind()
        self.socket.control(listen=True)

    def read(self) -> list[dict]:
        events = []
        while select.select([self.socket], [], [], 0)[0]:
            events.extend(dict(msg) for msg in self.socket.get())
        return events

    def close(self) -> None:
        # Closing the socket leaves the multicast group; control(listen=False) would wait for a reply
        # that can be queued behind other process events and hang.
        self.socket.close()


class Targets:
    """The set of monitored processes and how they came to be."""

    def __init__(self, pids: Sequence[int] = (), command: Sequence[str] = (), follow_children: bool = False,
                 command_output: str | None = None) -> None:
        if bool(pids) == bool(command):
            raise TargetError("give either -p PID or a command after --, not both and not neither")
        if command_output and not command:
            raise TargetError("--command-output is for a command started after --, not for -p PID")
        self.follow_children = follow_children
        self.command = list(command)
        self.command_output = command_output
        self.process: subprocess.Popen | None = None
        self._release_fd: int | None = None
        self.pids: set[int] = {thread_group_of(pid) for pid in pids}
        self.exited: list[int] = []
        self.events: _ProcEvents | None = None
        if self.command and shutil.which(self.command[0]) is None:
            raise TargetError(f"command not found: {self.command[0]}")

    def attach(self, tracer) -> None:
        """Register the targets with ``tracer``; a command is started here, paused before its exec."""
        try:
            self.events = _ProcEvents()
        except Exception:  # noqa: BLE001 - no connector (container, old kernel): fall back to /proc polling
            self.events = None
        for pid in self.pids:
            tracer.add_target(pid)
        if self.command:
            self._launch(tracer)

    def _launch(self, tracer) -> None:
        # bash (dash cannot name fds above 9) waits on a pipe so the pid can be registered before the command's exec; the BPF
        # exec hook then makes it a target at its first instruction.
        output = self._open_command_output()
        read_fd, write_fd = os.pipe()
        wrapper = ["/bin/bash", "-c", f'read _ <&{read_fd}; exec {read_fd}<&-; exec "$@"', "damon-bpf-launch"]
        try:
            self.process = subprocess.Popen(wrapper + self.command, pass_fds=(read_fd,), stdout=output,
                                            stderr=None if output is None else subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        except OSError as err:
            raise TargetError(f"cannot start {self.command[0]}: {err.strerror}") from None
        finally:
            os.close(read_fd)
            if output is not None:
                os.close(output)
        tracer.add_on_exec(self.process.pid)
        self.pids.add(self.process.pid)
        os.write(write_fd, b"go\n")
        os.close(write_fd)

    def _open_command_output(self) -> int | None:
        """The file a launched command's stdout and stderr go to (--command-output), or None: inherited."""
        if not self.command_output:
            return None
        return outputs.open_output(self.command_output, "--command-output").fd   # 0600, no planted links

    def update(self, tracer) -> None:
        """Apply fork and exit notices; drop targets that are gone."""
        for event in self.events.read() if self.events else ():
            self._apply(event, tracer)
        for pid in list(self.pids):
            if self.process is not None and pid == self.process.pid:
                if self.process.poll() is None:
                    continue
            elif is_alive(pid):
                continue
            self._gone(pid, tracer)

    def _apply(self, event: dict, tracer) -> None:
        what = event.get("what")
        if what == PROC_EVENT_FORK and self.follow_children and event["parent_tgid"] in self.pids:
            if event["child_pid"] == event["child_tgid"]:  # a new process, not a thread
                self.pids.add(event["child_pid"])
        elif what == PROC_EVENT_EXIT:
            pid, tgid = event["process_pid"], event["process_tgid"]
            if pid != tgid and self.follow_children and pid not in self.pids:
                tracer.remove_target(pid)  # the kernel's fork hook added this thread id
            elif pid == tgid and pid in self.pids and not (self.process and pid == self.process.pid):
                self._gone(pid, tracer)

    def _gone(self, pid: int, tracer) -> None:
        self.pids.discard(pid)
        self.exited.append(pid)
        tracer.remove_target(pid)

    @property
    def alive(self) -> bool:
        return bool(self.pids)

    def exit_status(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def close(self) -> None:
        """Stop listening; a command we started and that still runs is terminated."""
        if self.events is not None:
            self.events.close()
            self.events = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
