"""Opening the files damon-bpf writes. It runs as root and its outputs reveal a process's exact fault
addresses, so every command opens its outputs here:

- a name the kernel cannot take (empty, a component over 255 bytes) is refused before anything starts;
- the final component is opened with O_NOFOLLOW: a symlink is followed only when we (our euid) own it, so a
  link planted by another user (in /tmp or anywhere) is refused, whatever ``fs.protected_symlinks`` says;
- an existing regular file must be ours and have one link (a planted file or hard link is refused, whatever
  ``fs.protected_regular`` / ``protected_hardlinks`` say);
- a device or FIFO is written through where a stream makes sense, refused where a file is needed, and never
  replaced, chmod-ed or truncated;
- what we create or truncate is made 0600 with fchmod after the open, whatever the umask.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import tempfile
from dataclasses import dataclass

from damon_bpf.errors import DamonBpfError, UsageError

NAME_MAX = 255      # bytes in one path component (Linux)
PATH_MAX = 4096     # bytes in a path, with its terminating NUL
_MAX_LINKS = 8      # symlinks followed before giving up (the kernel allows 40; ours are rare)
MODE = 0o600


def check_name(path: str, what: str) -> None:
    """Refuse a name no file can have, at start rather than at the first write."""
    if not path:
        raise UsageError(f"{what}: the file name is empty")
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise UsageError(f"{what}: the file name holds a NUL byte")
    longest = max(len(part) for part in raw.split(b"/"))
    if len(raw) >= PATH_MAX or longest > NAME_MAX:
        raise UsageError(f"{what}: the file name {path[:40]}... is too long (Linux takes {NAME_MAX} bytes a "
                         f"component, {PATH_MAX - 1} a path; this has {longest} and {len(raw)})")


def _sticky_world_writable(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWOTH)


def resolve(path: str, what: str) -> str:
    """``path`` with its final-component symlinks followed, but only links we own; any other link is refused.

    The kernel's protected_symlinks refuses, in a sticky world-writable directory, a link whose owner is
    neither the follower nor the directory's owner; we are stricter and independent of the sysctl."""
    for _ in range(_MAX_LINKS):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        except OSError as err:
            raise DamonBpfError(f"cannot write {what} {path}: {err.strerror}") from None
        if not stat.S_ISLNK(st.st_mode):
            return path
        if st.st_uid != os.geteuid():
            parent = os.stat(os.path.dirname(os.path.abspath(path)))
            where = " in a sticky world-writable directory" if _sticky_world_writable(parent) else ""
            raise DamonBpfError(f"refusing to write {what} {path}: it is a symlink owned by uid {st.st_uid}"
                                f"{where}, not by us (remove it or name the file it points to)")
        target = os.readlink(path)
        if path.startswith("/proc/") and not target.startswith("/"):
            return path   # a /proc magic link (/dev/stdout to a pipe: "pipe:[...]"): only the kernel can follow it
        path = os.path.join(os.path.dirname(path), target)
    raise DamonBpfError(f"cannot write {what} {path}: too many levels of symlinks")


def _check_regular(st: os.stat_result, path: str, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise DamonBpfError(f"refusing to write {what} {path}: the file belongs to uid {st.st_uid}, not us "
                            "(another user could read what we write; remove it or choose another name)")
    if st.st_nlink > 1:
        raise DamonBpfError(f"refusing to write {what} {path}: the file has {st.st_nlink} hard links "
                            "(writing it would change the other names too)")


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


@dataclass
class Output:
    """An opened output: ``fd`` is ours to write and close; ``regular`` tells a file from a device/FIFO."""

    fd: int
    path: str
    regular: bool

    def stream(self):
        """A binary stream on the fd (it owns the fd from now on)."""
        return os.fdopen(self.fd, "wb")


def open_output(path: str, what: str, *, stdout_ok: bool = False, devices_ok: bool = True) -> Output:
    """Open ``path`` for writing (truncated if a regular file) under the rules above.

    ``-`` is stdout where ``stdout_ok``, else refused; ``devices_ok`` lets a device or FIFO be written through
    (a regular file is needed otherwise)."""
    if path == "-":
        if not stdout_ok:
            raise UsageError(f"{what} cannot be '-' (stdout): it needs a file")
        return Output(os.dup(sys.stdout.fileno()), "-", regular=False)
    check_name(path, what)
    real = resolve(path, what)
    if not devices_ok:
        check_replaceable(real, what)
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | (0 if os.path.islink(real) else os.O_NOFOLLOW)
    try:
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            fd = os.open(real, flags | os.O_CREAT | os.O_EXCL, MODE)
    except OSError as err:
        raise _open_error(err, real, what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if not devices_ok or stat.S_ISDIR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                raise DamonBpfError(f"{what} {path} is a {_kind(st.st_mode)}, not a regular file")
            return Output(fd, path, regular=False)   # written through; never truncated or chmod-ed
        _check_regular(st, path, what)
        os.ftruncate(fd, 0)
        os.fchmod(fd, MODE)
    except BaseException:
        os.close(fd)
        raise
    return Output(fd, path, regular=True)


def _open_error(err: OSError, path: str, what: str) -> DamonBpfError:
    if err.errno == errno.ELOOP:   # a link appeared between our check and the open
        return DamonBpfError(f"refusing to write {what} {path}: it is a symlink")
    if err.errno == errno.EEXIST:
        return DamonBpfError(f"cannot write {what} {path}: another process created it while we opened it")
    return DamonBpfError(f"cannot write {what} {path}: {err.strerror}")


def open_output_stream(path: str, what: str, *, stdout_ok: bool = False):
    """open_output as a binary stream (devices and FIFOs written through)."""
    return open_output(path, what, stdout_ok=stdout_ok).stream()


def check_replaceable(path: str, what: str) -> None:
    """A file we may replace by renaming a new one over it: none yet, or a regular file of ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise DamonBpfError(f"cannot write {what} {path}: {err.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DamonBpfError(f"refusing to write {what} {path}: it is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise DamonBpfError(f"{what} {path} is a {_kind(st.st_mode)}: it needs a regular file (it is never "
                            "replaced)")
    _check_regular(st, path, what)


def create_temp(directory: str, prefix: str, suffix: str) -> tuple[int, str]:
    """A new 0600 file in ``directory``, created with O_EXCL (mkstemp), for an atomic rename later."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.fchmod(fd, MODE)   # mkstemp asks for 0600, which a umask such as 0o200 would still narrow
    return fd, name


def remove_if_ours(path: str) -> None:
    """Unlink a leftover temp file only if it is a regular file of ours (never another user's)."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            os.unlink(path)
    except OSError:
        pass


def lock(fd: int, path: str, what: str) -> None:
    """Take an exclusive lock on an open output; refuse if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DamonBpfError(f"{what} {path} is being written by another damon-bpf; choose another name") from None


def write_text(path: str, text: str, what: str) -> None:
    """Write a small text output (e.g. a JSON summary) under the rules above."""
    with open_output(path, what).stream() as stream:
        try:
            stream.write(text.encode())
        except OSError as err:
            raise DamonBpfError(f"cannot write {what} {path}: {err.strerror}") from None


def private_dir(path: str | os.PathLike, what: str) -> None:
    """Make ``path`` (and missing parents) 0700, then check it is a real directory of ours that nobody else
    can write into; otherwise refuse, since what we keep there (state, compiled-against headers) is trusted."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        old = os.umask(0o077)   # parents too: never group/world-writable, whatever the caller's umask
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        finally:
            os.umask(old)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise DamonBpfError(f"{what} {path} is not a directory (a symlink?): remove it")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise DamonBpfError(f"{what} {path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
                            "others could change what damon-bpf trusts there; remove it (it is rebuilt) or make it "
                            "root's and not group/world-writable")


def replace_file(path: str, data: bytes, what: str) -> None:
    """Write a whole small file atomically: a 0600 temp file beside it, fsync-ed, renamed over ``path`` (none
    yet, or a regular file of ours; a symlink, device or another user's file is refused)."""
    check_name(path, what)
    real = resolve(path, what)
    check_replaceable(real, what)
    fd, tmp = create_temp(os.path.dirname(os.path.abspath(real)), "." + os.path.basename(real) + ".", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        check_replaceable(real, what)   # nothing planted there meanwhile
        os.replace(tmp, real)
    except OSError as err:
        remove_if_ours(tmp)
        raise DamonBpfError(f"cannot write {what} {path}: {err.strerror or err}") from None
    except BaseException:
        remove_if_ours(tmp)
        raise
