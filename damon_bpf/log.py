"""What a run says on stderr, by importance, through Python's logging (logger ``damon_bpf``).

Every line is ``damon-bpf: MESSAGE`` on stderr. Levels, and what the command line's ``--quiet`` and
``--verbose`` keep:

- RESULT (above WARNING): the end-of-run accounting (seen, delivered, filtered, lost; where the output went).
  Always said: a run never hides what it lost.
- WARNING: something failed or was lost on the way (a flush, a sampler, advice after lost reports). Kept by quiet.
- INFO: notes (the headers tree being built, a sampler's settings, a target that goes dark). The default.
- DEBUG: details (the headers tree used, the source chosen and why, sampler state, layout re-reads). Verbose.

A script using the library gets INFO and above on stderr, as the command does; ``set_verbosity`` or the logger's
own ``setLevel`` changes that.
"""

from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("damon_bpf")
RESULT = logging.WARNING + 5
logging.addLevelName(RESULT, "RESULT")
QUIET, NORMAL, VERBOSE = RESULT - 5, logging.INFO, logging.DEBUG   # the levels -q, neither, -v keep


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment: rich's Live swaps it while a status line is shown, and its
    stand-in prints above the line instead of through it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("damon-bpf: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:   # StreamHandler.__init__ sets it; the property always looks it up
        pass


if not LOG.handlers:
    LOG.addHandler(_StderrHandler())
    LOG.propagate = False
    LOG.setLevel(NORMAL)


def set_verbosity(level: int) -> None:
    """Say messages of ``level`` and above (QUIET, NORMAL or VERBOSE)."""
    LOG.setLevel(level)


def result(message: str) -> None:
    LOG.log(RESULT, message)


def warning(message: str) -> None:
    LOG.warning(message)


def note(message: str) -> None:
    LOG.info(message)


def detail(message: str) -> None:
    LOG.debug(message)


def verbose() -> bool:
    """Whether details are said (skip building costly detail text otherwise)."""
    return LOG.isEnabledFor(logging.DEBUG)
