"""Names for the faulting instruction pointers of a process: its executable mappings (from the same
/proc/PID/maps reads the layout makes) and the ELF symbol tables of the files behind them (pyelftools).

An address in a file mapping is turned into a file offset (``ip - start + offset``, which handles PIE
executables and shared libraries alike), then into the ELF's own virtual address through its PT_LOAD
segments, and named by the function symbol that contains it: ``.symtab``, else ``.dynsym``, and only within
a symbol's size, so a stripped binary gives ``binary+0xADDR`` (the address objdump and addr2line use)
rather than the nearest wrong name. Addresses in memory with no file (JIT code, anonymous executable
memory) are ``[anon]+0xOFF``, in kernel pseudo-mappings ``[vdso]+0xOFF`` (the mapping's own name), in the
kernel ``[kernel]``; an address no known mapping holds is ``[unknown]``, and one made by the image a process
had before its latest exec ``[before exec]`` (core.ipcounts.BEFORE_EXEC).

Symbol tables are cached per file (device, inode, size, mtime), names per process and address: the
work is done once per binary and once per distinct instruction, at snapshot time, never per report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from damon_bpf.core.ipcounts import BEFORE_EXEC

KERNEL_START = 0xFFFF800000000000   # x86-64: the upper half is the kernel's


@dataclass(frozen=True)
class CodeMapping:
    """An executable mapping of /proc/PID/maps: ``[start, end)`` maps ``path`` from ``offset``."""

    start: int
    end: int
    offset: int
    inode: int
    path: str      # a file path, a pseudo-mapping's name ("[vdso]"), or "" (anonymous)


def parse_code_mappings(text: str) -> list[CodeMapping]:
    """The executable mappings of /proc/PID/maps text, in address order."""
    found = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5 or "x" not in parts[1]:
            continue
        start, _, end = parts[0].partition("-")
        path = parts[5].strip() if len(parts) == 6 else ""
        found.append(CodeMapping(int(start, 16), int(end, 16), int(parts[2], 16), int(parts[4]), path))
    return sorted(found, key=lambda m: m.start)


@dataclass
class ElfSymbols:
    """Function symbols of one ELF file, sorted by address, and its loadable segments."""

    starts: np.ndarray
    ends: np.ndarray
    names: list[str]
    segments: list[tuple[int, int, int]]   # (p_offset, p_filesz, p_vaddr) of each PT_LOAD

    def vaddr(self, file_offset: int) -> int | None:
        """The ELF virtual address a file offset is loaded at, or None outside every segment."""
        for p_offset, p_filesz, p_vaddr in self.segments:
            if p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
        return None

    def name(self, vaddr: int) -> str | None:
        """The function whose [value, value + size) holds ``vaddr``, or None."""
        i = int(np.searchsorted(self.starts, np.uint64(vaddr), side="right")) - 1
        return self.names[i] if i >= 0 and vaddr < int(self.ends[i]) else None


# Elf64_Sym, read a whole table at a time: pyelftools' symbol-by-symbol iteration took 0.6 s for libc.
_ELF64_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                       ("value", "<u8"), ("size", "<u8")])
_STT_FUNC, _STT_GNU_IFUNC, _STB_LOCAL = 2, 10, 0


DEBUG_DIR = "/usr/lib/debug/.build-id"   # where distributions install separate debug symbols (libc6-dbg)


def load_elf_symbols(path: str) -> ElfSymbols | None:
    """The function symbols of the 64-bit little-endian ELF file at ``path`` (None when it is not one,
    or cannot be read): its ``.symtab``, else that of its separate debug file (found by build id), else its
    ``.dynsym``."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.elfclass != 64 or not elf.little_endian:
                return None
            segments = [(s["p_offset"], s["p_filesz"], s["p_vaddr"]) for s in elf.iter_segments()
                        if s["p_type"] == "PT_LOAD"]
            rows = _table_rows(elf, ".symtab") or _debug_file_rows(_build_id(elf)) or _table_rows(elf, ".dynsym")
    except (OSError, ELFError, ValueError, IndexError):
        return None
    rows.sort()
    return ElfSymbols(np.array([r[0] for r in rows], np.uint64), np.array([r[1] for r in rows], np.uint64),
                      [r[2] for r in rows], segments)


def _table_rows(elf, section_name: str) -> list[tuple[int, int, str]]:
    table = elf.get_section_by_name(section_name)
    if table is None or table["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
        return []
    strings = elf.get_section(table["sh_link"]).data()
    return _function_rows(np.frombuffer(table.data(), _ELF64_SYM), strings)


def _build_id(elf) -> str | None:
    section = elf.get_section_by_name(".note.gnu.build-id")
    if section is None or section["sh_type"] != "SHT_NOTE":
        return None
    return next((note["n_desc"] for note in section.iter_notes() if note["n_type"] == "NT_GNU_BUILD_ID"), None)


def _debug_file_rows(build_id: str | None) -> list[tuple[int, int, str]]:
    """The .symtab of the separate debug file of this build (same addresses as the file itself)."""
    from elftools.elf.elffile import ELFFile

    if not build_id or len(build_id) < 3:
        return []
    try:
        with open(os.path.join(DEBUG_DIR, build_id[:2], build_id[2:] + ".debug"), "rb") as f:
            return _table_rows(ELFFile(f), ".symtab")
    except OSError:
        return []


def _function_rows(table: np.ndarray, strings: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of the defined, sized functions. Aliases at one address keep a global or weak
    one with the shortest name, so ``getpid`` wins over ``__getpid``."""
    kind = table["info"] & 0xF
    keep = ((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC)) & (table["shndx"] != 0) & (table["size"] > 0)
    best: dict[int, tuple[int, int, int, str]] = {}
    for sym in table[keep].tolist():
        name_at, info, _, _, value, size = sym
        name = strings[name_at:strings.index(b"\0", name_at)].decode(errors="replace")
        rank = (1 if info >> 4 == _STB_LOCAL else 0, len(name))
        if value not in best or rank < best[value][:2]:
            best[value] = (*rank, value + size, name)
    return [(start, end, name) for start, (_, _, end, name) in best.items()]


class Symbolizer:
    """Names for (pid, ip) pairs. ``remember(pid, maps_text)`` is given every /proc/PID/maps read while
    the process lives, so its instructions can still be named after it exited."""

    def __init__(self) -> None:
        self._mappings: dict[int, list[CodeMapping]] = {}
        self._starts: dict[int, np.ndarray] = {}
        self._names: dict[int, dict[int, str]] = {}
        self._elves: dict[tuple, ElfSymbols | None] = {}
        self._files: dict[tuple[int, str], tuple | None] = {}   # (pid, path) -> cache key, while it lives

    def remember(self, pid: int, maps_text: str) -> None:
        """Keep the executable mappings of ``pid`` from a maps read (a changed set forgets cached names)."""
        mappings = parse_code_mappings(maps_text)
        if mappings != self._mappings.get(pid):
            self._mappings[pid] = mappings
            self._starts[pid] = np.array([m.start for m in mappings], np.uint64)
            self._names.pop(pid, None)
            for path in {m.path for m in mappings if m.path.startswith("/")}:
                self._files.setdefault((pid, path), self._file_key(pid, path))

    def forget(self, pid: int) -> None:
        """``pid`` exec'd: its old image's mappings would name the new image's code wrongly."""
        for store in (self._mappings, self._starts, self._names):
            store.pop(pid, None)
        for key in [k for k in self._files if k[0] == pid]:
            del self._files[key]

    def names(self, pid: int, ips: Iterable[int]) -> list[str]:
        """The name of each instruction pointer of process ``pid``."""
        cache = self._names.setdefault(pid, {})
        out = []
        for ip in ips:
            name = cache.get(ip)
            if name is None:
                name = cache[ip] = self._name(pid, int(ip))
            out.append(name)
        return out

    def _name(self, pid: int, ip: int) -> str:
        if ip >= KERNEL_START:
            return "[kernel]"
        if ip == BEFORE_EXEC:
            return "[before exec]"
        mapping = self._mapping(pid, ip)
        if mapping is None:
            return "[unknown]"
        if not mapping.path.startswith("/"):
            return f"{mapping.path or '[anon]'}+{ip - mapping.start:#x}"
        file_offset = ip - mapping.start + mapping.offset
        base = os.path.basename(mapping.path.removesuffix(" (deleted)"))
        key = self._files.get((pid, mapping.path))
        symbols = self._symbols(key) if key is not None else None
        vaddr = symbols.vaddr(file_offset) if symbols is not None else None
        if symbols is None or vaddr is None:
            return f"{base}+{file_offset:#x}"   # no symbols of this very file: its file offset, honestly
        return symbols.name(vaddr) or f"{base}+{vaddr:#x}"

    def _mapping(self, pid: int, ip: int) -> CodeMapping | None:
        starts = self._starts.get(pid)
        if starts is None or not len(starts):
            return None
        i = int(np.searchsorted(starts, np.uint64(ip), side="right")) - 1
        mapping = self._mappings[pid][i] if i >= 0 else None
        return mapping if mapping is not None and ip < mapping.end else None

    def _file_key(self, pid: int, path: str) -> tuple | None:
        """(path to open, dev, inode, size, mtime) of the file a process maps, read while it lives: through
        /proc/PID/map_files' view of its mount namespace when the path is not the same file here."""
        for candidate in (path, f"/proc/{pid}/root{path}"):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if any(m.path == path and m.inode == st.st_ino for m in self._mappings.get(pid, [])):
                return candidate, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
        return None   # replaced or deleted since it was mapped: its symbols are not this file's

    def _symbols(self, key: tuple) -> ElfSymbols | None:
        """The file's symbols, cached by (dev, inode, size, mtime); a file changed since the process mapped
        it has none (its symbols would name other code)."""
        path, identity = key[0], key[1:]
        if identity not in self._elves:
            try:
                st = os.stat(path)
            except OSError:
                return None
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != identity:
                return None
            self._elves[identity] = load_elf_symbols(path)
        return self._elves[identity]
