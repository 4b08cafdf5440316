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


# ------------------------------------------------------------------------------- damon_aggregated rows -> snapshots

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
import numpy as np  # noqa: E402


def _aggregation(nr: int, base: int = 0, when_ns: int = 0) -> np.ndarray:
    rows = np.zeros(nr, dtype=kdamond.ROW)
    rows["time_ns"] = when_ns + np.arange(nr)
    rows["start"] = base + np.arange(nr) * 4096
    rows["end"] = rows["start"] + 4096
    rows["nr_regions"] = nr
    return rows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=12), st.data())
def test_rows_split_into_whole_aggregations_and_cut_short_ones_are_dropped(aggs, data):
    """Aggregations of varying region counts, some with rows lost (a full ring buffer), delivered in arbitrary
    batches: every whole one is filed once, in order, no cut-short one is filed or mixed into another, and the
    dropped rows are counted (the last one may be still arriving)."""
    stream, whole, lost_rows = [], [], 0
    for i, (nr, lose) in enumerate(aggs):
        rows = _aggregation(nr, base=(i % 2) * 4096, when_ns=i * 1000)   # the regions move between aggregations
        lose = min(lose, nr - 1) if i < len(aggs) - 1 else 0
        if lose:
            keep = np.sort(data.draw(st.permutations(range(nr)))[:nr - lose])
            rows, lost_rows = rows[keep], lost_rows + len(keep)
        else:
            whole.append(i)
        stream.append(rows)
    stream = np.concatenate(stream)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4)))
    pending, filed, dropped = stream[:0], [], 0
    for batch in np.split(stream, cuts):
        done, pending, lost = kdamond.split_aggregations(np.concatenate([pending, batch]), 500)
        filed += done
        dropped += lost
    assert len(pending) == 0 and dropped == lost_rows
    assert [len(f) for f in filed] == [aggs[i][0] for i in whole]
    for f in filed:
        assert (np.diff(f["start"].astype(np.int64)) > 0).all() and (f["nr_regions"] == len(f)).all()


def test_a_whole_aggregation_is_filed_as_soon_as_its_last_row_arrives():
    done, pending, dropped = kdamond.split_aggregations(_aggregation(3)[:2], 500)
    assert (done, len(pending), dropped) == ([], 2, 0)
    done, pending, dropped = kdamond.split_aggregations(_aggregation(3), 500)
    assert len(done) == 1 and len(pending) == 0 and dropped == 0
