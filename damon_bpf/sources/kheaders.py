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
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from damon_bpf import log, outputs
from damon_bpf.errors import DamonBpfError, HostError

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


def _trusted(path: Path) -> bool:
    """A directory only we can change (root compiles what it holds)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _cache_root() -> None:
    """CACHE_ROOT exists and only we can write it. Its parent must already be safe (refused otherwise: it
    may be a shared directory named by DAMON_BPF_CACHE); a CACHE_ROOT others could write, say from a run
    under umask 000, held untrusted trees: it is emptied and made again."""
    outputs.private_dir(CACHE_ROOT.parent, "the headers cache")
    if CACHE_ROOT.exists() and not _trusted(CACHE_ROOT):
        st = os.lstat(CACHE_ROOT)
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            raise HostError(f"the headers cache {CACHE_ROOT} is not root's own directory: remove it")
        shutil.rmtree(CACHE_ROOT)
    outputs.private_dir(CACHE_ROOT, "the headers cache")


def _remove(path: Path) -> None:
    """An untrusted or incomplete tree (rmtree never follows the links inside it)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _cached(target: Path) -> bool:
    """A complete tree an earlier run built, that no one else could have changed."""
    return (target / ".complete").exists() and _trusted(target)


def _assemble(flavour: Path, base: Path) -> Path:
    if flavour == base:
        return flavour
    _cache_root()
    target = CACHE_ROOT / flavour.name
    if _cached(target):
        return target
    # Built under umask 077 in a temp dir, renamed into place: never half a tree, never writable by others.
    old = os.umask(0o077)
    try:
        build = Path(tempfile.mkdtemp(dir=CACHE_ROOT, prefix=f".{flavour.name}."))
        try:
            for source in (base, flavour):  # flavour last: its generated headers win
                subprocess.run(["cp", "-asf", f"{source}/.", str(build)], check=True, capture_output=True)
            (build / ".complete").touch()
            _remove(target)
            try:
                os.rename(build, target)
            except OSError:   # another damon-bpf built the same tree meanwhile
                if not _cached(target):
                    raise
                shutil.rmtree(build)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    finally:
        os.umask(old)
    return target


def ensure_headers(quiet: bool = False) -> Path:
    """Make sure bcc finds a headers tree; return it. Says on stderr when a fallback tree is built for the
    cache (once per build, not on every run); with details on, which tree bcc compiles against and why."""
    chosen = os.environ.get("BCC_KERNEL_SOURCE")
    if chosen:
        _say_tree(Path(chosen), "BCC_KERNEL_SOURCE")
        return Path(chosen)
    tree = running_tree()
    if tree is not None:
        _say_tree(tree, f"the running kernel's ({os.uname().release})")
        return tree
    pairs = _flavour_trees()
    if not pairs:
        raise HostError(
            f"no kernel headers found for bcc (kernel {os.uname().release}): install "
            "'linux-headers-$(uname -r)' or your distribution's generic headers package "
            "(Debian: linux-headers-amd64), or set BCC_KERNEL_SOURCE to a headers tree")
    flavour, base = pairs[0]
    # the fallback is said when its tree is built (or, with nothing to build, every run), not on every run
    building = flavour == base or not _cached(CACHE_ROOT / flavour.name)
    try:
        tree = _assemble(flavour, base)
    except (OSError, subprocess.CalledProcessError, DamonBpfError) as err:
        raise HostError(f"cannot assemble a headers tree from {flavour} under {CACHE_ROOT}: {err}") from err
    os.environ["BCC_KERNEL_SOURCE"] = str(tree)
    _say_tree(tree, f"assembled from {flavour} and {base}: no headers for kernel {os.uname().release}")
    if building and not quiet:
        cached = f"; its tree is built once, into {CACHE_ROOT}" if flavour != base else ""
        log.note(f"no headers for kernel {os.uname().release}; compiling against {flavour.name} "
                 f"(only tracepoint formats and UAPI structs are used, so this is safe{cached})")
    return tree


_said_trees: set[Path] = set()


def _say_tree(tree: Path, why: str) -> None:
    """The headers tree as a detail (--verbose), once per tree: a run compiles several programs."""
    if tree not in _said_trees:
        _said_trees.add(tree)
        log.detail(f"kernel headers: {tree} ({why})")
