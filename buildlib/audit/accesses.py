"""System calls turned into the file accesses of a process tree (`parse_strace`).

How paths are resolved: strace's `-y` prints every file-descriptor argument with the
path the kernel has for it, including `AT_FDCWD</the/cwd>` for the `*at` calls, so a
relative path is joined to the directory the kernel itself used. The calls without a
dirfd (`open`, `execve`, `rename`, `mkdir`, `chdir`...) use each pid's cwd as tracked
here: set by `chdir`/`fchdir`, shared between threads (`CLONE_FS`), copied to children
on `fork`/`vfork`/`clone`, and corrected by every `AT_FDCWD<...>` seen. The directory
part of such a path is therefore the kernel's (symlinks resolved); the last components
are as the program spelled them, normalized lexically (`a/../b` is `b`).

Each pid's current program is tracked the same way (copied on fork, replaced on
exec), so every `Exec` names its launcher.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable

from buildlib.audit.strace_log import EXIT, Call, fd_path, iter_calls, parse_argv, path_of
from buildlib.audit.trace_result import Exec, TraceResult, normalize

_FD = re.compile(r"(AT_FDCWD|-?\d+)(?:<(.*)>)?$", re.S)
_PROBE_ERRNOS = frozenset({"ENOENT", "ENOTDIR"})
_WRITE_FLAGS = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"})
_STAT_CALLS = frozenset(
    {
        "stat",
        "lstat",
        "newfstatat",
        "fstatat64",
        "statx",
        "access",
        "faccessat",
        "faccessat2",
        "readlink",
        "readlinkat",
    }
)
_META_CALLS = frozenset(
    {
        "chmod",
        "fchmodat",
        "chown",
        "lchown",
        "fchownat",
        "utime",
        "utimes",
        "utimensat",
        "futimesat",
    }
)
# Calls whose first argument is a dirfd (the path is the second).
_AT_FIRST = frozenset(
    {
        "openat",
        "openat2",
        "newfstatat",
        "fstatat64",
        "statx",
        "faccessat",
        "faccessat2",
        "readlinkat",
        "execveat",
        "unlinkat",
        "mkdirat",
        "mknodat",
        "fchmodat",
        "fchownat",
        "utimensat",
        "futimesat",
    }
)


class _Cwd:
    """A cwd cell: threads created with CLONE_FS share one."""

    __slots__ = ("path",)

    def __init__(self, path: str | None) -> None:
        self.path = path


class _Accumulator:
    """Turns calls into the sets of a TraceResult, tracking each pid's cwd and program."""

    def __init__(self, cwd: str) -> None:
        self.root_cwd = normalize(os.path.abspath(cwd))  # noqa: PTH100 - str paths throughout
        self.cwd: dict[int, _Cwd] = {}
        self.program: dict[int, str | None] = {}
        self.orphans: dict[int, list[Call]] = {}
        self.warnings: list[str] = []
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.created: set[str] = set()
        self.deleted: set[str] = set()
        self.renamed: list[tuple[str, str]] = []
        self.probed: set[str] = set()
        self.statted: set[str] = set()
        self.listed: set[str] = set()
        self.meta: set[str] = set()
        self.executed: set[str] = set()
        self.execs: list[Exec] = []
        self.exists: dict[str, bool] = {}  # what the trace has shown so far
        self.inputs: set[str] = set()
        self.produced: dict[str, bool] = {}  # path -> left in place by the command
        self.gone: set[str] = set()  # existed before the command, deleted or moved away
        self.uring_pids: set[int] = set()

    # -- process tree

    def feed(self, call: Call) -> None:
        if call.pid in self.orphans:
            self.orphans[call.pid].append(call)
            return
        if call.pid not in self.cwd:
            if not self.cwd:
                self.cwd[call.pid] = _Cwd(self.root_cwd)  # the first pid: the command
                self.program[call.pid] = None
            else:
                # A child whose parent's clone has not returned yet (vfork, or the child
                # ran first): wait for the clone that names it.
                self.orphans.setdefault(call.pid, []).append(call)
                return
        self._apply(call)

    def finish(self) -> None:
        for pid, calls in list(self.orphans.items()):
            self.warnings.append(f"pid {pid}: parent unknown, cwd assumed {self.root_cwd}")
            self.cwd[pid] = _Cwd(self.root_cwd)
            self.program[pid] = None
            for c in calls:
                self._apply(c)
        self.orphans.clear()

    def _adopt(self, parent: int, child: int, share: bool) -> None:
        cell = self.cwd[parent]
        self.cwd[child] = cell if share else _Cwd(cell.path)
        self.program[child] = self.program.get(parent)
        for c in self.orphans.pop(child, []):
            self._apply(c)

    # -- paths

    def _dir(self, pid: int, fd_token: str | None) -> str | None:
        """The directory a dirfd argument stands for (AT_FDCWD: the cwd)."""
        cell = self.cwd[pid]
        if fd_token is None:
            return cell.path
        m = _FD.match(fd_token)
        if m is None:
            return None
        if m.group(2) is not None:
            path = fd_path(m.group(2))
            if m.group(1) == "AT_FDCWD" and path.startswith("/"):
                cell.path = path  # the kernel's word on this pid's cwd
            return path if path.startswith("/") else None
        return cell.path if m.group(1) == "AT_FDCWD" else None

    def _resolve(self, pid: int, fd_token: str | None, path_token: str) -> str | None:
        path = path_of(path_token)
        if path is None:
            return None
        if path.startswith("/"):
            if fd_token is not None:
                self._dir(pid, fd_token)  # still learn the cwd
            return normalize(path)
        base = self._dir(pid, fd_token)
        if base is None:
            self.warnings.append(f"pid {pid}: cannot resolve {path!r} (dirfd {fd_token})")
            return None
        if path == "":
            return normalize(base)
        return normalize(posixpath.join(base, path))

    # -- bookkeeping

    def _mark_read(self, path: str) -> None:
        self.read.add(path)
        self.exists[path] = True
        if path not in self.produced:
            self.inputs.add(path)

    def _mark_written(self, path: str, *, created: bool) -> None:
        self.written.add(path)
        if created:
            self.created.add(path)
        self.exists[path] = True
        self.produced[path] = True

    def _mark_gone(self, path: str) -> None:
        # rmdir only removes empty directories: no children to forget
        if path not in self.produced:
            self.gone.add(path)
        self.exists[path] = False
        self.produced[path] = False

    def _probe(self, call: Call, path: str) -> None:
        if call.errno in _PROBE_ERRNOS:
            self.probed.add(path)
            self.exists[path] = False

    # -- calls

    def _apply(self, c: Call) -> None:
        if c.name == EXIT:
            # The pid may be reused (pid_max is often 32768): a later process with this
            # number waits for the clone that names it.
            self.cwd.pop(c.pid, None)
            self.program.pop(c.pid, None)
            return
        handler = _HANDLERS.get(c.name)
        if handler is None:
            return
        try:
            handler(self, c, c.args)
        except (ValueError, IndexError) as e:
            self.warnings.append(f"pid {c.pid}: {c.name}: {e}")

    def _open(self, c: Call, fd: str | None, path_tok: str, flags: set[str]) -> None:
        path = self._resolve(c.pid, fd, path_tok)
        if path is None:
            return
        writes = bool(flags & _WRITE_FLAGS)
        if not c.ok:
            if "O_CREAT" not in flags:
                self._probe(c, path)
            return
        if "O_PATH" in flags or ("O_DIRECTORY" in flags and not writes):
            self.statted.add(path)
            self.exists[path] = True
            return
        if writes:
            created = "O_CREAT" in flags and ("O_EXCL" in flags or self.exists.get(path) is False)
            self._mark_written(path, created=created)
        else:
            self._mark_read(path)

    def on_open(self, c: Call, a: list[str]) -> None:
        self._open(c, None, a[0], _flags(a[1]))

    def on_openat(self, c: Call, a: list[str]) -> None:
        self._open(c, a[0], a[1], _flags(a[2]))

    def on_openat2(self, c: Call, a: list[str]) -> None:
        m = re.search(r"flags=([A-Za-z0-9_|]+)", a[2])
        self._open(c, a[0], a[1], _flags(m.group(1) if m else "O_RDONLY"))

    def on_creat(self, c: Call, a: list[str]) -> None:
        self._open(c, None, a[0], {"O_WRONLY", "O_CREAT", "O_TRUNC"})

    def on_stat(self, c: Call, a: list[str]) -> None:
        if c.name in _AT_FIRST:
            fd, path_tok = a[0], a[1]
            flags = a[-1] if c.name != "statx" else a[2]
            if path_tok == '""' and "AT_EMPTY_PATH" in flags:
                return  # fstat of an fd already opened
        else:
            fd, path_tok = None, a[0]
        path = self._resolve(c.pid, fd, path_tok)
        if path is None:
            return
        if c.ok or (c.name.startswith("readlink") and c.errno == "EINVAL"):
            self.statted.add(path)  # EINVAL from readlink: exists, not a symlink
            self.exists[path] = True
        else:
            self._probe(c, path)

    def on_getdents(self, c: Call, a: list[str]) -> None:
        m = _FD.match(a[0])
        if m is not None and m.group(2) is not None and c.ok:
            self.listed.add(normalize(fd_path(m.group(2))))

    def on_execve(self, c: Call, a: list[str]) -> None:
        if c.name == "execveat":
            fd, path_tok, argv_tok = a[0], a[1], a[2]
        else:
            fd, path_tok, argv_tok = None, a[0], a[1]
        path = self._resolve(c.pid, fd, path_tok)
        if path is None:
            return
        if not c.ok:
            self._probe(c, path)
            return
        argv, cut = parse_argv(argv_tok)
        self.executed.add(path)
        self.execs.append(
            Exec(
                pid=c.pid,
                path=path,
                argv=argv,
                argv_truncated=cut,
                launcher=self.program.get(c.pid),
            )
        )
        self.program[c.pid] = path
        self.exists[path] = True
        if path not in self.produced:
            self.inputs.add(path)

    def on_rename(self, c: Call, a: list[str]) -> None:
        if c.name == "rename":
            src = self._resolve(c.pid, None, a[0])
            dst = self._resolve(c.pid, None, a[1])
        else:
            src = self._resolve(c.pid, a[0], a[1])
            dst = self._resolve(c.pid, a[2], a[3])
        if src is None or dst is None or not c.ok:
            return
        self.renamed.append((src, dst))
        exchange = len(a) > 4 and "RENAME_EXCHANGE" in a[4]
        prefix = src + "/"
        moved = {p: v for p, v in self.produced.items() if p.startswith(prefix)}
        if not exchange:
            self._mark_gone(src)
            for p in moved:
                self.produced[p] = False
                self.exists[p] = False
        for p, v in moved.items():
            self.produced[dst + p[len(src) :]] = v
        self.produced[dst] = True
        self.exists[dst] = True
        if exchange:
            self.produced[src] = True

    def on_unlink(self, c: Call, a: list[str]) -> None:
        if c.name == "unlinkat":
            path = self._resolve(c.pid, a[0], a[1])
        else:
            path = self._resolve(c.pid, None, a[0])
        if path is not None and c.ok:
            self.deleted.add(path)
            self._mark_gone(path)

    def on_mkdir(self, c: Call, a: list[str]) -> None:
        if c.name in _AT_FIRST:
            path = self._resolve(c.pid, a[0], a[1])
        else:
            path = self._resolve(c.pid, None, a[0])
        if path is None:
            return
        if c.ok:
            self.created.add(path)
            self.exists[path] = True
            self.produced[path] = True
        elif c.errno == "EEXIST":
            self.statted.add(path)
            self.exists[path] = True

    def on_link(self, c: Call, a: list[str]) -> None:
        if c.name == "link":
            src = self._resolve(c.pid, None, a[0])
            dst = self._resolve(c.pid, None, a[1])
        else:
            src = self._resolve(c.pid, a[0], a[1])
            dst = self._resolve(c.pid, a[2], a[3])
        if src is None or dst is None or not c.ok:
            return
        self._mark_read(src)  # the new name shares src's content
        self._mark_written(dst, created=True)

    def on_symlink(self, c: Call, a: list[str]) -> None:
        # symlink("target", "linkpath") / symlinkat("target", dirfd, "linkpath"): the
        # target is only text stored in the link.
        if c.name == "symlink":
            dst = self._resolve(c.pid, None, a[1])
        else:
            dst = self._resolve(c.pid, a[1], a[2])
        if dst is not None and c.ok:
            self._mark_written(dst, created=True)

    def on_truncate(self, c: Call, a: list[str]) -> None:
        path = self._resolve(c.pid, None, a[0])
        if path is not None and c.ok:
            self._mark_written(path, created=False)

    def on_meta(self, c: Call, a: list[str]) -> None:
        if c.name in _AT_FIRST:
            if a[1] == "NULL" or (a[1] == '""' and "AT_EMPTY_PATH" in a[-1]):
                return  # on an open fd
            path = self._resolve(c.pid, a[0], a[1])
        else:
            path = self._resolve(c.pid, None, a[0])
        if path is None:
            return
        if c.ok:
            self.meta.add(path)
            self.produced[path] = True
            self.exists[path] = True
        else:
            self._probe(c, path)

    def on_chdir(self, c: Call, a: list[str]) -> None:
        cell = self.cwd[c.pid]
        if c.name == "fchdir":
            m = _FD.match(a[0])
            if c.ok and m is not None and m.group(2) is not None:
                cell.path = normalize(fd_path(m.group(2)))
            return
        path = self._resolve(c.pid, None, a[0])
        if path is None:
            return
        if c.ok:
            cell.path = path
            self.statted.add(path)
            self.exists[path] = True
        else:
            self._probe(c, path)

    def on_fork(self, c: Call, a: list[str]) -> None:
        if c.ret is None or c.ret <= 0 or c.errno is not None:
            return
        flags = ""
        if c.name in ("clone", "clone3"):
            m = re.search(r"flags=([A-Za-z0-9_|]+)", ", ".join(a))
            flags = m.group(1) if m else ""
        self._adopt(c.pid, c.ret, share="CLONE_FS" in flags.split("|"))

    def on_io_uring(self, c: Call, a: list[str]) -> None:
        if c.ok and c.pid not in self.uring_pids:
            self.uring_pids.add(c.pid)
            self.warnings.append(
                f"pid {c.pid} set up io_uring: file operations it submits there are not traced"
            )

    def result(self, exit_code: int) -> TraceResult:
        touched = self.read | self.written | self.created | self.deleted | self.executed | self.meta
        return TraceResult(
            exit_code=exit_code,
            read=frozenset(self.read),
            written=frozenset(self.written),
            created=frozenset(self.created),
            deleted=frozenset(self.deleted),
            removed=frozenset(p for p in self.gone if not self.produced.get(p)),
            renamed=tuple(self.renamed),
            probed_missing=frozenset(self.probed),
            stat_only=frozenset(self.statted - touched),
            listed=frozenset(self.listed),
            metadata_changed=frozenset(self.meta),
            executed=frozenset(self.executed),
            execs=tuple(self.execs),
            inputs=frozenset(self.inputs),
            outputs=frozenset(p for p, left in self.produced.items() if left),
            warnings=tuple(self.warnings),
        )


def _flags(token: str) -> set[str]:
    return set(token.strip().split("|"))


_Handler = Callable[[_Accumulator, Call, list[str]], None]

_HANDLERS: dict[str, _Handler] = {
    "open": _Accumulator.on_open,
    "openat": _Accumulator.on_openat,
    "openat2": _Accumulator.on_openat2,
    "creat": _Accumulator.on_creat,
    **dict.fromkeys(_STAT_CALLS, _Accumulator.on_stat),
    "getdents64": _Accumulator.on_getdents,
    "getdents": _Accumulator.on_getdents,
    "execve": _Accumulator.on_execve,
    "execveat": _Accumulator.on_execve,
    "rename": _Accumulator.on_rename,
    "renameat": _Accumulator.on_rename,
    "renameat2": _Accumulator.on_rename,
    "unlink": _Accumulator.on_unlink,
    "unlinkat": _Accumulator.on_unlink,
    "rmdir": _Accumulator.on_unlink,
    "mkdir": _Accumulator.on_mkdir,
    "mkdirat": _Accumulator.on_mkdir,
    "mknod": _Accumulator.on_mkdir,
    "mknodat": _Accumulator.on_mkdir,
    "link": _Accumulator.on_link,
    "linkat": _Accumulator.on_link,
    "symlink": _Accumulator.on_symlink,
    "symlinkat": _Accumulator.on_symlink,
    "truncate": _Accumulator.on_truncate,
    **dict.fromkeys(_META_CALLS, _Accumulator.on_meta),
    "chdir": _Accumulator.on_chdir,
    "fchdir": _Accumulator.on_chdir,
    "fork": _Accumulator.on_fork,
    "vfork": _Accumulator.on_fork,
    "clone": _Accumulator.on_fork,
    "clone3": _Accumulator.on_fork,
    "io_uring_setup": _Accumulator.on_io_uring,
}


def parse_strace(lines: Iterable[str], *, cwd: str, exit_code: int = 0) -> TraceResult:
    """Parse `strace -f -y` output (lines read as latin-1) of a command started in cwd."""
    acc = _Accumulator(cwd)
    for call in iter_calls(lines, acc.warnings):
        acc.feed(call)
    acc.finish()
    return acc.result(exit_code)


def parse_strace_file(path: str | os.PathLike[str], *, cwd: str, exit_code: int = 0) -> TraceResult:
    """`parse_strace` over a log file (read as latin-1, so each character is one byte)."""
    with open(path, encoding="latin-1", newline="\n") as lines:  # noqa: PTH123
        return parse_strace(lines, cwd=cwd, exit_code=exit_code)
