"""The ``damon-bpf`` command."""

from __future__ import annotations

import sys

import click

from damon_bpf import __version__
from damon_bpf.errors import DamonBpfError


class Group(click.Group):
    """Turns every error a user can cause into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DamonBpfError as err:
            click.echo(f"damon-bpf: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("damon-bpf: interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damon-bpf")
def cli() -> None:
    """DAMON-style memory access monitoring per CPU, thread and read/write, with eBPF."""


def main() -> None:
    cli()


from cli.probe import probe  # noqa: E402 - commands register on the group above
from cli.record import record  # noqa: E402
from cli.report import report  # noqa: E402
from cli.trace import trace  # noqa: E402
from cli.live import live  # noqa: E402

for command in (probe, trace, record, report, live):
    cli.add_command(command)
