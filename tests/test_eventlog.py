"""The vectorised JSON-lines writer gives exactly the bytes of the per-record formatter (the format's plain
statement), whatever the values: every digit count, 0, the largest u64 and u32, unknown write codes."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.access import ACCESS_DTYPE, ACCESS_READ, ACCESS_UNKNOWN, ACCESS_WRITE
from damon_bpf.eventlog import EventWriter, jsonl_bytes, jsonl_lines_per_event


def _edges(bits: int) -> st.SearchStrategy[int]:
    """Values at every digit-count boundary, and anything in between."""
    tens = [10**k + d for k in range(20) for d in (-1, 0, 1) if 0 <= 10**k + d < 2**bits]
    return st.one_of(st.sampled_from([0, 2**bits - 1, *tens]), st.integers(0, 2**bits - 1))


RECORDS = st.lists(st.tuples(_edges(64), _edges(64), _edges(32), _edges(32), _edges(32),
                             st.one_of(st.sampled_from([ACCESS_READ, ACCESS_WRITE, ACCESS_UNKNOWN]),
                                       st.integers(0, 255)), _edges(64)), max_size=300)


def _batch(records: list[tuple]) -> np.ndarray:
    batch = np.zeros(len(records), ACCESS_DTYPE)
    for name, values in zip(("addr", "time_ns", "cpu", "pid", "tid", "write", "ip"), zip(*records) if records else ()):
        batch[name] = values
    return batch


@settings(max_examples=300)
@given(RECORDS)
def test_same_bytes_as_the_per_record_formatter(records):
    batch = _batch(records)
    assert jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode()


def test_large_random_batches_across_chunks():
    rng = np.random.default_rng(17)
    for rows in (0, 1, (1 << 16) - 1, (1 << 16) + 3, 200_000):
        batch = np.zeros(rows, ACCESS_DTYPE)
        for name in ("addr", "time_ns", "ip"):
            batch[name] = rng.integers(0, 2**64, rows, dtype=np.uint64) >> rng.integers(0, 64, rows, dtype=np.uint64)
        for name in ("cpu", "pid", "tid"):
            batch[name] = rng.integers(0, 2**32, rows, dtype=np.uint32) >> rng.integers(0, 32, rows, dtype=np.uint32)
        batch["write"] = rng.integers(0, 256, rows)
        batch["pad0"], batch["pad1"] = 7, 9   # padding never shows
        assert jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode()


def test_a_strided_slice_and_the_writer(tmp_path):
    batch = _batch([(2**64 - 1, 5, 0, 42, 43, ACCESS_WRITE, 0x401000), (0, 0, 1, 1, 1, ACCESS_READ, 0),
                    (4096, 1, 2, 3, 4, 9, 2**64 - 1)])
    writer = EventWriter(str(tmp_path / "ev.jsonl"))
    writer.write(batch[::2])
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert lines == [{"addr": 2**64 - 1, "time_ns": 5, "cpu": 0, "pid": 42, "tid": 43, "write": True, "ip": 0x401000},
                     {"addr": 4096, "time_ns": 1, "cpu": 2, "pid": 3, "tid": 4, "write": None, "ip": 2**64 - 1}]


def test_a_new_field_of_the_record_becomes_a_column():
    """The writer follows the record's dtype: an added unsigned field (an instruction pointer, say) is written
    in its place in the struct's order, with no change to the writer."""
    dtype = np.dtype([*[(name, ACCESS_DTYPE[name]) for name in ("addr", "time_ns", "cpu", "pid", "tid", "write")],
                      ("pad0", "u1"), ("pad1", "<u2"), ("ip", "<u8"), ("flags", "u1")])
    batch = np.zeros(4, dtype)
    batch["ip"] = [0, 1, 10**19, 2**64 - 1]
    batch["flags"] = [0, 9, 10, 255]
    batch["write"] = ACCESS_WRITE
    assert jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode()
    assert json.loads(jsonl_bytes(batch).splitlines()[3]) == {
        "addr": 0, "time_ns": 0, "cpu": 0, "pid": 0, "tid": 0, "write": True, "ip": 2**64 - 1, "flags": 255}
