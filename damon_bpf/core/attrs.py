"""DAMON's monitoring attributes, with the defaults and validity rules of the kernel and damo."""

from __future__ import annotations

from dataclasses import dataclass, fields

from damon_bpf.errors import UsageError

# The collector closes every sample interval in Python: below ~100 us it cannot keep up, falls behind
# without bound (memory grows, --duration and signals wait behind the backlog). DAMON's default is 5000.
MIN_SAMPLE_US = 100
MAX_INTERVAL_US = 2**40     # ~12 days; what a record file accepts
MAX_NR_REGIONS = 100_000    # DAMON's default is 1000; a snapshot's record text stays far below the reader's 64 MiB


@dataclass
class MonitoringAttrs:
    """Intervals in microseconds and region-count bounds (docs/design.md §2)."""

    sample_interval_us: int = 5000
    aggr_interval_us: int = 100000
    update_interval_us: int = 1000000
    min_nr_regions: int = 10
    max_nr_regions: int = 1000

    def validate(self) -> None:
        """Raise UsageError naming the DAMON rule the attributes break."""
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; True as an interval is surely a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError(f"{f.name} must be an integer, got {value!r}")
            if value <= 0:
                raise UsageError(f"{f.name} must be positive, got {value}")
            if f.name.endswith("_us") and value > MAX_INTERVAL_US:
                raise UsageError(f"{f.name} ({value}) is longer than {MAX_INTERVAL_US} us (about 12 days)")
        if self.sample_interval_us < MIN_SAMPLE_US:
            raise UsageError(f"sample_interval_us ({self.sample_interval_us}) must be at least {MIN_SAMPLE_US}: "
                             "shorter samples are more than the collector can close in time")
        if self.max_nr_regions > MAX_NR_REGIONS:
            raise UsageError(f"max_nr_regions ({self.max_nr_regions}) must be at most {MAX_NR_REGIONS}")
        if self.sample_interval_us > self.aggr_interval_us:
            raise UsageError(
                f"sample_interval_us ({self.sample_interval_us}) must not exceed aggr_interval_us "
                f"({self.aggr_interval_us}): DAMON needs sample <= aggr"
            )
        if self.min_nr_regions < 3:
            raise UsageError(f"min_nr_regions ({self.min_nr_regions}) must be at least 3, as in DAMON")
        if self.min_nr_regions > self.max_nr_regions:
            raise UsageError(
                f"min_nr_regions ({self.min_nr_regions}) must not exceed max_nr_regions "
                f"({self.max_nr_regions}): DAMON needs min <= max"
            )

    @property
    def max_nr_accesses(self) -> int:
        """Samples per aggregation, hence the largest possible nr_accesses."""
        return self.aggr_interval_us // self.sample_interval_us

    @property
    def samples_per_update(self) -> int:
        """Samples between two layout updates (at least one), counted like DAMON counts them."""
        return max(1, self.update_interval_us // self.sample_interval_us)
