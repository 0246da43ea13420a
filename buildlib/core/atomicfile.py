"""Whole-file writes that a reader (or a killed writer) can never see half done.

Write to a temporary file in the same directory, then `os.replace` it over the
target: the rename is atomic, so the path holds the old content or the new one. The
temporary file is removed if anything fails. `durable=True` adds an fsync before the
rename, for files that must survive a power loss, not only a killed process.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shlex
import stat
import threading
from pathlib import Path

from buildlib.core.errors import UserError

_unique = itertools.count()  # with the pid and thread: a name no other writer is using


def write_bytes_atomic(
    path: Path, data: bytes, *, durable: bool = False, mode: int = 0o644
) -> None:
    """`data` at `path`, made with `mode` less the umask, as any new file is (the
    cache's blobs too): a user whose umask is 077 keeps reports and logs' excerpts to
    themselves, a group that shares a checkout with 002 shares them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: importing tempfile (random, shutil...) costs ~3 ms at every
    # engine start. O_EXCL refuses a name that exists, as mkstemp does.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:  # a killed writer with the same pid may have left its name behind
        temp = path.with_name(
            f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_unique)}.tmp"
        )
        try:
            fd = os.open(temp, flags, mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        temp.replace(path)
    except IsADirectoryError:  # rename(2) over a directory: not ours to empty
        temp.unlink(missing_ok=True)
        raise _a_directory(path) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _a_directory(path: Path | str) -> UserError:
    return UserError(
        f"{path} is a directory, where buildlib keeps a file",
        fix=f"remove it (rm -r {shlex.quote(os.fspath(path))})",
    )


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of `data` to `fd`: os.write may take part of it. A write that takes nothing
    and reports no error (an odd file system) raises instead of looping for ever."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "the file took no bytes")
        view = view[written:]


def open_own(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """os.open for a file the engine keeps under `.buildlib/` (a lock, a log, the
    journal): never through a symlink, and never into a FIFO or a device, found at
    `path` (a repository or an archive can ship one). Such an entry is removed and a
    file of our own made in its place."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX: a FIFO opens without a writer
    flags |= nonblocking | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(3):  # another process may be replacing the same entry
        try:
            fd = os.open(path, flags, mode)
        except OSError as exc:
            if exc.errno == errno.EISDIR:  # not ours to empty: someone put it there
                raise _a_directory(path) from None
            if not _planted(path):
                raise
            _remove(path)
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            if nonblocking:
                os.set_blocking(fd, True)
            return fd
        os.close(fd)
        _remove(path)
    raise OSError(errno.ELOOP, "something keeps replacing this file", os.fspath(path))


def _planted(path: Path | str) -> bool:
    """Neither a regular file nor a directory: a symlink, a FIFO, a device, a socket."""
    try:
        kind = stat.S_IFMT(os.lstat(path).st_mode)
    except OSError:
        return False
    return kind not in (stat.S_IFREG, stat.S_IFDIR)


def _remove(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # noqa: PTH108


# Reading a file the engine keeps under `.buildlib/`: never through a symlink at its
# place, never waiting for a writer of a FIFO.
_READ_OWN = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def read_own_at(path: Path | str, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset` of a file the engine keeps under `.buildlib/`
    (the head of the journal, the last byte of the history). Raises OSError, ESPIPE
    for a FIFO."""
    fd = os.open(path, _READ_OWN)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def read_own(path: Path | str, limit: int) -> bytes | None:
    """The content of a file the engine keeps under `.buildlib/`, if it is a regular
    file of at most `limit` bytes reached without a symlink at its place; else None (a
    FIFO, a device or a sparse giant a repository or an archive shipped)."""
    try:
        fd = os.open(path, _READ_OWN)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)  # before fdopen, which refuses a directory
        return None
    with os.fdopen(fd, "rb") as stream:
        try:
            return stream.read(limit + 1)
        except OSError:
            return None


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    # A file name that is not UTF-8 (read by os.listdir as a lone surrogate, such as
    # \udce9) is written as that escape: a report never fails for one, and its JSON
    # reads back the same name.
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"), durable=durable)
