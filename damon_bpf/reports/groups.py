"""Targets combined: all processes of a record, those with the same command name, or those of one cgroup.

Processes of one program often share memory at the same address (PostgreSQL backends map
shared_buffers at one address in each), so their regions can be laid over each other. The record's
per-target ``comm``, ``ppid`` and (for --cgroup targets) ``cgroup`` name the processes (the recorder stores
them under the target's ``target`` meta key); kernel DAMON's view and the page-fault view are never mixed.
Combining one snapshot of each member gives pieces bounded by every member's
region bounds; per piece:

- ``nr_accesses``: the members' sum, capped at the samples of an aggregation interval (the count of
  samples in which any member was seen accessing it, when they did so in different samples);
- ``age``: the youngest member's;
- reports, writes, reads: summed, each region's spread evenly over its bytes (exact where members'
  regions coincide, as for shared memory mapped at one address).

Adjacent pieces with the same rate and age are merged back into one region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import NO_COMM, bin_masses
from damon_bpf.reports.common import comm_of as _comm

GROUP_MODES = ("comm", "cgroup", "all")
NO_CGROUP = "(no cgroup)"


@dataclass
class Group:
    label: str                    # the comm, or "all"
    members: list[TargetRecord]

    @property
    def pids(self) -> list[int]:
        return [rec.pid for rec in self.members if rec.pid is not None]


@dataclass
class Combined:
    """Regions of a group's snapshot, as columns."""

    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray
    reports: np.ndarray
    writes: np.ndarray
    reads: np.ndarray
    start_ns: int
    end_ns: int


def _target_meta(rec: TargetRecord, key: str):
    """A per-target key: under ``target`` as the recorder writes it, else at the top (older files)."""
    target = rec.meta.get("target")
    return (target.get(key) if isinstance(target, dict) else None) or rec.meta.get(key)


def comm_of(rec: TargetRecord) -> str:
    return _comm(rec) or NO_COMM


def cgroup_of(rec: TargetRecord) -> str:
    """The cgroup a --cgroup target was found in ("/system.slice/cron.service")."""
    return str(_target_meta(rec, "cgroup") or NO_CGROUP)


_LABELS = {"comm": comm_of, "cgroup": cgroup_of, "all": lambda _rec: "all"}


def group_targets(records: list[TargetRecord], by: str) -> list[Group]:
    """Targets with snapshots, grouped ``by`` "comm", "cgroup" or "all", separately per view, in record order."""
    if by not in GROUP_MODES:
        raise UsageError(f"unknown grouping '{by}' (use {' or '.join(GROUP_MODES)})")
    groups: dict[tuple, Group] = {}
    for rec in records:
        if not rec.snapshots:
            continue
        view = rec.meta.get("view")
        label = _LABELS[by](rec)
        key = (view, label)
        groups.setdefault(key, Group(label if view is None else f"{label} [{view}]", [])).members.append(rec)
    if not groups:
        raise UsageError("no target in the record file has snapshots")
    return list(groups.values())


def combine(group: Group, snapshot: int = -1) -> Combined:
    """Snapshot ``snapshot`` of each member that has it, laid over each other (see the module's docstring)."""
    snaps = [(rec, rec.snapshots[snapshot]) for rec in group.members
             if -len(rec.snapshots) <= snapshot < len(rec.snapshots)]
    if not snaps:
        raise UsageError(f"snapshot {snapshot} exists in no target of group {group.label}")
    bounds = np.unique(np.concatenate([np.concatenate([s.start, s.end]) for _, s in snaps]).astype(np.uint64))
    lo, hi = bounds[:-1], bounds[1:]
    covered = np.zeros(len(lo), bool)
    nr_accesses = np.zeros(len(lo), np.int64)
    age = np.full(len(lo), np.iinfo(np.int64).max, np.int64)
    masses = np.zeros((3, len(lo)))
    for _rec, snap in snaps:
        index = np.searchsorted(snap.start, lo, side="right") - 1
        inside = (index >= 0) & (lo < snap.end[np.clip(index, 0, None)])
        covered |= inside
        at = np.clip(index, 0, None)
        nr_accesses += np.where(inside, snap.nr_accesses[at], 0)
        age = np.where(inside, np.minimum(age, snap.age[at]), age)
        mass = np.stack([snap.nr_reports, snap.writes, snap.reads]).astype(np.float64)
        masses += bin_masses(snap.start.astype(np.float64), snap.end.astype(np.float64), mass,
                             lo.astype(np.float64), hi.astype(np.float64))
    max_samples = max(rec.aggr_us // rec.sample_us for rec, _ in snaps)
    nr_accesses = np.minimum(nr_accesses, max_samples)
    keep = np.nonzero(covered)[0]
    return _merge_runs(lo[keep], hi[keep], nr_accesses[keep], age[keep], masses[:, keep],
                       min(s.start_ns for _, s in snaps), max(s.end_ns for _, s in snaps))


def _merge_runs(lo, hi, nr_accesses, age, masses, start_ns: int, end_ns: int) -> Combined:
    """Adjacent pieces with the same rate and age become one region."""
    same = (lo[1:] == hi[:-1]) & (nr_accesses[1:] == nr_accesses[:-1]) & (age[1:] == age[:-1])
    first = np.concatenate([[True], ~same]) if len(lo) else np.zeros(0, bool)
    starts = np.nonzero(first)[0]
    last = np.concatenate([starts[1:] - 1, [len(lo) - 1]]) if len(starts) else starts
    sums = np.add.reduceat(masses, starts, axis=1) if len(starts) else masses
    counts = np.rint(sums).astype(np.int64)
    return Combined(lo[starts], hi[last], nr_accesses[starts], age[starts], counts[0], counts[1], counts[2],
                    start_ns, end_ns)
