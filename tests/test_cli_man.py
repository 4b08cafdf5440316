"""Shell completion and the manual pages, from the installed command: every command and option is in a page."""

from __future__ import annotations

import os
import stat
import subprocess

import click

from cli.main import cli
from cli.man import pages
from conftest import DAMON_BPF


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DAMON_BPF, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def commands(command: click.Command, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every command under ``command`` by its path (the top one is ``()``)."""
    found = {path: command}
    for name, sub in getattr(command, "commands", {}).items():
        found.update(commands(sub, (*path, name)))
    return found


def roff(text: str) -> str:
    return text.replace("-", "\\-")


def test_every_command_has_a_page_listing_each_of_its_options():
    every = pages(cli)
    known = commands(cli)
    assert set(every) == {"-".join(("damon-bpf", *path)) + ".1" for path in known}
    assert {"damon-bpf-record.1", "damon-bpf-report-access.1", "damon-bpf-man.1"} <= set(every)
    for path, command in known.items():
        page = every["-".join(("damon-bpf", *path)) + ".1"]
        assert page.startswith(f'.TH "{" ".join(("damon-bpf", *path)).upper()}" "1"')
        options = [param for param in command.params if isinstance(param, click.Option) and not param.hidden]
        for option in options:
            for switch in option.opts + option.secondary_opts:
                assert roff(switch) in page, f"{path}: {switch}"
        for name in getattr(command, "commands", {}):
            assert f"\\fB{name}\\fP" in page and f"damon-bpf-{'-'.join((*path, name))}(1)" in page
    record = every["damon-bpf-record.1"]
    assert roff("--quiet") in record and roff("--verbose") in record and roff("--sample-us") in record


def test_man_prints_a_page_and_writes_all_of_them(tmp_path):
    result = run("man", "report", "heatmap")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('.TH "DAMON-BPF REPORT HEATMAP"') and roff("--cell") in result.stdout
    rendered = subprocess.run(["man", "-l", "-"], input=result.stdout, capture_output=True, text=True,
                              env={**os.environ, "MANWIDTH": "100"}, timeout=60)
    assert rendered.returncode == 0 and "damon-bpf-report-heatmap" in rendered.stdout
    out = tmp_path / "man1"
    result = run("man", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted(pages(cli))
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in out.iterdir())
    result = run("man", "nosuch")
    assert result.returncode == 2 and result.stderr.startswith("damon-bpf: error: no command 'nosuch' (commands: ")


def test_shell_completion_scripts_and_completions():
    for shell, marker in (("bash", "complete -o nosort -F _damon_bpf_completion damon-bpf"),
                          ("zsh", "compdef _damon_bpf_completion damon-bpf"), ("fish", "complete --no-files")):
        result = run(env={"_DAMON_BPF_COMPLETE": f"{shell}_source"})
        assert result.returncode == 0 and marker in result.stdout, (shell, result.stdout)
    words = run(env={"_DAMON_BPF_COMPLETE": "bash_complete", "COMP_WORDS": "damon-bpf record --samp",
                     "COMP_CWORD": "2"})
    assert {"plain,--sampler", "plain,--sample-us"} <= set(words.stdout.split())
    words = run(env={"_DAMON_BPF_COMPLETE": "bash_complete", "COMP_WORDS": "damon-bpf report he", "COMP_CWORD": "2"})
    assert words.stdout.split() == ["plain,heatmap"]
