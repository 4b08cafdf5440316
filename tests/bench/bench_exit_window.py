#!/usr/bin/env python3
"""The pid-reuse window of kernels before 6.16: from a process's last thread's exit (cn_proc's timestamp)
to user space removing its pid from the kernel's target map (damon_bpf/sources/targets.py).

    bench_exit_window.py [--runs 3] [--children 200]

On a 6.16+ kernel the pre-6.16 path is forced (the program is compiled as if sched_process_exit had no
group_dead). Each run follows `bash -c 'for ...; do accessgen ... & done; wait'` through a Session and
prints the median and maximum of the window over its processes. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "workload" / "accessgen.c"


def one_run(accessgen: str, children: int, output: Path) -> dict:
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    tracer = Tracer("tracepoint", follow_children=True)
    try:
        script = f"for i in $(seq {children}); do {accessgen} w:-1:w:16:2 & done; wait"
        targets = Targets(command=["/bin/bash", "-c", script], follow_children=True, command_output=str(output))
        Session(tracer, targets, duration_s=600).run(lambda batch: None)
    finally:
        tracer.close()
    return targets.following()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--children", type=int, default=200)
    args = parser.parse_args()
    from damon_bpf.sources import program

    forced = program.exit_has_group_dead()
    program.exit_has_group_dead = lambda: False   # the pre-6.16 path, whatever this kernel has
    print(f"kernel has group_dead: {forced} (pre-6.16 path used either way)")
    with tempfile.TemporaryDirectory() as tmp:
        accessgen = str(Path(tmp) / "accessgen")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", accessgen, str(SOURCE)], check=True)
        medians, maxima = [], []
        for run in range(args.runs):
            following = one_run(accessgen, args.children, Path(tmp) / "out.log")
            medians.append(following["deferred_exit_latency_ms_median"])
            maxima.append(following["deferred_exit_latency_ms_max"])
            print(f"run {run + 1}: {following['deferred_exits']} processes ended by user space; window median "
                  f"{medians[-1]:.1f} ms, max {maxima[-1]:.1f} ms; cn_proc overruns {following['proc_event_overruns']}")
    print(f"over {args.runs} runs: median of medians {statistics.median(medians):.1f} ms, "
          f"largest maximum {max(maxima):.1f} ms")


if __name__ == "__main__":
    main()
