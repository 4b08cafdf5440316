"""Prometheus metrics of a running monitor (record, live, monitor --metrics-listen).

``fold`` turns closed snapshots into per-target totals and ``answers`` a target's recent snapshots into
its sharing and NUMA numbers (no threads in either; ``answers`` asks move_pages where pages live), which
``answer_worker`` computes on a thread of its own;
``exporter`` is the prometheus_client Collector that reads a Monitor's state at scrape time; ``server`` serves it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from damon_bpf.metrics.exporter import MetricsExporter
    from damon_bpf.metrics.server import MetricsServer, parse_listen

__all__ = ["MetricsExporter", "MetricsServer", "parse_listen"]
_HOME = {"MetricsExporter": "exporter", "MetricsServer": "server", "parse_listen": "server"}


def __getattr__(name: str) -> Any:
    """Imported on first use: every command's option parsing checks ``--metrics-listen``, and the exporter
    (with the answers and the reports they use) costs ~0.3 s at start-up that a report never needs."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
