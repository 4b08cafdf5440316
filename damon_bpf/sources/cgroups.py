"""cgroup v2 targets (--cgroup PATH): a container, a systemd service, any cgroup v2 directory.

A cgroup v2 id is its directory's inode number, the value bpf_get_current_cgroup_id() gives for a task
in it, so the BPF program tells a followed cgroup's processes by id (bpf/report_common.bpf.c). A cgroup's
processes include those of its descendant cgroups, as systemd counts a slice's: the program compares
the ancestor of the task's cgroup at the followed cgroup's depth. The depth is the kernel's (from the
hierarchy's real root): a mount whose root is a sub-cgroup (mountinfo's root field) adds that root's depth.

Paths are accepted as a directory under a cgroup2 mount (/sys/fs/cgroup/system.slice, or
/sys/fs/cgroup/unified/... on a hybrid host), or relative to the host's cgroup2 mount
(system.slice/cron.service, or /system.slice/cron.service as /proc/PID/cgroup writes it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from damon_bpf.errors import TargetError

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    point: str    # where it is mounted
    root: str     # the cgroup it shows, within its hierarchy ("/" for the whole hierarchy)
    fstype: str   # "cgroup2", "cgroup" (v1) or "tmpfs" (the holder of v1 mounts)


@dataclass(frozen=True)
class Cgroup:
    """One followed cgroup v2."""

    directory: str   # its directory (symlinks resolved)
    name: str        # its path in the hierarchy, as /proc/PID/cgroup writes it: "/system.slice/cron.service"
    id: int          # its directory's inode number: bpf_get_current_cgroup_id()'s value inside it
    level: int       # its depth below the hierarchy's root (a child of the root is at 1)

    def exists(self) -> bool:
        return os.path.isdir(self.directory)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/self/mountinfo (fields: id parent dev root point options ... - fstype ...)."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if sep and len(fields) >= 5 and after.split():
            mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), after.split()[0]))
    return mounts


def _mount_of(directory: str, mounts: list[Mount]) -> Mount | None:
    """The mount holding ``directory``: the deepest mount point it lies under."""
    inside = [m for m in mounts if directory == m.point or directory.startswith(m.point.rstrip("/") + "/")]
    return max(inside, key=lambda m: len(m.point), default=None)


def _v2_home(mounts: list[Mount]) -> Mount:
    """The cgroup2 mount relative paths are taken from: /sys/fs/cgroup when it is one, else the first."""
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    if not v2:
        raise TargetError("--cgroup needs cgroup v2, and this host has no cgroup2 hierarchy mounted (cgroup v1 "
                          "only): boot with systemd.unified_cgroup_hierarchy=1, or mount one (mount -t cgroup2 "
                          "none /sys/fs/cgroup/unified)")
    return next((m for m in v2 if m.point == "/sys/fs/cgroup"), v2[0])


def v2_mount() -> str:
    """Where this host's cgroup v2 hierarchy is mounted (TargetError on a cgroup v1 host)."""
    return _v2_home(parse_mountinfo(Path(MOUNTINFO).read_text())).point


def _candidate(path: str, mounts: list[Mount]) -> str:
    """The directory ``path`` names: itself when it lies under a mount of a cgroup file system or is a
    directory elsewhere (refused later), else relative to the host's cgroup2 mount."""
    home = _v2_home(mounts)
    if os.path.isabs(path):
        mount = _mount_of(os.path.realpath(path), mounts)
        if (mount is not None and mount.fstype in ("cgroup", "cgroup2")) or (os.path.isdir(path) and path.strip("/")):
            return path
    return os.path.join(home.point, path.lstrip("/"))


def resolve(path: str, mounts: list[Mount] | None = None) -> Cgroup:
    """The cgroup v2 ``path`` names; TargetError (one line) when it is none."""
    if mounts is None:
        mounts = parse_mountinfo(Path(MOUNTINFO).read_text())
    directory = os.path.realpath(_candidate(path, mounts))
    mount = _mount_of(directory, mounts)
    if mount is not None and mount.fstype == "cgroup":
        raise TargetError(f"--cgroup {path}: {directory} is in a cgroup v1 hierarchy; --cgroup needs a cgroup v2 "
                          f"directory (cgroup v2 is mounted at {_v2_home(mounts).point} here)")
    if not os.path.isdir(directory):
        tried = f"neither {path} nor {directory} is a directory" if os.path.isabs(path) and directory != \
            os.path.realpath(path) else f"{directory} is not a directory"
        raise TargetError(f"--cgroup {path}: no such cgroup ({tried})")
    if mount is None or mount.fstype != "cgroup2" or not os.path.exists(os.path.join(directory, "cgroup.procs")):
        raise TargetError(f"--cgroup {path}: {directory} is not a cgroup v2 directory")
    relative = os.path.relpath(directory, mount.point)
    parts = [] if relative == "." else relative.split("/")
    root_parts = [part for part in mount.root.split("/") if part]
    if not parts and not root_parts:
        raise TargetError(f"--cgroup {path}: that is the root cgroup, every process of the host (damon-bpf too): "
                          "name a cgroup below it")
    name = "/" + "/".join(root_parts + parts)
    return Cgroup(directory, name, os.stat(directory).st_ino, len(root_parts) + len(parts))


def members(cgroup: Cgroup) -> dict[int, str]:
    """Every process in ``cgroup`` and its descendant cgroups now: pid -> the name of its own cgroup."""
    found: dict[int, str] = {}
    for directory, name in _walk(cgroup):
        with contextlib.suppress(OSError):   # removed while we walked
            found.update((int(pid), name) for pid in Path(directory, "cgroup.procs").read_text().split())
    return found


class CgroupNames:
    """Names of the cgroups below followed ones, by id: a join record carries the id of the cgroup the
    process reported from, which may be a descendant made after the run began. The trees are walked at
    the start (a cgroup removed before its first member's join is read is still named) and again on a
    miss."""

    def __init__(self, cgroups: list[Cgroup]) -> None:
        self.cgroups = cgroups
        self.names: dict[int, str] = {}
        self._walk_all()

    def _walk_all(self) -> None:
        for cgroup in self.cgroups:
            self.names.update(_subtree(cgroup))

    def name(self, cgroup_id: int) -> str | None:
        if cgroup_id not in self.names:
            self._walk_all()
        return self.names.get(cgroup_id)


def _walk(cgroup: Cgroup) -> Iterator[tuple[str, str]]:
    """(directory, name) of ``cgroup`` and of every cgroup below it now."""
    for directory, _dirs, _files in os.walk(cgroup.directory):
        relative = os.path.relpath(directory, cgroup.directory)
        yield directory, cgroup.name if relative == "." else f"{cgroup.name}/{relative}"


def _subtree(cgroup: Cgroup) -> dict[int, str]:
    """id -> name of ``cgroup`` and every cgroup below it now."""
    found = {}
    for directory, name in _walk(cgroup):
        with contextlib.suppress(OSError):   # removed while we walked
            found[os.stat(directory).st_ino] = name
    return found


def cgroup_of(pid: int) -> str | None:
    """The cgroup v2 of process ``pid`` as /proc/PID/cgroup writes it, or None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    return next((line[3:] for line in lines if line.startswith("0::")), None)
