"""bpf/access.h's #defines are read as integer constant expressions, never executed as Python."""

from __future__ import annotations

import ast

import pytest

from damon_bpf import access


def test_constants_follow_the_header_arithmetic():
    c = access.constants()
    assert c["NR_COUNTERS"] == c["COUNTER_FILTER_BASE"] + 2 * c["MAX_FILTERS"]
    assert (c["ACCESS_READ"], c["ACCESS_WRITE"], c["ACCESS_UNKNOWN"]) == (0, 1, 2)


@pytest.mark.parametrize("expr, value", [("3", 3), ("(1 << 4) | 1", 17), ("BASE + 2 * 8", 21), ("(64 / 8) - 1", 7)])
def test_integer_expressions(expr, value):
    assert access._integer_expression(ast.parse(expr, mode="eval").body, {"BASE": 5}) == value


@pytest.mark.parametrize("expr", ["__import__('os')", "UNKNOWN + 1", "'text'", "[1, 2]", "f(3)"])
def test_anything_else_is_refused(expr):
    with pytest.raises(ValueError):
        access._integer_expression(ast.parse(expr, mode="eval").body, {})
