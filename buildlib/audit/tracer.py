"""Run a command under `strace -f` and say which files its process tree touched.

The audit (`buildlib audit`) calls `trace_command` once per step; `find_strace` is
called first, so a machine without strace gets one error with the install command
before anything runs. The command's exit code is passed through; what it did comes
back as a `TraceResult` of absolute paths (`accesses.parse_strace`).

Blind spots, stated where they are handled: file operations submitted through io_uring
make no system call (libuv's use of it is turned off with `UV_USE_IO_URING=0`; any other
user is named in the result's warnings), and `mmap` of an already open file, or reads
through a descriptor inherited from outside the tree, are not opens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from buildlib.audit.accesses import parse_strace
from buildlib.audit.trace_result import TraceResult, normalize
from buildlib.core.errors import UserError
from buildlib.core.records import replace

INSTALL_HINT = "apt-get install strace"

# Names prefixed with "?" may not exist on every architecture (aarch64 has no open, stat,
# fork, rename...): strace skips them there instead of refusing to start.
TRACED_SYSCALLS: tuple[str, ...] = (
    # content opens
    "?open",
    "openat",
    "?openat2",
    "?creat",
    # metadata lookups
    "?stat",
    "?lstat",
    "?newfstatat",
    "?fstatat64",
    "?statx",
    "?access",
    "faccessat",
    "?faccessat2",
    "?readlink",
    "readlinkat",
    # directory listings (which directories' entries were read)
    "getdents64",
    "?getdents",
    # programs
    "execve",
    "execveat",
    # namespace changes
    "?rename",
    "?renameat",
    "?renameat2",
    "?unlink",
    "unlinkat",
    "?rmdir",
    "?mkdir",
    "mkdirat",
    "?mknod",
    "mknodat",
    "?link",
    "linkat",
    "?symlink",
    "symlinkat",
    "truncate",
    # metadata changes
    "?chmod",
    "fchmodat",
    "?chown",
    "?lchown",
    "fchownat",
    "?utime",
    "?utimes",
    "utimensat",
    "?futimesat",
    # cwd and the process tree
    "chdir",
    "fchdir",
    "?fork",
    "?vfork",
    "clone",
    "?clone3",
    # blind spot: file operations submitted through io_uring make no system call
    "?io_uring_setup",
)

# libuv (node) sends file operations through io_uring when this is 1, out of strace's
# sight; trace_command turns it off (it only changes how libuv waits).
NO_IO_URING_ENV = {"UV_USE_IO_URING": "0"}

# execve's argv strings are cut at this many bytes (paths are not: strace prints them up
# to PATH_MAX whatever -s says).
ARGV_STRSIZE = 4096


class TracerError(UserError):
    """strace could not trace the command (missing, refused by the kernel, bad option)."""


class StraceNotFoundError(TracerError):
    """strace is not installed."""


def find_strace(search_path: str | None = None) -> str:
    """The strace binary on `search_path` (default: this process's PATH), or a
    StraceNotFoundError whose fix is the install command."""
    if search_path is None:
        search_path = os.environ.get("PATH", os.defpath)
    found = shutil.which("strace", path=search_path)
    if found is None:
        raise StraceNotFoundError(
            "strace is needed to trace build steps (`buildlib audit`) but is not on PATH",
            fix=f"{INSTALL_HINT} (Debian/Ubuntu; `dnf install strace` on Fedora)",
        )
    return found


def strace_argv(
    argv: Sequence[str],
    trace_file: str | os.PathLike[str],
    *,
    strace: str = "strace",
    seccomp_bpf: bool = True,
) -> list[str]:
    """The full command line that runs argv under strace, logging to trace_file."""
    cmd = [
        strace,
        "-f",  # follow forks, vforks, clones (threads)
        "-q",  # no attach/detach lines; keep "+++ exited" (pid reuse)
        "-y",  # fd arguments with their path: AT_FDCWD</cwd>, 3</dir>
        "-e",
        "signal=none",  # no signal lines
        "-e",
        "trace=" + ",".join(TRACED_SYSCALLS),
        "-s",
        str(ARGV_STRSIZE),
        "-o",
        os.fspath(trace_file),
    ]
    if seccomp_bpf:
        cmd.append("--seccomp-bpf")  # stop only on traced calls (falls back if unsupported)
    cmd.append("--")
    cmd.extend(argv)
    return cmd


def trace_command(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None,
    log_dir: str | os.PathLike[str],
    output: IO[bytes] | int | None = None,
    seccomp_bpf: bool = True,
    timeout: float | None = None,
) -> TraceResult:
    """Run argv in cwd with env (None: this process's) under strace and parse what it did.

    `UV_USE_IO_URING=0` is added to the environment (see NO_IO_URING_ENV). The trace goes
    to `log_dir/strace.log`; the command's stdout and stderr go to `output` (a binary
    file or fd), by default `log_dir/output.log`. The exit code is the command's,
    negative for a signal as with subprocess. The command runs in a session of its own;
    on a timeout, an interrupt or any other exception while waiting, the whole tree is
    killed before the exception goes on. Raises StraceNotFoundError when strace is
    missing, FileNotFoundError when argv[0] is, TracerError when strace could not
    trace, and subprocess.TimeoutExpired on a timeout.
    """
    if not argv:
        raise ValueError("empty argv")
    strace = find_strace()
    cwd_abs = os.path.abspath(os.fspath(cwd))  # noqa: PTH100 - str paths throughout
    full_env = {**(env if env is not None else os.environ), **NO_IO_URING_ENV}
    program = argv[0]
    if "/" in program:
        if not Path(cwd_abs, program).exists():
            raise FileNotFoundError(f"{program}: no such file (in {cwd_abs})")
    elif shutil.which(program, path=full_env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(f"{program}: not found on PATH")
    logs = Path(log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    trace_file = logs / "strace.log"
    output_file: Path | None = None
    cmd = strace_argv(argv, trace_file, strace=strace, seccomp_bpf=seccomp_bpf)
    own_output: IO[bytes] | None = None
    if output is None:
        output_file = logs / "output.log"
        own_output = output_file.open("wb")
        output = own_output
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd_abs,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group, to kill the whole tree
        )
        try:
            exit_code = proc.wait(timeout=timeout)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
    finally:
        if own_output is not None:
            own_output.close()
    if not trace_file.exists() or trace_file.stat().st_size == 0:
        tail = ""
        if output_file is not None:
            tail = output_file.read_bytes()[-2000:].decode("utf-8", "replace").strip()
        raise TracerError(
            f"strace produced no trace for {list(argv)!r} (exit {exit_code}); output: {tail}",
            fix="allow ptrace here: containers need CAP_SYS_PTRACE (docker run --cap-add "
            "SYS_PTRACE) or seccomp=unconfined; check kernel.yama.ptrace_scope",
        )
    with trace_file.open("r", encoding="latin-1", newline="\n") as lines:
        result = parse_strace(lines, cwd=cwd_abs, exit_code=exit_code)
    return replace(with_filesystem_facts(result), trace_file=trace_file, output_file=output_file)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def with_filesystem_facts(result: TraceResult) -> TraceResult:
    """After the run: opens of directories without O_DIRECTORY are metadata, not content;
    a `#!` script's interpreter was executed too (the kernel opens it)."""
    dirs = frozenset(p for p in result.read if Path(p).is_dir())
    executed = set(result.executed)
    for prog in result.executed:
        interp = shebang_interpreter(prog)
        if interp is not None:
            executed.add(interp)
    if not dirs and len(executed) == len(result.executed):
        return result
    touched = result.written | result.created | result.deleted | frozenset(executed)
    return replace(
        result,
        read=result.read - dirs,
        stat_only=result.stat_only | (dirs - touched),
        inputs=result.inputs - dirs,
        executed=frozenset(executed),
    )


def shebang_interpreter(path: str) -> str | None:
    """The absolute interpreter a `#!` line names, or None (not a script, unreadable)."""
    try:
        with open(path, "rb") as f:  # noqa: PTH123 - str paths throughout
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    first = head[2:].split(b"\n", 1)[0].strip().split()
    if not first or not first[0].startswith(b"/"):
        return None
    return normalize(os.fsdecode(first[0]))
