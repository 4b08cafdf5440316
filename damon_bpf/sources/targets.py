"""Target processes: existing PIDs (with their descendants when followed), the processes of cgroups, or a
command we start.

Who is a target is decided in the kernel (bpf/report_common.bpf.c): a followed process's children join before
they run, an exiting process leaves (so a reused pid is never traced), and each fork, exec and exit is
written as a lifecycle record into a ring of its own. ``update`` reads those records after each drain of
the accesses ring and before its batch is handed on, so subscribers hear of a fork or exec before they
see the process's reports; ``publish_exits`` tells of exits only after every batch that can hold the
process's reports (see Session._loop).

The process-events connector (cn_proc, procevents.py) serves where the ring cannot: exit statuses, the
end of a process whose main thread exited first on kernels before 6.16 (there the kernel keeps such a
pid in its map and user space removes it when /proc and cn_proc say the last thread is gone), and forks
the ring lost. Its messages are not ordered with the ring's records, so it never decides who is traced.

A cgroup's processes (--cgroup, cgroups.py) are decided in the kernel too: the ones there at attach time
are added then, and any other joins at its first report from inside a followed cgroup (a "join" record);
one that reports from outside them all has left (a "leave" record, told like an exit).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from damon_bpf.access import LIFECYCLE_KINDS
from damon_bpf import outputs
from damon_bpf.childproc import die_with_parent
from damon_bpf.errors import TargetError, warn_stderr
from damon_bpf.sources.cgroups import Cgroup, CgroupNames, cgroup_of, members, resolve
from damon_bpf.sources.procevents import ProcEvent, ProcEvents

# cn_proc's exit of a thread of a target that exited up to this long before or after the target's own
# exit record gives the target's status; later ones belong to a process that reused the pid.
STATUS_WINDOW_NS = 1_000_000_000
# A process fork cn_proc told of is checked against the kernel map for this long while the lifecycle
# ring has lost records: its own record, if lost, will never come.
FORK_HORIZON_NS = 1_000_000_000
STATUS_WAIT_S = 0.05   # at the end of a run, how long exits told without a status wait for cn_proc's


@dataclass(frozen=True)
class TargetEvent:
    """A followed process forked (``pid`` is the child), exec'd or exited, or joined or left a followed
    cgroup; ``time_ns`` is CLOCK_MONOTONIC, the clock of access records. Processes found at attach time
    are announced as forks at that time. A fork, exec or join comes before any batch holding the
    process's reports, an exit or leave after all of them."""

    kind: str        # "fork" | "exec" | "exit" | "join" | "leave"
    pid: int         # thread group id
    ppid: int
    comm: str
    time_ns: int
    exit_code: int | None = None     # exit: the status it exited with, when known (cn_proc)
    exit_signal: int | None = None   # exit: the signal that killed it, when one did
    cgroup: str | None = None        # a cgroup target's cgroup ("/system.slice/cron.service"), else None


@dataclass
class TargetInfo:
    """What the run knows of one target process."""

    pid: int
    ppid: int
    comm: str
    exited: bool = False
    exit_ns: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    cgroup: str | None = None    # the cgroup it was found in, for a cgroup target
    left: bool = False           # it left the followed cgroups (``exited`` is then False)

    def as_dict(self) -> dict:
        cgroup = {"cgroup": self.cgroup, "left": self.left} if self.cgroup is not None else {}
        return {"pid": self.pid, "ppid": self.ppid, "comm": self.comm, "exited": self.exited,
                "exit_code": self.exit_code, "exit_signal": self.exit_signal, **cgroup}


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """(comm, fields after comm) of /proc/PID/stat, or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def thread_group_of(pid: int) -> int:
    """The process (thread group) id of ``pid``, which may name a thread."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise TargetError(f"no process with PID {pid}") from None
    except PermissionError:
        raise TargetError(f"cannot read /proc/{pid}/status (permission denied)") from None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    raise TargetError(f"no process with PID {pid}")


PF_EXITING = 0x4   # include/linux/sched.h: set at the start of do_exit; such a task never runs user code again


def is_alive(pid: int) -> bool:
    """True while ``pid`` (a process or a thread) exists and is neither a zombie nor exiting."""
    fields = _stat_fields(pid)
    return fields is not None and fields[1][0] not in "ZX" and not int(fields[1][6]) & PF_EXITING


def group_alive(tgid: int, exited: Iterable[int] = ()) -> bool:
    """True while a thread of process ``tgid`` lives, leaving out the threads in ``exited`` (cn_proc
    told of their exit). A main thread that exited first stays a zombie in /proc while the other
    threads run."""
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{tgid}/task")]
    except OSError:
        return False
    gone = set(exited)
    return any(tid not in gone and is_alive(tid) for tid in tids)


def process_info(pid: int) -> TargetInfo | None:
    """comm and parent of a live process, from /proc."""
    fields = _stat_fields(pid)
    return None if fields is None else TargetInfo(pid, int(fields[1][1]), fields[0])


def descendants(roots: Iterable[int]) -> dict[int, TargetInfo]:
    """Every live descendant process of ``roots`` (not the roots), from one scan of /proc."""
    children: dict[int, list[TargetInfo]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := process_info(int(entry.name))) is not None:
            children.setdefault(info.ppid, []).append(info)
    found: dict[int, TargetInfo] = {}
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return found


def pids_by_comm(names: Iterable[str]) -> set[int]:
    """Live processes whose command name (``/proc/PID/comm``, 15 characters at most) is one of
    ``names``, as ``pgrep -x`` matches; ours are never among them."""
    wanted = {name[:15] for name in names}
    if not wanted:
        return set()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] in wanted:
                found.add(int(entry.name))
    return found


def thread_count(pid: int) -> int:
    """Threads of process ``pid`` now (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class Targets:
    """The set of monitored processes and how they came to be."""

    def __init__(self, pids: Sequence[int] = (), command: Sequence[str] = (), follow_children: bool = False,
                 command_output: str | None = None, notify: Callable[[str], None] = warn_stderr,
                 standing: bool = False, cgroups: Sequence[Cgroup | str] = ()) -> None:
        # standing (the long-running monitor): processes found later are adopted, so none at the start is fine
        if bool(pids or cgroups) == bool(command) and not (standing and not command):
            raise TargetError("give either -p PID (and/or --cgroup PATH) or a command after --, not both and not "
                              "neither")
        if command_output and not command:
            raise TargetError("--command-output is for a command started after --, not for -p PID")
        self.follow_children = follow_children
        self.cgroups = [cgroup if isinstance(cgroup, Cgroup) else resolve(cgroup) for cgroup in cgroups]
        self._cgroup_names = CgroupNames(self.cgroups)
        self.command = list(command)
        self.command_output = command_output
        self.notify = notify
        self.process: subprocess.Popen | None = None
        self.pids: set[int] = {thread_group_of(pid) for pid in pids}   # live targets
        self.info: dict[int, TargetInfo] = {}                            # every target the run had
        self.exited: list[int] = []
        self._subscribers: list[Callable[[TargetEvent], None]] = []
        self._exits: list[tuple[int, int, str]] = []   # (pid, time_ns, exit|leave) not yet published
        self._rejoins: dict[int, TargetEvent] = {}      # joins held back until the pid's leave is told
        self._lost_seen = 0
        self._events: ProcEvents | None = None
        self._group_dead = True                   # the kernel's exit record is the whole process's
        self._leaderless: dict[int, set[int]] = {}  # main thread exited (before 6.16): tgid -> exited tids
        self._last_exit_ns: dict[int, int] = {}   # latest thread exit of a leaderless target (cn_proc)
        self._removed_ns: dict[int, int] = {}     # when user space removed a leaderless target from the map
        self._pending_forks: list[ProcEvent] = []
        self._early_exits: list[ProcEvent] = []   # of processes the lifecycle ring has not told of yet
        self.repaired_forks = 0
        self.repaired_exits = 0
        if self.command and shutil.which(self.command[0]) is None:
            raise TargetError(f"command not found: {self.command[0]}")

    def subscribe(self, callback: Callable[[TargetEvent], None]) -> None:
        """``callback`` gets every TargetEvent: a fork or exec before any batch holding that process's
        reports, an exit after the last such batch."""
        self._subscribers.append(callback)

    def _publish(self, event: TargetEvent) -> None:
        for callback in self._subscribers:
            callback(event)

    def attach(self, tracer) -> None:
        """Register the targets with ``tracer``; a command is started here, paused before its exec."""
        self._group_dead = getattr(tracer, "exit_is_group_dead", True)
        self._events = self._open_proc_events()
        for pid in self.pids:
            tracer.add_target(pid)
            self.info[pid] = process_info(pid) or TargetInfo(pid, 0, "")
        self._drop_dead(tracer)
        if self.follow_children and self.pids:
            self._take_existing_children(tracer)
        if self.cgroups:
            self._take_cgroup_members(tracer)
        if self.command:
            self._launch(tracer)

    def _take_existing_children(self, tracer, roots: Iterable[int] | None = None) -> None:
        # The roots are in the kernel map already, so every child forked from now on joins there; scanning
        # until nothing new turns up also catches children forked by a descendant while we added it.
        roots = set(self.pids if roots is None else roots)
        found: dict[int, TargetInfo] = {}
        while new := {pid: info for pid, info in descendants(roots).items()
                      if pid not in found and pid not in self.pids}:
            for pid, info in new.items():
                tracer.add_target(pid)
                found[pid] = info
        now = time.monotonic_ns()
        for pid, info in found.items():
            self.pids.add(pid)
            self.info[pid] = info
            self._publish(TargetEvent("fork", pid, info.ppid, info.comm, now))
        self._drop_dead(tracer)
        threads = sum(thread_count(pid) for pid in found)
        self.notify(f"following {len(found)} existing descendant process(es) of PID "
                    f"{', '.join(map(str, sorted(roots)))} ({threads} threads)")

    def adopt(self, pids: Iterable[int], tracer) -> list[int]:
        """Make running processes targets from now on (the long-running monitor's newly found ``--comm``
        matches), with their existing descendants when following; each is told as a fork at this instant,
        so its aggregations start now. Returns the pids taken (not those already targets or gone)."""
        now, taken = time.monotonic_ns(), []
        for pid in pids:
            if pid in self.pids:
                continue
            tracer.add_target(pid)   # before the look at /proc: an exit after it is in the lifecycle ring
            info = process_info(pid)
            if info is None:
                tracer.remove_target(pid)
                continue
            self.pids.add(pid)
            self.info[pid] = info
            taken.append(pid)
            self._publish(TargetEvent("fork", pid, info.ppid, info.comm, now))
        if self.follow_children and taken:
            self._take_existing_children(tracer, taken)
        return taken

    def _take_cgroup_members(self, tracer) -> None:
        # Followed first, then listed: a process that joins meanwhile is in the kernel map already (its
        # join record is then ignored), one born after the listing joins at its first report.
        tracer.follow_cgroups([(cgroup.id, cgroup.level) for cgroup in self.cgroups])
        now = time.monotonic_ns()
        for cgroup in self.cgroups:
            found = {pid: name for pid, name in members(cgroup).items() if pid not in self.pids}
            if found.pop(os.getpid(), None) is not None:   # our own faults would feed on themselves
                tracer.exclude(os.getpid())
                self.notify(f"note: damon-bpf itself runs in cgroup {cgroup.name}: its own process is left out")
            for pid, name in found.items():
                tracer.add_target(pid, by_cgroup=True)
                info = process_info(pid)
                if info is None:   # gone since the listing
                    tracer.remove_target(pid)
                    continue
                info.cgroup = name
                self.pids.add(pid)
                self.info[pid] = info
                self._publish(TargetEvent("fork", pid, info.ppid, info.comm, now, cgroup=name))
            self.notify(f"following cgroup {cgroup.name} and its descendants: {len(found)} process(es) now"
                        if found else f"cgroup {cgroup.name} has no process yet: waiting for processes to join it")
        self._drop_dead(tracer)

    def _open_proc_events(self) -> ProcEvents | None:
        try:
            return ProcEvents()
        except OSError as err:   # a kernel without CONFIG_PROC_EVENTS
            self.notify(f"warning: no process events ({err.strerror or err}): exit statuses are not known, and "
                        "/proc alone tells when a process whose main thread exited first is gone")
            return None

    def _launch(self, tracer) -> None:
        # bash (dash cannot name fds above 9) tells us it runs, then waits on a pipe; only then is its pid
        # marked in the kernel, so the exec hook takes CMD's exec and not the launcher's own (bash's startup
        # faults leaked in when the mark raced with that first exec). Then it execs the command.
        output = self._open_command_output()
        go_read, go_write = os.pipe()
        ready_read, ready_write = os.pipe()
        wrapper = ["/bin/bash", "-c",
                   f'echo >&{ready_write}; exec {ready_write}>&-; read _ <&{go_read}; exec {go_read}<&-; exec "$@"',
                   "damon-bpf-launch"]
        try:
            self.process = subprocess.Popen(wrapper + self.command, pass_fds=(go_read, ready_write), stdout=output,
                                            stderr=None if output is None else subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        except OSError as err:
            os.close(go_write)
            os.close(ready_read)
            raise TargetError(f"cannot start {self.command[0]}: {err.strerror}") from None
        finally:
            for fd in (go_read, ready_write) + ((output,) if output is not None else ()):
                os.close(fd)
        try:
            os.read(ready_read, 1)   # EOF instead if the launcher died: its exit is seen in update()
        finally:
            os.close(ready_read)
        tracer.add_on_exec(self.process.pid)
        self.pids.add(self.process.pid)
        self.info[self.process.pid] = TargetInfo(self.process.pid, os.getpid(), "damon-bpf-launch")
        os.write(go_write, b"go\n")
        os.close(go_write)

    def _open_command_output(self) -> int | None:
        """The file a launched command's stdout and stderr go to (--command-output), or None: inherited."""
        if not self.command_output:
            return None
        return outputs.open_output(self.command_output, "--command-output").fd   # 0600, no planted links

    def update(self, tracer) -> None:
        """Apply the kernel's lifecycle records up to now; call it after each ``tracer.drain()`` and before
        its batch is handed on."""
        for record in tracer.drain_lifecycle():
            self._apply(record)
        overruns = self._read_proc_events()
        self._end_leaderless(tracer)   # before poll() reaps the launched command: its pid is not free yet
        if self.process is not None and self.process.pid in self.pids and self.process.poll() is not None:
            self._launcher_gone(tracer)   # also covers a launcher that died before its exec
        lost = tracer.lifecycle_lost()
        if lost != self._lost_seen or overruns:   # records or events were lost: ask /proc who is still there
            self._lost_seen = lost
            self.repaired_exits += self._drop_dead(tracer)
        if self._lost_seen:
            self._repair_forks(tracer)
        self._pending_forks = [fork for fork in self._pending_forks
                               if time.monotonic_ns() - fork.time_ns < FORK_HORIZON_NS]

    def _read_proc_events(self) -> bool:
        """Take in cn_proc's events; True if the socket overran (events were dropped)."""
        if self._events is None or self._events.closed:
            return False
        overruns = self._events.overruns
        early, self._early_exits = self._early_exits, []
        # Without following, only the exits of known targets matter: the rest is skipped unparsed.
        fresh = self._events.read() if self._following else self._events.read(False, self.info.__contains__)
        for event in early + fresh:
            if event.kind == "exit":
                self._note_exit(event)
            elif event.new_process and self.follow_children:
                self._pending_forks.append(event)
        now = time.monotonic_ns()
        self._early_exits = [event for event in self._early_exits if now - event.time_ns < FORK_HORIZON_NS]
        return self._events.overruns != overruns

    def _note_exit(self, event: ProcEvent) -> None:
        """A thread exited: its status is its process's status (the last thread's is the last to come)."""
        info = self.info.get(event.tgid)
        if info is None:   # not a target, or one whose records are still behind one being written
            if self._following:
                self._early_exits.append(event)
            return
        if info.exited and abs(event.time_ns - (info.exit_ns or 0)) > STATUS_WINDOW_NS:
            return
        info.exit_code, info.exit_signal = event.exit_status()
        if event.tgid in self._leaderless and event.tid != event.tgid:   # tgid's thread may lead after an exec
            self._leaderless[event.tgid].add(event.tid)
        if event.tgid in self._leaderless or event.tgid in self._removed_ns:
            self._last_exit_ns[event.tgid] = max(self._last_exit_ns.get(event.tgid, 0), event.time_ns)

    def _repair_forks(self, tracer) -> None:
        """The lifecycle ring lost records: a process fork cn_proc told of whose child the kernel map
        holds but user space does not know was one of them."""
        in_map = tracer.kernel_targets()   # one walk of the map: the live targets only
        for fork in sorted(self._pending_forks, key=lambda fork: fork.time_ns):
            info = self.info.get(fork.tgid)
            unknown = info is None or (info.exited and (info.exit_ns or 0) < fork.time_ns)
            if unknown and fork.parent_tgid in self.info and fork.tgid in in_map:
                found = process_info(fork.tgid)
                parent = self.info.get(fork.parent_tgid)
                self.pids.add(fork.tgid)
                self.info[fork.tgid] = TargetInfo(fork.tgid, fork.parent_tgid,
                                                  found.comm if found else parent.comm if parent else "")
                self.repaired_forks += 1
                self._publish(TargetEvent("fork", fork.tgid, fork.parent_tgid, self.info[fork.tgid].comm,
                                          fork.time_ns))
                if not group_alive(fork.tgid):   # its exit record may have come already, or been lost
                    tracer.remove_target(fork.tgid)
                    self._gone(fork.tgid)
        self._pending_forks = [fork for fork in self._pending_forks if fork.tgid not in self.info]

    def _end_leaderless(self, tracer) -> None:
        """Before 6.16 the kernel keeps a process whose main thread exited in its map: it leaves here,
        once no thread of it is left. Between the last thread's exit and this, a pid the parent reaped
        could be reused and traced: that window is measured (``following``). The exit is dated now, not
        at the last exit cn_proc told so far: the last thread's own message can come a little after
        /proc shows it gone, and its status is then still in time for the exit event."""
        for tgid, exited in list(self._leaderless.items()):
            if tgid in self.pids and group_alive(tgid, exited):
                continue
            del self._leaderless[tgid]
            tracer.remove_target(tgid)
            if tgid in self.pids:
                self._removed_ns[tgid] = time.monotonic_ns()
                self._gone(tgid, self._removed_ns[tgid])

    def _launcher_gone(self, tracer) -> None:
        assert self.process is not None   # called only for the command we launched
        pid, returncode = self.process.pid, self.process.returncode
        tracer.remove_target(pid)   # reaped: its pid is free for reuse from now on
        self._leaderless.pop(pid, None)
        info = self.info[pid]
        if info.exit_code is None and info.exit_signal is None:
            info.exit_code, info.exit_signal = (None, -returncode) if returncode < 0 else (returncode, None)
        self._gone(pid)

    def _drop_dead(self, tracer) -> int:
        """Targets that exited while the kernel could not see it (before they were in its map, or with
        their exit record lost) leave the map and the run here; returns how many."""
        dead = [pid for pid in self.pids if not group_alive(pid) and not self._is_launcher(pid)]
        for pid in dead:
            tracer.remove_target(pid)
            self._gone(pid)
        return len(dead)

    def _is_launcher(self, pid: int) -> bool:
        return self.process is not None and pid == self.process.pid

    @property
    def _following(self) -> bool:
        """Processes join the run as it goes (children, cgroup members): cn_proc tells of unknown ones."""
        return self.follow_children or bool(self.cgroups)

    def _apply(self, record: np.void) -> None:
        kind, pid, time_ns = LIFECYCLE_KINDS.get(int(record["kind"])), int(record["pid"]), int(record["time_ns"])
        comm = bytes(record["comm"]).decode(errors="replace")
        if kind in ("join", "leave"):
            self._apply_cgroup(kind, pid, comm, time_ns, int(record["cgroup_id"]))
            return
        if kind == "fork":
            if pid in self.pids:   # cn_proc told of it first (repair_forks)
                return
            ppid = int(record["ppid"])
            parent = self.info.get(ppid)
            self.pids.add(pid)
            self.info[pid] = TargetInfo(pid, ppid, comm, cgroup=parent.cgroup if parent else None)
        elif kind == "exec":
            self.info.setdefault(pid, TargetInfo(pid, 0, comm)).comm = comm
            self._leaderless.pop(pid, None)   # exec'd from another thread: the process lives on
        elif kind == "exit":
            if pid in self.pids and self._group_dead:
                self._gone(pid, time_ns)
            elif pid in self.pids:   # before 6.16: the main thread exited; the kernel keeps the pid
                self._leaderless.setdefault(pid, set())
                self._last_exit_ns[pid] = max(self._last_exit_ns.get(pid, 0), time_ns)
            return
        else:
            return
        info = self.info[pid]
        self._publish(TargetEvent(kind, pid, info.ppid, info.comm, time_ns, cgroup=info.cgroup))

    def _apply_cgroup(self, kind: str, pid: int, comm: str, time_ns: int, cgroup_id: int) -> None:
        """A process joined a followed cgroup (at its first report there) or left them all."""
        if kind == "leave":
            if pid in self.pids:
                self._gone(pid, time_ns, "leave")
            return
        if pid in self.pids:   # listed at attach time, or a followed child
            return
        found = process_info(pid)
        # the cgroup it reported from; if that is removed already, the one /proc shows, else the id
        cgroup = self._cgroup_names.name(cgroup_id) or cgroup_of(pid) or f"(cgroup id {cgroup_id})"
        self.pids.add(pid)
        self.info[pid] = TargetInfo(pid, found.ppid if found else 0, comm, cgroup=cgroup)
        event = TargetEvent("join", pid, self.info[pid].ppid, comm, time_ns, cgroup=cgroup)
        if any(gone == pid for gone, _, _ in self._exits):   # it left and came back: its leave is told first
            self._rejoins[pid] = event
        else:
            self._publish(event)

    def _gone(self, pid: int, time_ns: int | None = None, kind: str = "exit") -> None:
        """``pid`` exited (or left the followed cgroups) at ``time_ns`` (None: the kernel did not tell, it
        is known only now)."""
        self.pids.discard(pid)
        self.exited.append(pid)
        info = self.info.setdefault(pid, TargetInfo(pid, 0, ""))
        info.exited, info.left = kind == "exit", kind == "leave"
        info.exit_ns = time.monotonic_ns() if time_ns is None else time_ns
        self._exits.append((pid, info.exit_ns, kind))

    def publish_exits(self, before_ns: int | None = None) -> None:
        """Publish the exits that happened before ``before_ns`` (None: all). The session passes the time
        its previous drain began: the current batch then holds every report from before it, even one a
        producer was still writing at that drain."""
        if before_ns is None:
            self._await_statuses()
        due = [exit for exit in self._exits if before_ns is None or exit[1] < before_ns]
        self._exits = [exit for exit in self._exits if not (before_ns is None or exit[1] < before_ns)]
        for pid, time_ns, kind in due:
            info = self.info[pid]   # its status may have come from cn_proc after the exit record
            self._publish(TargetEvent(kind, pid, info.ppid, info.comm, time_ns, info.exit_code, info.exit_signal,
                                      info.cgroup))
            if pid in self._rejoins and not any(gone == pid for gone, _, _ in self._exits):
                self._publish(self._rejoins.pop(pid))

    def _await_statuses(self, timeout_s: float = STATUS_WAIT_S) -> None:
        """At the end, give the exit messages of the last processes a moment: a thread's cn_proc
        message is sent just after /proc shows it gone."""
        deadline = time.monotonic() + timeout_s
        while any(self._status_unknown(pid) for pid, _, kind in self._exits if kind == "exit") \
                and time.monotonic() < deadline:
            time.sleep(0.002)
            self._read_proc_events()

    def _status_unknown(self, pid: int) -> bool:
        info = self.info[pid]
        return info.exit_code is None and info.exit_signal is None

    @property
    def alive(self) -> bool:
        """A target process lives, or a followed cgroup still exists (an empty one waits for processes)."""
        return bool(self.pids) or any(cgroup.exists() for cgroup in self.cgroups)

    def describe(self) -> list[dict]:
        """Every target of the run: pid, ppid, comm and whether it exited."""
        return [info.as_dict() for info in self.info.values()]

    def exit_status(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def following(self) -> dict:
        """What cn_proc added: repairs after lost lifecycle records, socket overruns, and the exits of
        processes whose main thread exited first (before 6.16), with their map-removal latency."""
        latencies = sorted(removed - self._last_exit_ns.get(tgid, removed)
                           for tgid, removed in self._removed_ns.items())
        return {"proc_events": self._events is not None,
                "proc_event_overruns": self._events.overruns if self._events is not None else 0,
                "repaired_forks": self.repaired_forks, "repaired_exits": self.repaired_exits,
                "deferred_exits": len(latencies),
                "deferred_exit_latency_ms_median": latencies[len(latencies) // 2] / 1e6 if latencies else None,
                "deferred_exit_latency_ms_max": latencies[-1] / 1e6 if latencies else None}

    def close(self) -> None:
        """A command we started and that still runs is terminated; the cn_proc socket is closed, and
        its overruns said."""
        if self._events is not None and not self._events.closed:
            if self._events.overruns:
                self.notify(f"warning: the process-events socket overran {self._events.overruns} time(s) (ENOBUFS): "
                            "/proc was asked instead each time")
            self._events.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
