"""The monitor as a library: a script builds a MonitorConfig and runs a Monitor without click, on real
BPF and the ground-truth workload, and gets what the commands get."""

from __future__ import annotations

import json

import numpy as np
import pytest

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.monitor import FilterSpec, Monitor, MonitorConfig, RecordingSpec, SamplerSpec, TargetSpec
from damon_bpf.recordfile import RecordWriter, read_record


def ground_truth(output) -> tuple[dict, dict]:
    """accessgen's two JSON lines: the ranges before it starts, the touches after it ends."""
    info, done = (json.loads(line) for line in output.read_text().splitlines())
    return info, done


@pytest.mark.bpf
def test_a_script_traces_a_command_without_click(accessgen, tmp_path):
    output = tmp_path / "accessgen.out"
    config = MonitorConfig(TargetSpec(command=(accessgen, "w:0:w:64:10", "r:1:r:32:5"), command_output=str(output)),
                           source="tracepoint", filters=FilterSpec(write_only=True))
    batches: list[np.ndarray] = []
    monitor = Monitor(config)
    assert monitor.recorder is None and monitor.samplers == [] and monitor.companions == []
    result = monitor.run(batches.append)
    events = np.concatenate(batches)
    info, _done = ground_truth(output)
    writer = next(t for t in info["threads"] if t["name"] == "w")
    reader = next(t for t in info["threads"] if t["name"] == "r")
    in_writer = ((events["tid"] == writer["tid"]) & (events["addr"] >= writer["start"])
                 & (events["addr"] < writer["end"]))
    assert in_writer.sum() == 16 * 10   # 64 KiB of 4 KiB pages, ten passes, each touch a fault
    in_reader = (events["addr"] >= reader["start"]) & (events["addr"] < reader["end"])
    assert not in_reader.any()   # --write-only, in the kernel (the reader's own stack writes do pass)
    assert result.reason == "targets-exited" and result.exit_status == 0
    acc = result.accounting
    assert acc.lost == 0 and acc.delivered == len(events) and acc.seen == acc.delivered + acc.filtered
    assert acc.filtered >= 8 * 5   # the reader's touches


@pytest.mark.bpf
def test_a_script_records_snapshots_without_click(accessgen, tmp_path):
    output, path = tmp_path / "accessgen.out", tmp_path / "damon.data"
    attrs = MonitoringAttrs(aggr_interval_us=50_000)   # ~60 snapshots in 3 s
    config = MonitorConfig(TargetSpec(command=(accessgen, "--duration", "3", "hot:0:w:8192:0", "cold:1:c:8192:0"),
                                      command_output=str(output)),
                           source="tracepoint", recording=RecordingSpec(attrs, seed=7))
    monitor = Monitor(config, RecordWriter(str(path)))
    heard = []
    monitor.recorder.listeners.append(lambda target_id, pid, snapshot: heard.append((pid, snapshot)))
    result = monitor.run()
    info, done = ground_truth(output)
    (record,) = read_record(str(path))
    assert record.pid == info["pid"] and len(record.snapshots) == len(heard) >= 30
    assert record.meta["source"] == "tracepoint" and record.meta["accounting"]["lost"] == 0
    assert record.meta["accounting"]["delivered"] == result.accounting.delivered
    hot, cold = (thread(info, done, name) for name in ("hot", "cold"))
    # the second half of the hot thread's passes: DAMON's regions have settled by then
    middle = (hot["go_ns"] + hot["done_ns"]) // 2
    settled = [s for s in record.snapshots if s.start_ns >= middle and s.end_ns <= hot["done_ns"]]
    assert len(settled) >= 10
    # written nonstop, every touch a fault: each one is in the snapshots, in regions on the thread's range;
    # besides them the thread faults only a handful of pages of its own (stack, TLS: 1 seen)
    in_range = sum(reports_in(s, hot) for s in record.snapshots)
    by_thread = sum(int(s.by_tid.get(hot["tid"], np.zeros(1)).sum()) for s in record.snapshots)
    assert hot["touches"] <= in_range <= by_thread < hot["touches"] + 16, (hot["touches"], in_range, by_thread)
    # and most settled windows show it (a loaded machine keeps the thread off its CPU for whole windows:
    # exactness is the sum above, this only says the reports are spread over the run, not bunched)
    hot_snapshots = sum(reports_in(s, hot) > 0 for s in settled)
    assert hot_snapshots >= 0.5 * len(settled), (hot_snapshots, len(settled))
    # written once at start-up, then only mapped: no report inside it (the thread's own few other faults,
    # e.g. its stack, can land in a region that straddles the range's edge, so regions wholly inside it)
    assert sum(reports_in(s, cold, wholly=True) for s in settled) == 0


def thread(info: dict, done: dict, name: str) -> dict:
    spec = next(t for t in info["threads"] if t["name"] == name)
    return {**spec, **next(t for t in done["threads"] if t["tid"] == spec["tid"])}


class OneSnapshotPerTarget:
    """A companion of a script's own: one snapshot per target on its first tick, like a tiny kdamond."""

    name = "one-snapshot"
    snapshot_meta = {"view": "script-companion"}

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.sinks: list = []
        self.calls: list[str] = []

    def start(self, targets) -> None:
        self.pids = sorted(targets.pids)
        self.calls.append("start")

    def tick(self, now_ns: int) -> None:
        if "tick" not in self.calls:
            self.calls.append("tick")
            zeros = np.zeros(1, dtype=np.uint64)
            for pid in self.pids:
                snapshot = Snapshot(now_ns - 1000, now_ns, np.array([4096], dtype=np.uint64),
                                    np.array([8192], dtype=np.uint64), np.array([pid % 7], dtype=np.uint64),
                                    zeros, zeros, zeros, zeros)
                for sink in self.sinks:
                    sink(pid, snapshot)

    def close(self) -> None:
        self.calls.append("close")

    def summary(self) -> dict:
        return {"sampler": self.name, "calls": list(self.calls)}

    def add_snapshot_sink(self, sink) -> None:
        self.sinks.append(sink)


@pytest.mark.bpf
def test_a_companions_snapshots_are_filed_next_to_ours(accessgen, tmp_path):
    """What --source damon does with kernel DAMON's snapshots, with a companion that runs on any host."""
    path = tmp_path / "damon.data"
    config = MonitorConfig(TargetSpec(command=(accessgen, "--duration", "1", "w:0:w:64:0"),
                                      command_output=str(tmp_path / "out")),
                           source="tracepoint", recording=RecordingSpec())
    companion = OneSnapshotPerTarget()
    monitor = Monitor(config, RecordWriter(str(path)), companions=[companion])
    result = monitor.run()
    records = {record.target_id: record for record in read_record(str(path))}
    assert sorted(records) == [0, 1000]   # ours, and the companion's from id 1000
    ours, theirs = records[0], records[1000]
    assert theirs.pid == ours.pid and ours.snapshots
    assert theirs.meta == {"view": "script-companion"}
    (snapshot,) = theirs.snapshots
    assert (snapshot.start.tolist(), snapshot.end.tolist(), snapshot.nr_accesses.tolist()) == ([4096], [8192],
                                                                                               [ours.pid % 7])
    assert result.samplers == [{"sampler": "one-snapshot", "calls": ["start", "tick", "close"]}]


def reports_in(snapshot, thread: dict, wholly: bool = False) -> int:
    """The thread's reports in regions that overlap its range (``wholly``: that lie inside it)."""
    if wholly:
        inside = (snapshot.start >= thread["start"]) & (snapshot.end <= thread["end"])
    else:
        inside = (snapshot.start < thread["end"]) & (snapshot.end > thread["start"])
    return int(snapshot.by_tid.get(thread["tid"], np.zeros(snapshot.nr_regions))[inside].sum())


def test_configuration_mistakes_are_usage_errors_before_anything_loads():
    target = TargetSpec(command=("true",))
    with pytest.raises(UsageError, match="soft-dirty sampler only"):
        Monitor(MonitorConfig(target, sampler=SamplerSpec("numa-hint", budget_pct=5)))
    with pytest.raises(UsageError, match="record or live"):
        Monitor(MonitorConfig(target, source="damon"))
    with pytest.raises(UsageError):
        Monitor(MonitorConfig(target, recording=RecordingSpec(MonitoringAttrs(sample_interval_us=0))))
    with pytest.raises(UsageError, match="exclude each other"):
        Monitor(MonitorConfig(target, filters=FilterSpec(write_only=True, read_only=True)))


def test_a_budget_is_a_fraction_of_a_cpu_and_100_removes_it():
    assert SamplerSpec("soft-dirty").budget() == pytest.approx(0.10)
    assert SamplerSpec("soft-dirty", budget_pct=25).budget() == pytest.approx(0.25)
    assert SamplerSpec("soft-dirty", budget_pct=100).budget() is None
    assert SamplerSpec("none").budget() == pytest.approx(0.10)   # unused, but not an error when not given
