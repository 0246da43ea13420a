"""Short commands run to their end or a deadline: tool versions, `git`, verify's checks.

Below every other package (incremental, workspace, verify and audit call it), so it
lives in core; `run/process.py` spawns the build's steps themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from buildlib.core.records import record

POSIX = os.name == "posix"


@record
class Completed:
    """What `run_bounded` saw: the exit code and output, or that the deadline passed."""

    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


OUTPUT_LIMIT = 1 << 20  # bytes of each stream `run_bounded` keeps


def run_bounded(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limit: int = OUTPUT_LIMIT,
    errors: str = "replace",
) -> Completed:
    """Run a short command to its end or its deadline, whatever its children do.

    The child gets a process group of its own, stdin from /dev/null, and its output
    goes to temporary files, not pipes: a grandchild left running with the output
    still open (a daemon a version command starts) cannot hold the caller past the
    deadline, as it can with `communicate`. At the deadline the whole group is killed.
    Raises OSError when the program cannot be started. `limit` bytes of each stream are
    kept, decoded as UTF-8 with `errors` ("surrogateescape" keeps any file name).
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        kwargs: dict[str, object] = (
            {"start_new_session": True}
            if POSIX
            else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        )
        proc = subprocess.Popen(  # type: ignore[call-overload]
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            **kwargs,
        )
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if POSIX:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
            code = None
        return Completed(
            returncode=code,
            stdout=_read_start(out, limit, errors),
            stderr=_read_start(err, limit, errors),
        )


def _read_start(handle: IO[bytes], limit: int, errors: str) -> str:
    handle.seek(0)
    return handle.read(limit).decode("utf-8", errors)
