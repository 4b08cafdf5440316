"""damo's side files beside a record file: ``FILE.mem_footprint`` (memory footprints of the targets and the
system) and ``FILE.vmas`` (the targets' mappings), in damo's JSON, so ``damo report footprints`` (and
``holistic``'s footprint part) work on our records.

Sampled at most once per ``period_s`` (damo's 1 s), from the recorder's ticks; mappings are stored only when a
process's changed. The files are rewritten whole (temp file and rename, 0600, ``damon_bpf.outputs`` rules) every
``write_every_s`` and at the end: they are small (a few hundred bytes a sample), and a kill loses at most that
much of them, never the record file's data.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterable

from damon_bpf import outputs
from damon_bpf.errors import DamonBpfError
from damon_bpf.sources.procmem import proc_footprint, proc_vmas, sys_footprint

SUFFIXES = (".mem_footprint", ".vmas")


class SideFiles:
    def __init__(self, path: str, period_s: float = 1.0, write_every_s: float = 30.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.period_s, self.write_every_s = period_s, write_every_s
        self.warn = warn
        self.footprints: list[dict] = []
        self.vmas: list[dict] = []
        self._last_vmas: dict[int, list] = {}
        self._sampled_s = self._written_s = float("-inf")
        self._failed = False
        for suffix in SUFFIXES:   # refuse a planted name now, not at the first write
            outputs.check_name(path + suffix, "side file")

    def maybe_sample(self, pids: Iterable[int], now_s: float | None = None) -> None:
        now = time.monotonic() if now_s is None else now_s
        if now - self._sampled_s < self.period_s:
            return
        self._sampled_s = now
        self.sample(list(pids))
        if now - self._written_s >= self.write_every_s:
            self._written_s = now
            self.write()

    def sample(self, pids: list[int]) -> None:
        wall = time.time()
        self.footprints.append({"time": wall, "footprints": [
            *({"pid": pid, "footprint": proc_footprint(pid)} for pid in pids),
            {"pid": None, "footprint": sys_footprint()}]})
        changed = []
        for pid in pids:
            vmas = proc_vmas(pid)
            if vmas and vmas != self._last_vmas.get(pid):
                self._last_vmas[pid] = vmas
                changed.append({"pid": pid, "vmas": vmas})
        if changed:
            self.vmas.append({"time": wall, "procvmas": changed})

    def write(self) -> None:
        """Both files, each atomically; a failure is warned about once and retried at the next write."""
        try:
            for suffix, items in zip(SUFFIXES, (self.footprints, self.vmas)):
                outputs.replace_file(self.path + suffix, json.dumps(items).encode(), "side file")
            self._failed = False
        except DamonBpfError as err:
            if not self._failed and self.warn is not None:
                self.warn(f"warning: {err}; retried later, the recording goes on")
            self._failed = True
