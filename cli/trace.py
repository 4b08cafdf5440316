"""``damon-bpf trace``: stream attributed access reports."""

from __future__ import annotations

import json

import click

from cli.options import exit_with_target_status, monitor_config, monitor_options, verbosity_options
from damon_bpf import log
from damon_bpf.outputs import check_name, write_text
from damon_bpf.eventlog import FORMATS, EventWriter
from damon_bpf.monitor import Monitor


@click.command(context_settings={"ignore_unknown_options": False})
@monitor_options
@verbosity_options
@click.option("-o", "--output", default="-", show_default=True, help="Where events go ('-' is stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: one object per event; binary: raw access records (numpy.fromfile with ACCESS_DTYPE).")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Write the accounting here as JSON.")
def trace(output: str, fmt: str, summary_json: str | None, **options) -> None:
    """Stream memory access reports of a process: -p PID, or -- COMMAND ARGS..."""
    config = monitor_config(options)
    if summary_json:
        check_name(summary_json, "--summary-json")
    writer = EventWriter(output, fmt)
    monitor = Monitor(config)
    result = monitor.run(writer.write, finish=lambda _result: writer.close())
    processes = monitor.targets.describe()
    following = config.targets.follow_children or config.targets.cgroups
    followed = f"; {len(processes)} processes followed" if following else ""
    log.result(f"{result.summary_line()}{followed}; events written to {'stdout' if output == '-' else output}")
    if summary_json:
        write_text(summary_json, json.dumps({**result.as_dict(), "targets": processes}, indent=1), "--summary-json")
    exit_with_target_status(result, config)
