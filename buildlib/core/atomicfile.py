"""Whole-file writes that a reader (or a killed writer) can never see half done.

Write to a temporary file in the same directory, then `os.replace` it over the
target: the rename is atomic, so the path holds the old content or the new one. The
temporary file is removed if anything fails. `durable=True` adds an fsync before the
rename, for files that must survive a power loss, not only a killed process.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

_unique = itertools.count()  # with the pid and thread: a name no other writer is using


def write_bytes_atomic(
    path: Path, data: bytes, *, durable: bool = False, mode: int = 0o644
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: importing tempfile (random, shutil...) costs ~3 ms at every
    # engine start. O_EXCL refuses a name that exists, as mkstemp does.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:  # a killed writer with the same pid may have left its name behind
        temp = path.with_name(
            f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_unique)}.tmp"
        )
        try:
            fd = os.open(temp, flags, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        temp.chmod(mode)  # as mkstemp's files, created 0600 and then opened up
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def open_own(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """os.open for a file the engine keeps under `.buildlib/` (a log, the journal): a
    symlink found at `path` was planted there (a repository can ship one), so it is
    removed and a file of our own made, never followed to what it names."""
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, mode)
    except OSError:
        if not os.path.islink(path):  # noqa: PTH114 - str or Path alike
            raise
    os.unlink(path)  # noqa: PTH108
    return os.open(path, flags, mode)


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)
