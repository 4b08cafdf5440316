"""``damon-bpf monitor``: the long-running monitor for systemd, its state served as Prometheus metrics."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from cli.options import metrics_option, monitor_config, monitor_options, recording_spec, region_options, serve_metrics
from cli.record import collector_priority_option
from cli.types import Duration
from damon_bpf.errors import UsageError
from damon_bpf.metrics import parse_listen
from damon_bpf.monitor import MonitorConfig
from damon_bpf.standing import StandingMonitor

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

NOT_IN_FILE = ("config_file", "command")   # options a --config file cannot set


def _say(line: str) -> None:
    click.echo(f"damon-bpf: {line}", err=True)


def file_options(ctx: click.Context, path: str) -> dict:
    """The command's options with ``path``'s values (TOML, keys as the long options: ``comm = ["postgres"]``,
    ``sampler = "soft-dirty"``, ``follow-children = true``) for every option not given on the command line,
    converted and checked as the command line's are."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise UsageError(f"--config {path}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: not TOML: {err}") from None
    by_key = {opt[2:]: param for param in ctx.command.params for opt in getattr(param, "opts", ())
              if opt.startswith("--") and param.name not in NOT_IN_FILE}
    values = dict(ctx.params)
    for key, raw in data.items():
        param = by_key.get(key.replace("_", "-"))
        if param is None:
            raise UsageError(f"--config {path}: unknown key {key!r} (keys are the long options of "
                             "`damon-bpf monitor`, e.g. comm, pid, sampler)")
        if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
            continue   # the command line wins
        raw = raw if not param.multiple or isinstance(raw, list) else [raw]
        try:
            values[param.name] = param.process_value(ctx, raw)
        except click.BadParameter as err:
            raise UsageError(f"--config {path}: {key}: {err.format_message()}") from None
    return values


def standing_config(options: dict) -> MonitorConfig:
    """The configuration ``options`` describe, standing (runs on without targets, adopts new ones)."""
    if options["command"] or options.get("command_output"):
        raise UsageError("monitor watches running processes (-p PID, --comm NAME, --cgroup PATH); to start a command, "
                         "use record or live")
    config = monitor_config(options, recording_spec(options))
    targets = dataclasses.replace(config.targets, comms=tuple(options["comms"]))
    if not (targets.pids or targets.comms or targets.cgroups):
        raise UsageError("nothing to monitor: give -p PID, --comm NAME or --cgroup PATH (or pid/comm/cgroup in the "
                         "--config file)")
    return dataclasses.replace(config, targets=targets, standing=True)


@click.command()
@monitor_options
@region_options
@collector_priority_option
@metrics_option
@click.option("--comm", "comms", multiple=True, metavar="NAME",
              help="Monitor every process with this command name (as pgrep -x matches), also those started "
                   "later; repeatable.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML file of options, keys as the long options (comm = [\"postgres\"], sampler = "
                   "\"soft-dirty\"); re-read on SIGHUP. An option given on the command line wins over the file.")
@click.option("--rescan", type=Duration(), default=2.0, show_default=True, metavar="TIME",
              help="How often to look for new --comm processes (seconds, or 500ms).")
def monitor(**_options) -> None:
    """Run until SIGTERM, serving metrics of processes by pid and command name (for systemd).

    \b
    No record file is written: the state is served at --metrics-listen. SIGHUP re-reads --config and
    resolves the targets afresh; a new --comm process (a restarted service) is picked up within --rescan.
    """
    ctx = click.get_current_context()
    config_file = ctx.params["config_file"]

    def options() -> dict:
        return file_options(ctx, config_file) if config_file else dict(ctx.params)

    first = options()
    standing_config(first)   # a mistake is one error line before anything is started
    if not first["metrics_listen"]:
        raise UsageError("monitor serves its state as metrics: give --metrics-listen HOST:PORT (or metrics-listen "
                         "in the --config file)")
    metrics = serve_metrics(first["metrics_listen"], bool(first.get("cgroups")))
    assert metrics is not None   # a listen address was checked for above
    host, port = parse_listen(first["metrics_listen"])
    _say(f"serving metrics at http://{f'[{host}]' if ':' in host else host}:{port}/metrics")

    def configure() -> MonitorConfig:
        values = options()
        for key in ("metrics_listen", "rescan"):
            if values[key] != first[key]:
                _say(f"warning: {key.replace('_', '-')} changes at a restart only: still {first[key]}")
        return standing_config(values)

    StandingMonitor(configure, metrics.attach, first["rescan"], _say).run()
