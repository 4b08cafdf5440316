"""One line per aggregation snapshot, for when the output is not a terminal (a pipe, a log file).

key=value fields, so ``grep``/``awk`` can follow a run:
``t=1.200 target=0 pid=42 comm=myprog regions=16 accessed=3 accessed_bytes=1048576 reports=512 reads=0
writes=512 hottest=0x7f00-0x7f40 hottest_nr_accesses=20``

``comm`` is the process's command name as the recorder knows it (``-`` when it does not), with each
whitespace character as ``_``, so a line still splits into fields on spaces.
"""

from __future__ import annotations

import re

import numpy as np

from damon_bpf.core.snapshot import Snapshot


def snapshot_line(target_id: int, pid: int, s: Snapshot, origin_ns: int, comm: str | None = None) -> str:
    """``t`` is the snapshot's end in seconds since the run started."""
    accessed = s.nr_accesses > 0
    name = re.sub(r"\s", "_", comm) if comm else "-"
    fields = [f"t={(s.end_ns - origin_ns) / 1e9:.3f}", f"target={target_id}", f"pid={pid}", f"comm={name}",
              f"regions={s.nr_regions}", f"accessed={int(accessed.sum())}",
              f"accessed_bytes={int(s.sizes[accessed].sum())}", f"reports={int(s.nr_reports.sum())}",
              f"reads={int(s.reads.sum())}", f"writes={int(s.writes.sum())}"]
    if accessed.any():
        # hottest by DAMON's frequency, the bigger one on ties (what a user looks for first)
        i = int(np.lexsort((s.sizes, s.nr_accesses))[-1])
        fields += [f"hottest={int(s.start[i]):#x}-{int(s.end[i]):#x}", f"hottest_nr_accesses={int(s.nr_accesses[i])}"]
    else:
        fields += ["hottest=-", "hottest_nr_accesses=0"]
    return " ".join(fields)
