"""Samplers: make a mapped program's steady-state accesses fault again, so the page-fault sources
(and their CPU/thread/write attribution and in-kernel filters) keep seeing them.

A fault source alone sees first touch, copy-on-write and swap-in only. Each sampler uses a mechanism
stock kernels already have to re-arm faults every sample interval:

- ``soft-dirty``: ``clear_refs`` 4 write-protects the target's pages; its next write to each page faults.
- ``numa-hint``: the kernel's NUMA-balancing scanner makes PTEs inaccessible; the next access faults.
"""

from __future__ import annotations

from typing import Callable

from damon_bpf.errors import UsageError
from damon_bpf.samplers.base import Sampler, warn_stderr

SAMPLER_NAMES = ("none", "soft-dirty", "numa-hint")


def make_sampler(name: str, interval_us: int, aggr_us: int,
                 warn: Callable[[str], None] = warn_stderr, budget: float | None = None) -> Sampler | None:
    """The sampler called ``name``, checked against this host (raises HostError with the reason),
    or None for ``none``. ``budget`` caps the soft-dirty sampler's own CPU (a fraction of one CPU);
    the NUMA scanner's work is the kernel's, in the target's context, so it has no such cap here."""
    if name == "none":
        return None
    if interval_us <= 0:
        raise UsageError(f"the sampler interval must be positive, not {interval_us} us")
    if name == "soft-dirty":
        from damon_bpf.samplers.soft_dirty import SoftDirtySampler  # noqa: PLC0415

        return SoftDirtySampler(interval_us, warn=warn, budget=budget)
    if name == "numa-hint":
        from damon_bpf.samplers.numa_hint import NumaHintSampler  # noqa: PLC0415

        return NumaHintSampler(interval_us, aggr_us, warn=warn)
    raise UsageError(f"unknown sampler '{name}' (known: {', '.join(SAMPLER_NAMES)})")


__all__ = ["SAMPLER_NAMES", "Sampler", "make_sampler", "warn_stderr"]
