"""DAMON's region core: monitoring attributes, regions, sample/aggregation intervals, snapshots.

Knows regions and time only: no BPF, no /proc (damon_bpf.sources.vaddr reads a process's mappings).
Access reports arrive as numpy structured arrays with the columns of ``core.events.REPORT_COLUMNS``,
their kind a ``core.events.Kind``: the core defines what it consumes and knows nothing of the BPF record
(the recorder adapts that: ``damon_bpf.recorder.core_reports``).
"""
