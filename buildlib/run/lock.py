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

from buildlib.core.atomicfile import open_own
from buildlib.core.errors import LockBusyError
from buildlib.core.layout import BuildDir

if sys.platform != "win32":
    import fcntl


@contextlib.contextmanager
def workspace_lock(
    build_dir: BuildDir, *, wait: bool, on_wait: Callable[[str], None]
) -> Iterator[None]:
    """Hold the workspace's lock for the duration; wait (telling `on_wait` once) or fail
    at once. First, `.buildlib/` is checked and the places of the engine's directories
    cleared of what a repository may have shipped there (`BuildDir.own`): everything a
    build writes, it writes under this lock."""
    build_dir.own()  # before mkdir: a symlinked .buildlib is refused, not followed
    path = build_dir.lock
    path.parent.mkdir(parents=True, exist_ok=True)
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
