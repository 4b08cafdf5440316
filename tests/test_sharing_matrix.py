"""report sharing's matrix form (reports.sharing: summed per entity pair in one matrix, grouping on a matrix of
summed Jaccard) gives what the plain definitions give: per window, every pair of pieces' shared bytes added
to its pair of entities; average linkage recomputed from the members of each pair of groups at every step."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.reports import sharing as sh

PAGE = 4096


def plain_totals(windows: dict[int, list]) -> dict[tuple[int, int], float]:
    totals: dict[tuple[int, int], float] = {}
    for pieces in windows.values():
        if not pieces:
            continue
        ids, member, sizes = sh._cut(pieces)
        shared = (member * sizes) @ member.T.astype(np.float64)
        for i, j in itertools.combinations_with_replacement(range(len(ids)), 2):
            if shared[i, j] > 0:
                key = (min(ids[i], ids[j]), max(ids[i], ids[j]))
                totals[key] = totals.get(key, 0.0) + float(shared[i, j])
    return totals


def plain_groups(entities: list[int], jaccard: dict[tuple[int, int], float], min_jaccard: float,
                 max_group: int | None) -> list[list[int]]:
    groups = [[e] for e in sorted(entities)]

    def link(g: list[int], h: list[int]) -> float:
        return sum(jaccard.get((min(a, b), max(a, b)), 0.0) for a in g for b in h) / (len(g) * len(h))

    while len(groups) > 1:
        candidates = [(link(g, h), i, j) for (i, g), (j, h) in itertools.combinations(enumerate(groups), 2)
                      if max_group is None or len(g) + len(h) <= max_group]
        best = max(candidates, default=None, key=lambda c: (c[0], -c[1], -c[2]))
        if best is None or best[0] < min_jaccard or best[0] <= 0:
            break
        _, i, j = best
        groups[i] = sorted(groups[i] + groups[j])
        del groups[j]
    return sorted(groups, key=lambda g: (-len(g), g))


@st.composite
def windows(draw) -> dict[int, list]:
    """Windows of entities (1-6) with sorted disjoint page intervals; an entity may come twice in a window
    (two snapshots of one process ending in one window, in --by process)."""
    out = {}
    for w in range(draw(st.integers(0, 6))):
        pieces = []
        for _ in range(draw(st.integers(0, 5))):
            cuts = sorted(set(draw(st.lists(st.integers(0, 40), min_size=2, max_size=8))))
            pairs = [(lo, hi) for lo, hi in zip(cuts[0::2], cuts[1::2])]
            if pairs:
                starts = np.array([lo * PAGE for lo, _ in pairs], dtype=np.uint64)
                ends = np.array([hi * PAGE for _, hi in pairs], dtype=np.uint64)
                pieces.append((draw(st.integers(1, 6)), starts, ends))
        out[w] = pieces
    return out


@settings(max_examples=200, deadline=None)
@given(windows())
def test_summed_pairs_are_the_plain_sums(wins):
    accessed, pairs = sh._totals(wins)
    plain = plain_totals(wins)
    assert accessed == {a: int(v) for (a, b), v in plain.items() if a == b}
    expected = sorted(((a, b, int(v), v / (accessed[a] + accessed[b] - v)) for (a, b), v in plain.items() if a != b),
                      key=lambda p: (-p[2], p[0], p[1]))
    assert [(p.a, p.b, p.shared_bytes, p.jaccard) for p in pairs] == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), st.data(), st.sampled_from([0.0, 0.2, 0.5]), st.sampled_from([None, 2, 3]))
def test_grouping_is_plain_average_linkage(n, data, min_jaccard, max_group):
    # Jaccards in 64ths: sums and means of a few are exact in floating point, so ties are ties in both forms
    links = data.draw(st.dictionaries(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
        lambda p: p[0] < p[1]), st.integers(1, 64).map(lambda k: k / 64)))
    pairs = [sh.Pair(a, b, 1, j) for (a, b), j in links.items()]
    assert sh.group({e: 1 for e in range(n)}, pairs, min_jaccard, max_group) \
        == plain_groups(list(range(n)), links, min_jaccard, max_group)
