"""DAMON's region core: monitoring attributes, regions, sample/aggregation intervals, snapshots.

Knows regions and time only; nothing here imports BPF. Access reports arrive as numpy arrays
of ``damon_bpf.access.ACCESS_DTYPE``.
"""
