"""Rates as users type them (10Gbit/s, 125MB/s: network rates use decimal prefixes), and sizes as every
size option reads them (cli.types)."""

from __future__ import annotations

import re

from cli.types import parse_size_bytes
from damon_bpf.errors import UsageError

_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
           "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_PATTERN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(k|m|g|t|ki|mi|gi|ti)?(b|bit|bits)?(/s)?\s*",
                      re.I)


def _parse(text: str, what: str, example: str) -> tuple[float, bool, bool]:
    m = _PATTERN.fullmatch(text)
    if not m:
        raise UsageError(f"bad {what} {text!r}: use e.g. {example}")
    value = float(m.group(1)) * _PREFIX[(m.group(2) or "").lower()]
    bits = (m.group(3) or "").lower() in ("bit", "bits")
    if not 0 < value < 2**63:
        raise UsageError(f"{what} {text!r} must be positive and finite")
    return value, bits, m.group(4) is not None


def parse_rate(text: str, what: str = "rate") -> float:
    """Bytes per second: 1GiB/s, 125MB, 10Gbit/s (bits are divided by 8; bare numbers are bytes/s)."""
    value, bits, _ = _parse(text, what, "10Gbit/s, 1GiB/s or 125MB/s")
    return value / 8 if bits else value


def parse_size(text: str, what: str = "size") -> int:
    """Bytes, spelled as every size option spells them (cli.types: 4GiB, 512M, binary prefixes as damo)."""
    try:
        size = parse_size_bytes(text)
    except ValueError as err:
        raise UsageError(f"bad {what}: {err}") from None
    if size <= 0:
        raise UsageError(f"{what} {text!r} must be positive")
    return size
