"""``damon-bpf man``: manual pages generated from the click commands themselves (click-man), so they list
exactly the commands and options the program has."""

from __future__ import annotations

import inspect
import os

import click
from click_man.man import ManPage

from damon_bpf import __version__
from damon_bpf.errors import UsageError
from damon_bpf.outputs import write_text


def pages(root: click.Command, name: str = "damon-bpf") -> dict[str, str]:
    """Every page (file name -> roff text): the top command's, and one per command and subcommand, as
    ``damon-bpf-report-access.1`` for ``damon-bpf report access``."""
    found: dict[str, str] = {}

    def add(command: click.Command, info_name: str, parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=info_name, parent=parent)
        found[ctx.command_path.replace(" ", "-") + ".1"] = _page(ctx)
        for sub_name, sub in _subcommands(ctx):
            add(sub, sub_name, ctx)

    add(root, name, None)
    return found


def _subcommands(ctx: click.Context) -> list[tuple[str, click.Command]]:
    """The visible subcommands of ctx's command by name, sorted (the top group imports them as asked)."""
    command = ctx.command
    if not isinstance(command, click.Group):
        return []
    subs = ((name, command.get_command(ctx, name)) for name in command.list_commands(ctx))
    return sorted((name, sub) for name, sub in subs if sub is not None and not sub.hidden)


def _page(ctx: click.Context) -> str:
    """click-man's page of one command, with its fields taken whole: the summaries uncut (click-man's own
    generate_man_page cuts them at 45 characters), --help listed, click's \\b markers (keep this paragraph's
    line breaks) dropped, and a subcommand's cross-reference hyphenated (click-man writes
    "damon-bpf report-access(1)")."""
    command = ctx.command
    page = ManPage(ctx.command_path)
    page.version = __version__
    page.short_help = command.get_short_help_str(limit=300)
    page.description = "\n".join(line for line in inspect.cleandoc(command.help or "").splitlines()
                                  if line.strip() != "\b")
    page.synopsis = " ".join(command.collect_usage_pieces(ctx))
    records = [param.get_help_record(ctx) for param in command.get_params(ctx) if isinstance(param, click.Option)]
    page.options = [record for record in records if record is not None]
    page.commands = [(name, sub.get_short_help_str(limit=300)) for name, sub in _subcommands(ctx)]
    text = str(page).replace(f"\\fB{ctx.command_path}-", f"\\fB{ctx.command_path.replace(' ', '-')}-")
    # a line starting with a quote would be read by roff as a request
    return "".join(("\\&" + line) if line[:1] == "'" else line for line in text.splitlines(keepends=True))


@click.command()
@click.argument("command", nargs=-1)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write every page into DIR (damon-bpf.1, damon-bpf-record.1, ...) instead of printing one.")
@click.pass_context
def man(ctx: click.Context, command: tuple[str, ...], output_dir: str | None) -> None:
    """Print the manual page of COMMAND (default: damon-bpf itself), e.g. `damon-bpf man record | man -l -`;
    with -o DIR, write all of them."""
    root = ctx.find_root().command
    every = pages(root)
    if output_dir:
        if command:
            raise UsageError("give COMMAND or --output-dir, not both: --output-dir writes every page")
        os.makedirs(output_dir, exist_ok=True)
        for file_name, text in every.items():
            write_text(os.path.join(output_dir, file_name), text, "manual page")
        click.echo(f"damon-bpf: {len(every)} manual pages written to {output_dir}", err=True)
        return
    file_name = "-".join(("damon-bpf", *command)) + ".1"
    if file_name not in every:
        known = [name[len("damon-bpf-"):-2].replace("-", " ") for name in every if name != "damon-bpf.1"]
        raise UsageError(f"no command '{' '.join(command)}' (commands: {', '.join(known)})")
    click.echo(every[file_name], nl=False)
