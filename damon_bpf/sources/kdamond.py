"""Source ``damon``: the kernel's own DAMON beside ours.

A kdamond with the vaddr operations (DAMON's ``page_table`` primitive: accessed bits) is set up on the
targets through sysfs, and its damon:damon_aggregated tracepoint is taken with a BPF program, so its
snapshots go into the same record file as the attributed ones, as extra targets whose metadata says
``"view": "kernel-damon"``. The kdamond is switched off and its sysfs directories removed on every exit
path; one left by a run that was killed (kill -9) is found through a state file and removed at the
next start.
"""

from __future__ import annotations

import ctypes as ct
import errno
import json
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from damon_bpf.access import bpf_dir, struct_dtype
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf import outputs
from damon_bpf.errors import DamonBpfError, HostError, warn_stderr
from damon_bpf.sources import host
from damon_bpf.sources.companion import SnapshotSink
from damon_bpf.sources.program import LoadError, load_bpf

ADMIN = Path("/sys/kernel/mm/damon/admin")
STATE = Path(os.environ.get("DAMON_BPF_RUN_DIR", "/run/damon-bpf")) / "kdamond.json"
ROW = struct_dtype("damon_row.h", "damon_row")   # the one definition, shared with damon_aggregated.bpf.c
OPS_NAMES = {"vaddr": "virtual-address", "paddr": "physical-address"}


def check_available(ops: str = "vaddr") -> None:
    """Raise HostError unless kernel DAMON can run with the ``ops`` operations here."""
    info = host.damon_info()
    if not info["sysfs"]:
        raise HostError("--source damon needs kernel DAMON with its sysfs interface (CONFIG_DAMON_SYSFS); "
                        f"{ADMIN} does not exist")
    if not info[ops]:
        raise HostError(f"--source damon needs DAMON's {OPS_NAMES[ops]} operations (CONFIG_DAMON_{ops.upper()}), "
                        "which this kernel lacks")
    if not info["tracepoint_aggregated"]:
        raise HostError("--source damon needs the damon:damon_aggregated tracepoint, which this kernel lacks")


# DAMON's sysfs files take one global lock with mutex_trylock and fail with EBUSY while anyone else holds
# it: another reader of a kdamond's pid, damo, or the kdamond's own per-sample callback. EBUSY there means
# "try again", so every access here retries it for a while before giving up.
BUSY_TIMEOUT_S = 2.0
_T = TypeVar("_T")


class DamonSysfs:
    """Reads and writes of DAMON's sysfs files, EBUSY retried; ``busy_retries`` counts the retries made
    through this handle (the companion's summary and the tests read it)."""

    def __init__(self) -> None:
        self.busy_retries = 0

    def retry_busy(self, access: Callable[[], _T], path: Path) -> _T:
        deadline, pause = time.monotonic() + BUSY_TIMEOUT_S, 0.001
        while True:
            try:
                return access()
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                    err.filename = err.filename or str(path)   # a failed read or write does not name its file
                    raise
            self.busy_retries += 1
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    def write(self, path: Path, value) -> None:
        self.retry_busy(lambda: path.write_text(f"{value}\n"), path)

    def read(self, path: Path) -> str:
        return self.retry_busy(path.read_text, path).strip()


def _kdamonds() -> Path:
    return ADMIN / "kdamonds"


def _fingerprint(sysfs: DamonSysfs) -> dict:
    """What kdamond 0's sysfs holds now: its pid, attributes and targets. Recorded when we start one; a kdamond
    is ours at a later start only if all of it still matches (a pid alone may be reused)."""
    kd = _kdamonds() / "0"
    c0 = kd / "contexts" / "0"
    intervals, nr_regions = c0 / "monitoring_attrs" / "intervals", c0 / "monitoring_attrs" / "nr_regions"
    nr_targets = int(sysfs.read(c0 / "targets" / "nr_targets"))
    return {"kdamond": int(sysfs.read(kd / "pid")), "operations": sysfs.read(c0 / "operations"),
            "intervals": [int(sysfs.read(intervals / n)) for n in ("sample_us", "aggr_us", "update_us")],
            "nr_regions": [int(sysfs.read(nr_regions / n)) for n in ("min", "max")],
            "targets": [int(sysfs.read(c0 / "targets" / str(i) / "pid_target")) for i in range(nr_targets)]}


def _load_state(warn: Callable[[str], None]) -> dict | None:
    """The state file a run that started a kdamond wrote; a malformed one is set aside with a warning."""
    try:
        state = json.loads(STATE.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        state = err
    if not (isinstance(state, dict) and isinstance(state.get("owner"), int) and state["owner"] > 0
            and isinstance(state.get("fingerprint"), dict)):
        try:
            os.replace(STATE, STATE.with_suffix(".bad"))
        except OSError:
            pass
        warn(f"warning: {STATE} is malformed; set aside as {STATE.with_suffix('.bad').name} (no kdamond touched)")
        return None
    return state


def stop_all_ours(warn: Callable[[str], None] = warn_stderr, sysfs: DamonSysfs | None = None) -> None:
    """Remove a kdamond a killed damon-bpf left running: only if its owner is gone and kdamond 0 still holds
    exactly what that run wrote (else another DAMON user's kdamond is left alone)."""
    sysfs = sysfs or DamonSysfs()
    state = _load_state(warn)
    if state is None or _alive(state["owner"]):
        return
    try:
        now = _fingerprint(sysfs)
    except (OSError, ValueError):
        now = None
    recorded = state["fingerprint"]
    if now is not None and now["kdamond"] in (recorded.get("kdamond"), -1) and \
            {**now, "kdamond": 0} == {**recorded, "kdamond": 0}:
        try:
            stop_kdamond(sysfs)
            warn(f"switched off kdamond {recorded.get('kdamond')} left by damon-bpf PID {state['owner']}, which "
                 "did not exit cleanly")
        except OSError:
            pass
    else:
        warn(f"kdamond left by damon-bpf PID {state['owner']} is gone or is not ours any more; left alone")
    STATE.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError, OverflowError):
        return False


def _configure(sysfs: DamonSysfs, kdamond: Path, pids: list[int], attrs: MonitoringAttrs, ops: str,
               regions: list[list[tuple[int, int]]] | None) -> None:
    """One ``ops`` context on ``pids`` with ``attrs`` (and, for paddr, each target's physical ``regions``), in a
    kdamond directory that was just made."""
    c0 = kdamond / "contexts" / "0"
    sysfs.write(kdamond / "contexts" / "nr_contexts", 1)
    sysfs.write(c0 / "operations", ops)
    intervals, nr_regions = c0 / "monitoring_attrs" / "intervals", c0 / "monitoring_attrs" / "nr_regions"
    sysfs.write(intervals / "sample_us", attrs.sample_interval_us)
    sysfs.write(intervals / "aggr_us", attrs.aggr_interval_us)
    sysfs.write(intervals / "update_us", attrs.update_interval_us)
    sysfs.write(nr_regions / "min", attrs.min_nr_regions)
    sysfs.write(nr_regions / "max", attrs.max_nr_regions)
    sysfs.write(c0 / "targets" / "nr_targets", len(pids))
    for index, pid in enumerate(pids):
        sysfs.write(c0 / "targets" / str(index) / "pid_target", pid)   # paddr ignores it; the fingerprint keeps it
    if regions is not None:
        write_regions(sysfs, kdamond, regions)


def write_regions(sysfs: DamonSysfs, kdamond: Path, regions: list[list[tuple[int, int]]]) -> None:
    """Each target's initial (paddr: monitored) regions, ascending and disjoint as the kernel requires."""
    targets = kdamond / "contexts" / "0" / "targets"
    for index, ranges in enumerate(regions):
        folder = targets / str(index) / "regions"
        sysfs.write(folder / "nr_regions", len(ranges))
        for i, (start, end) in enumerate(ranges):
            sysfs.write(folder / str(i) / "start", start)
            sysfs.write(folder / str(i) / "end", end)


def commit_regions(sysfs: DamonSysfs, regions: list[list[tuple[int, int]]]) -> None:
    """Hand a running kdamond 0 new regions: DAMON keeps the counters of regions that still intersect them."""
    write_regions(sysfs, _kdamonds() / "0", regions)
    sysfs.write(_kdamonds() / "0" / "state", "commit")


def _refused(pids: list[int], err: OSError) -> HostError:
    return HostError(f"kernel DAMON refused to start on PID(s) {', '.join(map(str, pids))}: "
                     f"{err.strerror} ({err.filename})")


def start_kdamond(pids: list[int], attrs: MonitoringAttrs, sysfs: DamonSysfs, ops: str = "vaddr",
                  regions: list[list[tuple[int, int]]] | None = None) -> int:
    """Set up kdamond 0 with one ``ops`` context on ``pids`` and switch it on; returns its pid. A state
    file names it, so a later run can remove it if this process is killed."""
    kd = _kdamonds()
    try:
        sysfs.write(kd / "nr_kdamonds", 1)
    except OSError as err:   # nothing of ours exists yet, so nothing to undo (kdamond 0 may be another's)
        raise _refused(pids, err) from None
    try:
        _configure(sysfs, kd / "0", pids, attrs, ops, regions)
        sysfs.write(kd / "0" / "state", "on")
        kdamond_pid = int(sysfs.read(kd / "0" / "pid"))
    except OSError as err:
        try:
            stop_kdamond(sysfs)     # switched off first: a running kdamond cannot be removed
        except OSError:
            pass
        raise _refused(pids, err) from None
    try:
        _save_state({"owner": os.getpid(), "kdamond": kdamond_pid, "fingerprint": _fingerprint(sysfs)})
    except (OSError, HostError):
        stop_kdamond(sysfs)   # a kdamond nobody could clean up after a crash is not started at all
        raise
    return kdamond_pid


def _save_state(state: dict) -> None:
    try:
        outputs.private_dir(STATE.parent, "the state directory")
    except DamonBpfError as err:
        raise HostError(str(err)) from None
    fd, tmp = outputs.create_temp(str(STATE.parent), ".kdamond.", ".tmp")
    with os.fdopen(fd, "w") as stream:
        stream.write(json.dumps(state))
    os.replace(tmp, STATE)


def stop_kdamond(sysfs: DamonSysfs) -> None:
    """Switch kdamond 0 off (it may have stopped by itself when its targets exited) and remove it."""
    state = _kdamonds() / "0" / "state"
    if state.exists() and sysfs.read(state) == "on":
        try:
            sysfs.write(state, "off")
        except OSError as err:   # EPERM: it stopped (its targets exited) between the read and the write
            if err.errno != errno.EPERM or sysfs.read(state) != "off":
                raise
    sysfs.write(_kdamonds() / "nr_kdamonds", 0)
    STATE.unlink(missing_ok=True)


def running_kdamonds(sysfs: DamonSysfs) -> list[int]:
    """Indexes of the kdamonds DAMON's sysfs has on now (ours or anyone's)."""
    nr = int(sysfs.read(_kdamonds() / "nr_kdamonds"))
    return [i for i in range(nr) if sysfs.read(_kdamonds() / str(i) / "state") == "on"]


def kernel_snapshot(start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray, age: np.ndarray, end_ns: int,
                    attrs: MonitoringAttrs) -> Snapshot:
    """A snapshot of kernel DAMON's regions: no reports (the kernel's view has no attribution)."""
    zeros = np.zeros(len(start), dtype=np.uint64)
    return Snapshot(end_ns - attrs.aggr_interval_us * 1000, end_ns, np.asarray(start, np.uint64),
                    np.asarray(end, np.uint64), np.asarray(nr_accesses, np.uint64), np.asarray(age, np.uint64),
                    zeros, zeros.copy(), zeros.copy())


def split_aggregations(rows: np.ndarray, gap_ns: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """One target's damon_aggregated rows, in arrival order, as (its complete aggregations, the rows of the one
    still arriving, the number of rows dropped). DAMON reports all of a target's regions in one pass at the end
    of an aggregation, in ascending address order, each row carrying the target's region count: an aggregation
    ends where the next row does not start above the last one, carries another count or comes ``gap_ns`` or
    more later (three quarters of an aggregation interval), or when it has that many rows. One cut short (rows
    lost to a full ring buffer) is dropped whole rather than mixed into the next."""
    restarts = np.flatnonzero((rows["start"][1:] <= rows["start"][:-1])
                              | (rows["nr_regions"][1:] != rows["nr_regions"][:-1])
                              | (np.diff(rows["time_ns"].astype(np.int64)) >= gap_ns)) + 1
    firsts, ends = np.r_[0, restarts], np.r_[restarts, len(rows)]
    done: list[np.ndarray] = []
    dropped = 0
    for first, end in zip(firsts.tolist(), ends.tolist()):
        while first < end:
            want = max(1, int(rows["nr_regions"][first]))
            if end - first < want:
                if end == len(rows):
                    return done, rows[first:], dropped
                dropped += end - first
                break
            done.append(rows[first:first + want])
            first += want
    return done, rows[:0], dropped


class KernelDamon:
    """A kdamond on the targets, run for the session's length: a companion (sources.companion) that
    Session.run starts with the targets and stops on every exit path; its snapshots go to its sinks."""

    name = "damon"
    ops = "vaddr"
    snapshot_meta: dict | None = {"view": "kernel-damon", "source": "damon",
                                  "tool": "kernel DAMON (vaddr) via damon:damon_aggregated"}

    def __init__(self, attrs: MonitoringAttrs, warn: Callable[[str], None] = warn_stderr) -> None:
        check_available(self.ops)
        self.sysfs = DamonSysfs()   # its busy_retries go in the summary
        stop_all_ours(warn, self.sysfs)
        self.attrs, self.warn = attrs, warn
        self._claim(running_kdamonds(self.sysfs))
        self.bpf = self._compile()
        self.raw_rows: list[bytes] = []
        self.pending: dict[int, np.ndarray] = {}   # target index -> rows of its aggregation still arriving
        self.rows_dropped = 0   # rows of aggregations that arrived incomplete (ring buffer full), not filed
        self.pids: list[int] = []
        self.kdamond_pid: int | None = None
        self.snapshots: dict[int, list[Snapshot]] = {}
        self.sinks: list[SnapshotSink] = []
        self.error: str | None = None

    def _claim(self, running: list[int]) -> None:
        """Refuse to start while another kdamond is on (DAMON's sysfs cannot add one beside it)."""
        if running:
            raise HostError(f"kernel DAMON is already running (kdamond {running[0]} is on, e.g. started by damo); "
                            "stop it first ('damo stop')")

    @staticmethod
    def _compile():
        try:
            return load_bpf("damon_aggregated.bpf.c", [f"-I{bpf_dir()}"])
        except LoadError as err:
            raise HostError(f"cannot load the damon_aggregated program: {err}") from None

    def start(self, targets) -> None:
        self.pids = sorted(targets.pids)
        self.kdamond_pid = self._launch()
        self.bpf["kdamond"][ct.c_int(0)] = ct.c_uint32(self.kdamond_pid)
        self.bpf["rows"].open_ring_buffer(self._on_row)

    def _launch(self) -> int:
        return start_kdamond(self.pids, self.attrs, self.sysfs)

    def _on_row(self, _ctx, data, size) -> int:
        # kept as bytes and decoded per tick: DAMON reports every region of every aggregation, and per-row numpy
        # work (15 us a row here, far more in an emulated guest) fell behind a 1,000-region kdamond, so that
        # ring_buffer_consume never returned while rows kept coming
        self.raw_rows.append(ct.string_at(data, ROW.itemsize))
        return 0

    def tick(self, now_ns: int) -> None:
        rows = self._drain()
        if rows is not None:
            self._assemble(rows)

    def _drain(self) -> np.ndarray | None:
        """The rows the ring buffer holds now, decoded (None if none)."""
        self.bpf.ring_buffer_consume()
        if not self.raw_rows:
            return None
        rows = np.frombuffer(b"".join(self.raw_rows), dtype=ROW)
        self.raw_rows = []
        return rows

    def _assemble(self, rows: np.ndarray) -> None:
        """Each target's rows, in arrival order, cut into its aggregations (split_aggregations)."""
        for tid in np.unique(rows["target_id"]).tolist():
            mine = rows[rows["target_id"] == tid]
            if tid in self.pending:
                mine = np.concatenate([self.pending[tid], mine])
            done, self.pending[tid], dropped = split_aggregations(mine, self.attrs.aggr_interval_us * 750)
            self.rows_dropped += dropped
            for aggregation in done:
                self._emit(tid, aggregation)

    def _emit(self, index: int, rows: np.ndarray) -> None:
        if index >= len(self.pids):
            return
        self._file(self.pids[index], kernel_snapshot(rows["start"], rows["end"], rows["nr_accesses"], rows["age"],
                                                     int(rows["time_ns"].max()), self.attrs))

    def _file(self, pid: int, snapshot: Snapshot) -> None:
        self.snapshots.setdefault(pid, []).append(snapshot)
        for sink in self.sinks:
            sink(pid, snapshot)

    def close(self) -> None:
        """Switch the kdamond off and remove it; must not raise."""
        try:
            if self.kdamond_pid is not None:
                self.tick(0)
            self._release()
        except OSError as err:
            self.error = f"cannot switch the kdamond off: {err.strerror}"
            self.warn(f"warning: damon: {self.error}")
        finally:
            self.bpf.cleanup()
        count = sum(len(s) for s in self.snapshots.values())
        lost = (f"; {self.rows_dropped} rows of aggregations cut short (ring buffer full) not filed"
                if self.rows_dropped else "")
        self.warn(f"damon: kernel DAMON (kdamond {self.kdamond_pid}) gave {count} snapshots{lost}; {self.end_note}")

    def _release(self) -> None:
        stop_kdamond(self.sysfs)

    @property
    def end_note(self) -> str:
        """What close() did to the kdamond, for its last line."""
        return "switched off"

    def summary(self) -> dict:
        return {"sampler": self.name, "kdamond": self.kdamond_pid,
                "snapshots": {str(p): len(s) for p, s in self.snapshots.items()}, "error": self.error,
                "sysfs_busy_retries": self.sysfs.busy_retries, "rows_dropped": self.rows_dropped}

    def add_snapshot_sink(self, sink: SnapshotSink) -> None:
        self.sinks.append(sink)
