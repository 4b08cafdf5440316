"""Compile and attach the BPF program of one access source with bcc."""

from __future__ import annotations

import contextlib
import mmap
import os

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


def program_text(source: str) -> str:
    """The source's C text with the shared part pasted in: bcc rewrites map calls and tracepoint
    probes only in the main text, not in included files, so report.bpf.h cannot be a plain #include."""
    text = (bpf_dir() / SOURCE_FILES[source]).read_text()
    shared = (bpf_dir() / "report.bpf.h").read_text()
    return text.replace('#include "report.bpf.h"', shared)


def ring_pages(ring_bytes: int) -> int:
    """Pages for a ring of at least ``ring_bytes``: a power of two, as the kernel requires."""
    pages = max(1, -(-ring_bytes // mmap.PAGESIZE))
    return 1 << (pages - 1).bit_length()


def exit_has_group_dead() -> bool:
    """True where sched_process_exit says whether the whole thread group is dead (6.16+): there the
    kernel's exit record is the process's; before, it is the main thread's (tracefs must be mounted)."""
    exit_format = bpf_env.TRACEFS / "events/sched/sched_process_exit/format"
    return "group_dead" in exit_format.read_text() if exit_format.exists() else False


def shared_cflags(ring_bytes: int, follow_children: bool) -> list[str]:
    """Compiler flags of report.bpf.h, which every access source includes (tracefs must be mounted)."""
    return [f"-I{bpf_dir()}", f"-DRING_PAGES={ring_pages(ring_bytes)}", f"-DFOLLOW_CHILDREN={int(follow_children)}",
            f"-DHAVE_GROUP_DEAD={int(exit_has_group_dead())}", "-Wno-macro-redefined"]


def compile_program(source: str, ring_bytes: int, follow_children: bool):
    """Load the program of ``source`` into the kernel and attach it; returns the bcc.BPF object."""
    bcc = bpf_env.import_bcc()
    bpf_env.ensure_tracefs()
    kheaders.ensure_headers()
    cflags = shared_cflags(ring_bytes, follow_children) + [f"-DUSE_FENTRY={int(source == 'fentry')}"]
    try:
        with _stderr_silenced():
            program = bcc.BPF(text=program_text(source), cflags=cflags)
        if source == "perf-fault":
            program.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.PAGE_FAULTS,
                                      fn_name="on_page_fault", sample_period=1, cpu=-1)
    except Exception as err:  # noqa: BLE001 - bcc raises bare Exception with the reason in the text
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
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
