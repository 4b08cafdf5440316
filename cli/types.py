"""click parameter types for values the collector must be able to honour (one clear line when not)."""

from __future__ import annotations

import math

import click

MAX_DURATION_S = 10 * 365 * 86400.0   # ten years: beyond that a "duration" is a typo


class Duration(click.ParamType):
    """Seconds, finite and positive: nan and inf are floats to click, but no run could ever end on them."""

    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION_S:
            self.fail(f"{value!r} is not a finite duration between 0 and {MAX_DURATION_S:.0f} s", param, ctx)
        return seconds


class RingMegabytes(click.ParamType):
    """A BPF ring buffer size in MiB: a power of two (the kernel wants a power-of-two number of pages) of at
    most MAX_RING_MB (max_entries is a u32: 4096 MiB does not fit)."""

    name = "MiB"
    MAX_RING_MB = 2048

    def convert(self, value, param, ctx) -> int:
        text = str(value).strip()
        if not text.isascii() or not text.isdigit() or len(text) > 5:
            self.fail(f"{value!r} is not a size in MiB", param, ctx)
        mb = int(text)
        if mb < 1 or mb > self.MAX_RING_MB or mb & (mb - 1):
            self.fail(f"{mb} is not a power of two from 1 to {self.MAX_RING_MB} (the kernel's ring buffers are a "
                      "power-of-two number of pages)", param, ctx)
        return mb
