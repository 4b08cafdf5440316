"""Prometheus metrics of a running monitor (record, live, monitor --metrics-listen).

``fold`` turns closed snapshots into per-target totals and ``answers`` a target's recent snapshots into
its sharing and NUMA numbers (no threads in either; ``answers`` asks move_pages where pages live), which
``answer_worker`` computes on a thread of its own;
``exporter`` is the prometheus_client Collector that reads a Monitor's state at scrape time; ``server`` serves it."""

from damon_bpf.metrics.exporter import MetricsExporter
from damon_bpf.metrics.server import MetricsServer, parse_listen

__all__ = ["MetricsExporter", "MetricsServer", "parse_listen"]
