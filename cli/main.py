"""The ``damon-bpf`` command."""

from __future__ import annotations

import faulthandler
import importlib
import os
import sys

import click

from damon_bpf import __version__
from damon_bpf.errors import DamonBpfError


# Each command's module, imported when the command is run or listed: `report` then does not import the monitor,
# BPF and metrics stack that `record`, `live` and `monitor` need (python -X importtime: ~0.5 s of 1 s).
_COMMANDS = {"probe": "cli.probe", "trace": "cli.trace", "record": "cli.record", "report": "cli.report",
             "live": "cli.live", "monitor": "cli.monitor", "man": "cli.man"}


class Group(click.Group):
    """Turns every error a user can cause into one line on stderr and a non-zero exit; imports a command's
    module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            self.add_command(getattr(importlib.import_module(_COMMANDS[cmd_name]), cmd_name))
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DamonBpfError as err:
            click.echo(f"damon-bpf: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("damon-bpf: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as err:  # a bug of ours: still one line, and the output files are already closed
            if os.environ.get("DAMON_BPF_DEBUG"):
                raise
            click.echo(f"damon-bpf: internal error: {type(err).__name__}: {err} "
                       "(run with DAMON_BPF_DEBUG=1 for the traceback, and please report it)", err=True)
            sys.exit(70)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="damon-bpf")
def cli() -> None:
    """DAMON-style memory access monitoring per CPU, thread and read/write, with eBPF."""


def main() -> None:
    # A crash in native code (numpy, bcc) prints where Python was, instead of ending the run with no word: one
    # segfault in numpy's AVX2 argsort under QEMU's emulator left nothing else to go on (docs/design.md §11).
    faulthandler.enable()
    # click's own usage errors (a value out of range, an unknown option) print three lines; ours print one.
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:   # a group run bare: its help, as click shows it
        click.echo(err.ctx.get_help(), err=True)
        sys.exit(err.exit_code)
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else "damon-bpf"
        click.echo(f"damon-bpf: error: {err.format_message()} (see '{where} --help')", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"damon-bpf: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("damon-bpf: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
