"""The Prometheus collector of a running monitor.

Nothing is computed between scrapes: a snapshot listener only keeps the closed snapshots, and a
scrape asks the monitor's own thread (at its next tick, within tens of ms) to fold them and to read the
kernel's counters and the recorder's placement, so every piece of monitor state is read by the thread that
changes it. The answers of report sharing and report numa over each target's last 15 s (``metrics.answers``, for
the targets with new snapshots) are handed to a worker thread (``metrics.answer_worker``) with their own copy of
the snapshots; the monitor's thread takes its results at a later refresh and never waits for it. When no
monitor runs (before the first, between two of ``monitor``'s reloads, after the end) a scrape gets the last
values at once. Counters carry over from one attached Monitor
to the next (reloads), so ``rate()`` and ``increase()`` see no reset."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable, Union

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.metrics.answer_worker import AnswerWorker, Finished, Job
from damon_bpf.metrics.answers import TOP_PAIRS, TargetAnswers, target_answers
from damon_bpf.recordfile import TargetRecord
from damon_bpf.metrics.fold import TargetTotals, fold, fold_moves, hot_threshold, thread_shares
from damon_bpf.reports.recent import RecentRecords, TargetMeta, recorder_meta
from damon_bpf.session import RunResult, cpu_seconds
from damon_bpf.sources.numa import cpu_nodes, memory_nodes

if TYPE_CHECKING:
    from damon_bpf.monitor import Monitor
    from damon_bpf.recorder import Recorder
    from damon_bpf.reports.numa_live import NumaApplier

PREFIX = "damon_bpf_"
TOP_THREADS = 5                 # thread-share series per target: these and "other"
SHARE_WINDOW_NS = 15 * 10**9    # thread shares over this much of recent snapshots (a default scrape interval)
GONE_KEEP_NS = 300 * 10**9      # an exited target's series stay this long (its last values), then go
SCRAPE_WAIT_S = 2.0             # longest a scrape waits for the monitor's thread before serving the last values
PENDING_LIMIT = 10_000          # snapshots kept between scrapes before they are folded without one
ANSWER_PERIOD_S = 5.0           # the sharing and NUMA answers are recomputed at most this often
ANSWER_BUDGET = 0.01            # and take at most this share of a core (the worker's thread), on average
PLACES = ("in_regions", "outside_regions", "late", "unattributed")
# a run counter: "seen", "delivered", "lost", ("filter", spec, index) or ("placed", place)
CounterKey = Union[str, tuple[str, str], tuple[str, str, int]]


def _recorder(monitor: Monitor | None) -> Recorder:
    """The attached monitor's recorder: the exporter serves recording monitors only (their snapshots are its source)."""
    assert monitor is not None and monitor.recorder is not None
    return monitor.recorder


def _comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class RunCounters:
    """The kernel's accounting and the recorder's placement, added up over the Monitors of a run."""

    def __init__(self) -> None:
        self.base: Counter[CounterKey] = Counter()   # finished monitors' totals
        self.now: Counter[CounterKey] = Counter()    # the attached monitor's, as last read

    def read(self, accounting, placement: dict) -> None:
        now: Counter[CounterKey] = Counter(
            {"seen": accounting.seen, "delivered": accounting.delivered, "lost": accounting.lost})
        for index, count in enumerate(accounting.filters):
            now[("filter", count.spec, index)] = count.rejected
        now.update({("placed", place): placement.get(place, 0) for place in PLACES})
        self.now = now

    def retire(self) -> None:
        self.base.update(self.now)   # update, not +: a counter at 0 keeps its series
        self.now = Counter()

    def total(self) -> Counter[CounterKey]:
        total = Counter(self.base)
        total.update(self.now)
        return total


class MetricsExporter(Collector):
    """Series under ``damon_bpf_`` for the targets of the attached Monitor (see the README for the list).

    ``cgroup_of(pid)`` (optional) names a target's cgroup; with it every target series has a ``cgroup``
    label too."""

    def __init__(self, top_threads: int = TOP_THREADS, cgroup_of: Callable[[int], str] | None = None,
                 scrape_wait_s: float = SCRAPE_WAIT_S, top_pairs: int = TOP_PAIRS,
                 answer: Callable[[TargetRecord], TargetAnswers] | None = None) -> None:
        """``answer`` (tests, the benchmark): a target's answers from its recent snapshots, made on the worker's
        thread; ``metrics.answers.target_answers`` with ``top_pairs`` by default."""
        self.top_threads, self.top_pairs = top_threads, top_pairs
        self.cgroup_of = cgroup_of
        self.scrape_wait_s = scrape_wait_s
        self.page = os.sysconf("SC_PAGESIZE")
        self.cpu_nodes = cpu_nodes()
        self.nodes = sorted({*self.cpu_nodes.values(), *memory_nodes()})
        self.targets: dict[int, TargetTotals] = {}
        self.recent: RecentRecords | None = None   # each target's snapshots of the share window, by pid
        self.applier: NumaApplier | None = None    # --apply's, whose moves are served
        self._moves_done = 0
        self._answers_due = 0.0   # time.monotonic() of the next answers
        self._answers_ready = False   # the worker finished a round: the next tick refreshes
        self.answers = AnswerWorker(answer or (lambda rec: target_answers(rec, top_pairs)), self._answered)
        self.counters = RunCounters()
        self.monitor: Monitor | None = None
        self._target_meta: TargetMeta = lambda _target_id, _pid: None   # the attached recorder's (attach)
        self.hot_from = hot_threshold(20)
        self._pending: list[tuple] = []   # (pid, comm, snapshot) since the last fold
        self._cond = threading.Condition()
        self._wanted = False
        self._families: list[Metric] = self._build([])
        self._generation = 0

    # -- the monitor's thread --------------------------------------------------------------------

    def attach(self, monitor: Monitor) -> None:
        """Serve ``monitor``'s state from now on (a recording monitor: its snapshots are the source)."""
        self.monitor = monitor
        self.hot_from = hot_threshold(monitor.config.attrs.max_nr_accesses)
        if self.recent is None or self.recent.attrs != monitor.config.attrs:
            self.recent = RecentRecords(monitor.config.attrs, _window_snapshots(monitor.config.attrs))
        self._target_meta = recorder_meta(_recorder(monitor))
        _recorder(monitor).listeners.append(self.on_snapshot)
        monitor.tick_hooks.append(self.on_tick)
        monitor.end_hooks.append(self.on_end)

    def follow_moves(self, applier: NumaApplier) -> None:
        """Serve the bytes ``applier`` (record/live --apply) moves, by target and node."""
        self.applier = applier

    def on_snapshot(self, target_id: int, pid: int, snapshot) -> None:
        # its comm now: a standing monitor forgets gone targets
        meta = self._target_meta(target_id, pid) or {}
        self._pending.append((pid, meta.get("comm"), snapshot))
        if len(self._pending) > PENDING_LIMIT:   # nobody scrapes: fold now rather than grow
            self._fold()

    def on_tick(self, _now_ns: int) -> None:
        if self._wanted or self._answers_ready:
            self._refresh()

    def _answered(self) -> None:
        """The worker's thread: a round finished (a flag the monitor's thread reads at its next tick)."""
        self._answers_ready = True

    def on_end(self, result: RunResult | None) -> None:
        """The run ended: its final (exact) accounting is read, and later scrapes get it at once."""
        if result is not None:
            self.counters.read(result.accounting, result.placement)
        self._refresh(read_monitor=result is None)
        self.counters.retire()
        with self._cond:
            self.monitor = None
            self._cond.notify_all()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        for pid, comm, snapshot in pending:
            totals = self.targets.get(pid)
            if totals is None:
                totals = self.targets[pid] = TargetTotals(pid)
            totals.comm = comm or totals.comm or _comm_of(pid)
            fold(totals, snapshot, self.page, self.hot_from, self.cpu_nodes, SHARE_WINDOW_NS)
            if self.recent is not None:
                self.recent.on_snapshot(pid, pid, snapshot)   # by pid: target ids restart at a reload

    def _answer(self) -> None:
        """Take the worker's finished round, if any; when due, hand it the next (every target with snapshots since
        its last round; a gone target keeps its last answers); then --apply's new moves. Rounds are paced by
        their cost: after a round that took ``t`` of the worker's CPU, the next waits ``t / ANSWER_BUDGET``."""
        self._answers_ready = False
        done = self.answers.take()
        if done is not None:
            self._take_answers(done)
        now = time.monotonic()
        if now >= self._answers_due:
            jobs = self._answer_jobs()   # a target's first snapshots are answered at the first refresh after them
            if jobs:   # when the last round still runs this one is skipped (the worker counts it)
                if self.answers.submit(jobs):
                    for pid, seen, _rec in jobs:
                        self.targets[pid].answered_at = seen
                self._answers_due = now + ANSWER_PERIOD_S
        if self.applier is not None:
            moves = self.applier.moves
            fold_moves(self.targets, moves[self._moves_done:], self.applier.recent.pids)
            self._moves_done = len(moves)

    def _answer_jobs(self) -> list[Job]:
        """Each target with snapshots since its last round, with its own copy of its recent snapshots."""
        jobs = []
        for pid, totals in self.targets.items():
            rec = self.recent.record(pid) if self.recent is not None else None
            if rec is not None and totals.answered_at != totals.snapshots:
                jobs.append((pid, totals.snapshots, rec))
        return jobs

    def _take_answers(self, done: Finished) -> None:
        for pid, (_seen, answers) in done.results.items():
            totals = self.targets.get(pid)
            if totals is not None:   # else gone and forgotten since
                totals.answers = answers
        self._answers_due = max(self._answers_due, time.monotonic() + done.cpu_s / ANSWER_BUDGET - done.wall_s)

    def _refresh(self, read_monitor: bool = True) -> None:
        self._fold()
        self._answer()
        monitor = self.monitor
        if monitor is not None and read_monitor:
            self.counters.read(monitor.tracer.accounting(), _recorder(monitor).accounting())
        self._mark_gone(monitor)
        families = self._build(monitor.samplers if monitor is not None else [])
        with self._cond:
            self._families, self._wanted = families, False
            self._generation += 1
            self._cond.notify_all()

    def _mark_gone(self, monitor) -> None:
        now = time.monotonic_ns()
        states = monitor.recorder.targets if monitor is not None else {}
        for pid, totals in list(self.targets.items()):
            state = states.get(pid)
            if state is not None and not state.gone:
                totals.gone_ns = None
            elif totals.gone_ns is None:
                totals.gone_ns = now
            elif now - totals.gone_ns > GONE_KEEP_NS:
                del self.targets[pid]
                if self.recent is not None:
                    self.recent.forget(pid)

    # -- the HTTP server's thread ----------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return []   # registering must not scrape

    def collect(self) -> Iterable[Metric]:
        with self._cond:
            if self.monitor is not None:
                generation, self._wanted = self._generation, True
                self._cond.wait_for(lambda: self._generation > generation or self.monitor is None,
                                    self.scrape_wait_s)
            return list(self._families)

    # -- families --------------------------------------------------------------------------------

    def _labels(self, totals: TargetTotals) -> list[str]:
        labels = [str(totals.pid), totals.comm]
        return labels + [self.cgroup_of(totals.pid) or ""] if self.cgroup_of is not None else labels

    def _build(self, samplers) -> list[Metric]:
        names = ["pid", "comm"] + (["cgroup"] if self.cgroup_of is not None else [])
        return [*self._target_families(names), *self._answer_families(names), *self._run_families(),
                *_sampler_families(samplers)]

    def _target_families(self, names: list[str]) -> list[Metric]:
        gauges = {
            "working_set_bytes": ("Bytes of regions accessed in the target's latest aggregation window",
                                  "working_set_bytes"),
            "dirty_set_bytes": ("Bytes of regions written in the latest aggregation window", "dirty_set_bytes"),
            "hot_bytes": ("Bytes of regions accessed in at least a tenth of the latest window's samples",
                          "hot_bytes"),
            "regions": ("DAMON regions of the target in its latest snapshot", "regions"),
            "dirty_bytes_per_second": ("Bytes dirtied per second in the latest window (a page once per window)",
                                       "dirty_bytes_per_s"),
        }
        families: list[Metric] = []
        for name, (doc, attribute) in gauges.items():
            family = GaugeMetricFamily(PREFIX + name, doc, labels=names)
            for totals in self.targets.values():
                family.add_metric(self._labels(totals), getattr(totals, attribute))
            families.append(family)
        written = CounterMetricFamily(PREFIX + "written_bytes", "Bytes dirtied, summed over aggregation windows",
                                      labels=names)
        by_cpu = CounterMetricFamily(PREFIX + "cpu_reports", "Access reports in regions, by the CPU that made them",
                                     labels=names + ["cpu"])
        by_node = CounterMetricFamily(PREFIX + "node_reports",
                                      "Access reports in regions, by the NUMA node of the CPU that made them",
                                      labels=names + ["node"])
        shares = GaugeMetricFamily(PREFIX + "thread_report_share",
                                   f"Share of the target's reports over the last {SHARE_WINDOW_NS // 10**9} s by "
                                   f"thread: the top {self.top_threads}, the rest as tid=\"other\"",
                                   labels=names + ["tid"])
        for totals in self.targets.values():
            labels = self._labels(totals)
            written.add_metric(labels, totals.written_bytes)
            for cpu, count in sorted(totals.reports_by_cpu.items()):
                by_cpu.add_metric(labels + [str(cpu)], count)
            for node, count in sorted(totals.reports_by_node.items()):
                by_node.add_metric(labels + [str(node)], count)
            for tid, share in thread_shares(totals.recent_tids, self.top_threads):
                shares.add_metric(labels + [tid], share)
        return families + [written, by_cpu, by_node, shares]

    def _answer_families(self, names: list[str]) -> list[Metric]:
        """report sharing's and report numa's answers (metrics.answers) and --apply's moves."""
        pair_bytes = GaugeMetricFamily(
            PREFIX + "thread_pair_shared_bytes",
            f"Bytes of hot regions both threads accessed in the same aggregation window, mean over the windows of "
            f"the last {SHARE_WINDOW_NS // 10**9} s (report sharing): the top {self.top_pairs} pairs",
            labels=names + ["a", "b"])
        pairs = GaugeMetricFamily(PREFIX + "thread_pairs", "Thread pairs that shared hot memory in that time "
                                  "(exported or not)", labels=names)
        groups = GaugeMetricFamily(PREFIX + "thread_groups", "Groups of two threads or more report sharing "
                                   "suggests placing together (on one LLC or node)", labels=names)
        accessed = GaugeMetricFamily(PREFIX + "numa_accessed_bytes", "Bytes of the pages of the regions accessed "
                                     "in that time, by the node of the CPUs that accessed them (report shares)",
                                     labels=names + ["node"])
        home = GaugeMetricFamily(PREFIX + "numa_home_bytes", "Bytes of those pages by the node they live on "
                                 "(sampled with move_pages)", labels=names + ["node"])
        movable = GaugeMetricFamily(PREFIX + "numa_movable_bytes", "Bytes report numa would move, by the node it "
                                    "would move them to (hot, old, mostly accessed from there)",
                                    labels=names + ["node"])
        moved = CounterMetricFamily(PREFIX + "numa_moved_bytes", "Bytes --apply moved, by the node moved to",
                                    labels=names + ["node"])
        for totals in self.targets.values():
            labels, answers = self._labels(totals), totals.answers
            if self.applier is not None:
                for node in sorted({*self.nodes, *totals.moved_bytes_by_node}):
                    moved.add_metric(labels + [str(node)], totals.moved_bytes_by_node[node])
            if answers is None:
                continue
            for a, b, size in answers.pairs:
                pair_bytes.add_metric(labels + [str(a), str(b)], size)
            pairs.add_metric(labels, answers.nr_pairs)
            groups.add_metric(labels, answers.nr_groups)
            for family, by_node in ((accessed, answers.accessed_by_node), (home, answers.home_by_node),
                                    (movable, answers.movable_by_node)):
                for node, size in sorted(by_node.items()):
                    family.add_metric(labels + [str(node)], size)
        return [pair_bytes, pairs, groups, accessed, home, movable, moved]

    def _run_families(self) -> list[Metric]:
        total = self.counters.total()
        families = [CounterMetricFamily(PREFIX + f"reports_{key}", doc, value=total[key]) for key, doc in (
            ("seen", "Reports of the targets the kernel saw (seen = delivered + filtered + lost)"),
            ("delivered", "Reports that reached user space"),
            ("lost", "Reports lost because the ring buffer was full"))]
        filtered = CounterMetricFamily(PREFIX + "reports_filtered", "Reports a sample filter rejected, per filter",
                                       labels=["filter", "index"])
        placed = CounterMetricFamily(PREFIX + "reports_placed",
                                     "Where delivered reports went: in_regions, outside_regions, late, unattributed "
                                     "(after their process's end)", labels=["place"])
        for key, value in sorted(total.items(), key=str):
            if isinstance(key, tuple) and len(key) == 3 and key[0] == "filter":
                filtered.add_metric([key[1], str(key[2])], value)
            elif isinstance(key, tuple) and key[0] == "placed":
                placed.add_metric([key[1]], value)
        cpu = CounterMetricFamily(PREFIX + "collector_cpu_seconds",
                                  "CPU time of the damon-bpf process (collector, region core, samplers, exporter)",
                                  value=cpu_seconds())
        live = GaugeMetricFamily(PREFIX + "targets", "Target processes being monitored now",
                                 value=sum(t.gone_ns is None for t in self.targets.values()))
        rounds = CounterMetricFamily(PREFIX + "answer_rounds", "Rounds of the sharing and NUMA answers, by outcome: "
                                     "started (on their own thread), skipped (the previous round still ran)",
                                     labels=["outcome"])
        rounds.add_metric(["started"], self.answers.rounds)
        rounds.add_metric(["skipped"], self.answers.skipped)
        return families + [filtered, placed, cpu, live, rounds]


def _window_snapshots(attrs: MonitoringAttrs) -> int:
    """Snapshots a target closes in the share window (the answers' window), and the one it straddles."""
    return max(2, SHARE_WINDOW_NS // (attrs.aggr_interval_us * 1000) + 1)


def _sampler_families(samplers) -> list[Metric]:
    info = GaugeMetricFamily(PREFIX + "sampler_enabled", "1 for each sampler the monitor runs (--sampler)",
                             labels=["sampler"])
    calls = CounterMetricFamily(PREFIX + "sampler_calls", "Times the sampler re-armed faults", labels=["sampler"])
    busy = CounterMetricFamily(PREFIX + "sampler_busy_seconds", "Time the sampler's calls took", labels=["sampler"])
    missed = CounterMetricFamily(PREFIX + "sampler_missed_intervals",
                                 "Sampler intervals missed: overran (a call took too long) or skipped (budget)",
                                 labels=["sampler", "why"])
    for sampler in samplers:
        info.add_metric([sampler.name], 1)
        if hasattr(sampler, "calls"):   # periodic samplers (soft-dirty); numa-hint's scan is the kernel's
            calls.add_metric([sampler.name], sampler.calls)
            busy.add_metric([sampler.name], sampler.busy_s)
            missed.add_metric([sampler.name, "overrun"], sampler.overruns)
            missed.add_metric([sampler.name, "budget"], sampler.stretched)
    return [info, calls, busy, missed]
