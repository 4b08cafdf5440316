"""Single key presses from the terminal, without Enter and without echo (cbreak mode).

The terminal's settings are saved on entry and put back on exit, whatever ends the run. Ctrl-C
still raises SIGINT (the session ends cleanly on it); Ctrl-Z is disabled while the screen is
taken over, because a suspended full-screen program leaves the shell in its alternate screen,
and so is Ctrl-S (see ``__enter__``).
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
from typing import TextIO

_ESCAPES = re.compile(r"\x1b(\[[0-9;?<>]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


class KeyReader:
    """Non-blocking reads of the keys pressed since the last call (none when not a terminal)."""

    def __init__(self, stream: TextIO = sys.stdin) -> None:
        try:
            self.fd: int | None = stream.fileno() if stream.isatty() else None
        except (AttributeError, ValueError, OSError):  # closed or replaced stdin
            self.fd = None
        self.saved: list | None = None

    def __enter__(self) -> "KeyReader":
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            mode = termios.tcgetattr(self.fd)
            mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflags: byte by byte, not echoed
            # iflags: no XON/XOFF. Ctrl-S would otherwise block our writes to the terminal, and with
            # them the collector, which draws in the same thread (the ring buffer would overflow).
            mode[0] &= ~termios.IXON
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
            mode[6][termios.VSUSP] = 0  # _POSIX_VDISABLE on Linux: Ctrl-Z becomes an ignored key
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        if self.fd is not None and self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except termios.error:  # the terminal went away (hang-up): nothing left to restore
                pass
            self.saved = None

    def read(self) -> str:
        """The keys waiting, decoded; "" when none (never blocks)."""
        if self.fd is None or not select.select([self.fd], [], [], 0)[0]:
            return ""
        try:
            data = os.read(self.fd, 64)
        except OSError:
            data = b""
        if not data:  # end of input: stop asking
            self.fd = None
        # arrows, function keys and mouse reports are escape sequences: "\x1b[A" is not the key "A"
        return _ESCAPES.sub("", data.decode("utf-8", errors="ignore"))
