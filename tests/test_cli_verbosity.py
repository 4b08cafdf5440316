"""-q/-v and record's start and progress lines, as a user sees them: the installed command, real BPF, a
pseudo-terminal where stderr must be one (pty), pipes where it must not."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest

from conftest import DAMON_BPF

pytestmark = pytest.mark.bpf

WORKLOAD = ["--duration", "2", "a:0:w:4096:0"]   # about 2 s of steady faults: several progress redraws


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DAMON_BPF, *args], capture_output=True, text=True, timeout=180)


def run_on_a_terminal(*args: str, timeout: float = 180) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; everything it printed, and its exit status."""
    pid, fd = pty.fork()
    if pid == 0:   # the child: its terminal is the pty
        os.environ["COLUMNS"] = "250"   # one progress line per redraw, not wrapped
        os.execv(DAMON_BPF, [DAMON_BPF, *args])
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:   # EIO: the child and everything on the pty closed it
            break
        if not data:
            break
        output += data
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("damon-bpf:")]


def test_record_on_a_terminal_says_start_and_progress(accessgen, tmp_path):
    data = tmp_path / "damon.data"
    status, output = run_on_a_terminal("record", "-o", str(data), "--", accessgen, *WORKLOAD)
    assert status == 0, output
    start = output.index("damon-bpf: recording")
    assert f"into {data}" in output[start:output.index("\n", start)]
    progress = [part for part in output.split("\r") if "reports/s" in part]
    assert len(progress) >= 3, output    # redrawn every 0.25 s over a 2 s run
    last = progress[-1]
    for field in ("lost 0", "targets 1", " | snapshots "):
        assert field in last, last
    assert re.search(rf"{data}: \d+ snapshots, \d+(\.\d)? (B|KiB|MiB)", last), last   # the file on disk
    assert "events seen" in output and f"written to {data}" in output


def test_no_start_or_progress_line_when_stderr_is_not_a_terminal(accessgen, tmp_path):
    data = tmp_path / "damon.data"
    result = run("record", "-o", str(data), "--", accessgen, *WORKLOAD)
    assert result.returncode == 0, result.stderr
    assert "reports/s" not in result.stderr and "damon-bpf: recording" not in result.stderr
    assert "\x1b[" not in result.stderr   # no terminal control either
    summary, placement = stderr_lines(result.stderr)[-2:]
    assert "0 lost" in summary and f"written to {data}" in summary and "in regions (100.00%)" in placement


def test_quiet_keeps_the_accounting_only(accessgen, tmp_path):
    data = tmp_path / "damon.data"
    status, output = run_on_a_terminal("record", "-q", "-o", str(data), "--", accessgen, *WORKLOAD)
    assert status == 0, output
    lines = stderr_lines(output)
    assert len(lines) == 2, output   # the summary (with where it went) and where every report went
    assert "reports/s" not in output and "damon-bpf: recording" not in output
    assert "lost" in lines[0] and f"written to {data}" in lines[0] and "in regions" in lines[1]
    result = run("trace", "--quiet", "-o", str(tmp_path / "ev.jsonl"), "--", accessgen, "w:0:w:64:0")
    assert result.returncode == 0, result.stderr
    (line,) = stderr_lines(result.stderr)
    assert "0 lost" in line and f"events written to {tmp_path / 'ev.jsonl'}" in line


def test_verbose_says_the_details(accessgen, tmp_path):
    result = run("record", "-v", "-o", str(tmp_path / "damon.data"), "--", accessgen, *WORKLOAD)
    assert result.returncode == 0, result.stderr
    assert "damon-bpf: source auto: tracepoint chosen" in result.stderr
    assert "damon-bpf: kernel headers: " in result.stderr
    result = run("trace", "--verbose", "--source", "tracepoint", "-o", str(tmp_path / "ev.jsonl"), "--", accessgen,
                 "w:0:w:64:0")
    assert "damon-bpf: source tracepoint: " in result.stderr, result.stderr


def test_quiet_and_verbose_together_is_a_usage_error():
    result = run("record", "-q", "-v", "--", "true")
    assert result.returncode == 2
    assert stderr_lines(result.stderr) == [
        "damon-bpf: error: --quiet and --verbose contradict each other: give one (see 'damon-bpf record --help')"]
