"""Give bcc a kernel headers tree when none matches the running kernel.

bcc compiles against /lib/modules/$(uname -r)/build. Distributions often lack headers for the running
kernel (custom or newer kernels). Our programs read only tracepoint arguments (bcc builds that struct
from tracefs at run time) and UAPI structs, so any installed headers tree works. Debian splits a tree
into ``linux-headers-<ver>-common`` and ``linux-headers-<ver>-<flavour>``; bcc wants one tree, so we
assemble a private one out of symlinks (nothing under /lib/modules is touched) and point
``BCC_KERNEL_SOURCE`` at it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from damon_bpf.errors import HostError

SRC_ROOT = Path("/usr/src")
CACHE_ROOT = Path(os.environ.get("DAMON_BPF_CACHE", "/var/cache/damon-bpf")) / "kernel-headers"
_KCONFIG = "include/linux/kconfig.h"


def running_tree() -> Path | None:
    """The headers tree of the running kernel, if installed."""
    build = Path("/lib/modules") / os.uname().release / "build"
    return build if (build / _KCONFIG).exists() else None


def _version_key(path: Path) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", path.name)]


def _flavour_trees() -> list[tuple[Path, Path]]:
    """(flavour tree, base tree) pairs, newest first. The base holds include/linux; the flavour
    holds generated headers and includes the base's Makefile."""
    pairs = []
    for tree in SRC_ROOT.glob("linux-headers-*"):
        generated = any(tree.glob("arch/*/include/generated"))
        if generated and (tree / _KCONFIG).exists():
            pairs.append((tree, tree))  # already a complete tree (Ubuntu, hand-built)
            continue
        makefile = tree / "Makefile"
        if not generated or not makefile.exists():
            continue
        match = re.search(r"include\s+(\S+)/Makefile", makefile.read_text(errors="replace"))
        base = Path(match.group(1)) if match else None
        if base is not None and (base / _KCONFIG).exists():
            pairs.append((tree, base))
    return sorted(pairs, key=lambda pair: _version_key(pair[0]), reverse=True)


def _assemble(flavour: Path, base: Path) -> Path:
    if flavour == base:
        return flavour
    target = CACHE_ROOT / flavour.name
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for source in (base, flavour):  # flavour last: its generated headers win
        subprocess.run(["cp", "-asf", f"{source}/.", str(target)], check=True, capture_output=True)
    done.touch()
    return target


def ensure_headers(quiet: bool = False) -> Path:
    """Make sure bcc finds a headers tree; return it. Says once on stderr when a fallback is used."""
    chosen = os.environ.get("BCC_KERNEL_SOURCE")
    if chosen:
        return Path(chosen)
    tree = running_tree()
    if tree is not None:
        return tree
    pairs = _flavour_trees()
    if not pairs:
        raise HostError(
            f"no kernel headers found for bcc (kernel {os.uname().release}): install "
            "'linux-headers-$(uname -r)' or your distribution's generic headers package "
            "(Debian: linux-headers-amd64), or set BCC_KERNEL_SOURCE to a headers tree")
    flavour, base = pairs[0]
    try:
        tree = _assemble(flavour, base)
    except (OSError, subprocess.CalledProcessError) as err:
        raise HostError(f"cannot assemble a headers tree from {flavour} under {CACHE_ROOT}: {err}") from err
    os.environ["BCC_KERNEL_SOURCE"] = str(tree)
    if not quiet:
        print(f"damon-bpf: no headers for kernel {os.uname().release}; compiling against {flavour.name} "
              "(only tracepoint formats and UAPI structs are used, so this is safe)", file=sys.stderr)
    return tree
