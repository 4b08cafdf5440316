"""cpulist, thread list and filter parsing, and the filter rule itself (no BPF)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from damon_bpf.access import ACCESS_READ, ACCESS_UNKNOWN, ACCESS_WRITE, MAX_FILTERS
from damon_bpf.errors import UsageError
from damon_bpf.filters import (SampleFilter, build_filters, evaluate, format_cpulist, parse_cpulist,
                               parse_filter_spec, parse_tidlist)

cpu_sets = st.frozensets(st.integers(0, 1023), min_size=1, max_size=64)


@given(cpu_sets)
def test_cpulist_round_trip(cpus):
    assert parse_cpulist(format_cpulist(cpus), None) == cpus


def test_cpulist_examples():
    assert parse_cpulist("0-3,8", None) == {0, 1, 2, 3, 8}
    assert parse_cpulist(" 2 ", None) == {2}
    assert format_cpulist({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"


@pytest.mark.parametrize("text, message", [
    ("0-x", "not a CPU number"), ("5-2", "runs backwards"), ("", "not a CPU number"), ("1,,2", "not a CPU number"),
    ("-1", "not a CPU number"), ("a", "not a CPU number"), ("0-4", "does not exist"), ("4", "does not exist"),
])
def test_bad_cpulists(text, message):
    with pytest.raises(UsageError, match=message):
        parse_cpulist(text, 4)


def test_cpulist_checks_this_machine():
    import os

    with pytest.raises(UsageError, match="does not exist"):
        parse_cpulist(str((os.cpu_count() or 1) + 1000))
    assert parse_cpulist("0") == {0}


@pytest.mark.parametrize("text", ["", ",", " , ", "1,x", "0", "-5", "99999999999"])
def test_bad_tid_lists(text):
    with pytest.raises(UsageError):
        parse_tidlist(text)


def test_filter_specs():
    assert parse_filter_spec("cpumask:true:true:0-1") == SampleFilter("cpumask", True, True, cpus=frozenset({0, 1}))
    assert parse_filter_spec("threads:false:yes:7,9") == SampleFilter("threads", False, True, tids=frozenset({7, 9}))
    assert parse_filter_spec("write:1:0") == SampleFilter("write", True, False)
    for spec in ("write:true:true", "cpumask:false:true:0-1", "threads:true:false:5,6"):
        assert parse_filter_spec(spec).describe() == spec


@pytest.mark.parametrize("spec", ["cpus:true:true:0", "write:true", "write:maybe:true", "write:true:true:0",
                                  "cpumask:true:true", "threads:true:true:", "cpumask:true:true:x"])
def test_bad_filter_specs(spec):
    with pytest.raises(UsageError):
        parse_filter_spec(spec)


def test_shorthands_come_first_in_order():
    filters = build_filters(cpus="0", tids="5", write_only=True, specs=["write:false:false"])
    assert [f.describe() for f in filters] == ["cpumask:true:true:0", "threads:true:true:5", "write:true:true",
                                               "write:false:false"]
    assert build_filters(read_only=True)[0] == SampleFilter("write", False, True)
    with pytest.raises(UsageError, match="exclude"):
        build_filters(write_only=True, read_only=True)
    with pytest.raises(UsageError, match="too many"):
        build_filters(specs=["write:true:true"] * (MAX_FILTERS + 1))


filters_st = st.lists(st.one_of(
    st.builds(SampleFilter, st.just("cpumask"), st.booleans(), st.booleans(),
              cpus=st.frozensets(st.integers(0, 7), min_size=1)),
    st.builds(SampleFilter, st.just("threads"), st.booleans(), st.booleans(),
              tids=st.frozensets(st.integers(1, 9), min_size=1)),
    st.builds(SampleFilter, st.just("write"), st.booleans(), st.booleans()),
), max_size=MAX_FILTERS)
reports_st = st.lists(st.tuples(st.integers(0, 7), st.integers(1, 9), st.sampled_from([ACCESS_READ, ACCESS_WRITE])),
                      max_size=50)


def _satisfies(f: SampleFilter, cpu: int, tid: int, write: int) -> bool:
    match = {"cpumask": cpu in f.cpus, "threads": tid in f.tids, "write": write == ACCESS_WRITE}[f.kind]
    return (match == f.matching) if f.allow else (match != f.matching)


@given(filters_st, reports_st)
def test_evaluate_is_the_documented_rule(filters, reports):
    cpu = np.array([r[0] for r in reports], dtype=np.uint32)
    tid = np.array([r[1] for r in reports], dtype=np.uint32)
    write = np.array([r[2] for r in reports], dtype=np.uint8)
    passed, counts = evaluate(filters, cpu, tid, write)
    expected = [all(_satisfies(f, *r) for f in filters) for r in reports]
    assert passed.tolist() == expected
    reaching = len(reports)
    for nr_passed, nr_rejected in counts:
        assert nr_passed + nr_rejected == reaching
        reaching = nr_passed
    assert reaching == sum(expected)


def test_no_filters_pass_everything_and_read_is_not_write():
    passed, _ = evaluate([], np.zeros(3), np.ones(3), np.zeros(3))
    assert passed.all()
    read_only = [SampleFilter("write", False, True)]
    passed, _ = evaluate(read_only, np.zeros(3), np.ones(3), np.array([ACCESS_READ, ACCESS_WRITE, ACCESS_UNKNOWN]))
    assert passed.tolist() == [True, False, True]
