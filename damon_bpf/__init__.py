"""damon-bpf: DAMON-style memory access monitoring with per-CPU, per-thread and read/write attribution.

The package mirrors DAMON's split: ``damon_bpf.core`` knows regions and time and nothing about BPF,
``damon_bpf.sources`` turns kernel events into access reports, and the record file, reports and live
view sit on top.
"""

__version__ = "0.1.0"
