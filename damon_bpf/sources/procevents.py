"""The kernel's process-events connector (cn_proc), through pyroute2: every thread's fork and exit, with
exit codes.

The BPF lifecycle ring stays the source of who is a target (its records are ordered with the access
reports). These events add what it lacks: a process's exit status (the exit tracepoint carries none),
every thread's exit (before 6.16 the BPF side cannot tell when a whole thread group is dead), and a
second account of forks to repair from when the lifecycle ring lost records.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Callable

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)   # root may exceed net.core.rmem_max
RCVBUF_BYTES = 32 << 20     # an event is one 76-byte datagram (~1 KiB of skb): ~30,000 events unread
DATAGRAM_BYTES = 1 << 16
NLMSG_HEADER_BYTES = 16     # struct nlmsghdr, before pyroute2's message fields


def _field_offset(message_class, name: str) -> int:
    """Where field ``name`` of a pyroute2 message class lies in a datagram (fields are packed)."""
    formats = ""
    for field, code in message_class.fields:
        if field == name:
            return NLMSG_HEADER_BYTES + struct.calcsize("=" + formats)
        formats += code
    raise KeyError(name)


@dataclass(frozen=True)
class ProcEvent:
    """A fork or an exit of one thread. ``time_ns`` is ktime_get_ns(): CLOCK_MONOTONIC, the clock of
    access records."""

    kind: str            # "fork" | "exit"
    tid: int             # fork: the new thread; exit: the exiting thread
    tgid: int            # its process
    parent_tgid: int     # fork: the forking process; exit: the parent process
    time_ns: int
    wait_status: int = 0  # exit: the thread's exit code as wait(2) reports it

    @property
    def new_process(self) -> bool:
        """A fork that made a process, not a thread."""
        return self.tid == self.tgid

    def exit_status(self) -> tuple[int | None, int | None]:
        """(exit code, None) for a normal exit, (None, signal) for a death by signal."""
        if os.WIFSIGNALED(self.wait_status):
            return None, os.WTERMSIG(self.wait_status)
        return os.WEXITSTATUS(self.wait_status), None


def _decode(msg) -> ProcEvent | None:
    event = msg.get("event")
    if event == "PROC_EVENT_FORK":
        return ProcEvent("fork", msg["child_pid"], msg["child_tgid"], msg["parent_tgid"], msg["timestamp_ns"])
    if event == "PROC_EVENT_EXIT":
        return ProcEvent("exit", msg["process_pid"], msg["process_tgid"], msg["parent_tgid"], msg["timestamp_ns"],
                         msg["exit_code"])
    return None


def preload() -> None:
    """Import pyroute2's cn_proc now. The import is most of what opening the socket costs (0.06 s quiet, 4-8 s
    of a starved CPU on a loaded 2-CPU machine, where ProcEvents() took that long): a run imports it before
    it starts timing, so that cost delays neither its targets' attach nor its first aggregation."""
    from pyroute2.netlink.connector import cn_proc  # noqa: F401, PLC0415 - netlink only when tracing


class ProcEvents:
    """A listening cn_proc socket. ``read`` drains it completely; ENOBUFS (the kernel dropped events
    because the socket was full) is counted in ``overruns``, and the caller then asks /proc."""

    def __init__(self, rcvbuf_bytes: int = RCVBUF_BYTES) -> None:
        from pyroute2.netlink.connector import cn_proc  # noqa: PLC0415 - netlink only when tracing

        # pyroute2's parse is the costliest part of a read: execs, comm changes and the like are skipped
        # unparsed by their event type (one datagram is one message), read where pyroute2's marshal does.
        self._fork, self._exit = cn_proc.PROC_EVENT_FORK, cn_proc.PROC_EVENT_EXIT
        self._u32 = struct.Struct("=" + cn_proc.ProcEventMarshal.key_format)
        self._what_offset = cn_proc.ProcEventMarshal.key_offset
        self._exit_tgid_offset = _field_offset(cn_proc.proc_event_exit, "process_tgid")
        self.overruns = 0
        self.closed = False
        self.socket = cn_proc.ProcEventSocket()
        try:
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
            except PermissionError:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            self.socket.bind()
            self.socket.control(listen=True)
        except BaseException:
            self.socket.close()
            raise

    def read(self, forks: bool = True, exit_of: Callable[[int], bool] | None = None) -> list[ProcEvent]:
        """Every fork (unless ``forks`` is False) and every exit (of the processes ``exit_of`` accepts,
        if given) queued now, oldest first. pyroute2's get() would hand back one datagram per call
        and block on an empty socket, and select() cannot see what it buffered (the bug of issue 11), so
        we receive the datagrams ourselves, non-blocking, until the socket is empty, and let pyroute2's
        marshal parse them."""
        events: list[ProcEvent] = []
        while True:
            try:
                data = self.socket.recv(DATAGRAM_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return events
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1   # reported once per overrun; the socket goes on delivering
                continue
            if not self._wanted(data, forks, exit_of):
                continue
            events.extend(event for msg in self.socket.marshal.parse(data) if (event := _decode(msg)) is not None)

    def _wanted(self, data: bytes, forks: bool, exit_of: Callable[[int], bool] | None) -> bool:
        if len(data) < self._exit_tgid_offset + self._u32.size:   # shorter than a fork or an exit message
            return False
        what = self._u32.unpack_from(data, self._what_offset)[0]
        if what == self._exit:
            return exit_of is None or exit_of(self._u32.unpack_from(data, self._exit_tgid_offset)[0])
        return forks and what == self._fork

    def close(self) -> None:
        # Closing leaves the multicast group; control(listen=False) would wait for a reply that can be
        # queued behind other process events.
        if not self.closed:
            self.closed = True
            self.socket.close()
