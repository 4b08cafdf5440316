"""A started command must not outlive the collector: if damon-bpf is killed (kill -9), the command, which
may be stopped or traced by nothing any more, gets SIGKILL from the kernel (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Popen's preexec_fn: runs in the child between fork and exec (the setting survives the exec)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:   # the parent died before prctl took effect: we were handed to init
        os._exit(137)
