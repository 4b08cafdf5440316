"""Sources (DAMON's "operation sets"): turn kernel events into access reports.

Everything that touches BPF, tracefs, perf or /proc lives under this package.
"""
