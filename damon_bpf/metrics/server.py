"""Serving /metrics over HTTP with prometheus_client's own server, in a thread of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.process_collector import ProcessCollector

from damon_bpf.errors import UsageError


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9101`` for IPv6; ``:9101`` for every address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9101, :9101, [::1]:9101)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


class MetricsServer:
    """``collector`` (and the process's own CPU and memory, prometheus_client's ``process_`` series) on
    http://HOST:PORT/metrics until ``close``."""

    def __init__(self, listen: str, collector) -> None:
        host, port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        try:
            self.server, self.thread = start_http_server(port, host, self.registry)
        except OSError as err:
            raise UsageError(f"--metrics-listen {listen}: cannot listen there: {err.strerror or err}") from None
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
