"""The kernel-DAMON source's sysfs access policy (the source itself runs in the vm tests): DAMON's sysfs
answers EBUSY whenever its trylock loses, so EBUSY is retried for a while and nothing else is."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from damon_bpf.sources import kdamond


def _failing(errors: list[int], result: str = "ok"):
    """An access that fails with each errno in ``errors`` in turn, then returns ``result``."""
    def access() -> str:
        if errors:
            raise OSError(errors.pop(0), "error")
        return result
    return access


def test_ebusy_is_retried_until_the_lock_is_free():
    sysfs = kdamond.DamonSysfs()
    assert sysfs.retry_busy(_failing([errno.EBUSY] * 3), Path("/x")) == "ok"
    assert sysfs.busy_retries == 3


def test_other_errors_are_not_retried_and_name_the_file():
    with pytest.raises(OSError) as caught:
        kdamond.DamonSysfs().retry_busy(_failing([errno.EINVAL, errno.EBUSY]), Path("/sys/x/state"))
    assert caught.value.errno == errno.EINVAL and caught.value.filename == "/sys/x/state"


def test_ebusy_that_lasts_gives_up_after_the_timeout(monkeypatch):
    monkeypatch.setattr(kdamond, "BUSY_TIMEOUT_S", 0.05)
    with pytest.raises(OSError) as caught:
        kdamond.DamonSysfs().retry_busy(_failing([errno.EBUSY] * 10_000), Path("/sys/x/nr_kdamonds"))
    assert caught.value.errno == errno.EBUSY and caught.value.filename == "/sys/x/nr_kdamonds"
