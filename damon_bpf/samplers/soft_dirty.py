"""``--sampler soft-dirty``: every sample interval, write 4 to /proc/PID/clear_refs.

That clears the soft-dirty bits and write-protects every present PTE of the process, so its next write
to each page takes a write-protect fault, which the fault sources see with the right CPU, thread and
write flag. Reads stay invisible: this is write-only monitoring (dirty set and dirty rate), with no PMU.
Nothing needs restoring afterwards: the soft-dirty bits only matter to other clear_refs users (CRIU).
The cost of a call grows with the target's resident memory (the kernel walks its page tables), so each
call is timed against the RSS read just before it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path
from typing import Callable, Iterable

from damon_bpf.errors import HostError
from damon_bpf.samplers.base import PeriodicSampler, warn_stderr

PM_SOFT_DIRTY = 1 << 55
PM_PRESENT = 1 << 63
_PAGE = mmap.PAGESIZE


def soft_dirty_supported() -> tuple[bool, str]:
    """Whether the kernel tracks soft-dirty bits (CONFIG_MEM_SOFT_DIRTY). clear_refs accepts 4 either
    way, so ask pagemap: a freshly written page of a new mapping reads soft-dirty only with the option."""
    if not Path("/proc/self/clear_refs").exists():
        return False, "no /proc/PID/clear_refs (kernel without CONFIG_PROC_PAGE_MONITOR)"
    page = mmap.mmap(-1, _PAGE)
    try:
        page[0] = 1
        view = ctypes.c_char.from_buffer(page)
        address = ctypes.addressof(view)
        del view  # an exported buffer would keep close() from unmapping the page
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(address // _PAGE * 8)
            entry = int.from_bytes(pagemap.read(8), "little")
    except OSError as err:
        return False, f"cannot read /proc/self/pagemap: {err.strerror}"
    finally:
        page.close()
    if not entry & PM_PRESENT:
        return False, "pagemap shows a written page as not present (unexpected)"
    if not entry & PM_SOFT_DIRTY:
        return False, "the kernel does not track soft-dirty bits (built without CONFIG_MEM_SOFT_DIRTY)"
    return True, "soft-dirty bits tracked (CONFIG_MEM_SOFT_DIRTY)"


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def clear_soft_dirty(pid: int) -> None:
    """One clear_refs call; raises OSError as the kernel reports it."""
    fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY)
    try:
        os.write(fd, b"4")
    finally:
        os.close(fd)


class SoftDirtySampler(PeriodicSampler):
    name = "soft-dirty"

    def __init__(self, interval_us: int, warn: Callable[[str], None] = warn_stderr,
                 budget: float | None = None) -> None:
        ok, why = soft_dirty_supported()
        if not ok:
            raise HostError(f"the soft-dirty sampler cannot work here: {why}")
        super().__init__(interval_us, warn, budget)
        self.rss_total = 0          # sum over calls of the RSS cleared, for the cost per MiB
        self.failures: dict[int, str] = {}

    def sample(self, pids: Iterable[int]) -> None:
        for pid in pids:
            rss = rss_bytes(pid)
            try:
                clear_soft_dirty(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited: the session notices and drops it
            except OSError as err:
                if pid not in self.failures:
                    self.failures[pid] = err.strerror or str(err)
                    self.warn(f"warning: soft-dirty: cannot clear PID {pid}'s soft-dirty bits: {self.failures[pid]}")
                continue
            self.rss_total += rss

    def close(self) -> None:
        self.stop_thread()
        self.warn(self.summary_line())
        advice = self.stretch_advice()
        if advice:
            self.warn(advice)

    def stretch_advice(self) -> str | None:
        """When faults were re-armed much less often than asked, nr_accesses undercounts by that factor and
        DAMON's merge threshold (a tenth of the samples per aggregation) can fold hot regions into cold ones."""
        every = self.summary()["effective_interval_us"]
        asked = self.interval_s * 1e6
        if not every or every < 2 * asked:
            return None
        return (f"soft-dirty re-armed writes every {every / 1000:.3g} ms, not every {asked / 1000:g} ms, so a page "
                f"written nonstop shows in about 1 of {every / asked:.0f} samples; for DAMON-comparable counts use "
                f"--sample-us {every:.0f} (and an --aggr-us 20 times that), or a higher --sampler-budget")

    def summary(self) -> dict:
        info = super().summary()
        mean_rss = self.rss_total / self.calls if self.calls else 0
        info["mean_rss_mib"] = round(mean_rss / 2**20, 2)
        # CPU, not wall time: the walk's own cost, without the waits for the GIL or a busy CPU
        info["us_per_mib_rss"] = round(1e6 * self.cpu_s / (self.rss_total / 2**20), 2) if self.rss_total else None
        return info

    def summary_line(self) -> str:
        s = self.summary()
        if not self.calls:
            return "soft-dirty: no clear_refs call was made"
        every = s["effective_interval_us"] or s["interval_us"]
        budget = f" (budget {100 * s['budget']:g}% of a CPU: {s['stretched']} intervals skipped)" if s["budget"] else ""
        return (f"soft-dirty: {s['calls']} clear_refs calls, every {every / 1000:.3g} ms on average "
                f"(asked {s['interval_us'] / 1000:g} ms){budget}, mean {s['mean_call_us']:.0f} us "
                f"(max {s['max_call_us']:.0f} us), of it {s['mean_call_cpu_us']:.0f} us CPU, "
                f"at a mean RSS of {s['mean_rss_mib']:.1f} MiB = "
                f"{s['us_per_mib_rss'] or 0:.1f} us per MiB, {100 * (s['cpu_share'] or 0):.1f}% of a CPU; "
                f"{s['overruns']} intervals missed")

