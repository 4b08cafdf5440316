"""``damon-bpf monitor``, the long-running mode: a --comm target that exits and is started again is picked
up, SIGHUP re-reads the --config file (new targets, counters carried over), SIGTERM ends it cleanly."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DAMON_BPF
from promserver import fetch, free_port

pytestmark = pytest.mark.bpf


def series(page: str, name: str) -> dict[str, float]:
    """pid -> value of ``name`` on a metrics page."""
    return {m.group(2): float(m.group(3)) for m in re.finditer(rf'^{name}{{comm="([^"]*)",pid="(\d+)"}} (\S+)$',
                                                               page, re.M)}


def wait_for_pid(url: str, pid: int, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page = fetch(url)
            if str(pid) in series(page, "damon_bpf_working_set_bytes"):
                return page
        except OSError:
            pass
        assert time.monotonic() < deadline, f"pid {pid} never appeared in the metrics"
        time.sleep(0.3)


def run_named(tmp_path, accessgen, name: str, seconds: float) -> subprocess.Popen:
    binary = tmp_path / name
    if not binary.exists():
        shutil.copy(accessgen, binary)
    return subprocess.Popen([str(binary), "--duration", str(seconds), "w:-1:w:1024:0"], stdout=subprocess.DEVNULL)


def seen_total(page: str) -> float:
    return float(re.search(r"^damon_bpf_reports_seen_total (\S+)$", page, re.M).group(1))


def start_monitor(tmp_path, comm: str) -> tuple[subprocess.Popen, str, Path]:
    """``monitor --config FILE`` for processes named ``comm``: the process, its metrics URL and its FILE."""
    port = free_port()
    config = tmp_path / "monitor.toml"
    config.write_text(f'comm = ["{comm}"]\nrescan = "200ms"\n')
    monitor = subprocess.Popen([DAMON_BPF, "monitor", "--config", str(config), "--metrics-listen",
                                f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    return monitor, f"http://127.0.0.1:{port}/metrics", config


def stop(monitor: subprocess.Popen) -> str:
    """SIGTERM ends the monitor cleanly (status 0); what it said on stderr."""
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=30) == 0
    return monitor.stderr.read()


def test_monitor_restart_reload_and_term(tmp_path, accessgen):
    monitor, url, config = start_monitor(tmp_path, "agstandA")
    try:
        first = run_named(tmp_path, accessgen, "agstandA", 3)
        wait_for_pid(url, first.pid, 60)            # 60 s: the BPF program is built first
        assert first.wait(timeout=30) == 0
        second = run_named(tmp_path, accessgen, "agstandA", 3)   # the "service" restarted: a new pid
        page = wait_for_pid(url, second.pid)
        assert series(page, "damon_bpf_working_set_bytes")[str(second.pid)] > 0
        assert second.wait(timeout=30) == 0
        before = seen_total(fetch(url))

        config.write_text('comm = ["agstandB"]\nrescan = "200ms"\n')
        monitor.send_signal(signal.SIGHUP)
        other = run_named(tmp_path, accessgen, "agstandB", 4)
        page = wait_for_pid(url, other.pid, 60)   # found by the rebuilt monitor or by its rescan
        assert other.wait(timeout=30) == 0
        assert seen_total(page) >= before         # counters carry over the reload
        ignored = run_named(tmp_path, accessgen, "agstandA", 1)   # no longer configured
        assert ignored.wait(timeout=30) == 0
        assert str(ignored.pid) not in series(fetch(url), "damon_bpf_working_set_bytes")
        assert monitor.poll() is None
        err = stop(monitor)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    assert "SIGHUP: reloading the configuration" in err
    assert "ended: reload" in err and "ended: interrupted" in err
    assert f"monitoring new process(es) {second.pid}" in err
    assert "Traceback" not in err and "error" not in err and "NOT ACCOUNTED" not in err, err  # forgotten targets kept


def test_monitor_bad_reload_keeps_running(tmp_path, accessgen):
    monitor, url, config = start_monitor(tmp_path, "agstandC")
    try:
        workload = run_named(tmp_path, accessgen, "agstandC", 6)
        wait_for_pid(url, workload.pid, 60)
        config.write_text('sampler = "no-such"\n')
        monitor.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert monitor.poll() is None
        assert workload.wait(timeout=30) == 0
        err = stop(monitor)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    assert "warning: SIGHUP: keeping the running configuration" in err and "sampler" in err, err
    assert "ended: reload" not in err
