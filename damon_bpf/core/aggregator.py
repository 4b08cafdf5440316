"""From timed access reports to DAMON snapshots: sample intervals, aggregations, layout updates.

Time is counted in sample intervals from ``start_ns`` (reference §1): sample ``k`` covers
``[start_ns + k*sample, start_ns + (k+1)*sample)``, aggregation ``j`` is samples
``[j*A, (j+1)*A)`` with ``A = aggr / sample``, and the layout is re-read after every
``update / sample`` samples (after the aggregation when both fall on the same sample, as the
kernel's kdamond_fn does). Reports are placed by their own time, so a late read of the ring
buffer costs nothing as long as the interval is still open.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from damon_bpf.core import regions as R
from damon_bpf.core.attribution import Attribution
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.events import Events, Pending
from damon_bpf.core.index import RegionIndex
from damon_bpf.core.layout import page_size
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import TargetError

Layout = Callable[[], list[tuple[int, int]]]
# Largest samples x regions table for per-sample de-duplication by np.bincount (8 bytes each);
# beyond it np.unique does the same job in less memory.
_DENSE_LIMIT = 1 << 22


class Aggregator:
    """DAMON's region core for one target.

    ``feed`` buffers reports; ``advance(now_ns)`` closes every sample interval that ended by
    ``now_ns`` and returns the snapshots of the aggregations that completed. ``late`` counts
    reports whose sample interval was already closed (or that precede ``start_ns``) when fed;
    ``outside`` counts reports that fell in no region (or in a region that a layout update
    dropped before its aggregation ended). So every report fed is in exactly one of: a
    snapshot's ``nr_reports``, ``late``, ``outside``, ``pending``, or the aggregation in
    progress. If the layout callable raises
    TargetError, it propagates from ``advance`` with the snapshots completed before it in that
    call attached as ``err.snapshots``.
    """

    def __init__(self, attrs: MonitoringAttrs, layout: Layout, start_ns: int, seed: int = 0) -> None:
        attrs.validate()
        self.attrs = attrs
        self.start_ns = int(start_ns)
        self.late = 0
        self.outside = 0
        self.snapshots_emitted = 0
        self._layout = layout
        self._sample_ns = attrs.sample_interval_us * 1000
        self._page = page_size()
        self._rng = np.random.default_rng(seed)
        self._attribution = Attribution()
        self._pending = Pending()
        self._closed = 0  # samples closed so far
        self._last_split_nr = 0  # kdamond_split_regions' last_nr_regions
        self.regions = R.Regions.from_bounds([], [])
        self._update_layout()

    @property
    def regions(self) -> R.Regions:
        """The current regions (read them, do not change them)."""
        return self._regions

    @regions.setter
    def regions(self, regs: R.Regions) -> None:
        self._regions = regs
        self._index = None  # rebuilt on first use: regions change at most once per segment

    @property
    def nr_regions(self) -> int:
        return len(self._regions)

    @property
    def closed_samples(self) -> int:
        """Sample intervals closed so far; reports older than their end are late."""
        return self._closed

    @property
    def pending(self) -> int:
        """Reports buffered for sample intervals not closed yet."""
        return len(self._pending)

    def feed(self, events: np.ndarray) -> None:
        """Buffer a batch of ACCESS_DTYPE records, in any time order."""
        if len(events) == 0:
            return
        ev = Events.from_records(events, self.start_ns, self._sample_ns)
        late = ev.sample < self._closed
        nr_late = int(np.count_nonzero(late))
        if nr_late:
            self.late += nr_late
            ev = ev.take(~late)
        self._pending.add(ev)

    def advance(self, now_ns: int) -> list[Snapshot]:
        """Close every sample interval whose end is <= ``now_ns``."""
        target = max(0, (int(now_ns) - self.start_ns) // self._sample_ns)
        if target <= self._closed:
            return []
        bounds = self._segment_ends(target)
        parts = _split_by_sample(self._pending.take_before(target), bounds)
        done: list[Snapshot] = []
        placed = 0
        try:
            for end, part in zip(bounds, parts):
                self._place(part, end - self._closed)
                placed += 1
                self._closed = end
                if end % self.attrs.max_nr_accesses == 0:
                    done.append(self._aggregate())
                if end % self.attrs.samples_per_update == 0:
                    self._update_layout()
        except TargetError as err:
            err.snapshots = done
            raise
        finally:
            for part in parts[placed:]:  # left unplaced by an exception: keep them for the next call
                self._pending.add(part)
        return done

    def _segment_ends(self, target: int) -> list[int]:
        """Ends of the runs of samples up to ``target`` during which the regions stay the same."""
        every = (self.attrs.max_nr_accesses, self.attrs.samples_per_update)
        ends, pos = [], self._closed
        while pos < target:
            pos = min([target] + [(pos // n + 1) * n for n in every])
            ends.append(pos)
        return ends

    def _place(self, ev: Events, nr_samples: int) -> None:
        """Count the reports of the next ``nr_samples`` samples into the current regions.

        Reports outside every region get index ``n`` (one column past the regions) and are
        counted in that column, then dropped: cheaper than removing them from every array."""
        if len(ev) == 0:
            return
        if self._index is None:
            self._index = RegionIndex(self._regions.start, self._regions.end)
        idx = self._index.lookup(ev.addr)
        n = len(self._regions)
        self.outside += int(np.count_nonzero(idx == n))
        self._count_samples(ev.sample - self._closed, idx, nr_samples)
        regs = self._regions
        regs.counts = self._attribution.count(regs.counts, idx, ev.cpu, ev.tid, ev.write, n + 1)

    def _count_samples(self, sample: np.ndarray, idx: np.ndarray, nr_samples: int) -> None:
        """nr_accesses += number of samples with at least one report in the region (§5)."""
        n = len(self._regions)
        stride = n + 1  # the extra column collects reports outside every region
        key = sample * stride + idx
        if nr_samples * stride <= _DENSE_LIMIT:
            hit = np.bincount(key, minlength=nr_samples * stride).reshape(nr_samples, stride) > 0
            accessed = hit.sum(axis=0)
        else:
            accessed = np.bincount(np.unique(key) % stride, minlength=stride)
        self._regions.nr_accesses += accessed[:n]

    def _aggregate(self) -> Snapshot:
        """End of an aggregation: merge and age, snapshot, reset, split (reference §3, in order)."""
        attrs, regs = self.attrs, self._regions
        thresh, sz_limit = R.merge_limits(regs, attrs.min_nr_regions, self._page)
        regs = R.merge_regions(regs, thresh, sz_limit, attrs.max_nr_regions, attrs.max_nr_accesses)  # ages too
        snapshot = self._snapshot(regs)
        R.reset(regs)
        self._attribution.clear()
        nr_subs = R.split_count(len(regs), self._last_split_nr, attrs.max_nr_regions)
        if nr_subs:
            self._last_split_nr = len(regs)
            regs = R.split_regions(regs, nr_subs, self._page, self._rng)
        self.regions = regs
        self.snapshots_emitted += 1
        return snapshot

    def _snapshot(self, regs: R.Regions) -> Snapshot:
        end_ns = self.start_ns + self._closed * self._sample_ns
        return Snapshot(
            start_ns=end_ns - self.attrs.max_nr_accesses * self._sample_ns,
            end_ns=end_ns,
            start=regs.start.copy(),
            end=regs.end.copy(),
            nr_accesses=regs.nr_accesses.copy(),
            age=regs.age.copy(),
            **self._attribution.views(regs.counts),
        )

    def _update_layout(self) -> None:
        """Re-read the target's ranges and fit the regions to them (DAMON's update rule); with no
        regions yet, split the ranges evenly as at start."""
        attrs = self.attrs
        ranges = R.normalize_ranges(self._layout(), self._page, attrs.max_nr_regions)
        if len(self._regions) == 0:
            self.regions = R.initial_regions(ranges, attrs.min_nr_regions, self._page)
        else:
            before = self._attribution.nr_reports(self._regions.counts)
            self.regions = R.set_regions(self._regions, ranges)
            # Reports of regions the update dropped mid-aggregation are gone from every region.
            self.outside += before - self._attribution.nr_reports(self._regions.counts)


def _split_by_sample(ev: Events, ends: list[int]) -> list[Events]:
    """``ev`` cut into one part per segment (segment i ends before sample ``ends[i]``)."""
    if len(ends) == 1:
        return [ev]
    ev = ev.take(np.argsort(ev.sample, kind="stable"))
    cuts = np.searchsorted(ev.sample, ends, side="left").tolist()
    return [ev.take(slice(lo, hi)) for lo, hi in zip([0] + cuts[:-1], cuts)]
