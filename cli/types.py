"""Quantities as users type them, one parser for all: times, sizes and rates, and the click parameter
types for values the collector must be able to honour (one clear line when not).

Times and sizes take damo's spellings: ``5ms``, ``2s``, ``1m`` (a minute), ``4 KiB``, ``4KiB``, ``1M``
(sizes are binary, as damo reads them: K, KB and KiB are all 1024). A bare number keeps the option's own
unit (seconds for ``--duration``, microseconds for ``--sample-us``, MiB for ``--ring-mb``). Rates are what
network rates are: ``10Gbit/s``, ``125MB/s`` (decimal prefixes, KiB/MiB binary; bits are divided by 8; a
bare number is bytes per second)."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import click

from damon_bpf.errors import UsageError

MAX_DURATION_S = 10 * 365 * 86400.0   # ten years: beyond that a "duration" is a typo

TIME_UNITS_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "min": 60 * 10**9,
                 "h": 3600 * 10**9, "d": 86400 * 10**9}
SIZE_UNITS_B = {"b": 1, **{spelling: 1 << (10 * power)
                           for power, letter in enumerate("kmgtp", start=1)
                           for spelling in (letter, letter + "b", letter + "ib")}}
_RATE_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
                "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
# bytes per second in eighths (a bit is an eighth of a byte): the "/s" is optional
RATE_UNITS_8THS = {prefix + suffix: mult * (1 if suffix.startswith("bit") else 8)
                   for prefix, mult in _RATE_PREFIX.items() for suffix in ("", "b", "bit", "bits")}
_BARE_NAMES = {"": "bytes per second", "s": "seconds", "us": "microseconds", "mib": "MiB", "b": "bytes"}
_LIMIT = 2**62   # beyond any time in ns or size in bytes we can hold (and inf, from 1e999)
# a plain decimal number (exponent of at most 3 digits: Decimal stays exact and quick), then a unit
_QUANTITY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]{1,3})?)\s*([a-z]*)\s*", re.I | re.ASCII)


def _parse(text: str, units: dict[str, int], bare: str, what: str, spellings: str) -> int:
    """``text`` in the smallest unit of ``units`` (rounded to a whole one); ValueError says what is wrong."""
    match = _QUANTITY.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in units):
        raise ValueError(f"{text!r} is not a {what}: use a number with {spellings} "
                         f"(a bare number is in {_BARE_NAMES.get(bare, bare)})")
    value = Decimal(match.group(1)) * units[unit or bare]
    if value >= _LIMIT:
        raise ValueError(f"{text!r} is too large a {what}")
    return int(value.to_integral_value())


def parse_time_ns(text: str, bare: str = "s") -> int:
    """A time such as ``5ms``, ``2 s`` or ``1m`` in nanoseconds; a bare number is in unit ``bare``."""
    return _parse(text, TIME_UNITS_NS, bare, "time", "ns, us, ms, s, m (minutes), h or d")


def parse_size_bytes(text: str, bare: str = "b") -> int:
    """A size such as ``4KiB``, ``4 KiB`` or ``1M`` in bytes; a bare number is in unit ``bare``."""
    return _parse(text, SIZE_UNITS_B, bare, "size", "B, K, KiB, M, MiB, G, GiB, T or P")


def parse_rate(text: str, what: str = "rate") -> float:
    """Bytes per second: ``1GiB/s``, ``125MB``, ``10Gbit/s``; a user's mistake is a UsageError naming ``what``."""
    spelled = str(text).strip()
    spelled = spelled[:-2] if spelled.lower().endswith("/s") else spelled
    try:
        eighths = _parse(spelled, RATE_UNITS_8THS, "", "rate", "B, KB, MB, GB, KiB, MiB, GiB "
                         "(bytes) or kbit, Mbit, Gbit (bits), and an optional /s")
    except ValueError as err:
        raise UsageError(f"bad {what}: {err}") from None
    if eighths <= 0:
        raise UsageError(f"{what} {text!r} must be positive")
    return eighths / 8


def parse_size(text: str, what: str = "size") -> int:
    """Bytes, spelled as every size option spells them; a user's mistake is a UsageError naming ``what``."""
    try:
        size = parse_size_bytes(text)
    except ValueError as err:
        raise UsageError(f"bad {what}: {err}") from None
    if size <= 0:
        raise UsageError(f"{what} {text!r} must be positive")
    return size


class Duration(click.ParamType):
    """Seconds (or a time with a unit), finite and positive: no run could ever end on nan or inf."""

    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_time_ns(value, "s") / 1e9
        except ValueError as err:
            self.fail(str(err), param, ctx)
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION_S:
            self.fail(f"{value!r} is not a finite duration between 0 and {MAX_DURATION_S:.0f} s", param, ctx)
        return seconds


class Microseconds(click.ParamType):
    """An interval in whole microseconds (or a time with a unit), within [minimum, maximum]."""

    name = "microseconds"

    def __init__(self, minimum: int = 0, maximum: int = _LIMIT // 1000) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        try:
            micros = round(parse_time_ns(value, "us") / 1000)
        except ValueError as err:
            self.fail(str(err), param, ctx)
        if not self.minimum <= micros <= self.maximum:
            self.fail(f"{value!r} is not from {self.minimum} to {self.maximum} microseconds", param, ctx)
        return micros


class RingMegabytes(click.ParamType):
    """A BPF ring buffer size in MiB (or a size with a unit): a power of two (the kernel wants a
    power-of-two number of pages) of at most MAX_RING_MB (max_entries is a u32: 4096 MiB does not fit)."""

    name = "MiB"
    MAX_RING_MB = 2048

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size_bytes(value, "mib")
        except ValueError as err:
            self.fail(str(err), param, ctx)
        mb = size >> 20
        if size & ((1 << 20) - 1) or mb < 1 or mb > self.MAX_RING_MB or mb & (mb - 1):
            self.fail(f"{value} is not a power of two from 1 to {self.MAX_RING_MB} MiB (the kernel's ring buffers "
                      "are a power-of-two number of pages)", param, ctx)
        return mb
