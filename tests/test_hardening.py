"""Issue 12: root's outputs, state files, hostile record files, runaway settings. One test (or a few) per row
of the issue's table; they need root (the CI runs as root) for mknod, chown, setuid and namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import pytest

from conftest import DAMON_BPF
from damon_bpf import outputs
from damon_bpf.errors import DamonBpfError, HostError, RecordFileError
from damon_bpf.recordfile import RecordWriter, write_record
from damon_bpf.samplers.numa_state import NumaSettings, recover_stale
from damon_bpf.sources import kdamond, kheaders
from test_samplers import fake_numa  # noqa: F401 - the fixture: a fake /proc/sys and debugfs

TESTS = str(Path(__file__).resolve().parent)
NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, setuid)")


def as_nobody(*cmd: str) -> None:
    subprocess.run(cmd, check=True, preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))


@pytest.fixture
def sticky():
    """A /tmp-like directory: sticky and world-writable, where nobody can reach it (pytest's are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="damon-bpf-test."))
    top.chmod(0o755)
    d = top / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    yield d
    shutil.rmtree(top)


def one_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode not in (0, 70) and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("damon-bpf: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def cli(*args: str, umask: int | None = None, **kw) -> subprocess.CompletedProcess:
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([DAMON_BPF, *args], capture_output=True, text=True, timeout=120, preexec_fn=pre, **kw)


@pytest.fixture(scope="module")
def small_record(tmp_path_factory) -> str:
    sys.path.insert(0, TESTS)
    from test_recordfile import make_record
    path = tmp_path_factory.mktemp("rec") / "small.data"
    write_record(str(path), [make_record(nr=5)])
    return str(path)


# ------------------------------------------------------------- 1: a device node or FIFO is never replaced

def test_record_on_dev_null_in_a_private_mount_namespace_leaves_it_a_device(tmp_path):
    """The issue's reproducer: /dev/null replaced by a 0600 file. Here a device node we make is bind-mounted
    over /dev/null in a private mount namespace, so the host's /dev/null is never at stake."""
    node = tmp_path / "null"
    script = textwrap.dedent(f"""
        set -e
        mount --make-rprivate /
        mknod {node} c 1 3 && chmod 666 {node}
        mount --bind {node} /dev/null
        {DAMON_BPF} record -o /dev/null -- true 2>{tmp_path}/err || true
        {DAMON_BPF} live -o /dev/null --duration 1 -- true 2>{tmp_path}/err2 </dev/null >/dev/null || true
        stat -c '%F %a' /dev/null
    """)
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["character", "special", "file", "666"]
    for err in ("err", "err2"):
        text = (tmp_path / err).read_text()
        assert "record file /dev/null is a character device: it needs a regular file" in text, text
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_a_fifo_is_refused_for_record_and_written_through_by_helpers(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RecordFileError, match="is a FIFO: it needs a regular file"):
        RecordWriter(str(fifo))
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    out = outputs.open_output(str(fifo), "trace output")   # written through, not replaced
    assert not out.regular
    with out.stream() as stream:
        stream.write(b"hello\n")
    assert reader.communicate(timeout=10)[0] == b"hello\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dash_is_stdout_for_trace_and_refused_for_record():
    assert outputs.open_output("-", "trace output", stdout_ok=True).path == "-"
    assert "record file cannot be '-'" in one_error(cli("record", "-o", "-", "--", "true"))


# ------------------------------------------------------ 2: a symlink planted by another user is not followed

def test_a_symlink_planted_by_nobody_in_a_sticky_directory_is_refused_everywhere(sticky, small_record):
    victim = sticky.parent / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    for name in ("out.jsonl", "summary.json", "cmd.out", "heat.png", "rec.data"):
        as_nobody("ln", "-s", str(victim), str(sticky / name))
    # our check does not depend on fs.protected_symlinks: it refuses before the kernel is asked
    for what, path in (("trace output", "out.jsonl"), ("--summary-json", "summary.json"),
                       ("--command-output", "cmd.out")):
        with pytest.raises(DamonBpfError, match="symlink owned by uid 65534 in a sticky world-writable"):
            outputs.open_output(str(sticky / path), what)
    with pytest.raises(RecordFileError, match="symlink owned by uid 65534"):
        RecordWriter(str(sticky / "rec.data"))
    err = one_error(cli("report", "heatmap", "-i", small_record, "--output", str(sticky / "heat.png")))
    assert "symlink owned by uid 65534" in err
    err = one_error(cli("trace", "-o", str(sticky / "out.jsonl"), "--", "true"))
    assert "symlink owned by uid 65534" in err
    assert victim.read_text() == "precious\n"


def test_a_symlink_we_made_ourselves_is_followed(tmp_path):
    target = tmp_path / "real.jsonl"
    (tmp_path / "link.jsonl").symlink_to(target)
    with outputs.open_output(str(tmp_path / "link.jsonl"), "trace output").stream() as stream:
        stream.write(b"x")
    assert target.read_bytes() == b"x" and (tmp_path / "link.jsonl").is_symlink()


# ------------------------------------------------------------- 3: a file another user owns is not written

def test_an_existing_file_of_another_user_is_refused(sticky, small_record):
    planted = sticky / "out.jsonl"
    as_nobody("touch", str(planted))
    for what in ("trace output", "--summary-json", "--command-output"):
        with pytest.raises(DamonBpfError, match="belongs to uid 65534"):
            outputs.open_output(str(planted), what)
    with pytest.raises(RecordFileError, match="belongs to uid 65534"):
        RecordWriter(str(planted))
    as_nobody("touch", str(sticky / "heat.png"))
    assert "belongs to uid 65534" in one_error(cli("report", "heatmap", "-i", small_record, "--output",
                                                   str(sticky / "heat.png")))
    assert planted.stat().st_size == 0


def test_a_hard_link_to_a_file_of_ours_is_refused(tmp_path):
    (tmp_path / "precious").write_text("x")
    os.link(tmp_path / "precious", tmp_path / "out.jsonl")
    with pytest.raises(DamonBpfError, match="2 hard links"):
        outputs.open_output(str(tmp_path / "out.jsonl"), "trace output")
    assert (tmp_path / "precious").read_text() == "x"


# ------------------------------------------------------------------- 4: every output is 0600, umask 000 too

def test_every_output_is_0600_under_umask_000(tmp_path, small_record):
    tmp_path.chmod(0o755)
    result = cli("trace", "-o", str(tmp_path / "ev.jsonl"), "--summary-json", str(tmp_path / "sum.json"),
                 "--command-output", str(tmp_path / "cmd.out"), "--", "echo", "hi", umask=0)
    assert result.returncode == 0, result.stderr
    result = cli("report", "heatmap", "-i", small_record, "--output", str(tmp_path / "heat.png"), umask=0)
    assert result.returncode == 0, result.stderr
    result = cli("record", "-o", str(tmp_path / "rec.data"), "--", "true", umask=0)
    assert result.returncode == 0, result.stderr
    for name in ("ev.jsonl", "sum.json", "cmd.out", "heat.png", "rec.data", "rec.data.columns.npz",
                 "rec.data.mem_footprint", "rec.data.vmas"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "cmd.out").read_text() == "hi\n"
    assert sorted(os.listdir(tmp_path)) == ["cmd.out", "ev.jsonl", "heat.png", "rec.data", "rec.data.columns.npz",
                                            "rec.data.mem_footprint", "rec.data.vmas", "sum.json"]


def test_an_existing_file_of_ours_is_narrowed_to_0600(tmp_path):
    path = tmp_path / "out"
    path.write_text("old")
    path.chmod(0o666)
    with outputs.open_output(str(path), "trace output").stream() as stream:
        stream.write(b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


# ------------------------------------------------------------------------------- 5: the headers cache

def test_headers_cache_is_private_and_rebuilt_when_others_could_write_it(tmp_path, monkeypatch):
    pairs = kheaders._flavour_trees()
    if not pairs or pairs[0][0] == pairs[0][1]:
        pytest.skip("no split Debian headers tree to assemble on this host")
    flavour, base = pairs[0]
    monkeypatch.setattr(kheaders, "CACHE_ROOT", tmp_path / "cache" / "kernel-headers")
    old = os.umask(0)
    try:
        tree = kheaders._assemble(flavour, base)
    finally:
        os.umask(old)
    for d in (tmp_path / "cache", kheaders.CACHE_ROOT):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert not tree.stat().st_mode & 0o022   # cp -a keeps /usr/src's 0755, inside a 0700 directory
    # a run under umask 000 by an older version: the tree became writable by anyone, who planted a header
    kheaders.CACHE_ROOT.chmod(0o777)
    planted = tree / "include" / "linux" / "planted.h"
    planted.write_text("#error planted\n")
    tree2 = kheaders._assemble(flavour, base)
    assert tree2 == tree and not planted.exists() and stat.S_IMODE(kheaders.CACHE_ROOT.stat().st_mode) == 0o700
    # a cache directory another user owns is refused, never used
    os.chown(kheaders.CACHE_ROOT, NOBODY, NOBODY)
    with pytest.raises(HostError, match="not root's own directory"):
        kheaders._assemble(flavour, base)
    # and so is a parent others can write (DAMON_BPF_CACHE=/tmp, say)
    (tmp_path / "cache").chmod(0o1777)
    with pytest.raises(DamonBpfError, match="others could change"):
        kheaders._assemble(flavour, base)


def test_headers_fallback_is_said_when_its_tree_is_built_not_every_run(tmp_path, monkeypatch, capsys):
    pairs = kheaders._flavour_trees()
    if not pairs or pairs[0][0] == pairs[0][1]:
        pytest.skip("no split Debian headers tree to assemble on this host")
    monkeypatch.setattr(kheaders, "CACHE_ROOT", tmp_path / "cache" / "kernel-headers")
    monkeypatch.setattr(kheaders, "running_tree", lambda: None)
    notes = []
    for _run in range(2):
        monkeypatch.setenv("BCC_KERNEL_SOURCE", "")   # restored after the test: ensure_headers sets it
        monkeypatch.delenv("BCC_KERNEL_SOURCE")
        tree = kheaders.ensure_headers()
        notes.append(capsys.readouterr().err)
    assert "no headers for kernel" in notes[0] and f"built once, into {kheaders.CACHE_ROOT}" in notes[0]
    assert notes[1] == "" and (tree / ".complete").exists()


# ------------------------------------------------------------------------------------- 6: state files

def test_numa_state_restores_only_known_settings_by_their_fixed_paths(fake_numa, tmp_path):
    fake_numa.state_dir.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    (fake_numa.state_dir / "numa-balancing.json").write_text(json.dumps(
        {"pid": 999999, "saved": {str(elsewhere): "x", "numa_balancing": "1", "scan_delay_ms": "$(reboot)",
                                  "scan_size_mb": "64"}}))
    delay_before = fake_numa.knob("scan_delay_ms").read_text()
    notes: list[str] = []
    recover_stale(notes.append, fake_numa)
    assert not elsewhere.exists()
    assert fake_numa.switch.read_text() == "1" and fake_numa.knob("scan_size_mb").read_text() == "64"
    assert fake_numa.knob("scan_delay_ms").read_text() == delay_before
    assert any("never saves" in n for n in notes) and not (fake_numa.state_dir / "numa-balancing.json").exists()


@pytest.mark.parametrize("content", ["{", "[]", '{"saved": "x"}', '{"pid": "' + "9" * 5000 + '"}', "\xff"])
def test_a_malformed_numa_state_file_is_set_aside_with_one_warning(fake_numa, content):
    fake_numa.state_dir.mkdir(mode=0o700)
    (fake_numa.state_dir / "numa-balancing.json").write_text(content, errors="surrogateescape")
    notes: list[str] = []
    recover_stale(notes.append, fake_numa)
    assert len(notes) == 1 and "malformed" in notes[0] and "\n" not in notes[0]
    assert (fake_numa.state_dir / "numa-balancing.bad").exists()
    recover_stale(lambda m: pytest.fail(m), fake_numa)   # once set aside, later runs are quiet
    settings = NumaSettings(fake_numa)
    settings.apply({fake_numa.switch: "1"})              # and numa-hint works again
    assert settings.restore() is None and fake_numa.switch.read_text() == "0"


def test_a_state_directory_others_can_write_is_refused(fake_numa):
    fake_numa.state_dir.mkdir()
    fake_numa.state_dir.chmod(0o777)
    with pytest.raises(HostError, match="others could change"):
        NumaSettings(fake_numa).apply({fake_numa.switch: "1"})
    assert fake_numa.switch.read_text() == "0\n"


def _kdamond_state() -> tuple:
    admin = kdamond.ADMIN / "kdamonds"
    if not admin.exists():
        return ()
    nr = int((admin / "nr_kdamonds").read_text())
    return (nr, *[(admin / str(i) / "state").read_text() for i in range(nr)])


@pytest.mark.parametrize("content", ['{"owner": "x", "kdamond": 1}', "not json", '{"owner": 1}', "[]"])
def test_a_malformed_kdamond_state_never_touches_a_kdamond(tmp_path, monkeypatch, content):
    monkeypatch.setattr(kdamond, "STATE", tmp_path / "kdamond.json")
    kdamond.STATE.write_text(content)
    before = _kdamond_state()
    notes: list[str] = []
    kdamond.stop_all_ours(notes.append)
    assert _kdamond_state() == before
    assert len(notes) == 1 and "malformed" in notes[0] and (tmp_path / "kdamond.bad").exists()


def test_a_dead_owners_kdamond_is_ours_only_if_its_sysfs_matches(tmp_path, monkeypatch):
    """A pid proves nothing (reused): a state naming a dead owner but a kdamond whose settings differ from the
    recorded ones is left alone."""
    monkeypatch.setattr(kdamond, "STATE", tmp_path / "kdamond.json")
    stopped = []
    monkeypatch.setattr(kdamond, "stop_kdamond", lambda _sysfs: stopped.append(True))
    recorded = {"kdamond": 4242, "operations": "vaddr", "intervals": [5000, 100000, 1000000],
                "nr_regions": [10, 1000], "targets": [77]}
    dead = subprocess.Popen(["true"])
    dead.wait()
    for now, expect in ((dict(recorded, kdamond=999), False), (dict(recorded, targets=[78]), False),
                        (recorded, True), (dict(recorded, kdamond=-1), True)):
        kdamond.STATE.write_text(json.dumps({"owner": dead.pid, "kdamond": 4242, "fingerprint": recorded}))
        monkeypatch.setattr(kdamond, "_fingerprint", lambda _sysfs, now=now: now)
        stopped.clear()
        kdamond.stop_all_ours(lambda _: None)
        assert bool(stopped) == expect, now
        assert not kdamond.STATE.exists()


# ----------------------------------------------------------------- 7: zlib bombs under a memory limit

READ_UNDER_LIMIT = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from damon_bpf.errors import RecordFileError
    from damon_bpf.recordfile import read_record
    try:
        read_record(sys.argv[1])
    except RecordFileError as err:
        print(err)
""")


def _bomb(path: Path, head: bytes, fill: bytes, total: int) -> None:
    comp = zlib.compressobj(9)
    block = fill * ((1 << 20) // len(fill))
    with open(path, "wb") as f:
        f.write(comp.compress(head))
        for _ in range(total // len(block)):
            f.write(comp.compress(block))
        f.write(comp.flush())


@pytest.mark.parametrize("head, fill, inflated, limit_mb, words", [
    (b"", b"\0", 1 << 30, 512, "not valid JSON"),
    (b"[", b" ", 1 << 30, 512, "inflates to more than 512 MiB"),
    (b'[{"target_id": 0, "x": "', b"a", 1 << 30, 512, "more than 64 MiB in record 0"),
    # many small valid snapshots: the inflation bound is what stops them (a small one keeps the test short)
    (b'[{"target_id":0,"intervals":{"sample_us":5000,"aggr_us":100000},"snapshots":[',
     b'{"start_time":1,"end_time":2,"regions":[{"start":0,"end":4096,"nr_accesses":{"samples":1},'
     b'"age":{"aggr_intervals":1}}]},', 256 << 20, 4, "inflates to more than 4 MiB"),
])
def test_zlib_bombs_are_refused_within_a_memory_limit(tmp_path, head, fill, inflated, limit_mb, words):
    path = tmp_path / "bomb.data"
    _bomb(path, head, fill, inflated)   # up to 1 GiB inflated, about 1 MB on disk
    assert path.stat().st_size < 2 << 20
    env = dict(os.environ, DAMON_BPF_MAX_INFLATED_MB=str(limit_mb))
    result = subprocess.run([sys.executable, "-c", READ_UNDER_LIMIT, str(path)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0 and words in result.stdout, (result.stdout, result.stderr[-2000:])


def test_a_5000_digit_integer_in_a_record_is_one_error(tmp_path):
    path = tmp_path / "big.data"
    path.write_bytes(zlib.compress(b'[{"target_id": ' + b"9" * 5000 + b"}]"))
    err = one_error(cli("report", "access", "-i", str(path)))
    assert "invalid number in record 0" in err


# --------------------------------------------------------- 9: runaway settings are refused at the start

@pytest.mark.parametrize("args, words", [
    (["record", "--sample-us", "1", "--aggr-us", "1"], "must be at least 100"),
    (["record", "--sample-us", "200", "--aggr-us", "100"], "must not exceed aggr_interval_us"),
    (["trace", "--duration", "nan"], "'nan' is not a time"),
    (["trace", "--duration", "inf"], "'inf' is not a time"),
    (["trace", "--duration", "0s"], "not a finite duration"),
    (["trace", "--duration", "11000d"], "not a finite duration"),
    (["record", "--sample-us", "5 fortnights"], "is not a time"),
    (["trace", "--ring-mb", "3MiB"], "not a power of two"),
    (["trace", "--ring-mb", "1.5MiB"], "not a power of two"),
    (["trace", "--ring-mb", "4096"], "not a power of two from 1 to 2048"),
    (["trace", "--ring-mb", "3"], "not a power of two"),
    (["record", "--max-regions", "1000000000"], "must be at most"),
])
def test_runaway_settings_are_one_line_errors(tmp_path, args, words):
    err = one_error(cli(*args, "-o", str(tmp_path / "out"), "--", "true"))
    assert words in err


# ----------------------------------------------- 10: a failed flush is retried, the run goes on; bad names

def test_a_failed_flush_is_said_once_and_retried(tmp_path):
    script = textwrap.dedent(f"""
        import os, resource, signal, sys
        sys.path.insert(0, {TESTS!r})
        from test_recordfile import make_record, make_snapshot
        from damon_bpf.recordfile import RecordWriter, read_record
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        notes = []
        writer = RecordWriter(sys.argv[1], flush_interval_s=1.0, warn=notes.append)
        writer.add_target(make_record(nr=2, n=50))
        writer.flush()
        size = os.path.getsize(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
        writer.add_snapshots(0, [make_snapshot(i, n=400, seed=i) for i in range(2, 40)])
        assert not writer.maybe_flush(1e9) and not writer.maybe_flush(2e9)   # failed twice, said once
        assert len(notes) == 1 and "retrying" in notes[0] and "2 snapshots" in notes[0], notes
        assert len(read_record(sys.argv[1])[0].snapshots) == 2
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert writer.maybe_flush(3e9) and "after 2 failed flushes" in notes[-1]
        writer.close()
        print(len(read_record(sys.argv[1])[0].snapshots))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "40", result.stderr


@pytest.mark.parametrize("name, words", [("", "the file name is empty"), ("x" * 300, "is too long")])
def test_bad_output_names_are_refused_at_the_start(tmp_path, name, words):
    for command in ("record", "trace"):
        err = one_error(cli(command, "-o", name if not name else str(tmp_path / name), "--", "true"))
        assert words in err


# ------------------------------------------------------ 11: no internal error (exit 70) on odd values

@pytest.mark.parametrize("args, words", [
    (["record", "--seed", "-1"], "--seed"),
    (["trace", "--tids", "\u00b2"], "not a thread id"),
    (["trace", "--filter", "threads:true:true:\u00b2\u00b3"], "not a thread id"),
    (["trace", "--cpus", "9" * 5000], "not a CPU number"),
    (["record", "--sample-us", "9" * 5000], "sample-us"),
])
def test_odd_values_are_one_line_errors_not_internal_ones(tmp_path, args, words):
    assert words in one_error(cli(*args, "-o", str(tmp_path / "out"), "--", "true"))


# ------------------------------------------------------------------------------------------ 12: small

def test_a_second_recorder_on_the_same_file_is_refused(tmp_path):
    path = str(tmp_path / "d")
    first = RecordWriter(path)
    with pytest.raises(RecordFileError, match="being written by another damon-bpf"):
        RecordWriter(path)
    first.flush()   # the lock moves to each new file
    with pytest.raises(RecordFileError, match="being written by another damon-bpf"):
        RecordWriter(path)
    first.close()
    RecordWriter(path).close()   # free again once the first is done


def test_start_up_clean_up_removes_only_our_own_temp_files(sticky):
    theirs, ours = sticky / ".d.abc.tmp", sticky / ".d.def.tmp"
    as_nobody("touch", str(theirs))
    ours.write_text("")
    RecordWriter(str(sticky / "d")).close()
    assert theirs.exists() and not ours.exists()


def test_a_started_command_dies_with_the_collector(tmp_path):
    collector = subprocess.Popen([DAMON_BPF, "trace", "-o", str(tmp_path / "ev"), "--", "sleep", "300"],
                                 stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        child = None
        while child is None:
            assert time.monotonic() < deadline and collector.poll() is None, "the command never started"
            children = Path(f"/proc/{collector.pid}/task/{collector.pid}/children").read_text().split()
            for pid in children:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                    child = int(pid)
            time.sleep(0.1)
    finally:
        collector.send_signal(signal.SIGKILL)
        collector.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "the command outlived the collector"
        time.sleep(0.05)


# ---------------------------------------------------- the flaky first run after boot (test-suite reliability)

def test_auto_source_mounts_tracefs_before_judging_the_tracepoint(accessgen, tmp_path):
    """Right after boot tracefs may not be mounted: 'auto' used to see no tracepoint and fall back to
    perf-fault, whose reports have no write flag (test_trace_command_from_first_instruction failed so)."""
    events = tmp_path / "ev.jsonl"
    script = (f"mount --make-rprivate / && (umount /sys/kernel/tracing 2>/dev/null; true) && "
              f"exec {DAMON_BPF} trace -o {events} -- {accessgen} w:0:w:64:10")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.splitlines()[0])
    writer = next(t for t in info["threads"] if t["name"] == "w")
    touches = [e for e in map(json.loads, events.read_text().splitlines())
               if e["tid"] == writer["tid"] and writer["start"] <= e["addr"] < writer["end"]]
    assert len(touches) == 160 and all(e["write"] is True and e["cpu"] == 0 for e in touches)


def test_dev_stdout_still_works_for_a_summary(tmp_path):
    """/dev/stdout is root's link to /proc/self/fd/1, a magic link to a pipe here: the kernel follows that one."""
    script = textwrap.dedent("""
        import sys
        from damon_bpf.outputs import write_text
        write_text("/dev/stdout", '{"ok": 1}', "--summary-json")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout) == {"ok": 1}, result.stderr
