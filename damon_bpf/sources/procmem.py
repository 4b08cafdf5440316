"""What damo's `record` stores beside the access file, read from /proc the way damo reads it: a process's
memory footprint (/proc/PID/statm, in pages), the system's (/proc/meminfo, in KiB) and its mappings
(/proc/PID/maps). A process that is gone reads as damo reads it: zeros, or no mappings."""

from __future__ import annotations

_STATM_KEYS = ("size", "resident", "shared", "trs", "lrs", "drs", "dt")
_MEMINFO_KEYS = {"MemTotal:": "total", "MemFree:": "free", "MemAvailable:": "available", "Buffers:": "buffers",
                 "Cached:": "cached"}


def proc_footprint(pid: int) -> dict[str, int]:
    """damo's ProcMemFootprint: the seven /proc/PID/statm fields."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            fields = [int(x) for x in f.read().split()[:7]]
    except (OSError, ValueError):
        fields = [0] * 7
    return dict(zip(_STATM_KEYS, fields + [0] * (7 - len(fields))))


def sys_footprint() -> dict[str, int | None]:
    """damo's SysMemFootprint: five /proc/meminfo fields, in KiB."""
    out: dict[str, int | None] = dict.fromkeys(_MEMINFO_KEYS.values())
    with open("/proc/meminfo") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in _MEMINFO_KEYS:
                out[_MEMINFO_KEYS[fields[0]]] = int(fields[1])
    return out


def proc_vmas(pid: int) -> list[dict]:
    """damo's ProcVmas: each mapping's start, end and name (the path; damo's last field, so an anonymous
    mapping's name is its inode, "0")."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    vmas = []
    for line in lines:
        fields = line.split()
        start, end = (int(a, 16) for a in fields[0].split("-"))
        vmas.append({"start": start, "end": end, "name": fields[-1]})
    return vmas
