"""NUMA placement of a live process: which node each CPU is on, where pages live, moving them.

Pages are asked about and moved with move_pages(2) (through ``syscall``: glibc has no wrapper, libnuma
is not needed for one call). With ``nodes`` NULL it only reports each page's node (or ``-errno``:
``-ENOENT`` for a page not present); with nodes and ``MPOL_MF_MOVE`` it migrates the process's own
(not shared) pages.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path

import numpy as np

from damon_bpf.errors import HostError, TargetError
from damon_bpf.filters import parse_cpulist

NODE_ROOT = Path("/sys/devices/system/node")
MPOL_MF_MOVE = 1 << 1
CHUNK_PAGES = 16384  # pages per move_pages call: 64 MiB of 4 KiB pages
_MOVE_PAGES_NR = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "s390x": 310, "ppc64le": 301}


def cpu_nodes(root: Path = NODE_ROOT) -> dict[int, int]:
    """CPU number -> NUMA node, from each node's cpulist (a memory-only node has an empty one)."""
    out: dict[int, int] = {}
    for node_dir in root.glob("node[0-9]*"):
        try:
            text = (node_dir / "cpulist").read_text().strip()
        except OSError:
            continue
        if text:
            out.update({cpu: int(node_dir.name[4:]) for cpu in parse_cpulist(text, None)})
    return dict(sorted(out.items()))


def memory_nodes(root: Path = NODE_ROOT) -> list[int]:
    """Nodes that have memory (pages can be moved to these)."""
    try:
        return sorted(parse_cpulist((root / "has_memory").read_text(), None))
    except (OSError, ValueError):
        return sorted({*cpu_nodes(root).values()}) or [0]


def cpu_nodes_meta() -> dict:
    """What a record's meta should hold so ``report numa`` need not read this host's map later."""
    return {"numa_cpu_nodes": {str(cpu): node for cpu, node in cpu_nodes().items()}}


def _syscall(pid: int, addrs: np.ndarray, nodes: np.ndarray | None, flags: int) -> np.ndarray:
    nr = _MOVE_PAGES_NR.get(platform.machine())
    if nr is None:
        raise HostError(f"move_pages syscall number unknown on {platform.machine()}")
    count = len(addrs)
    pages = (ctypes.c_void_p * count)(*(int(a) for a in addrs))
    status = (ctypes.c_int * count)()
    targets = None if nodes is None else (ctypes.c_int * count)(*(int(n) for n in nodes))
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_int(pid), ctypes.c_ulong(count), pages, targets, status,
                      ctypes.c_int(flags))
    if rc < 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise TargetError(f"process {pid} is gone: where its pages live cannot be asked any more")
        raise HostError(f"move_pages on process {pid} failed: {os.strerror(err)}")
    return np.frombuffer(status, dtype=np.int32).copy()  # type: ignore[call-overload]  # a ctypes array is a buffer


def page_nodes(pid: int, addrs: np.ndarray) -> np.ndarray:
    """Each page's node, or ``-errno`` (``-ENOENT``: not present), in chunks of CHUNK_PAGES."""
    out = [_syscall(pid, addrs[i:i + CHUNK_PAGES], None, 0) for i in range(0, len(addrs), CHUNK_PAGES)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int32)


def move_to(pid: int, addrs: np.ndarray, node: int) -> np.ndarray:
    """Move pages to ``node`` (at most CHUNK_PAGES a call); each page's node afterwards, or ``-errno``."""
    return _syscall(pid, addrs, np.full(len(addrs), node), MPOL_MF_MOVE)
