"""The heatmap's axes: address rows (linear like damo's, or made of the spans ever accessed with the
cold gaps between them skipped) and time columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from damon_bpf.core.mappings import region_label
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import Columns, chunks, columns, outline_of
from damon_bpf.reports.common import fmt_ns

PAGE = 4096
GAP_FRACTION = 0.05  # a cold gap smaller than this share of the hot bytes is drawn, not skipped
PAD_FRACTION = 0.03  # padding around each drawn span, so its edges are visible


@dataclass
class AddressAxis:
    """Row ``r`` covers addresses ``[lo[r], hi[r])``, ascending. ``breaks`` lists the rows that
    start a new span after a skipped gap. Python ints: addresses may reach 2**64."""

    lo: list[int]
    hi: list[int]
    breaks: list[int]
    names: list[str] | None = None   # per row, the mapping at its middle (mapping_names); None: not known

    @property
    def rows(self) -> int:
        return len(self.lo)


def linear_axis(start: int, end: int, rows: int) -> AddressAxis:
    # Same cell arithmetic as damo (integer unit, floor), so raw outputs line up cell for cell.
    if end <= start:
        raise UsageError(f"address range end {end:#x} is not above its start {start:#x}")
    rows = min(rows, end - start)
    unit = (end - start) // rows
    lo = [start + r * unit for r in range(rows)]
    return AddressAxis(lo, [a + unit for a in lo], [])


def _touched_spans(snaps: Sequence[Snapshot]) -> list[tuple[int, int]]:
    """Union of the regions ever accessed or reported (all regions if none was)."""
    def spans(touched: bool) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
        for part in chunks(snaps, 8):
            joined = columns(part, names=False)
            pick = (joined.nr_accesses > 0) | (joined.nr_reports > 0) if touched else slice(None)
            starts.append(joined.start[pick])
            ends.append(joined.end[pick])
        return np.concatenate(starts), np.concatenate(ends)

    starts, ends = spans(touched=True)
    if len(starts) == 0:
        starts, ends = spans(touched=False)
    if len(starts) == 0:
        raise UsageError("no regions were monitored in the chosen time range")
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    first = np.concatenate([[True], starts[1:] > ends[:-1]])  # a new span starts past the reach
    last = np.concatenate([first[1:], [True]])
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def mapping_names(snaps: Sequence[Snapshot], axis: AddressAxis) -> list[str] | None:
    """Per row, the short name of the mappings of the region at the row's middle, from the latest snapshot
    that has a region there ("" when none does); None when no snapshot names its regions (older records)."""
    mids = np.array([(lo + hi) // 2 for lo, hi in zip(axis.lo, axis.hi)], dtype=np.uint64)
    order = np.argsort(mids, kind="stable")
    names: list[str | None] = [None] * axis.rows
    named_any = False
    for part in reversed(list(chunks(snaps, 8, axis.rows))):   # the latest first, a part's regions at once
        joined = columns(part)
        named = np.array([m is not None for m in joined.mappings], bool) & (np.diff(joined.bounds) > 0)
        if not named.any():
            continue
        named_any = True
        latest = _latest_cover(joined, named, mids[order])
        snapshot_of = joined.snapshot_of_region
        for k in np.flatnonzero(latest >= 0).tolist():
            region, row = int(latest[k]), int(order[k])
            if names[row] is None:
                snap = int(snapshot_of[region])
                mappings = joined.mappings[snap]
                assert mappings is not None   # only snapshots that name their regions are in named
                names[row] = region_label(mappings[region - int(joined.bounds[snap])])
        if all(n is not None for n in names):
            break
    return [n or "" for n in names] if named_any else None


def _latest_cover(joined: Columns, named: np.ndarray, mids: np.ndarray) -> np.ndarray:
    """Per address of ``mids`` (ascending), the region (index in ``joined``) of the latest snapshot in
    ``named`` whose region at that address (the last one starting at or below it, as a search of the
    snapshot's starts finds) holds it; -1 where none does. Region ``i`` is the one found for the addresses
    from its start up to the next region's start, and holds those below its end."""
    first = np.searchsorted(mids, joined.start, side="left")
    past_end = np.searchsorted(mids, joined.end, side="left")
    next_first = np.append(first[1:], len(mids))
    next_first[joined.bounds[1:] - 1] = len(mids)   # a snapshot's last region: up to every address above
    count = np.maximum(np.minimum(next_first, past_end) - first, 0) * named[joined.snapshot_of_region]
    region = np.repeat(np.arange(len(count)), count)
    at = first[region] + np.arange(len(region)) - np.repeat(np.cumsum(count) - count, count)
    latest = np.full(len(mids), -1, np.int64)
    np.maximum.at(latest, at, region)   # later snapshots' regions come later in joined
    return latest


def mapping_spans(names: list[str]) -> list[tuple[int, int, str]]:
    """Runs of rows with the same mapping name: ``(first, stop, name)``, unnamed runs left out."""
    spans: list[tuple[int, int, str]] = []
    for r, name in enumerate(names):
        if spans and spans[-1][2] == name and spans[-1][1] == r:
            spans[-1] = (spans[-1][0], r + 1, name)
        else:
            spans.append((r, r + 1, name))
    return [s for s in spans if s[2] and s[2] != "-"]


def _keep_gaps(spans: list[tuple[int, int]], max_segments: int) -> list[tuple[int, int]]:
    """Merge spans across every gap except the widest ``max_segments - 1`` that are also wide
    enough to be worth skipping."""
    hot = sum(hi - lo for lo, hi in spans)
    gaps = sorted(range(1, len(spans)), key=lambda i: spans[i][0] - spans[i - 1][1], reverse=True)
    kept = {i for i in gaps[:max_segments - 1]
            if spans[i][0] - spans[i - 1][1] >= GAP_FRACTION * hot}
    merged = [list(spans[0])]
    for i in range(1, len(spans)):
        if i in kept:
            merged.append(list(spans[i]))
        else:
            merged[-1][1] = spans[i][1]
    return [(lo, hi) for lo, hi in merged]


def _pad(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for i, (lo, hi) in enumerate(segments):
        pad = max(PAGE, int((hi - lo) * PAD_FRACTION))
        floor_ = (segments[i - 1][1] + lo) // 2 if i else 0  # never past the gap's midpoint
        ceil_ = (hi + segments[i + 1][0]) // 2 if i + 1 < len(segments) else 2**64
        # Page aligned (when the gap allows) so the row labels read like addresses.
        start = max(floor_, (lo - pad) // PAGE * PAGE)
        end = min(ceil_, -(-(hi + pad) // PAGE) * PAGE)
        out.append((start, end))
    return out


def _share_rows(sizes: list[int], rows: int) -> list[int]:
    """One row each, the rest in proportion to size (largest remainder)."""
    extra = (rows - len(sizes)) * np.array(sizes, dtype=np.float64) / sum(sizes)
    share = np.floor(extra).astype(int)
    for i in np.argsort(-(extra - share))[:rows - len(sizes) - share.sum()]:
        share[i] += 1
    return (share + 1).tolist()


def auto_axis(snaps: Sequence[Snapshot], rows: int) -> AddressAxis:
    """Rows over the spans ever accessed, padded; the widest cold gaps between them skipped."""
    # a few rows still skip the big gaps (a process's three areas: image and heap, mmap, stack)
    segments = _pad(_keep_gaps(_touched_spans(snaps), max(1, min(rows, max(3, rows // 6)))))
    lo: list[int] = []
    hi: list[int] = []
    breaks = []
    for (start, end), n in zip(segments, _share_rows([e - s for s, e in segments], rows)):
        unit = -(-(end - start) // n)  # ceil: the span's rows cover all of it
        if unit >= 32 * PAGE:  # whole pages, so labels read like addresses; overshoot <= 1/32
            unit = -(-unit // PAGE) * PAGE
        if lo:
            breaks.append(len(lo))
        lo.extend(start + r * unit for r in range(n))
        hi.extend(start + (r + 1) * unit for r in range(n))
    return AddressAxis(lo, hi, breaks)


def time_edges(rec: TargetRecord, cols: int, time_range: tuple[int, int] | None) -> np.ndarray:
    """``cols + 1`` column edges (absolute ns) over ``time_range`` (relative to the first snapshot)."""
    origin = rec.snapshots[0].start_ns
    last = int(outline_of(rec.snapshots)[1].max())
    if time_range is None:
        t0, t1 = origin, last
    else:
        t0, t1 = origin + int(time_range[0]), origin + int(time_range[1])
        if t0 >= last and t1 > t0:
            raise UsageError(f"time range starts at {fmt_ns(t0 - origin)}, after the record ends "
                             f"({fmt_ns(last - origin)})")
        t1 = min(t1, last)  # columns past the end would only be blank
    if t1 <= t0:
        raise UsageError(f"time range end ({fmt_ns(t1 - origin)}) is not after its start "
                         f"({fmt_ns(t0 - origin)})")
    cols = min(cols, t1 - t0)
    unit = (t1 - t0) // cols  # damo's arithmetic again
    return np.array([t0 + k * unit for k in range(cols + 1)], dtype=np.int64)
