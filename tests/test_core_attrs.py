import pytest

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.errors import UsageError


def test_defaults_are_damons():
    a = MonitoringAttrs()
    assert (a.sample_interval_us, a.aggr_interval_us, a.update_interval_us) == (5000, 100000, 1000000)
    assert (a.min_nr_regions, a.max_nr_regions) == (10, 1000)
    assert a.max_nr_accesses == 20
    a.validate()


def test_max_nr_accesses_is_integer_ratio():
    assert MonitoringAttrs(sample_interval_us=3000, aggr_interval_us=10000).max_nr_accesses == 3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"sample_interval_us": 200000}, "sample <= aggr"),
        ({"min_nr_regions": 2}, "at least 3"),
        ({"min_nr_regions": 50, "max_nr_regions": 20}, "min <= max"),
        ({"sample_interval_us": 0}, "positive"),
        ({"update_interval_us": -1}, "positive"),
        ({"max_nr_regions": 0}, "positive"),
        ({"aggr_interval_us": 1.5}, "integer"),
    ],
)
def test_validate_names_the_rule(kwargs, words):
    with pytest.raises(UsageError) as err:
        MonitoringAttrs(**kwargs).validate()
    message = str(err.value)
    assert words in message
    assert "\n" not in message


def test_edge_values_are_valid():
    MonitoringAttrs(sample_interval_us=100000, aggr_interval_us=100000, min_nr_regions=3, max_nr_regions=3).validate()
