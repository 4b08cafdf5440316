"""``damon-bpf trace``: stream attributed access reports."""

from __future__ import annotations

import json

import click

from cli.options import check_target_lifetime, monitor_options, open_monitor, run_session
from damon_bpf.errors import DamonBpfError
from damon_bpf.eventlog import FORMATS, EventWriter
from damon_bpf.session import Session


@click.command(context_settings={"ignore_unknown_options": False})
@monitor_options
@click.option("-o", "--output", default="-", show_default=True, help="Where events go ('-' is stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: one object per event; binary: raw access records (numpy.fromfile with ACCESS_DTYPE).")
@click.option("--summary-json", type=click.Path(dir_okay=False, writable=True), help="Write the accounting here as JSON.")
def trace(output: str, fmt: str, summary_json: str | None, **options) -> None:
    """Stream memory access reports of a process: -p PID, or -- COMMAND ARGS..."""
    writer = EventWriter(output, fmt)
    tracer, targets = open_monitor(options)
    result = run_session(Session(tracer, targets, options["duration"]), writer.write,
                         finish=lambda _result: writer.close())
    processes = targets.describe()
    followed = f"; {len(processes)} processes followed" if options["follow_children"] else ""
    click.echo(f"damon-bpf: {result.summary_line()}{followed}", err=True)
    if summary_json:
        try:
            with open(summary_json, "w") as stream:
                json.dump({**result.as_dict(), "targets": processes}, stream, indent=1)
        except OSError as err:
            raise DamonBpfError(f"cannot write {summary_json}: {err.strerror}") from None
    check_target_lifetime(result, options)
