"""What ships for running damon-bpf as a service: the Grafana dashboard asks only for series the exporter
serves, the systemd unit passes systemd-analyze, the example configuration is one `monitor` accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from conftest import DAMON_BPF
from damon_bpf.metrics import MetricsExporter
from promserver import dashboard_queries, free_port

ROOT = Path(__file__).resolve().parent.parent
PROMQL_WORDS = {"sum", "by", "rate", "ignoring", "group_left", "clamp_min", "label_values", "max", "on", "without"}


def served() -> tuple[set[str], set[str]]:
    """Names of the series the exporter serves (counters with their _total) and their label names."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsExporter(cgroup_of=lambda _pid: ""))   # every label the exporter can have
    ProcessCollector(registry=registry)
    names, labels = set(), set()
    for family in registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    for collector_family in MetricsExporter(cgroup_of=lambda _pid: "")._build([]):
        for sample in collector_family.samples:
            labels.update(sample.labels)
    return names, labels


def test_dashboard_names_only_served_series():
    names, _labels = served()
    exprs = dashboard_queries()
    assert len(exprs) >= 15
    used = {word for expr in exprs for word in re.findall(r"\b[a-z_][a-z0-9_]*\b", re.sub(r'"[^"]*"', "", expr))
            if word.startswith(("damon_bpf_", "process_"))}
    assert used and used <= names, sorted(used - names)
    needed = {"damon_bpf_working_set_bytes", "damon_bpf_dirty_set_bytes", "damon_bpf_written_bytes_total",
              "damon_bpf_cpu_reports_total", "damon_bpf_node_reports_total", "damon_bpf_reports_lost_total"}
    assert needed <= used   # WSS, dirty rate, per-CPU/node shares, loss


def test_dashboard_labels_exist():
    exprs = dashboard_queries()
    grouped = {label for expr in exprs for group in re.findall(r"(?:by|ignoring) \(([^)]*)\)", expr)
               for label in group.split(",")}
    selected = {m for expr in exprs for m in re.findall(r"([a-z_]+)=~", expr)}
    allowed = {"pid", "comm", "cgroup", "cpu", "node", "tid", "filter", "index", "place", "sampler", "why"}
    assert grouped | selected <= allowed


def test_systemd_unit_verifies(tmp_path):
    unit = (ROOT / "docs/systemd/damon-bpf.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "monitor --config" in unit
    copy = tmp_path / "damon-bpf.service"
    copy.write_text(unit.replace("/opt/damon-bpf/.venv/bin/damon-bpf", DAMON_BPF))
    assert shutil.which("systemd-analyze"), "systemd-analyze is part of Debian's systemd"
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr


@pytest.mark.bpf
def test_example_config_runs(tmp_path):
    config = (ROOT / "docs/systemd/monitor.toml").read_text().replace("127.0.0.1:9101", f"127.0.0.1:{free_port()}")
    (tmp_path / "monitor.toml").write_text(config)
    run = subprocess.run([DAMON_BPF, "monitor", "--config", str(tmp_path / "monitor.toml"), "--duration", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "serving metrics at" in run.stderr and "ended: duration" in run.stderr
