"""The ``damon-bpf`` command."""

from __future__ import annotations

import click

from damon_bpf import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damon-bpf")
def cli() -> None:
    """DAMON-style memory access monitoring per CPU, thread and read/write, with eBPF."""


def main() -> None:
    cli()
