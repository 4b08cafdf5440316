"""``damon-bpf probe``: what this host offers damon-bpf."""

from __future__ import annotations

import json

import click

from cli.options import verbosity_options
from damon_bpf.probe import probe_host


def _yes(value) -> str:
    return "yes" if value else "no"


def _status_line(name: str, status: dict) -> str:
    return f"  {name:<15} {'available  ' if status['available'] else 'unavailable'}  {status['why']}"


def _lines(info: dict) -> list[str]:
    headers = info["headers"]
    lines = [
        f"kernel            {info['kernel']} ({info['arch']})",
        f"privileges        {'root/CAP_BPF' if info['privileged'] else 'missing: run as root'}",
        f"bcc               {info['bcc'] or 'missing: apt-get install python3-bpfcc'}",
        "kernel headers    " + ("matching" if headers["matching"] else
                                f"none matching; will use {headers['tree']}" if headers["tree"] else "none found"),
        f"tracefs           {_yes(info['tracefs'])}",
        f"BTF               {_yes(info['btf'])}",
        "sources:",
    ]
    for name, status in {**info["sources"], **info["other_sources"]}.items():
        lines.append(_status_line(name, status))
    lines.append("samplers:")
    lines += [_status_line(name, status) for name, status in info["samplers"].items()]
    damon = info["damon"]
    pmu = info["pmu"]
    lines += [
        f"DAMON             sysfs {_yes(damon['sysfs'])}, vaddr {_yes(damon['vaddr'])}, paddr {_yes(damon['paddr'])}",
        f"NUMA nodes        {len(info['numa_nodes'])} ({','.join(map(str, info['numa_nodes']))}); "
        f"numa_balancing={info['numa_balancing']}",
        f"soft-dirty        {_yes(info['soft_dirty'])}",
        f"idle page track   {_yes(info['idle_page_tracking'])}",
        f"PMU               {'present' if pmu['present'] else 'none'}; "
        f"memory sampling: {pmu['mem_sampling'] or 'none'}",
    ]
    return lines


@click.command()
@verbosity_options
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--no-load", is_flag=True, help="Do not load test programs (fentry is then judged by BTF alone).")
def probe(as_json: bool, no_load: bool) -> None:
    """Show which access sources and kernel features this host has, and why."""
    info = probe_host(try_load=not no_load)
    click.echo(json.dumps(info, indent=1) if as_json else "\n".join(_lines(info)))
