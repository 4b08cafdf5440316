"""Hot-set precision/recall and monitor CPU: damon-bpf with each sampler against kernel DAMON (damo).

Runs inside a tests/vm guest (the 6.12 kernel has soft-dirty, numa=fake=2 and DAMON vaddr; damo 3.4.3 and
Debian's trace-cmd on the host are seen by the guest):

    tests/vm/run --kernel backports -- '.venv/bin/python tests/bench/bench_samplers.py --seconds 10'

The workload (tests/workload/accessgen.c, steady modes) writes one hot range and reads another without
ever unmapping them, next to a cold range written once before monitoring. Every method monitors the same
workload for the same time with DAMON's default attributes. For each snapshot after the first quarter
(warm-up), the predicted hot set is the regions with nr_accesses > 0, clipped to the workload's ranges:
precision = hot bytes predicted / bytes predicted, recall = hot bytes predicted / hot bytes. Monitor CPU
is what the monitor itself spends: kdamond plus damo and trace-cmd for kernel DAMON, the damon-bpf
process (ring reader, region core, sampler thread) for damon-bpf. Work the kernel does in the target's
own context (BPF programs on its faults, the NUMA scanner's task_numa_work) is not monitor CPU; the
workload's touch rate shows it as slowdown instead.

Kernel DAMON also runs through damon-bpf's own `--source damon` (--kernel-ops, each --rounds times):
`vaddr` (the kdamond on the target's page tables) and `paddr` (a kdamond on the frames backing the target,
read from /proc/PID/pagemap, its regions mapped back to the target's pages; its monitor CPU adds this
process's page-map reads and mapping back to the kdamond's). To compare only those two:

    tests/vm/run --kernel backports -- '.venv/bin/python tests/bench/bench_samplers.py --seconds 10
        --no-damo --no-clear-refs --samplers "" --rounds 3'
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DAMO = str(Path(sys.executable).parent / "damo")
KDAMOND = Path("/sys/kernel/mm/damon/admin/kdamonds/0/pid")
TICK = os.sysconf("SC_CLK_TCK")


def build_accessgen(out: Path) -> str:
    binary = out / "accessgen"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(ROOT / "tests/workload/accessgen.c")], check=True)
    return str(binary)


def start_workload(binary: str, seconds: float, args):
    """The workload as the options say: its hot and cold sizes, and with --huge on huge pages filled in turn."""
    specs = [f"hotw:0:W:{args.hot_kib}:0", f"hotr:1:R:{args.hot_kib}:0", f"cold:1:c:{args.cold_kib}:0"]
    flags = ["--huge"] if args.huge else []
    proc = subprocess.Popen([binary, "--wait", *flags, "--duration", str(seconds), *specs],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    ranges = {t["name"]: (t["start"], t["end"]) for t in info["threads"]}
    return proc, info["pid"], ranges


def go(proc) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc) -> float:
    done = json.loads(proc.stdout.readline())
    proc.wait()
    return sum(t["touches"] for t in done["threads"]) / done["elapsed_s"]


def score(snapshots, ranges, hot_names=("hotw", "hotr")) -> tuple[float, float, int]:
    """Mean precision and recall over the snapshots after warm-up; snapshots as (start, end, nr_accesses).
    ``hot_names``: the ranges that count as hot (both, or only the written one for the dirty set)."""
    hot = [ranges[name] for name in hot_names]
    known = hot + [ranges["cold"]]
    hot_bytes = sum(b - a for a, b in hot)
    precisions, recalls = [], []
    kept = snapshots[len(snapshots) // 4:]
    for start, end, acc in kept:
        start, end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
        predicted = np.asarray(acc) > 0

        def covered(spans):  # called at once, inside this iteration (B023 below)
            return sum(int(np.clip(np.minimum(end, b) - np.maximum(start, a), 0, None)[predicted].sum())  # noqa: B023
                       for a, b in spans)

        tp, pred = covered(hot), covered(known)
        precisions.append(tp / pred if pred else 0.0)
        recalls.append(tp / hot_bytes)
    return (float(np.mean(precisions)) if kept else 0.0, float(np.mean(recalls)) if kept else 0.0, len(kept))


def scores(snapshots, ranges) -> dict:
    """The hot set (written + read ranges) and the dirty set (written range only: the live-migration case)."""
    precision, recall, n = score(snapshots, ranges)
    dirty_precision, dirty_recall, _ = score(snapshots, ranges, ("hotw",))
    return {"precision": precision, "recall": recall, "snapshots": n, "dirty_precision": dirty_precision,
            "dirty_recall": dirty_recall}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat_fields(path: Path) -> list[str] | None:
    """The fields of a /proc/PID/stat after the command name (field 3 on), or None if it is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_of(pid: int) -> float:
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


DAMON_EVENT_ENABLE = [Path(d) / "events/damon/damon_aggregated/enable"
                      for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")]


def _damon_event_traced() -> bool:
    """Whether damon:damon_aggregated is enabled in tracefs, i.e. damo's `trace-cmd record` has started."""
    for path in DAMON_EVENT_ENABLE:
        try:
            return path.read_text().strip() == "1"
        except OSError:
            continue
    return False


def _damo_int(value) -> int:
    """A number from `damo report access --json`: region bounds come as "94,058,787,123,200" even with
    --raw_number (damo 3.4.3)."""
    return int(str(value).replace(",", ""))


def _tree_cpu(root: int) -> float:
    """CPU seconds of a process and its descendants, counting children already reaped (cutime, cstime)."""
    parents, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is None:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = sum(int(f) for f in fields[11:15]) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def run_damo(binary: str, seconds: float, args, tmp: Path) -> dict:
    """Kernel DAMON through `damo record` with trace-cmd.

    Under TCG, damo needs 10-40 s to probe the system, start kdamond and have trace-cmd enable
    damon:damon_aggregated; a workload started beforehand and a `--timeout` counted from damo's start leave a
    trace with no event in it ("No record"). So the workload waits until the event is enabled, then runs for
    `seconds`; when it exits (and is reaped), kdamond stops and damo saves the recording. The `--timeout` is
    only a guard.
    """
    proc, pid, ranges = start_workload(binary, seconds, args)
    out = tmp / "damo.data"
    env = dict(os.environ, HOME="/tmp")
    children_before = _children_cpu()
    began = time.monotonic()
    damo = subprocess.Popen([DAMO, "record", str(pid), "--timeout", str(max(4 * seconds, seconds + 600)),
                             "--do_record", "access", "--damon_tracer", "trace-cmd", "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
    while damo.poll() is None and not _damon_event_traced() and time.monotonic() - began < 600:
        time.sleep(0.2)
    startup = time.monotonic() - began
    go(proc)
    damo_at_go = _tree_cpu(damo.pid)
    damo_window = None
    kdamond_cpu, kdamond, workload_cpu = 0.0, None, 0.0
    while damo.poll() is None:   # kdamond's CPU, read until the workload ends and damo saves the recording
        try:
            kdamond = int(KDAMOND.read_text())
        except (OSError, ValueError):
            pass
        if kdamond:
            kdamond_cpu = max(kdamond_cpu, cpu_of(kdamond))
        if proc.returncode is None and os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            # reap the workload once it exits (a zombie target keeps kdamond, and so damo, running), keeping
            # its CPU out of the monitor's
            damo_window = _tree_cpu(damo.pid) - damo_at_go
            reaped_before = _children_cpu()
            proc.wait()
            workload_cpu = _children_cpu() - reaped_before
        time.sleep(0.2)
    # damo and what it waited for (trace-cmd), without the workload: in all, and while the workload ran
    user_total = _children_cpu() - children_before - workload_cpu
    user_cpu = user_total if damo_window is None else damo_window
    stderr = damo.stdout.read()
    rate = finish(proc)
    report = subprocess.run([DAMO, "report", "access", "-i", str(out), "--json"], env=env, capture_output=True,
                            text=True)
    try:
        doc = json.loads(report.stdout)
    except ValueError:
        print(f"damo failed: record (exit {damo.returncode}, file {'exists' if out.exists() else 'missing'}, "
              f"trace-cmd ready after {startup:.0f} s): {stderr.strip()[-800:]}; "
              f"report: {(report.stdout + report.stderr).strip()[-500:]}", flush=True)
        return None
    snaps = []
    for snap in doc[0]["snapshots"]:
        regions = snap["regions"]
        acc = [r["nr_accesses"]["samples"] if isinstance(r["nr_accesses"], dict) else r["nr_accesses"]
               for r in regions]
        snaps.append(([_damo_int(r["start"]) for r in regions], [_damo_int(r["end"]) for r in regions],
                      [_damo_int(a) for a in acc]))
    if not snaps:
        print(f"damo produced no snapshots: {stderr.strip()}", file=sys.stderr)
    return {"method": "kernel DAMON (damo record, trace-cmd)", **scores(snaps, ranges),
            "monitor_cpu_s": kdamond_cpu + user_cpu, "extra": f"kdamond {kdamond_cpu:.2f} s; damo+trace-cmd "
            f"{user_cpu:.2f} s while the workload ran, {user_total:.2f} s with damo's start-up ({startup:.0f} s "
            f"wall until trace-cmd recorded) and trace conversion; {len(snaps)} snapshots", "touch_rate": rate}


def run_companion(tracer, binary: str, seconds: float, args, kernel) -> dict:
    """The workload under a kernel-DAMON companion (its fault view traced alongside): the snapshots as
    (start, end, nr_accesses), the kdamond's CPU seconds in the run, the touch rate and the run result."""
    from damon_bpf.samplers.base import Sampler
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    proc, pid, ranges = start_workload(binary, seconds, args)
    snaps, cpu = [], {}
    kernel.add_snapshot_sink(lambda _p, s: snaps.append((s.start, s.end, s.nr_accesses)))

    class Go(Sampler):
        def start(self, targets):
            cpu["start"] = cpu_of(kernel.kdamond_pid)
            go(proc)

        def tick(self, now_ns):
            cpu["end"] = max(cpu.get("end", 0.0), cpu_of(kernel.kdamond_pid))

        def summary(self):
            return {}

    tracer.set_filters([])
    result = Session(tracer, Targets([pid]), seconds + 30, samplers=[kernel, Go()]).run(lambda b: None)
    return {"snapshots": snaps, "ranges": ranges, "kdamond_cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0),
            "touch_rate": finish(proc), "result": result}


KERNEL_METHODS = {
    "vaddr": "kernel DAMON vaddr, kdamond via sysfs (`--source damon --damon-ops vaddr`)",
    "paddr": "kernel DAMON paddr on the target's frames, mapped back (`--source damon --damon-ops paddr`)"}


def run_kernel(tracer, binary: str, seconds: float, args, ops: str) -> dict:
    """Kernel DAMON through damon-bpf's own --source damon companion with the ``ops`` operations (vaddr: the
    same sysfs kdamond damo makes; paddr: a kdamond on the frames backing the target, mapped back). Monitor CPU
    is the kdamond's, plus for paddr this process's page-map reads and mapping back (CPU time of that work)."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.sources.kdamond_paddr import kernel_damon

    kernel = kernel_damon(MonitoringAttrs(), warn=lambda _m: None, ops=ops)
    run = run_companion(tracer, binary, seconds, args, kernel)
    s = kernel.summary()
    extra = f"kdamond {run['kdamond_cpu_s']:.2f} s"
    cpu = run["kdamond_cpu_s"]
    if ops == "paddr":
        cpu += s["pagemap_s"] + s["map_s"]
        whose = "borrowed (a host kdamond, runs anyway)" if s["borrowed_kdamond"] is not None else "ours"
        seen = s["pages_seen"] / max(1, s["pages_seen"] + s["pages_unseen"])
        ranges = f", {sum(s['nr_ranges'].values())} physical ranges" if s["borrowed_kdamond"] is None else ""
        extra += (f" ({whose}, {kernel.attrs.sample_interval_us} us samples, {kernel.attrs.aggr_interval_us} us "
                  f"aggregations{ranges}); page maps read {s['refreshes']} "
                  f"times {s['pagemap_s']:.2f} s, mapping back {s['map_s']:.2f} s; {100 * seen:.1f}% of resident "
                  f"pages in monitored regions")
    extra += f"; {len(run['snapshots'])} snapshots; damon-bpf session (fault view too) {run['result'].cpu_s:.2f} s"
    return {"method": KERNEL_METHODS[ops], **scores(run["snapshots"], run["ranges"]), "monitor_cpu_s": cpu,
            "extra": extra, "touch_rate": run["touch_rate"], "session_cpu_s": run["result"].cpu_s}


def run_ours(tracer, binary: str, seconds: float, sampler_spec: str, args, tmp: Path) -> dict:
    """One damon-bpf row; ``sampler_spec`` is a sampler name, with ``:PCT`` for soft-dirty's CPU budget."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.recorder import Recorder
    from damon_bpf.samplers import make_sampler
    from damon_bpf.samplers.base import Sampler
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets

    attrs = MonitoringAttrs()
    proc, pid, ranges = start_workload(binary, seconds, args)
    snapshots = []
    recorder = Recorder(attrs, "damon")
    recorder.listeners.append(lambda _t, _p, s: snapshots.append((s.start, s.end, s.nr_accesses)))
    recorder.add_targets([pid])
    sampler_name, _, budget_pct = sampler_spec.partition(":")
    budget = float(budget_pct) / 100 if budget_pct and float(budget_pct) < 100 else None
    sampler = make_sampler(sampler_name, attrs.sample_interval_us, attrs.aggr_interval_us, warn=lambda _m: None,
                           budget=budget)

    class Go(Sampler):
        def start(self, targets):
            go(proc)

        def summary(self):
            return {}

    tracer.set_filters([])
    session = Session(tracer, Targets([pid]), seconds + 30, samplers=[s for s in (sampler, Go()) if s])
    result = session.run(recorder.on_batch, recorder.on_tick)
    recorder.finish(result)
    rate = finish(proc)
    extra = f"{result.accounting.delivered} reports, {result.accounting.lost} lost"
    method = f"damon-bpf, --sampler {sampler_name}"
    if sampler_name == "soft-dirty":
        s = result.samplers[0]
        method += f" --sampler-budget {budget_pct or 100}"
        extra += (f"; clear_refs mean {s['mean_call_us']:.0f} us at {s['mean_rss_mib']:.0f} MiB RSS "
                  f"({s['us_per_mib_rss']:.0f} us/MiB), {s['calls']} calls, one every "
                  f"{(s['effective_interval_us'] or 0) / 1000:.1f} ms, {100 * (s['cpu_share'] or 0):.0f}% of a CPU")
    if sampler_name == "numa-hint":
        extra += f"; {result.samplers[0]['vmstat'].get('numa_hint_faults', 0)} hint faults"
    return {"method": method, **scores(snapshots, ranges), "monitor_cpu_s": result.cpu_s, "extra": extra,
            "touch_rate": rate}


def clear_refs_costs(binary: str, sizes_mib=(16, 64, 256, 512), calls: int = 20) -> list[tuple[int, float, float]]:
    """soft-dirty's cost: one clear_refs call against a target of each RSS (accessgen, cold mode)."""
    from damon_bpf.samplers.soft_dirty import clear_soft_dirty, rss_bytes

    rows = []
    for mib in sizes_mib:
        proc = subprocess.Popen([binary, "--duration", "60", f"c:-1:c:{mib << 10}:0"], stdout=subprocess.PIPE,
                                text=True)
        pid = json.loads(proc.stdout.readline())["pid"]
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            clear_soft_dirty(pid)
            times.append(time.perf_counter() - began)
        rss = rss_bytes(pid) / 2**20
        proc.kill()
        proc.wait()
        median = float(np.median(times)) * 1e6
        rows.append((round(rss), median, median / rss))
        print(f"clear_refs at {rss:.0f} MiB RSS: median {median:.0f} us ({median / rss:.1f} us/MiB)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--hot-kib", type=int, default=8192)
    ap.add_argument("--cold-kib", type=int, default=32768)
    ap.add_argument("--samplers", default="none,soft-dirty:100,soft-dirty:10,numa-hint",
                    help="damon-bpf rows: sampler names, soft-dirty:PCT for its CPU budget (100: no cap)")
    ap.add_argument("--kernel-ops", default="vaddr,paddr",
                    help="kernel DAMON rows through damon-bpf's --source damon, by --damon-ops (empty: none)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the kernel DAMON rows this many times, their ops alternating")
    ap.add_argument("--no-damo", action="store_true")
    ap.add_argument("--no-clear-refs", action="store_true", help="skip the clear_refs cost table")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--huge", action="store_true",
                    help="the workload's ranges on transparent huge pages, filled in turn (accessgen --huge): "
                         "hot and cold frames never interleave, which paddr cannot tell apart")
    args = ap.parse_args()
    from damon_bpf.sources.tracer import Tracer

    tmp = Path(tempfile.mkdtemp(prefix="bench-samplers-"))
    binary = build_accessgen(tmp)
    costs = [] if args.no_clear_refs else clear_refs_costs(binary)
    rows = [] if args.no_damo else [r for r in [run_damo(binary, args.seconds, args, tmp)] if r]
    print("untraced touch rate:", end=" ", flush=True)
    proc, _, _ = start_workload(binary, args.seconds / 2, args)
    go(proc)
    baseline = finish(proc)
    print(f"{baseline / 1e6:.1f}M touches/s", flush=True)
    tracer = Tracer("auto")
    for _round in range(args.rounds):
        for ops in filter(None, args.kernel_ops.split(",")):
            rows.append(run_kernel(tracer, binary, args.seconds, args, ops))
            print(rows[-1], flush=True)
    for name in filter(None, args.samplers.split(",")):
        rows.append(run_ours(tracer, binary, args.seconds, name, args, tmp))
        print(rows[-1], flush=True)
    tracer.close()
    print(f"\n{args.seconds:g} s, hot {2 * args.hot_kib >> 10} MiB (written + read), cold {args.cold_kib >> 10} MiB; "
          f"kernel {os.uname().release}\n")
    print("| method | hot-set precision | hot-set recall | dirty-set precision | dirty-set recall | monitor CPU (s) "
          "| CPU % of a core | workload speed | notes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['precision']:.2f} | {r['recall']:.2f} | {r['dirty_precision']:.2f} | "
              f"{r['dirty_recall']:.2f} | {r['monitor_cpu_s']:.2f} | {100 * r['monitor_cpu_s'] / args.seconds:.1f} | "
              f"{r['touch_rate'] / baseline:.2f}x | {r['extra']} |")
    if costs:
        print("\n| target RSS (MiB) | clear_refs 4, median per call (us) | us per MiB |\n| --- | --- | --- |")
    for rss, median, per_mib in costs:
        print(f"| {rss} | {median:.0f} | {per_mib:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "baseline_touch_rate": baseline, "rows": rows}))


if __name__ == "__main__":
    main()
