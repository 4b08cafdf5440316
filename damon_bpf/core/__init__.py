"""DAMON's region core: monitoring attributes, regions, sample/aggregation intervals, snapshots.

Knows regions and time only: no BPF, no /proc (damon_bpf.sources.vaddr reads a process's mappings).
Access reports arrive as numpy arrays of ``damon_bpf.access.ACCESS_DTYPE`` (the record's one
definition, parsed from bpf/access.h: the core reads the record, it loads nothing).
"""
