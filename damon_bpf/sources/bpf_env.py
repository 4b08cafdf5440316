"""What loading any BPF program needs from the host: privileges, the bcc module, a mounted tracefs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from damon_bpf.errors import HostError

TRACEFS = Path("/sys/kernel/tracing")
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_bpf_privileges() -> bool:
    caps = effective_caps()
    if caps >> _CAP_SYS_ADMIN & 1:
        return True
    return bool(caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1)


def require_privileges() -> None:
    if not has_bpf_privileges():
        raise HostError("damon-bpf needs root (or CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo")


def import_bcc():
    """The bcc module, or a HostError saying how to get it."""
    try:
        import bcc  # noqa: PLC0415 - optional system package, imported only when tracing
    except ImportError:
        raise HostError("bcc is not installed for this Python: apt-get install python3-bpfcc and use a venv made "
                        "with '/usr/bin/python3 -m venv --system-site-packages' (the PyPI 'bcc' is another project)"
                        ) from None
    return bcc


def ensure_tracefs() -> Path:
    """tracefs at /sys/kernel/tracing, mounted if it is not."""
    if (TRACEFS / "events").is_dir():
        return TRACEFS
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True)
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise HostError(f"tracefs is not mounted and mounting it failed: run 'mount -t tracefs nodev {TRACEFS}'")
    return TRACEFS
