"""The target's reports under a sampler, grouped into bursts, with the re-faults among them.

A program that keeps its memory mapped faults on each page once; a later report on the same page is a
re-armed access (a NUMA hinting fault under ``--sampler numa-hint``). Memory mapped before monitoring
began never shows its first touch, so its first hinting fault counts as a first sighting here; the
bursts (all reports) show how far apart the scanner's passes came. The kernel's own counter
(/proc/vmstat numa_hint_faults) is system-wide, so other programs' scans would be counted too; these
counts come from the target's own reports. Bursts show how far apart the scanner's passes came."""

from __future__ import annotations

import numpy as np

PAGE_SHIFT = 12
BURST_GAP_NS = 500_000_000   # reports closer than this belong to one pass of the scanner
SUMMARY_BURSTS = 100          # bursts listed in the run summary (the count covers all)


class RefaultTracker:
    """Counts reports on already-seen (pid, page) pairs and remembers when they happened."""

    def __init__(self, gap_ns: int = BURST_GAP_NS) -> None:
        self.gap_ns = gap_ns
        self.seen: set[int] = set()
        self.first_touches = 0
        self.refaults = 0
        self.bursts: list[list[int]] = []   # [first_ns, last_ns, reports]

    def observe(self, pids: np.ndarray, addrs: np.ndarray, times_ns: np.ndarray) -> None:
        keys = (pids.astype(np.uint64) << np.uint64(40)) | (addrs.astype(np.uint64) >> np.uint64(PAGE_SHIFT))
        for key, when in zip(keys.tolist(), times_ns.tolist()):
            if key in self.seen:
                self.refaults += 1
            else:
                self.seen.add(key)
                self.first_touches += 1
            self._add(int(when))

    def _add(self, when_ns: int) -> None:
        last = self.bursts[-1] if self.bursts else None
        if last is not None and when_ns - last[1] < self.gap_ns:
            last[1] = max(last[1], when_ns)
            last[2] += 1
        else:
            self.bursts.append([when_ns, when_ns, 1])

    def gaps_s(self) -> list[float]:
        """Seconds from the start of each burst to the start of the next."""
        return [round((b[0] - a[0]) / 1e9, 2) for a, b in zip(self.bursts, self.bursts[1:])]

    def summary(self) -> dict:
        return {"reports": self.first_touches + self.refaults, "first_touches": self.first_touches,
                "refaults": self.refaults, "bursts": len(self.bursts),
                "burst_reports": [b[2] for b in self.bursts[:SUMMARY_BURSTS]], "gaps_s": self.gaps_s()[:SUMMARY_BURSTS]}

    def describe(self, origin_ns: int | None = None) -> str:
        """One phrase for the end-of-run line; ``origin_ns`` (CLOCK_MONOTONIC) dates the first burst."""
        reports = self.first_touches + self.refaults
        if not reports:
            return "no reports from the target"
        gaps = ", ".join(f"{g:g}" for g in self.gaps_s()[:8]) + (" ..." if len(self.bursts) > 9 else "")
        spacing = f"; gaps between bursts (s): {gaps}" if len(self.bursts) > 1 else ""
        if origin_ns is not None:
            spacing = f", the first {max(0, self.bursts[0][0] - origin_ns) / 1e9:.1f} s after the start{spacing}"
        return (f"{reports} reports on {self.first_touches} pages ({self.refaults} re-faults on pages already "
                f"reported) in {len(self.bursts)} burst{'s' if len(self.bursts) != 1 else ''}{spacing}")
