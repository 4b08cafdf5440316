"""Named code per region, end to end: `damon-bpf record` of symwork (file mapping, anonymous memory, brk heap,
libc's memset, a shared library's function, each touched by its own function) names the right function for
the right region, in a PIE and a non-PIE build; a stripped copy gives `binary+0xADDR` inside the right
function's bounds, never a wrong name; damo still reads the file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import DAMON_BPF
from damon_bpf.recordfile import read_record
from damon_bpf.sources.symbols import DEBUG_DIR

pytestmark = pytest.mark.bpf
WORKLOAD = Path(__file__).parent / "workload"
OWN = {"file": "touch_file", "anon": "touch_anon", "heap": "touch_heap", "lib": "lib_fill"}


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """symwork built as PIE, as non-PIE, and a stripped copy of the PIE build, with libsymlib.so."""
    out = tmp_path_factory.mktemp("symwork")
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", out / "libsymlib.so", WORKLOAD / "symlib.c"],
                   check=True)
    link = ["-L", str(out), "-lsymlib", f"-Wl,-rpath,{out}"]
    for name, flags in (("symwork", ["-fPIE", "-pie"]), ("symwork-nopie", ["-fno-PIE", "-no-pie"])):
        subprocess.run(["gcc", "-O2", "-Wall", *flags, "-o", out / name, WORKLOAD / "symwork.c", *link], check=True)
    shutil.copy(out / "symwork", out / "symwork.stripped")
    subprocess.run(["strip", "--strip-all", out / "symwork.stripped"], check=True)
    return {"pie": out / "symwork", "nopie": out / "symwork-nopie", "stripped": out / "symwork.stripped"}


def _record(binary: Path, tmp_path: Path) -> tuple[dict, list, Path]:
    data, output = tmp_path / "d.data", tmp_path / "out.txt"
    result = subprocess.run([DAMON_BPF, "record", "-o", str(data), "--regions", "all-mappings", "--command-output",
                             str(output), "--", str(binary), str(tmp_path / "mapped"), "2048"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(output.read_text().splitlines()[0]), read_record(str(data)), data


def _functions_over(records: list, lo: int, hi: int) -> Counter:
    """Reports per function of every region that overlaps [lo, hi), over the whole record."""
    found: Counter = Counter()
    for rec in records:
        for snap in rec.snapshots:
            for i in range(snap.nr_regions):
                if snap.start[i] < hi and snap.end[i] > lo and snap.functions:
                    found.update(snap.functions[i])
    return found


def _symbol_bounds(binary: Path, name: str) -> tuple[int, int]:
    with open(binary, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
    return sym["st_value"], sym["st_value"] + sym["st_size"]


def _libc_has_debug_file() -> bool:
    libc = next(p for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6") if os.path.exists(p))
    with open(libc, "rb") as f:
        note = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        build_id = next(n["n_desc"] for n in note.iter_notes())
    return os.path.exists(os.path.join(DEBUG_DIR, build_id[:2], build_id[2:] + ".debug"))


@pytest.mark.parametrize("build", ["pie", "nopie"])
def test_each_region_names_its_own_function(builds, build, tmp_path):
    binary = builds[build]
    with open(binary, "rb") as f:
        assert ELFFile(f).header["e_type"] == ("ET_DYN" if build == "pie" else "ET_EXEC")
    info, records, data = _record(binary, tmp_path)
    pages = 2048 * 1024 // os.sysconf("SC_PAGE_SIZE")
    for kind, function in OWN.items():
        found = _functions_over(records, *info[kind])
        assert found.most_common(1)[0] == (function, pages), (kind, found)
        for other, name in OWN.items():   # no other range's function is ever named here
            assert other == kind or name not in found, (kind, found)
    libc = _functions_over(records, *info["libc"])
    top, count = libc.most_common(1)[0]
    assert count == pages
    assert "memset" in top if _libc_has_debug_file() else re.fullmatch(r"libc\.so\.6\+0x[0-9a-f]+", top), top
    _reports_name_the_functions(data, info, records)
    damo = subprocess.run([str(Path(DAMON_BPF).parent / "damo"), "report", "access", "-i", str(data)],
                          capture_output=True, text=True, timeout=120)
    assert damo.returncode == 0 and "total size" in damo.stdout, damo.stderr


def _reports_name_the_functions(data: Path, info: dict, records: list) -> None:
    """`report breakdown` (table and --json) and `report access --json` carry each region's functions."""
    def cli(*args: str) -> str:
        result = subprocess.run([DAMON_BPF, "report", *args, "-i", str(data)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    shares = json.loads(cli("breakdown", "--json", "--top", "100"))["regions"]
    for kind, function in OWN.items():
        lo, hi = info[kind]
        over = [r["function_share"] for r in shares if r["start"] < hi and r["end"] > lo and r["reports"]]
        assert over and all(max(f, key=f.get) == function for f in over), (kind, over)
    assert "touch_anon:" in cli("breakdown", "--top", "100")
    lo, hi = info["file"]
    snap = next(i for i, s in enumerate(records[0].snapshots)   # the one in which touch_file ran
                if any(s.start[j] < hi and s.end[j] > lo and s.nr_reports[j] for j in range(s.nr_regions)))
    rows = json.loads(cli("access", "--json", "--snapshot", str(snap)))["regions"]
    touched = [r for r in rows if r["start"] < hi and r["end"] > lo and r["reports"]]
    assert touched and all(r["functions"] == {"touch_file": 1.0} for r in touched), touched


def test_a_stripped_binary_gives_its_addresses_never_a_wrong_name(builds, tmp_path):
    info, records, _ = _record(builds["stripped"], tmp_path)
    for kind in ("file", "anon", "heap"):
        found = _functions_over(records, *info[kind])
        name, _ = found.most_common(1)[0]
        match = re.fullmatch(r"symwork\.stripped\+0x([0-9a-f]+)", name)
        assert match, found
        lo, hi = _symbol_bounds(builds["pie"], OWN[kind])   # the unstripped build: the same code
        assert lo <= int(match.group(1), 16) < hi, (kind, name, hex(lo), hex(hi))
        assert not set(found) & set(OWN.values()), found
    assert _functions_over(records, *info["lib"]).most_common(1)[0][0] == "lib_fill"   # the library keeps its
