"""damon_bpf.log: what each verbosity keeps; warn_stderr's warnings and notes."""

from __future__ import annotations

import pytest

from damon_bpf import log
from damon_bpf.errors import warn_stderr


@pytest.fixture(autouse=True)
def normal_afterwards():
    yield
    log.set_verbosity(log.NORMAL)


def say_everything() -> None:
    log.result("the accounting")
    warn_stderr("warning: a flush failed")
    warn_stderr("a note")
    log.detail("a detail")


@pytest.mark.parametrize("level, said", [
    (log.QUIET, ["the accounting", "warning: a flush failed"]),
    (log.NORMAL, ["the accounting", "warning: a flush failed", "a note"]),
    (log.VERBOSE, ["the accounting", "warning: a flush failed", "a note", "a detail"]),
])
def test_each_level_keeps_what_is_more_important(capsys, level, said):
    log.set_verbosity(level)
    assert log.verbose() == (level == log.VERBOSE)
    say_everything()
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"damon-bpf: {message}" for message in said]
    assert captured.out == ""
