"""Inside a tests/vm guest (Debian's stock kernels): following children works there too. Before 6.16 the
exit hook has no group_dead and takes the main thread's exit, and user space ends the process when its
last thread is gone (cn_proc, /proc); task_newtask's clone_flags is an unsigned long there. One program,
a few children, every touch, every lifecycle event and exit status checked; and a process whose main
thread exits first, traced to its end."""

from __future__ import annotations

import numpy as np
import pytest

from test_follow import assert_every_touch_traced, workload_lines
from test_procevents import assert_traced_to_its_last_thread
from test_vm_guest import guest_kernel  # noqa: F401 - fixture

pytestmark = pytest.mark.vm

CHILDREN = 20


def test_children_are_followed_known_first_and_dropped_at_exit(guest_kernel, accessgen, tmp_path):  # noqa: F811
    from damon_bpf.session import Session
    from damon_bpf.sources.targets import Targets
    from damon_bpf.sources.tracer import Tracer

    log = tmp_path / "children.log"
    loop = f"for i in $(seq {CHILDREN}); do {accessgen} w:-1:w:16:2 & done; wait"
    targets = Targets(command=["/bin/bash", "-c", loop],
                      follow_children=True, command_output=str(log))
    tracer = Tracer("tracepoint", follow_children=True)
    kinds: dict[int, list[str]] = {}
    still_in_map, unknown, batches, statuses = [], [], [], {}

    def on_event(event) -> None:
        kinds.setdefault(event.pid, []).append(event.kind)
        if event.kind == "exit":
            statuses[event.pid] = (event.exit_code, event.exit_signal)
        if event.kind == "exit" and event.pid in tracer.kernel_targets():
            still_in_map.append(event.pid)

    def on_batch(batch) -> None:
        batches.append(batch)
        unknown.extend(set(np.unique(batch["pid"]).tolist()) - set(kinds))

    targets.subscribe(on_event)
    try:
        result = Session(tracer, targets, duration_s=600).run(on_batch)
        lost = tracer.lifecycle_lost()
    finally:
        tracer.close()
    infos, results = workload_lines(log)
    assert len(infos) == CHILDREN
    assert_every_touch_traced(np.concatenate(batches), infos, results)
    assert all(kinds[info["pid"]] == ["fork", "exec", "exit"] for info in infos)
    assert all(statuses[info["pid"]] == (0, None) for info in infos)
    assert not unknown and not still_in_map and lost == 0
    assert result.reason == "targets-exited" and result.accounting.lost == 0


def test_a_process_outliving_its_main_thread_is_traced_to_its_end(guest_kernel, tmp_path):  # noqa: F811
    assert_traced_to_its_last_thread(tmp_path)
