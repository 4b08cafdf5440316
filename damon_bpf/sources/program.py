"""Compile and attach the BPF program of one access source with bcc."""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from typing import Sequence

from damon_bpf.access import bpf_dir
from damon_bpf.sources import bpf_env, kheaders

class LoadError(Exception):
    """The kernel or bcc refused a program; the caller knows what to suggest instead."""


SOURCE_FILES = {
    "tracepoint": "fault_tracepoint.bpf.c",
    "kprobe": "fault_kprobe.bpf.c",
    "fentry": "fault_kprobe.bpf.c",
    "perf-fault": "fault_perf.bpf.c",
}


PASTE_COMMON = "/* damon-bpf: paste report_common.bpf.c (the shared maps, filters and probes; see that file) */"


def program_text(filename: str) -> str:
    """The C text of ``filename`` (in bpf/) with report_common.bpf.c pasted where it asks for it: bcc
    rewrites map calls and tracepoint probes only in the main text, not in #included files."""
    text = (bpf_dir() / filename).read_text()
    if PASTE_COMMON not in text:
        return text
    return text.replace(PASTE_COMMON, (bpf_dir() / "report_common.bpf.c").read_text())


def load_bpf(filename: str, cflags: Sequence[str] = ()):
    """The one way our programs are compiled and loaded (every source and companion calls it): bcc
    imported, tracefs mounted, a headers tree found, the compiler's chatter kept off the terminal.
    Returns the bcc.BPF object; LoadError carries the compiler's or kernel's last line."""
    bcc = bpf_env.import_bcc()
    bpf_env.ensure_tracefs()
    kheaders.ensure_headers()
    try:
        with _stderr_silenced():
            return bcc.BPF(text=program_text(filename), cflags=list(cflags))
    except Exception as err:  # noqa: BLE001 - bcc raises bare Exception with the reason in the text
        raise LoadError(last_line(err)) from err


def last_line(err: Exception) -> str:
    """The line of a bcc/libbpf error that says why (the rest is the program's text or a log)."""
    text = str(err).strip()
    return re.sub(r"\s+", " ", text.splitlines()[-1]) if text else type(err).__name__


def ring_pages(ring_bytes: int) -> int:
    """Pages for a ring of at least ``ring_bytes``: a power of two, as the kernel requires."""
    pages = max(1, -(-ring_bytes // mmap.PAGESIZE))
    return 1 << (pages - 1).bit_length()


def exit_has_group_dead() -> bool:
    """True where sched_process_exit says whether the whole thread group is dead (6.16+): there the
    kernel's exit record is the process's; before, it is the main thread's (tracefs must be mounted)."""
    exit_format = bpf_env.TRACEFS / "events/sched/sched_process_exit/format"
    return "group_dead" in exit_format.read_text() if exit_format.exists() else False


def shared_cflags(ring_bytes: int, follow_children: bool, follow_cgroups: bool = False) -> list[str]:
    """Compiler flags of report_common.bpf.c, which every access source pastes in (tracefs must be mounted).
    ``follow_cgroups`` compiles the cgroup check in (--cgroup): without it no report pays for it."""
    return [f"-I{bpf_dir()}", f"-DRING_PAGES={ring_pages(ring_bytes)}", f"-DFOLLOW_CHILDREN={int(follow_children)}",
            f"-DFOLLOW_CGROUPS={int(follow_cgroups)}",
            f"-DHAVE_GROUP_DEAD={int(exit_has_group_dead())}", "-Wno-macro-redefined"]


def compile_program(source: str, ring_bytes: int, follow_children: bool, follow_cgroups: bool = False):
    """Load the program of ``source`` into the kernel and attach it; returns the bcc.BPF object."""
    cflags = shared_cflags(ring_bytes, follow_children, follow_cgroups) + [f"-DUSE_FENTRY={int(source == 'fentry')}"]
    try:
        program = load_bpf(SOURCE_FILES[source], cflags)
        if source == "perf-fault":
            bcc = bpf_env.import_bcc()
            program.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.PAGE_FAULTS,
                                      fn_name="on_page_fault", sample_period=1, cpu=-1)
    except Exception as err:  # noqa: BLE001 - LoadError, or bcc's bare Exception from attaching
        reason = last_line(err)
        if "super-user" in reason and bpf_env.has_bpf_privileges():  # bcc says this for any EPERM
            reason = "the kernel refused the program (EPERM although privileged: no support for this attach type)"
        raise LoadError(f"cannot load the '{source}' source: {reason}") from err
    return program


@contextlib.contextmanager
def _stderr_silenced():
    """clang and libbpf print on fd 2; our error messages carry the reason instead.
    DAMON_BPF_DEBUG=1 keeps their output."""
    if os.environ.get("DAMON_BPF_DEBUG"):
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def compile_probe_program(source: str) -> None:
    """A minimal load of ``source``, to learn whether the kernel accepts it; raises if not."""
    compile_program(source, mmap.PAGESIZE, False).cleanup()
