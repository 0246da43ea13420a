"""Child processes, in one small place: spawn, track, stop, and never leave one behind.

The build's steps start here, through `ProcessTable` (short helper commands, such as
tool versions, verify's checks and target probes, go through `core/bounded.py`).

Every step runs in its own process group, with stdin from /dev/null. A step that
runs in the engine's own directory and logs to a file is started with
`os.posix_spawn` (vfork and exec in C: ~0.2 ms less CPU a step than Popen here, as
much as the step `true` itself); any other with `subprocess.Popen` and
`process_group=0` (which keeps CPython's vfork path, unlike `preexec_fn`), since
posix_spawn cannot change directory. Stopping a step signals its whole group:
SIGTERM, then SIGKILL after a grace period.

If the orchestrator itself dies (even by SIGKILL), a watchdog process (`_watchdog.py`)
notices its pipe closing and kills every group still registered, so no step outlives
the build.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from buildlib.core.errors import UserError

POSIX = os.name == "posix"
_CAN_SPAWN = POSIX and hasattr(os, "posix_spawn")

# The watchdog program (`_watchdog.py`), run by path so that it imports nothing.
WATCHDOG = Path(__file__).with_name("_watchdog.py")
DRAIN_INTERVAL = 0.1  # seconds; how late the watchdog may notice that the build died
_PIPE_SIZE = 1 << 20  # room for ~100,000 messages between two drains (Linux)


def resolve_program(argv: Sequence[str], *, cwd: Path, path: str | None, step: str) -> list[str]:
    """argv with its program resolved through PATH (`shutil.which`, so `npm.cmd` works on Windows).

    A relative path with a separator is taken relative to the step's cwd.
    """
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        given = Path(program)
        candidate = given if given.is_absolute() else cwd / given
        if candidate.exists():
            return [str(candidate), *argv[1:]]
        relative = "" if given.is_absolute() else f" (relative to the step's cwd {cwd})"
        raise UserError(
            f"step '{step}': program '{program}' not found: no file {candidate}{relative}",
            fix="build it in a step this one depends on, or fix the step's `command` "
            "(or `cwd`) in the manifest",
        )
    resolved = shutil.which(program, path=path)
    if resolved is None:
        raise UserError(
            f"step '{step}': program '{program}' not found on PATH",
            fix=f"install {program} or fix the step's `command` in the manifest",
        )
    return [resolved, *argv[1:]]


class SpawnedProcess:
    """A step started with `os.posix_spawn`: the part of Popen's interface used here.

    The job thread waits on it while `stop_all` may poll it; whichever reaps the child
    records the exit code and the other sees it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode  # the other waiter reaped it and is recording it
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    time.sleep(0.001)
                    continue
                self.returncode = os.waitstatus_to_exitcode(status)
            elif self.poll() is None:
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
                time.sleep(0.01)
        return self.returncode


Process = subprocess.Popen[bytes] | SpawnedProcess


def encode_env(env: Mapping[str, str]) -> dict[bytes, bytes]:
    """The environment as bytes, once, for `ProcessTable.spawn`."""
    return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


class ProcessTable:
    """The live children of this build, under a lock, mirrored to the watchdog."""

    def __init__(self, *, grace: float = 5.0) -> None:
        self.grace = grace
        self._lock = threading.Lock()
        self._live: dict[int, Process] = {}
        self._cwd = str(Path.cwd())  # where posix_spawn'd steps run
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_fd = -1  # its stdin, written with os.write: one syscall a message
        self._stopping = False
        self._devnull: int | None = None  # every step's stdin, opened once per build

    def _ensure_watchdog(self) -> None:
        if not POSIX or self._watchdog is not None:
            return
        # -I -S: no site, no environment, no user directory: it starts in ~7 ms instead of
        # 12-40 ms, and `close` waits for it to have started.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WATCHDOG), str(self.grace), str(DRAIN_INTERVAL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        import fcntl  # POSIX only, as the watchdog

        assert self._watchdog.stdin is not None
        self._watchdog_fd = self._watchdog.stdin.fileno()
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # a full pipe only delays a spawn until a drain
                fcntl.fcntl(self._watchdog_fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._watchdog_fd, line.encode() + b"\n")

    def spawn(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[bytes, bytes], stdout: IO[bytes] | int
    ) -> Process:
        """Start `argv` in a new process group with stdout+stderr to `stdout`: a file, a
        descriptor, or `subprocess.PIPE`.

        `env` is already encoded (see `encode_env`): Popen would otherwise encode every
        variable again for every step. The lock is not held while forking, so two job
        threads spawn at once; a child started after `stop_all` began is killed here (its
        job thread reaps it; `Executor.run` waits for the job threads when a build crashes).
        """
        with self._lock:
            self._ensure_watchdog()
            if self._devnull is None:
                self._devnull = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        proc: Process
        out = stdout if isinstance(stdout, int) else stdout.fileno()  # PIPE is negative
        if _CAN_SPAWN and out >= 0 and str(cwd) == self._cwd:
            # argv[0] is already resolved (see resolve_program). Every descriptor this
            # process opens is close-on-exec (PEP 446), so only 0-2 reach the child.
            proc = SpawnedProcess(
                os.posix_spawn(
                    argv[0],
                    list(argv),
                    env,
                    setpgroup=0,
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores them; as Popen
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, self._devnull, 0),
                        (os.POSIX_SPAWN_DUP2, out, 1),
                        (os.POSIX_SPAWN_DUP2, out, 2),
                    ],
                )
            )
        else:
            kwargs: dict[str, object] = (
                {"process_group": 0}
                if POSIX
                else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
            )
            proc = subprocess.Popen(  # type: ignore[call-overload]
                list(argv),
                cwd=cwd,
                env=env,
                stdin=self._devnull,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                close_fds=True,
                **kwargs,
            )
        with self._lock:
            self._live[proc.pid] = proc
            self._tell_watchdog(f"+{proc.pid}")
            stopping = self._stopping
        if stopping:  # the build is being torn down: this step never got to do anything
            if POSIX:
                _signal_group(proc.pid, signal.SIGKILL)
            else:
                _terminate(proc)
        return proc

    def release(self, proc: Process) -> None:
        """Forget a child that has exited, after killing anything left in its group."""
        if POSIX:
            _signal_group(proc.pid, signal.SIGKILL)  # daemonised leftovers of a finished step
        with self._lock:
            self._live.pop(proc.pid, None)
            self._tell_watchdog(f"-{proc.pid}")

    def stop(self, proc: Process, *, force: threading.Event | None = None) -> int:
        """Stop one child's whole group and forget it: SIGTERM, then SIGKILL once the
        group is still alive after the grace period (at once if `force` gets set
        meanwhile: a second Ctrl-C). Waits for the group to be empty, not just for
        its leader, so a server's worker that outlives it is stopped too. Returns the
        leader's exit code. Used by `watch` to restart or stop a service."""
        _terminate(proc)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            if force is not None and force.is_set():
                break
            time.sleep(0.02)
        if POSIX:
            _signal_group(proc.pid, signal.SIGKILL)
        elif isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.kill()
        code = proc.wait()
        self.release(proc)
        return code

    def stop_all(self) -> list[int]:
        """SIGTERM every live group, SIGKILL what is left after the grace period."""
        with self._lock:
            self._stopping = True
            procs = list(self._live.values())
        for proc in procs:
            _terminate(proc)
        deadline = time.monotonic() + self.grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if POSIX:
                _signal_group(proc.pid, signal.SIGKILL)
            elif isinstance(proc, subprocess.Popen) and proc.poll() is None:
                proc.kill()  # only Popen runs steps off POSIX
            proc.wait()
        return [p.pid for p in procs]

    def close(self) -> None:
        """End the watchdog: every step has been released, so it has nothing to kill, and
        SIGKILL ends it at once instead of at its next drain."""
        with self._lock:
            watchdog, self._watchdog = self._watchdog, None
            self._watchdog_fd = -1
            devnull, self._devnull = self._devnull, None
        if devnull is not None:
            os.close(devnull)
        if watchdog is not None:
            watchdog.kill()
            if watchdog.stdin is not None:
                watchdog.stdin.close()
            watchdog.wait()


def _terminate(proc: Process) -> None:
    if POSIX:
        _signal_group(proc.pid, signal.SIGTERM)
    elif isinstance(proc, subprocess.Popen) and proc.poll() is None:
        proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (its reaped leader's included: no)."""
    if not POSIX:
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
