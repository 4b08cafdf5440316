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
from dataclasses import dataclass

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)   # root may exceed net.core.rmem_max
RCVBUF_BYTES = 32 << 20     # an event is one 76-byte datagram (~1 KiB of skb): ~30,000 events unread
DATAGRAM_BYTES = 1 << 16


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


class ProcEvents:
    """A listening cn_proc socket. ``read`` drains it completely; ENOBUFS (the kernel dropped events
    because the socket was full) is counted in ``overruns``, and the caller then asks /proc."""

    def __init__(self, rcvbuf_bytes: int = RCVBUF_BYTES) -> None:
        from pyroute2.netlink.connector.cn_proc import ProcEventSocket  # noqa: PLC0415 - netlink only when tracing

        self.overruns = 0
        self.closed = False
        self.socket = ProcEventSocket()
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

    def read(self) -> list[ProcEvent]:
        """Every event queued now, oldest first. pyroute2's get() would hand back one datagram per call
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
            events.extend(event for msg in self.socket.marshal.parse(data) if (event := _decode(msg)) is not None)

    def close(self) -> None:
        # Closing leaves the multicast group; control(listen=False) would wait for a reply that can be
        # queued behind other process events.
        if not self.closed:
            self.closed = True
            self.socket.close()
