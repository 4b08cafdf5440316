"""From timed access reports to DAMON snapshots: sample intervals, aggregations, layout updates.

Time is counted in sample intervals from ``start_ns`` (docs/design.md §2): sample ``k`` covers
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
from damon_bpf.core.ipcounts import BEFORE_EXEC, IpCounts
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
    ``now_ns`` and returns the snapshots of the aggregations that completed; ``close(end_ns)``
    places every report still waiting and ends the aggregation in progress with a (partial)
    snapshot. Every report fed is in exactly one of: ``in_regions`` (a snapshot's
    ``nr_reports``), ``late`` (its sample interval was already closed, or it precedes
    ``start_ns``), ``outside`` (in a region that a layout update dropped before its aggregation
    ended), ``pending``, or the aggregation in progress; after ``close`` the last two are empty.

    A report outside every region makes the layout be re-read at once (once per ``advance``), and
    the ranges only grow then: new mappings and heap growth get regions before DAMON's next
    update instead of being lost. Reports still outside (a mapping already gone again, or a
    process whose layout cannot be read any more) get regions of their own pages. The periodic
    update (DAMON's update interval) replaces the ranges as DAMON's does. When the layout cannot
    be read (the process exited), ``exited`` is set and the last ranges stay.
    """

    def __init__(self, attrs: MonitoringAttrs, layout: Layout, start_ns: int, seed: int = 0) -> None:
        attrs.validate()
        self.attrs = attrs
        self.start_ns = int(start_ns)
        self.late = 0
        self.outside = 0
        self.in_regions = 0
        self.rereads = 0        # layout reads caused by reports outside the regions
        self.report_ranges = 0  # ranges made from reports' own pages (no mapping covered them)
        self.snapshots_emitted = 0
        self.exited = False     # the layout could not be read any more
        self.read_ok = False    # the layout was read at least once
        self._layout = layout
        self._sample_ns = attrs.sample_interval_us * 1000
        self._page = page_size()
        self._rng = np.random.default_rng(seed)
        self._attribution = Attribution()
        self._ips = IpCounts()
        self._pending = Pending()
        self._closed = 0  # samples closed so far
        self._last_split_nr = 0  # kdamond_split_regions' last_nr_regions
        self._ranges: list[tuple[int, int]] = []
        self._may_reread = True
        self.regions = R.Regions.from_bounds([], [])
        self._update_layout()

    @property
    def regions(self) -> R.Regions:
        """The current regions (read them, do not change them)."""
        return self._regions

    @regions.setter
    def regions(self, regs: R.Regions) -> None:
        self._regions = regs
        self._index: RegionIndex | None = None  # rebuilt on first use: regions change at most once per segment

    @property
    def nr_regions(self) -> int:
        return len(self._regions)

    @property
    def closed_samples(self) -> int:
        """Sample intervals closed so far; reports older than their end are late."""
        return self._closed

    @property
    def closed_until_ns(self) -> int:
        """End of the last closed sample interval: reports before it have been placed."""
        return self.start_ns + self._closed * self._sample_ns

    @property
    def pending(self) -> int:
        """Reports buffered for sample intervals not closed yet."""
        return len(self._pending)

    @property
    def in_progress(self) -> int:
        """Reports placed in the aggregation in progress (in a snapshot once it ends)."""
        return self._attribution.nr_reports(self._regions.counts) if len(self._regions) else 0

    def reread(self) -> None:
        """Read the layout now and add its ranges (an exec: a new image); the next periodic
        update drops what the process no longer maps."""
        fresh = self._read()
        if fresh:
            self._apply(self._ranges + fresh)

    def exec_seen(self) -> None:
        """The process exec'd: the instructions of every report fed so far are of its old image."""
        self._ips.retire()
        self._pending.retire_ips(BEFORE_EXEC)

    def feed(self, events: np.ndarray) -> None:
        """Buffer a batch of reports (core.events.REPORT_COLUMNS), in any time order."""
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
        self._may_reread = True
        target = max(0, (int(now_ns) - self.start_ns) // self._sample_ns)
        if target <= self._closed:
            return []
        bounds = self._segment_ends(target)
        parts = _split_by_sample(self._pending.take_before(target), bounds)
        done: list[Snapshot] = []
        for end, part in zip(bounds, parts):
            self._place(part, end - self._closed)
            self._closed = end
            if end % self.attrs.max_nr_accesses == 0:
                done.append(self._aggregate())
            if end % self.attrs.samples_per_update == 0:
                self._update_layout()
        return done

    def close(self, end_ns: int) -> list[Snapshot]:
        """The target's end: close the samples up to ``end_ns`` and those of every report still
        waiting (even later ones), then end the aggregation in progress with a partial snapshot,
        so every report fed is accounted for. A target that never completed an aggregation gets
        one snapshot all the same (damo cannot read a target without snapshots)."""
        last_end_ns = self.start_ns + (self._pending.last_sample() + 1) * self._sample_ns
        done = self.advance(max(int(end_ns), last_end_ns))
        if self.snapshots_emitted == 0 and self._closed == 0:
            self._closed = 1   # born and gone within one sample interval: one sample long
        if self._closed % self.attrs.max_nr_accesses or self.in_progress or self.snapshots_emitted == 0:
            done.append(self._aggregate())
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
        idx = self._lookup(ev.addr)
        if idx.max() == len(self._regions):
            idx = self._fit(ev.addr, idx)
        n = len(self._regions)
        outside_now = int(np.count_nonzero(idx == n))
        self.outside += outside_now
        self._count_samples(ev.sample - self._closed, idx, nr_samples)
        regs = self._regions
        regs.counts = self._attribution.count(regs.counts, idx, ev.cpu, ev.tid, ev.write, n + 1)
        if outside_now:
            inside = idx < n
            self._ips.add(ev.addr[inside], ev.ip[inside], idx[inside])
        else:
            self._ips.add(ev.addr, ev.ip, idx)

    def _lookup(self, addr: np.ndarray) -> np.ndarray:
        if self._index is None:
            self._index = RegionIndex(self._regions.start, self._regions.end)
        return self._index.lookup(addr)

    def _fit(self, addr: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Grow the ranges to cover reports outside every region: first by a fresh read of the
        layout (once per ``advance``), then by the reports' own pages. Returns the new indexes."""
        if self._may_reread and not self.exited:
            self._may_reread = False
            self.rereads += 1
            self.reread()
            idx = self._lookup(addr)
        outside = addr[idx == len(self._regions)]
        if len(outside) == 0:
            return idx
        own = R.page_ranges(outside, self._page, self._report_range_cap())
        self.report_ranges += len(own)
        self._apply(self._ranges + own)
        return self._lookup(addr)

    def _report_range_cap(self) -> int:
        """How many ranges a batch's outside reports may become. min_nr_regions bridged gaps of tens of
        GiB at a process's exit (its stacks, libraries and a far mapping in one range: one huge hot region
        in the last snapshot); a tenth of max_nr_regions keeps such pages apart and still bounds the cost."""
        return max(self.attrs.min_nr_regions, self.attrs.max_nr_regions // 10)

    def _count_samples(self, sample: np.ndarray, idx: np.ndarray, nr_samples: int) -> None:
        """nr_accesses += number of samples with at least one report in the region (docs/design.md §4)."""
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
        """End of an aggregation: merge and age, snapshot, reset, split (docs/design.md §5, in order)."""
        attrs, regs = self.attrs, self._regions
        thresh, sz_limit = R.merge_limits(regs, attrs.min_nr_regions, self._page)
        regs = R.merge_regions(regs, thresh, sz_limit, attrs.max_nr_regions, attrs.max_nr_accesses)  # ages too
        snapshot = self._snapshot(regs)
        R.reset(regs)
        self._attribution.clear()
        self._ips.clear()
        nr_subs = R.split_count(len(regs), self._last_split_nr, attrs.max_nr_regions)
        if nr_subs:
            self._last_split_nr = len(regs)
            regs = R.split_regions(regs, nr_subs, self._page, self._rng)
        self.regions = regs
        self.snapshots_emitted += 1
        return snapshot

    def _snapshot(self, regs: R.Regions) -> Snapshot:
        per_aggr = self.attrs.max_nr_accesses
        first = (self._closed - 1) // per_aggr * per_aggr  # a partial last aggregation starts here too
        snapshot = Snapshot(
            start_ns=self.start_ns + first * self._sample_ns,
            end_ns=self.start_ns + self._closed * self._sample_ns,
            start=regs.start.copy(),
            end=regs.end.copy(),
            nr_accesses=regs.nr_accesses.copy(),
            age=regs.age.copy(),
            **self._attribution.views(regs.counts),
            ips=self._ips.by_region(regs.start, regs.end),
        )
        self.in_regions += int(snapshot.nr_reports.sum())
        return snapshot

    def _read(self) -> list[tuple[int, int]] | None:
        """The layout's ranges now, or None (and ``exited`` set) once it cannot be read."""
        if self.exited:
            return None
        try:
            ranges = self._layout()
        except TargetError:
            self.exited = True
            return None
        self.read_ok = True
        return ranges

    def _update_layout(self) -> None:
        """DAMON's periodic update: re-read the target's ranges and fit the regions to them
        (DAMON's update rule); with no regions yet, split the ranges evenly as at start. Ranges
        grown since the last update are dropped unless the layout still has them."""
        ranges = self._read()
        self._apply(self._ranges if ranges is None else ranges)

    def _apply(self, ranges: list[tuple[int, int]]) -> None:
        attrs = self.attrs
        self._ranges = R.normalize_ranges(ranges, self._page, attrs.max_nr_regions)
        if len(self._regions) == 0:
            self.regions = R.initial_regions(self._ranges, attrs.min_nr_regions, self._page)
        else:
            before = self._attribution.nr_reports(self._regions.counts)
            self.regions = R.set_regions(self._regions, self._ranges)
            # Reports of regions the update dropped mid-aggregation are gone from every region.
            self.outside += before - self._attribution.nr_reports(self._regions.counts)


def _split_by_sample(ev: Events, ends: list[int]) -> list[Events]:
    """``ev`` cut into one part per segment (segment i ends before sample ``ends[i]``)."""
    if len(ends) == 1:
        return [ev]
    ev = ev.take(np.argsort(ev.sample, kind="stable"))
    cuts = np.searchsorted(ev.sample, ends, side="left").tolist()
    return [ev.take(slice(lo, hi)) for lo, hi in zip([0] + cuts[:-1], cuts)]
