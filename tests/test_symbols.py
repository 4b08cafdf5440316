"""Naming instruction pointers (damon_bpf.sources.symbols) against the ELF files' own symbol tables: the
function holding an address, or `binary+0xADDR` when none does (stripped, or past a symbol's size), never
another function's name; mappings without a file; a file replaced since it was mapped; and the names a
recorder keeps per region, through a record file and back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recorder import top_functions
from damon_bpf.recordfile import TargetRecord, read_record, write_record
from damon_bpf.sources.symbols import Symbolizer, load_elf_symbols, parse_code_mappings

WORKLOAD = Path(__file__).parent / "workload"
BASE = 0x555555554000   # where a PIE build is mapped in the maps text below
PID = 4_000_000         # above pid_max: never a live process


@pytest.fixture(scope="module")
def binaries(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sym")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", out / "libsymlib.so", WORKLOAD / "symlib.c"], check=True)
    subprocess.run(["gcc", "-O2", "-fPIE", "-pie", "-o", out / "symwork", WORKLOAD / "symwork.c", "-L", str(out),
                    "-lsymlib"], check=True)
    shutil.copy(out / "symwork", out / "symwork.stripped")
    subprocess.run(["strip", "--strip-all", out / "symwork.stripped"], check=True)
    return {"full": out / "symwork", "stripped": out / "symwork.stripped"}


def _functions(path: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every sized function of the .symtab: the ground truth."""
    with open(path, "rb") as f:
        table = ELFFile(f).get_section_by_name(".symtab")
        return [(s["st_value"], s["st_value"] + s["st_size"], s.name) for s in table.iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] > 0 and s["st_shndx"] != "SHN_UNDEF"]


def _text_segment(path: Path) -> tuple[int, int, int]:
    """(p_offset, p_vaddr, p_filesz) of the executable PT_LOAD."""
    with open(path, "rb") as f:
        seg = next(s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD" and s["p_flags"] & 1)
        return seg["p_offset"], seg["p_vaddr"], seg["p_filesz"]


def _maps_text(path: Path, extra: str = "") -> str:
    """A maps text mapping the text segment of ``path`` at BASE + its vaddr, as the loader does."""
    offset, vaddr, size = _text_segment(path)
    page = os.sysconf("SC_PAGE_SIZE")
    start, file_offset = BASE + vaddr - vaddr % page, offset - offset % page
    end = start + size + vaddr % page + page
    inode = os.stat(path).st_ino
    return (f"{start:x}-{end:x} r-xp {file_offset:08x} 00:00 {inode}    {path}\n"
            f"7fff00000000-7fff00002000 r-xp 00000000 00:00 0                  [vdso]\n"
            f"7ffe00000000-7ffe00010000 rwxp 00000000 00:00 0 \n"
            f"7ffd00000000-7ffd00010000 rw-p 00000000 00:00 0                  [heap]\n" + extra)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_address_gets_its_function_or_the_binary_offset_never_another_name(binaries, data):
    truth = _functions(binaries["full"])
    offset, vaddr, size = _text_segment(binaries["full"])
    symbolizer = Symbolizer()
    for kind in ("full", "stripped"):
        symbolizer.remember(PID, _maps_text(binaries[kind]))
        address = data.draw(st.integers(vaddr, vaddr + size - 1))
        name = symbolizer.names(PID, [BASE + address])[0]
        holders = [n for lo, hi, n in truth if lo <= address < hi]
        if kind == "full" and holders:
            assert name in holders
        else:
            assert name == f"{binaries[kind].name}+{address:#x}"


def test_each_touch_function_by_name_and_past_its_size(binaries):
    symbolizer = Symbolizer()
    symbolizer.remember(PID, _maps_text(binaries["full"]))
    truth = {n: (lo, hi) for lo, hi, n in _functions(binaries["full"])}
    for function in ("touch_file", "touch_anon", "touch_heap", "main"):
        lo, hi = truth[function]
        assert symbolizer.names(PID, [BASE + lo, BASE + hi - 1]) == [function, function]
    assert load_elf_symbols(str(binaries["stripped"])).names == []   # .dynsym: only imports, no definitions


def test_mappings_without_a_file_and_addresses_without_a_mapping(binaries):
    symbolizer = Symbolizer()
    symbolizer.remember(PID, _maps_text(binaries["full"]))
    assert symbolizer.names(PID, [0x7FFF00000010, 0x7FFE00000020, 0x7FFD00000000, 0xFFFFFFFF81000000, 0x1000]) == [
        "[vdso]+0x10", "[anon]+0x20", "[unknown]", "[kernel]", "[unknown]"]   # [heap] is not executable
    assert Symbolizer().names(PID + 1, [0x1000]) == ["[unknown]"]


def test_a_file_replaced_since_it_was_mapped_gives_no_names(binaries, tmp_path):
    copy = tmp_path / "symwork"
    shutil.copy(binaries["full"], copy)
    symbolizer = Symbolizer()
    symbolizer.remember(PID, _maps_text(copy))
    copy.unlink()
    shutil.copy(binaries["stripped"], copy)    # another file (inode) at the same path
    lo = dict((n, lo) for lo, _, n in _functions(binaries["full"]))["touch_anon"]
    offset, vaddr, _ = _text_segment(binaries["full"])
    assert symbolizer.names(PID, [BASE + lo]) == [f"symwork+{lo - vaddr + offset:#x}"]   # its file offset


def test_parse_code_mappings_keeps_executable_ones_with_their_paths():
    text = ("00400000-00401000 r-xp 00001000 08:01 42 /opt/my prog (deleted)\n"
            "00401000-00402000 rw-p 00002000 08:01 42 /opt/my prog (deleted)\n"
            "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n")
    found = parse_code_mappings(text)
    assert [(m.start, m.offset, m.inode, m.path) for m in found] == [(0x400000, 0x1000, 42, "/opt/my prog (deleted)"),
                                                                     (0x7F0000000000, 0, 0, "")]


def test_top_functions_sum_a_functions_instructions_and_survive_a_record_file(tmp_path):
    start = np.array([0, 4096], np.uint64)
    ips = (np.array([0, 0, 0, 1], np.int64), np.array([10, 11, 12, 10], np.uint64), np.array([3, 4, 1, 7], np.int64))
    snap = Snapshot(0, 10**8, start, start + 4096, np.array([1, 1]), np.array([0, 0]), np.array([8, 7]),
                    np.array([8, 7]), np.array([0, 0]), ips=ips)
    odd = {10: 'f"un\\c', 11: 'f"un\\c', 12: "ünïcode"}
    snap.functions = top_functions(snap, lambda addresses: [odd[a] for a in addresses])
    assert snap.functions == [{'f"un\\c': 7, "ünïcode": 1}, {'f"un\\c': 7}]
    write_record(str(tmp_path / "d.data"), [TargetRecord(0, 1, 5000, 100000, 1000000, [snap])])
    assert read_record(str(tmp_path / "d.data"))[0].snapshots[0].functions == snap.functions


def test_reports_before_an_exec_are_never_named_by_the_new_image():
    """Reports fed before the exec (retired) and routed after it but made before it (masked by time) name no
    function of the new image; those after it do."""
    import ctypes
    import time
    from types import SimpleNamespace

    from damon_bpf.access import ACCESS_DTYPE
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.recorder import Recorder
    from damon_bpf.sources.vaddr import read_maps

    pid = os.getpid()
    ip = ctypes.cast(ctypes.pythonapi.PyList_New, ctypes.c_void_p).value
    addr = read_maps(pid)[-1][0]   # the stack: inside the layout's regions
    t0 = time.monotonic_ns()
    recorder = Recorder(MonitoringAttrs(), start_ns=t0)
    snaps: list = []
    recorder.listeners.append(lambda _target, _pid, snap: snaps.append(snap))

    def batch(times):
        out = np.zeros(len(times), ACCESS_DTYPE)
        out["addr"], out["time_ns"], out["pid"], out["tid"], out["ip"] = addr, times, pid, pid, ip
        return out

    ms = 1_000_000
    recorder.add_targets([pid])
    recorder.on_batch(batch([t0 + 1 * ms]))
    recorder.on_tick(t0 + 2 * ms, force=True)                  # fed before the exec: retired
    recorder.on_batch(batch([t0 + 3 * ms, t0 + 5 * ms]))       # one before, one after the exec
    recorder.on_target_event(SimpleNamespace(kind="exec", pid=pid, ppid=None, comm="x", time_ns=t0 + 4 * ms))
    recorder.on_tick(t0 + 300 * ms, force=True)
    names: dict = {}
    for snap in snaps:
        for functions in snap.functions:
            for name, count in functions.items():
                names[name] = names.get(name, 0) + count
    assert names == {"[before exec]": 2, "PyList_New": 1}
