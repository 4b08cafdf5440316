"""A real Prometheus server for the metrics tests: Debian's ``prometheus`` (setup.sh installs it) on a free
port, with a temporary configuration and storage, scraping the given targets every second."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_for_page(url: str, timeout_s: float = 60) -> str:
    """The page at ``url`` once it answers (a monitor still loading its BPF program does not yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fetch(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus package is not installed (setup.sh installs it)"
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({   # YAML is a superset of JSON
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [{"job_name": "damon-bpf", "static_configs": [{"targets": targets}]}]}))
        self.log = open(workdir / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for_page(self.url + "/-/ready", 30)

    def query(self, expr: str) -> list[dict]:
        """The instant vector of ``expr`` now (/api/v1/query)."""
        answer = json.loads(fetch(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_for(self, expr: str, timeout_s: float = 30, want: int = 1) -> list[dict]:
        """``expr``'s series once at least ``want`` exist (scrapes start at a random offset)."""
        deadline = time.monotonic() + timeout_s
        while len(found := self.query(expr)) < want:
            assert time.monotonic() < deadline, f"no {expr} in Prometheus after {timeout_s} s: {found}"
            time.sleep(0.5)
        return found

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "damon-bpf.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard: panel targets and template variables' queries."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", ())]
    return exprs + [var["query"]["query"] for var in board["templating"]["list"] if var["type"] == "query"]


def as_instant_query(expr: str) -> str:
    """A dashboard expression Prometheus' query API takes: Grafana's variables set to match everything, and
    its ``label_values(SELECTOR, LABEL)`` (a Grafana function) as the selector."""
    expr = re.sub(r"^label_values\((.*), *\w+\)$", r"\1", expr)
    return expr.replace("$__rate_interval", "1m").replace('=~"$comm"', '=~".*"').replace('=~"$pid"', '=~".*"')
