"""The time, size and rate parsers behind every option that asks for one (cli/types.py), and their click types."""

from __future__ import annotations

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.types import (SIZE_UNITS_B, TIME_UNITS_NS, Duration, Microseconds, RingMegabytes, parse_rate, parse_size,
                       parse_size_bytes, parse_time_ns)
from damon_bpf.errors import UsageError


@pytest.mark.parametrize("text, ns", [
    ("5ms", 5_000_000), ("2s", 2_000_000_000), ("1m", 60_000_000_000), ("1min", 60_000_000_000),
    ("2 s", 2_000_000_000), (" 100us ", 100_000), ("0.1s", 100_000_000), ("1.5ms", 1_500_000), ("3", 3_000_000_000),
    ("1e3ms", 1_000_000_000), ("2h", 7_200_000_000_000), ("1d", 86_400_000_000_000), ("7ns", 7), ("5MS", 5_000_000),
])
def test_times_in_damos_spellings(text, ns):
    assert parse_time_ns(text) == ns


@pytest.mark.parametrize("text, size", [
    ("4 KiB", 4096), ("4KiB", 4096), ("4K", 4096), ("4kb", 4096), ("1M", 1 << 20), ("1 MiB", 1 << 20),
    ("2GiB", 2 << 30), ("1T", 1 << 40), ("512", 512), ("512B", 512), ("0.5KiB", 512),
])
def test_sizes_in_damos_spellings(text, size):
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "-1", "ms", "1.2.3s", "5 m s", "0x10", "nan", "inf",
                                  "1e9999s", "\u00b2s", "5\u00b5s"])
def test_bad_times_are_one_line_value_errors(text):
    with pytest.raises(ValueError) as err:
        parse_time_ns(text)
    assert "\n" not in str(err.value) and repr(text) in str(err.value)


def test_too_large_is_said():
    with pytest.raises(ValueError, match="too large"):
        parse_time_ns("1e999")
    with pytest.raises(ValueError, match="too large"):
        parse_size_bytes("9" * 5000)


def _that_many_or_too_large(parse, texts: list[str], expected: int) -> None:
    """Every spelling gives ``expected``, or says it is too large when it passes 2**62."""
    for text in texts:
        if expected < 2**62:
            assert parse(text) == expected
        else:
            with pytest.raises(ValueError, match="too large"):
                parse(text)


@given(st.integers(0, 10**6), st.sampled_from(sorted(TIME_UNITS_NS)), st.sampled_from(["", " ", "  "]))
def test_a_whole_number_and_a_unit_is_that_many_units(count, unit, space):
    _that_many_or_too_large(parse_time_ns, [f"{count}{space}{unit}", f"{count}{space}{unit.upper()}"],
                            count * TIME_UNITS_NS[unit])


@given(st.integers(0, 10**6), st.sampled_from(sorted(SIZE_UNITS_B)))
def test_a_whole_size_and_a_unit_is_that_many_units(count, unit):
    _that_many_or_too_large(parse_size_bytes, [f"{count}{unit}", f"{count} {unit.upper()}"],
                            count * SIZE_UNITS_B[unit])


@given(st.integers(0, 10**6), st.sampled_from(sorted(TIME_UNITS_NS)))
def test_a_bare_number_is_in_the_options_own_unit(count, unit):
    _that_many_or_too_large(lambda text: parse_time_ns(text, bare=unit), [str(count)], count * TIME_UNITS_NS[unit])


@given(st.integers(0, 10**9), st.integers(0, 999))
def test_decimals_are_exact(whole, thousandths):
    assert parse_time_ns(f"{whole}.{thousandths:03d}s") == whole * 10**9 + thousandths * 10**6


@given(st.text(max_size=20))
def test_any_text_parses_or_is_a_value_error(text):
    for parse in (parse_time_ns, parse_size_bytes):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert isinstance(value, int) and 0 <= value < 2**62


def _convert(param_type: click.ParamType, text: str):
    return param_type.convert(text, None, None)


def test_click_types_keep_bare_numbers_in_their_unit():
    assert _convert(Duration(), "2") == 2.0 and _convert(Duration(), "500ms") == 0.5
    assert _convert(Microseconds(), "5000") == 5000 and _convert(Microseconds(), "5ms") == 5000
    assert _convert(Microseconds(), "1s") == 1_000_000 and _convert(Microseconds(), "0.5us") == 0
    assert _convert(RingMegabytes(), "64") == 64 and _convert(RingMegabytes(), "64MiB") == 64
    assert _convert(RingMegabytes(), "1GiB") == 1024 and _convert(RingMegabytes(), "1G") == 1024


@pytest.mark.parametrize("param_type, text, words", [
    (Duration(), "0", "not a finite duration"),
    (Duration(), "11000d", "not a finite duration"),
    (Duration(), "soon", "is not a time"),
    (Microseconds(100, 2**40), "50us", "not from 100 to"),
    (Microseconds(), "5 KiB", "is not a time"),
    (RingMegabytes(), "3", "not a power of two"),
    (RingMegabytes(), "4GiB", "not a power of two from 1 to 2048"),
    (RingMegabytes(), "512KiB", "not a power of two"),
    (RingMegabytes(), "64 parsecs", "is not a size"),
])
def test_click_types_fail_in_one_line(param_type, text, words):
    with pytest.raises(click.BadParameter) as err:
        _convert(param_type, text)
    assert words in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("text, bytes_per_s", [
    ("10Gbit/s", 1.25e9), ("1GiB/s", 2**30), ("125MB/s", 125e6), ("125MB", 125e6), ("100", 100.0),
    ("1.5 kbit", 187.5), ("8bit/s", 1.0), ("256MiB/s", 2**28), ("1e3/s", 1000.0), ("2 KiB/S", 2048.0),
])
def test_rates_as_network_rates_are_spelled(text, bytes_per_s):
    assert parse_rate(text, "--quota") == bytes_per_s


@pytest.mark.parametrize("text", ["fast", "-1", "5rate", "1 GiB/h", "", "1/s/s"])
def test_a_bad_rate_is_one_usage_error_naming_the_option(text):
    with pytest.raises(UsageError, match=r"^bad --bandwidth: '.*' is not a rate"):
        parse_rate(text, "--bandwidth")


def test_a_zero_rate_or_size_is_refused_and_sizes_read_as_every_size_option():
    with pytest.raises(UsageError, match="must be positive"):
        parse_rate("0", "--quota")
    with pytest.raises(UsageError, match="must be positive"):
        parse_size("0", "--memory")
    assert parse_size("4GiB", "--memory") == parse_size_bytes("4GiB") == 4 * 2**30


@given(st.integers(1, 10**6), st.sampled_from(["k", "m", "g", "ki", "mi", "gi"]), st.sampled_from(["b", "bit"]))
def test_a_bit_is_an_eighth_of_a_byte(count, prefix, unit):
    as_bytes, as_bits = parse_rate(f"{count}{prefix}b/s"), parse_rate(f"{count}{prefix}bit/s")
    assert as_bits * 8 == pytest.approx(as_bytes)
