"""One build at a time per workspace, with a lock the kernel releases if the holder dies.

`flock` on `.buildlib/lock`: a process killed by SIGKILL cannot leave it held.
The holder's pid and start time are written into the file for the waiting message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from buildlib.core.atomicfile import make_own_dirs, open_own
from buildlib.core.errors import LockBusyError, UserError

if sys.platform != "win32":
    import fcntl


@contextlib.contextmanager
def workspace_lock(path: Path, *, wait: bool, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock at `path` for the duration; wait (telling `on_wait` once) or fail at once."""
    if path.parent.is_symlink():  # before mkdir: a dangling one would make it fail
        raise UserError(
            f"{path.parent} is a symlink: the engine keeps its state there and writes "
            "only into a directory of its own (a repository may have shipped this one)",
            fix=f"remove it (`rm {path.parent}`) and build again",
        )
    make_own_dirs(path.parent)
    if sys.platform == "win32":  # no flock: builds are not serialised there
        on_wait("workspace locking is not available on this platform")
        yield
        return
    fd = open_own(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise LockBusyError(
                    f"another build is running in this workspace ({holder})",
                    fix="wait for it to finish, or run again without --no-wait to queue behind it",
                ) from None
            on_wait(
                f"another build is running in this workspace ({holder}); waiting for it "
                "to finish (--no-wait fails at once instead)"
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
