"""Samplers on the host: settings bookkeeping with fake sysfs trees, timing, the session hooks with a real
tracer, and one-line errors where the host lacks a feature. Their real effect is tested in the VM
(tests/test_vm_samplers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import DAMON_BPF
from damon_bpf.errors import HostError
from damon_bpf.samplers import make_sampler
from damon_bpf.samplers.base import PeriodicSampler, Sampler
from damon_bpf.samplers.numa_hint import NumaHintSampler, tuning
from damon_bpf.samplers.numa_state import KNOBS, NumaPaths, NumaSettings, recover_stale
from damon_bpf.samplers.soft_dirty import soft_dirty_supported

DEFAULTS = {"scan_delay_ms": "1000", "scan_period_min_ms": "1000", "scan_period_max_ms": "60000",
            "scan_size_mb": "256"}


@pytest.fixture
def fake_numa(tmp_path) -> NumaPaths:
    """A /proc/sys/kernel and debugfs with the 5.13+ layout, numa_balancing off."""
    paths = NumaPaths(tmp_path / "sys", tmp_path / "debug", tmp_path / "run")
    (paths.debugfs / "sched" / "numa_balancing").mkdir(parents=True)
    paths.proc_sys.mkdir(parents=True)
    paths.switch.write_text("0\n")
    for name, value in DEFAULTS.items():
        paths.knob(name).write_text(value + "\n")
    return paths


def values(paths: NumaPaths) -> dict[str, str]:
    return {name: paths.knob(name).read_text().strip() for name in KNOBS} | {"on": paths.switch.read_text().strip()}


def test_tuning_follows_the_sample_interval():
    assert tuning(5000, 100_000) == {"scan_delay_ms": 100, "scan_period_min_ms": 5, "scan_period_max_ms": 100,
                                     "scan_size_mb": 12}
    assert tuning(100_000, 2_000_000)["scan_size_mb"] == 256      # the kernel's default window at most
    assert tuning(300, 200)["scan_period_min_ms"] == 1             # never below a millisecond
    assert tuning(50_000, 10_000)["scan_period_max_ms"] == 50      # never below the minimum


def test_numa_hint_applies_then_restores(fake_numa):
    notes = []
    sampler = NumaHintSampler(5000, 100_000, warn=notes.append, paths=fake_numa, nodes=[0, 1])
    sampler.start(type("T", (), {"pids": set()})())
    assert values(fake_numa) == {"scan_delay_ms": "100", "scan_period_min_ms": "5", "scan_period_max_ms": "100",
                                 "scan_size_mb": "12", "on": "1"}
    state = json.loads((fake_numa.state_dir / "numa-balancing.json").read_text())
    assert state["pid"] == os.getpid() and set(state["saved"]) == {"numa_balancing", *KNOBS}   # names, not paths
    assert any("may migrate" in n for n in notes)
    sampler.close()
    assert values(fake_numa) == DEFAULTS | {"on": "0"}
    assert not (fake_numa.state_dir / "numa-balancing.json").exists()
    assert "settings restored" in notes[-1]


def test_numa_hint_keeps_a_tiering_mode_bit(fake_numa):
    fake_numa.switch.write_text("2\n")
    sampler = NumaHintSampler(5000, 100_000, warn=lambda _: None, paths=fake_numa, nodes=[0, 1])
    assert sampler.wanted()[fake_numa.switch] == "3"


def test_old_kernels_use_the_sysctls(tmp_path):
    paths = NumaPaths(tmp_path / "sys", tmp_path / "debug", tmp_path / "run")
    paths.proc_sys.mkdir(parents=True)
    paths.switch.write_text("0")
    for name, value in DEFAULTS.items():
        (paths.proc_sys / f"numa_balancing_{name}").write_text(value)
    assert paths.knob("scan_delay_ms") == paths.proc_sys / "numa_balancing_scan_delay_ms"
    NumaHintSampler(5000, 100_000, warn=lambda _: None, paths=paths, nodes=[0, 1])


def test_a_crashed_run_is_undone_at_the_next_start(fake_numa):
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\n"
        "from damon_bpf.samplers.numa_state import NumaPaths, NumaSettings\n"
        "p = NumaPaths(*map(Path, sys.argv[1:4]))\ns = NumaSettings(p)\n"
        "s.apply({p.switch: '1', p.knob('scan_delay_ms'): '7'})\nprint('applied', flush=True)\ntime.sleep(60)\n"),
        str(fake_numa.proc_sys), str(fake_numa.debugfs), str(fake_numa.state_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "applied"
        with pytest.raises(HostError, match=f"another damon-bpf \\(PID {child.pid}\\)"):
            NumaHintSampler(5000, 100_000, warn=lambda _: None, paths=fake_numa, nodes=[0, 1])
        recover_stale(lambda m: pytest.fail(m), fake_numa)   # a live owner is left alone, quietly
        assert values(fake_numa)["scan_delay_ms"] == "7"
    finally:
        child.kill()
        child.wait()
    notes = []
    recover_stale(notes.append, fake_numa)
    assert values(fake_numa) == DEFAULTS | {"on": "0"}
    assert len(notes) == 1 and f"PID {child.pid}" in notes[0] and "did not exit cleanly" in notes[0]
    recover_stale(lambda m: pytest.fail(m), fake_numa)       # nothing left to do: quiet


def test_numa_hint_on_one_node_with_refusing_knobs_runs_on_kernel_defaults(fake_numa):
    """Restricted debugfs: the knobs refuse reads and writes (a directory stands in for EPERM here). Only the
    switch is changed, the knobs are left alone, and the switch goes back exactly."""
    fake_numa.switch.write_text("2\n")
    refusing = fake_numa.knob("scan_size_mb")
    refusing.unlink()
    refusing.mkdir()
    notes = []
    sampler = NumaHintSampler(5000, 100_000, warn=notes.append, paths=fake_numa, nodes=[0])
    assert sampler.knob_problem and "scan_size_mb" in sampler.knob_problem
    sampler.start(type("T", (), {"pids": set()})())
    assert fake_numa.switch.read_text().strip() == "3"
    assert fake_numa.knob("scan_delay_ms").read_text().strip() == DEFAULTS["scan_delay_ms"]
    assert any("kernel's default scan settings" in n and "60 s" in n for n in notes)
    assert any("one NUMA node" in n for n in notes)
    sampler.close()
    assert fake_numa.switch.read_text().strip() == "2"
    assert sampler.summary()["settings"] == "kernel defaults" and sampler.summary()["nodes"] == 1
    assert "no re-faults" in notes[-1]


def test_numa_hint_explains_missing_kernel_support(tmp_path):
    paths = NumaPaths(tmp_path / "sys", tmp_path / "debug", tmp_path / "run")
    with pytest.raises(HostError, match="CONFIG_NUMA_BALANCING"):
        NumaHintSampler(5000, 100_000, paths=paths, nodes=[0, 1])


def test_restore_failure_is_reported_and_left_for_the_next_start(fake_numa):
    settings = NumaSettings(fake_numa)
    settings.apply({fake_numa.knob("scan_delay_ms"): "9"})
    fake_numa.knob("scan_delay_ms").unlink()
    fake_numa.knob("scan_delay_ms").mkdir()        # now unwritable
    assert "cannot restore" in settings.restore()
    assert (fake_numa.state_dir / "numa-balancing.json").exists()


class Counting(PeriodicSampler):
    name = "counting"

    def __init__(self, interval_us, delay_s=0.0, budget=None, spin=False):
        super().__init__(interval_us, warn=lambda _: None, budget=budget)
        self.seen, self.delay_s, self.spin = [], delay_s, spin
        self.spans: list[tuple[float, float]] = []   # each call's (start, end), monotonic

    def sample(self, pids):
        began = time.monotonic()
        self.seen.append(list(pids))
        if not self.spin:
            time.sleep(self.delay_s)     # waits: no CPU used
        else:
            until = time.thread_time() + self.delay_s
            while time.thread_time() < until:   # uses delay_s of this thread's CPU, as a page-table walk does
                pass
        self.spans.append((began, time.monotonic()))


def test_periodic_sampler_keeps_its_interval_and_counts_overruns():
    targets = type("T", (), {"pids": {11, 5}})()
    fast = Counting(10_000)
    fast.start(targets)
    time.sleep(0.5)
    fast.stop_thread()
    assert 30 <= fast.calls <= 55 and fast.seen[0] == [5, 11]
    slow = Counting(10_000, delay_s=0.05)
    slow.start(targets)
    time.sleep(0.5)
    slow.stop_thread()
    assert slow.calls <= 11 and slow.overruns >= 20
    assert slow.summary()["mean_call_us"] >= 50_000


def test_periodic_sampler_stays_within_its_cpu_budget():
    """Calls using 20 ms of CPU every 10 ms asked, at most 20% of a CPU: one call per ~100 ms, on the
    interval grid."""
    targets = type("T", (), {"pids": {7}})()
    capped = Counting(10_000, delay_s=0.02, budget=0.2, spin=True)
    capped.start(targets)
    time.sleep(1.0)
    capped.stop_thread()
    info = capped.summary()
    spans = capped.spans
    # ~9 intervals of 10 ms pass between calls: skipped for the budget, or missed while a preempted call ran
    assert len(spans) >= 4 and capped.stretched + capped.overruns >= 7 * (len(spans) - 1), (spans, info)
    # The cap is the contract: a call of >= 20 ms of CPU is followed by no other for 100 ms from its start.
    starts = np.array([b for b, _ in spans])
    assert (np.diff(starts) >= 0.099).all(), np.diff(starts)
    assert info["cpu_share"] <= 0.22, info
    # And the sampler does not wait longer than that: the next call starts when the 100 ms are over or, on
    # a loaded machine whose scheduler stretched a call's wall time past them, when the call ended. What is
    # left is the sleeping thread's wake-up latency, judged by its median (a loaded 2-CPU runner).
    due = np.maximum(starts[:-1] + 0.1, np.array([e for _, e in spans[:-1]]))
    assert np.median(starts[1:] - due) < 0.02, starts[1:] - due
    uncapped = Counting(10_000, delay_s=0.02, spin=True)
    uncapped.start(targets)
    time.sleep(0.5)
    uncapped.stop_thread()
    # without a budget, 20 ms calls every 10 ms asked run back to back (overruns), none skipped
    idle = np.array([b for b, _ in uncapped.spans[1:]]) - np.array([e for _, e in uncapped.spans[:-1]])
    assert uncapped.stretched == 0 and uncapped.overruns >= len(idle) and np.median(idle) < 0.002, idle


def test_a_sampler_budget_charges_cpu_not_waiting():
    """A call that waits 20 ms (for the GIL, for a CPU the target keeps busy: here a sleep) uses almost
    no CPU, so a 20% budget does not stretch a 30 ms interval: the wall-time budget did, fivefold."""
    targets = type("T", (), {"pids": {7}})()
    waiting = Counting(30_000, delay_s=0.02, budget=0.2)
    waiting.start(targets)
    time.sleep(0.6)
    waiting.stop_thread()
    info = waiting.summary()
    assert waiting.stretched == 0 and info["cpu_share"] < 0.05, info
    assert info["mean_call_us"] >= 20_000 and info["mean_call_cpu_us"] < 5_000, info


class OneSlowCall(Counting):
    """Calls of 4 ms of CPU, the fifth of 100 ms (a walk that met the target's own faults)."""

    def sample(self, pids):
        self.delay_s = 0.1 if len(self.spans) == 4 else 0.004
        super().sample(pids)


def test_one_slow_call_does_not_stop_the_sampler_for_its_whole_budget_pause():
    """At a 20% budget a 100 ms call used to be followed by a 400 ms pause, a whole aggregation or more
    without re-arming; paced by the smoothed cost the pause is much shorter and the long-run share the same."""
    targets = type("T", (), {"pids": {7}})()
    sampler = OneSlowCall(10_000, budget=0.2, spin=True)
    sampler.start(targets)
    time.sleep(1.2)
    sampler.stop_thread()
    spans = sampler.spans
    assert len(spans) >= 7, spans
    pause_after_slow = spans[5][0] - spans[4][1]
    assert pause_after_slow < 0.25, pause_after_slow   # 0.4 s paced by the raw cost
    assert sampler.summary()["cpu_share"] <= 0.3


def test_a_sampler_budget_must_be_a_fraction_of_a_cpu():
    for budget in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction of one CPU"):
            Counting(10_000, budget=budget)


def test_soft_dirty_detection_agrees_with_the_kernel_config():
    ok, why = soft_dirty_supported()
    config = Path("/proc/config.gz")
    assert config.exists(), "this check reads the running kernel's config"
    import gzip
    enabled = "CONFIG_MEM_SOFT_DIRTY=y" in gzip.decompress(config.read_bytes()).decode()
    assert ok == enabled, why
    if not ok:
        with pytest.raises(HostError, match="CONFIG_MEM_SOFT_DIRTY"):
            make_sampler("soft-dirty", 5000, 100_000)


def test_make_sampler_none():
    assert make_sampler("none", 5000, 100_000) is None


class Recording(Sampler):
    name = "recording"

    def __init__(self):
        self.calls = []

    def start(self, targets):
        self.calls.append(("start", sorted(targets.pids)))

    def tick(self, now_ns):
        if self.calls[-1][0] != "tick":
            self.calls.append(("tick", None))

    def close(self):
        self.calls.append(("close", None))

    def summary(self):
        return {"sampler": self.name, "calls": len(self.calls)}


@pytest.mark.bpf
def test_session_runs_sampler_hooks_on_every_exit(tracer, accessgen):
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    sampler = Recording()
    # 2 s: long enough to be alive when the session starts on a loaded 2-CPU machine (0.5 s was not, at load 15)
    proc = subprocess.Popen([accessgen, "--duration", "2", "w:0:W:64:0"], stdout=subprocess.PIPE)
    proc.stdout.readline()
    result = Session(tracer, Targets([proc.pid]), 10, samplers=[sampler]).run(lambda b: None)
    proc.wait()
    assert [c[0] for c in sampler.calls] == ["start", "tick", "close"] and sampler.calls[0][1] == [proc.pid]
    assert result.samplers == [{"sampler": "recording", "calls": 3}]
    assert result.as_dict()["samplers"][0]["sampler"] == "recording"

    class Failing(Recording):
        def tick(self, now_ns):
            raise RuntimeError("boom")

    failing = Failing()
    proc = subprocess.Popen([accessgen, "--duration", "5", "w:0:W:64:0"], stdout=subprocess.PIPE)
    proc.stdout.readline()
    with pytest.raises(RuntimeError, match="boom"):
        Session(tracer, Targets([proc.pid]), 10, samplers=[failing]).run(lambda b: None)
    proc.kill()
    proc.wait()
    assert failing.calls[-1] == ("close", None)
    assert tracer.kernel_targets() == set()


@pytest.mark.parametrize("sampler", ["soft-dirty"])
def test_cli_reports_a_missing_feature_in_one_line(sampler):
    """This host has no soft-dirty (see `damon-bpf probe`)."""
    result = subprocess.run([DAMON_BPF, "trace", "--sampler", sampler, "--duration", "1", "-o", "/dev/null", "--",
                             "true"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("damon-bpf: error: ") and "Traceback" not in result.stderr
    assert "CONFIG_MEM_SOFT_DIRTY" in lines[0]


# ------------------------------------------------------------------------------------------------ perf-mem

def _pmu(root: Path, name: str, pmu_type: int, formats: dict[str, str], events: dict[str, str]) -> Path:
    pmu = root / name
    (pmu / "format").mkdir(parents=True)
    (pmu / "events").mkdir()
    (pmu / "type").write_text(f"{pmu_type}\n")
    for term, bits in formats.items():
        (pmu / "format" / term).write_text(bits + "\n")
    for event, spec in events.items():
        (pmu / "events" / event).write_text(spec + "\n")
    return pmu


def test_perf_mem_intel_pebs_events_from_sysfs(tmp_path):
    from damon_bpf.sources.perf_mem import hardware_events

    _pmu(tmp_path, "cpu", 4, {"event": "config:0-7", "umask": "config:8-15", "ldlat": "config1:0-15"},
         {"mem-loads": "event=0xcd,umask=0x1,ldlat=3", "mem-stores": "event=0xd0,umask=0x82"})
    (tmp_path / "software").mkdir()
    loads, stores = hardware_events(tmp_path)
    assert (loads.label, loads.type, loads.config, loads.config1, loads.kind) == ("mem-loads", 4, 0x1cd, 3, "read")
    assert (stores.config, stores.kind, stores.precise_ip) == (0x82d0, "write", 2)


def test_perf_mem_amd_ibs_and_arm_spe(tmp_path):
    from damon_bpf.sources.perf_mem import hardware_events

    _pmu(tmp_path / "amd", "ibs_op", 11, {}, {})
    (event,) = hardware_events(tmp_path / "amd")
    assert (event.label, event.type, event.kind) == ("ibs_op", 11, "unknown")
    _pmu(tmp_path / "arm", "arm_spe_0", 9, {}, {})
    with pytest.raises(HostError, match="AUX buffer"):
        hardware_events(tmp_path / "arm")


def test_perf_mem_without_pmu_says_so_in_one_line():
    result = subprocess.run([DAMON_BPF, "trace", "--source", "perf-mem", "--duration", "1", "-o", "/dev/null", "--",
                             "true"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs hardware memory-access sampling" in lines[0] and "software" in lines[0]


@pytest.fixture(scope="module")
def perf_mem_tracer():
    """perf-mem's program and attach path, fed by the software page-faults event (no PMU here)."""
    from damon_bpf.sources.perf_mem import PerfMemTracer, software_test_events

    loaded = PerfMemTracer(sample_period=1, events=software_test_events())
    yield loaded
    loaded.close()


@pytest.mark.bpf
def test_perf_mem_plumbing_reports_every_sampled_access(perf_mem_tracer, accessgen):
    from conftest import run_workload
    from damon_bpf.access import ACCESS_UNKNOWN
    from damon_bpf.filters import build_filters

    perf_mem_tracer.set_filters(build_filters(cpus="0"))
    workload = run_workload(accessgen, ["w:0:w:64:10", "r:1:r:32:5"], perf_mem_tracer.add_target)
    events = perf_mem_tracer.quiesce()
    accounting = perf_mem_tracer.accounting()
    assert accounting.lost == 0 and accounting.seen == accounting.delivered + accounting.filtered
    mine = events[workload.during_passes(events, "w")]
    assert len(mine) == 160 and workload.in_range(mine, "w").all()
    assert (mine["write"] == ACCESS_UNKNOWN).all() and (mine["cpu"] == 0).all()
    assert workload.in_range(events, "r").sum() == 0          # filtered in the kernel: on CPU 1
    assert perf_mem_tracer.source == "perf-mem"


@pytest.mark.bpf
def test_perf_mem_refuses_write_filters_when_writes_are_unknown(perf_mem_tracer):
    from damon_bpf.errors import UsageError
    from damon_bpf.filters import build_filters

    with pytest.raises(UsageError, match="cannot tell writes from reads"):
        perf_mem_tracer.set_filters(build_filters(write_only=True))


# ------------------------------------------------------------------------------------------------ kernel DAMON

def test_source_damon_errors_in_one_line(tmp_path):
    """trace cannot carry regions at all; record runs here, where DAMON has paddr but no vaddr (see `damon-bpf
    probe`): tests/test_kdamond_paddr.py checks what it sees."""
    record = subprocess.run([DAMON_BPF, "record", "--source", "damon", "--duration", "1", "-o", str(tmp_path / "d"),
                             "--", "true"], capture_output=True, text=True, timeout=60)
    trace = subprocess.run([DAMON_BPF, "trace", "--source", "damon", "--duration", "1", "-o", "/dev/null", "--",
                            "true"], capture_output=True, text=True, timeout=60)
    lines = trace.stderr.strip().splitlines()
    assert trace.returncode != 0 and len(lines) == 1 and lines[0].startswith("damon-bpf: error: ")
    assert "use it with record or live" in trace.stderr
    assert record.returncode == 0 and "damon: paddr on the targets' frames" in record.stderr, record.stderr
    assert "Traceback" not in record.stderr


def test_numa_state_dir_that_cannot_be_made_is_one_error(fake_numa, tmp_path):
    (tmp_path / "file").write_text("")
    paths = NumaPaths(fake_numa.proc_sys, fake_numa.debugfs, tmp_path / "file" / "run")
    with pytest.raises(HostError, match="cannot keep its state"):
        NumaHintSampler(5000, 100_000, paths=paths, nodes=[0, 1])


# ------------------------------------------------------------------------------------------------ re-faults

def test_refaults_count_only_pages_seen_before_and_group_bursts():
    from damon_bpf.samplers.refaults import RefaultTracker

    tracker = RefaultTracker(gap_ns=100)
    pids = np.array([1, 1, 2, 1, 1, 2])
    addrs = np.array([0x1000, 0x2000, 0x1000, 0x1000, 0x2fff, 0x1000])
    tracker.observe(pids, addrs, np.array([0, 1, 2, 10, 20, 500]))
    assert (tracker.first_touches, tracker.refaults) == (3, 3)
    assert tracker.summary()["burst_reports"] == [5, 1] and tracker.gaps_s() == [round(500 / 1e9, 2)]
    assert "6 reports on 3 pages (3 re-faults" in tracker.describe() and "2 bursts" in tracker.describe()


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 50), st.integers(0, 10**10)), max_size=200))
def test_refaults_account_for_every_report(reports):
    from damon_bpf.samplers.refaults import RefaultTracker

    tracker = RefaultTracker()
    reports.sort(key=lambda r: r[2])
    if reports:
        pids, pages, times = (np.array(col, dtype=np.uint64) for col in zip(*reports))
        tracker.observe(pids, pages << np.uint64(12), times)
    assert tracker.first_touches + tracker.refaults == len(reports)
    assert tracker.first_touches == len({(p, a) for p, a, _ in reports})
    assert sum(tracker.summary()["burst_reports"]) == tracker.summary()["reports"] == len(reports)
