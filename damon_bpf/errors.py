"""Errors a user can cause. The CLI prints their message as one line and exits non-zero; warnings
(something the user should know, the run goes on) are one ``damon-bpf:`` line on stderr (damon_bpf.log)."""

from damon_bpf import log


def warn_stderr(message: str) -> None:
    """Say ``message`` through damon_bpf.log: a warning when it says so (``warning: ...``), else a note."""
    (log.warning if message.startswith("warning:") else log.note)(message)


class DamonBpfError(Exception):
    """A problem the user can act on; ``str(err)`` is a complete one-line explanation."""

    exit_code = 1


class UsageError(DamonBpfError):
    """Bad command-line input (cpulist, tid list, filter spec, attribute combination)."""

    exit_code = 2


class HostError(DamonBpfError):
    """The host cannot do what was asked (not root, no bcc, no headers, missing kernel feature)."""


class TargetError(DamonBpfError):
    """The target process does not exist, cannot be started, or went away."""


class RecordFileError(DamonBpfError):
    """A record file is missing, truncated, corrupt or not in the expected schema."""
