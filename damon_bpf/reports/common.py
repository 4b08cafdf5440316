"""Helpers shared by the reports: target selection, projecting region values onto bins, formatting."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.columns import outline_of, select


def select_target(records: list[TargetRecord], target_id: int | None = None) -> TargetRecord:
    """The record of ``target_id``, or the first record when None."""
    if not records:
        raise UsageError("the record file holds no target")
    if target_id is None:
        return records[0]
    for rec in records:
        if rec.target_id == target_id:
            return rec
    known = ", ".join(str(r.target_id) for r in records)
    raise UsageError(f"no target {target_id} in the record file (targets: {known})")


NO_COMM = "(unknown)"


def comm_of(rec: TargetRecord) -> str | None:
    """The target process's command name: the recorder stores it under meta["target"] (older files, and
    tests, at the top of meta); None when the record does not say."""
    target = rec.meta.get("target")
    comm = target.get("comm") if isinstance(target, dict) else None
    comm = comm or rec.meta.get("comm")
    return str(comm) if comm else None


def ppid_of(rec: TargetRecord) -> int | None:
    """The target process's parent at its birth, when the record says."""
    target = rec.meta.get("target")
    ppid = target.get("ppid") if isinstance(target, dict) else None
    ppid = rec.meta.get("ppid") if ppid is None else ppid
    return ppid if isinstance(ppid, int) and not isinstance(ppid, bool) else None


def process_line(target_id: int, pid: int | None, comm: str | None, ppid: int | None) -> str:
    """'target 0 (pid 123 mapgen, parent 45)': who a report is about."""
    who = [f"pid {pid}" if pid is not None else None, comm]
    inner = " ".join(w for w in who if w)
    if ppid is not None:
        inner += f", parent {ppid}"
    return f"target {target_id}" + (f" ({inner})" if inner else "")


def pick_snapshot(rec: TargetRecord, index: int) -> Snapshot:
    """Snapshot ``index`` (negative counts from the end, like Python); a record read with only that snapshot
    kept (read_record(path, snapshot=index)) holds just it."""
    n = len(rec.snapshots) if rec.nr_in_file is None else rec.nr_in_file
    if n == 0:
        raise UsageError(f"target {rec.target_id} has no snapshots")
    if not -n <= index < n:
        raise UsageError(f"snapshot {index} does not exist; target {rec.target_id} has {n} "
                         f"(valid: 0..{n - 1} or -{n}..-1)")
    return rec.snapshots[index] if rec.nr_in_file is None else rec.snapshots[0]


def in_time(rec: TargetRecord, time_range: tuple[int, int] | None) -> Sequence[Snapshot]:
    """Snapshots overlapping ``time_range`` (ns relative to the first snapshot's start)."""
    if time_range is None or not rec.snapshots:
        return rec.snapshots
    origin = rec.snapshots[0].start_ns
    lo, hi = origin + time_range[0], origin + time_range[1]
    start_ns, end_ns, _ = outline_of(rec.snapshots)
    return select(rec.snapshots, (end_ns > lo) & (start_ns < hi))


def bin_masses(start: np.ndarray, end: np.ndarray, mass: np.ndarray | list[np.ndarray],
               lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How much of each region's mass falls in each bin ``[lo[k], hi[k])``, for K quantities.

    ``mass`` is (K, regions), spread evenly over each region's bytes; the result is (K, bins).
    Regions are sorted and disjoint, so the running total of a quantity is piecewise linear with
    knots at the region bounds; one searchsorted gives every bin edge's interpolation weights,
    shared by all K quantities: O(K x (regions + bins)) whatever the address span.
    """
    mass = np.atleast_2d(np.asarray(mass, dtype=np.float64))
    if len(start) == 0:
        return np.zeros((mass.shape[0], len(lo)))
    knots = np.empty(2 * len(start))
    knots[0::2], knots[1::2] = np.asarray(start, np.float64), np.asarray(end, np.float64)
    cum_end = np.cumsum(mass, axis=1)
    running = np.empty((mass.shape[0], len(knots)))
    running[:, 0::2], running[:, 1::2] = cum_end - mass, cum_end

    def at(x: np.ndarray) -> np.ndarray:
        j = np.searchsorted(knots, x, side="right")  # knots[j-1] <= x < knots[j]
        left, right = np.clip(j - 1, 0, len(knots) - 1), np.clip(j, 0, len(knots) - 1)
        width = knots[right] - knots[left]
        frac = np.divide(x - knots[left], width, out=np.zeros(len(x)), where=width > 0)
        value = running[:, left] + (running[:, right] - running[:, left]) * np.clip(frac, 0, 1)
        value[:, j == 0] = 0.0  # before the first region
        return value

    return at(np.asarray(hi, np.float64)) - at(np.asarray(lo, np.float64))


def percentile(sorted_vals: list, p: float):
    """damo's percentile: index int(p/100 * n), clamped (so reports agree with ``damo report wss``)."""
    idx = min(int(p / 100.0 * len(sorted_vals)), len(sorted_vals) - 1)
    return sorted_vals[idx]


def fmt_size(n: float) -> str:
    """Binary units, at most 4 significant digits: 64 KiB, 1.5 MiB, 1024 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            break
        n /= 1024
    text = f"{n:.0f}" if abs(n) >= 100 or unit == "B" else f"{n:.3g}"
    return f"{text} {unit}"


def fmt_ns(ns: float) -> str:
    s = ns / 1e9
    if abs(s) >= 60:
        return f"{s / 60:.3g} min"
    if abs(s) >= 1 or s == 0:
        return f"{s:.3g} s"
    if abs(s) >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def fmt_addr(a: int) -> str:
    return f"{int(a):#x}"
