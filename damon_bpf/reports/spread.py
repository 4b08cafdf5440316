"""``common.bin_masses`` for many snapshots at once, bit for bit the same as one call per snapshot.

Each snapshot's regions are padded to the part's longest, so every float operation of ``bin_masses`` is
done on the same values in the same order (the running totals run along each snapshot's own regions);
only the integer search for each bin edge's knot is done differently: one ``searchsorted`` of every
knot among the bin edges, then per snapshot a count of the knots at or below each edge.
"""

from __future__ import annotations

import numpy as np


def _padded(start: np.ndarray, end: np.ndarray, bounds: np.ndarray,
            mass: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot its knots (region bounds, interleaved) and the running totals of each quantity at
    them, padded to the longest snapshot; and every knot, unpadded, with its snapshot."""
    nr = np.diff(bounds)
    snap = np.repeat(np.arange(len(nr)), nr)
    pos = np.arange(len(snap)) - np.repeat(bounds[:-1], nr)
    widest = int(nr.max())
    flat = np.empty(2 * len(snap))
    flat[0::2], flat[1::2] = np.asarray(start, np.float64), np.asarray(end, np.float64)
    knots = np.zeros((len(nr), 2 * widest))
    knots[snap, 2 * pos], knots[snap, 2 * pos + 1] = flat[0::2], flat[1::2]
    own = np.zeros((len(nr), mass.shape[0], widest))
    own[snap, :, pos] = mass.T
    cum_end = np.cumsum(own, axis=2)   # along each snapshot's regions, as bin_masses does
    running = np.empty((len(nr), mass.shape[0], 2 * widest))
    running[:, :, 0::2], running[:, :, 1::2] = cum_end - own, cum_end
    return knots, running, flat, np.repeat(snap, 2)


def bin_masses_each(start: np.ndarray, end: np.ndarray, bounds: np.ndarray, mass: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``bin_masses`` of each snapshot of a part: snapshot ``i``'s regions are ``[bounds[i], bounds[i+1])``
    of ``start``, ``end`` and the columns of ``mass`` (K, regions); the result is (snapshots, K, bins)."""
    mass = np.atleast_2d(np.asarray(mass, dtype=np.float64))
    bounds = np.asarray(bounds, np.int64)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    nr = np.diff(bounds)
    if not nr.any():
        return np.zeros((len(nr), mass.shape[0], len(lo)))
    knots, running, flat_knots, knot_snap = _padded(start, end, bounds, mass)
    last = (2 * nr - 1)[:, None]   # each snapshot's last knot (-1 without regions: masked below)

    def at(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        # knot <= x[order][e] exactly when e >= below: j (bin_masses' searchsorted) counts those knots
        below = np.searchsorted(x[order], flat_knots, side="left")
        count = np.bincount(knot_snap * (len(x) + 1) + below, minlength=len(nr) * (len(x) + 1))
        j = np.empty((len(nr), len(x)), np.int64)
        j[:, order] = np.cumsum(count.reshape(len(nr), len(x) + 1), axis=1)[:, :-1]
        left, right = np.clip(j - 1, 0, last), np.minimum(j, last)
        k_left, k_right = np.take_along_axis(knots, left, 1), np.take_along_axis(knots, right, 1)
        width = k_right - k_left
        frac = np.divide(x - k_left, width, out=np.zeros(width.shape), where=width > 0)
        r_left = np.take_along_axis(running, left[:, None, :], 2)
        r_right = np.take_along_axis(running, right[:, None, :], 2)
        value = r_left + (r_right - r_left) * np.clip(frac, 0, 1)[:, None, :]
        value[np.broadcast_to((j == 0)[:, None, :], value.shape)] = 0.0   # before the first region
        return value

    return at(hi) - at(lo)


def summed(total: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """``total + parts[0] + parts[1] + ...`` in that order (a running sum: the same rounding as adding
    one snapshot's part at a time)."""
    return np.cumsum(np.concatenate([np.asarray(total)[None], parts]), axis=0)[-1]
