"""What a traced process tree did to the file system, and that record seen from a workspace.

`accesses.parse_strace` builds a `TraceResult` with absolute paths; the audit narrows it
to the workspace with `TraceResult.scoped`. Paths are `str`; bytes that are not UTF-8
are kept as surrogate escapes, so `os.fsencode` gives back the exact name.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

from buildlib.core.records import record, replace

# Prefixes outside a workspace whose files belong to the system or to toolchains and
# package caches, never to a step's declarations: `scoped` drops them.
DEFAULT_IGNORES: tuple[str, ...] = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",  # noqa: S108 - ignored, not used
    "/var/tmp",  # noqa: S108 - ignored, not used
    "/var/cache",
    "/var/lib",
    "~/.cargo",
    "~/.rustup",
    "~/.npm",
    "~/.cache",
    "~/.node-gyp",
    "~/.pyenv",
)


@record
class Exec:
    """One successful execve: the program as the kernel found it, the argv it got, and
    the program the process ran before (its launcher: the parent's program after a fork,
    or the same process's previous program, as `env` before `node`); None for the
    traced command itself."""

    pid: int
    path: str
    argv: tuple[str, ...]
    argv_truncated: bool = False
    launcher: str | None = None


_PATH_SETS = (
    "read",
    "written",
    "created",
    "deleted",
    "removed",
    "probed_missing",
    "stat_only",
    "listed",
    "metadata_changed",
    "executed",
    "inputs",
    "outputs",
)


@record
class TraceResult:
    """What a traced process tree did to the file system.

    The first sets are events as they happened; `inputs`, `outputs` and `removed` are
    derived from their order.
    """

    exit_code: int
    read: frozenset[str]
    """Opened for reading content (O_RDONLY, not a directory, not O_PATH)."""
    written: frozenset[str]
    """Opened with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC, creat()ed or truncate()d."""
    created: frozenset[str]
    """Shown by the trace to have come into existence: mkdir, mknod, link and symlink
    targets, O_CREAT|O_EXCL opens, and O_CREAT opens of a path the trace had seen missing
    (an O_CREAT open of a path never looked at before is in `written` only: strace cannot
    tell whether it existed)."""
    deleted: frozenset[str]
    """unlink/unlinkat/rmdir that succeeded."""
    removed: frozenset[str]
    """Paths that existed before the command and that it deleted or renamed away without
    putting anything back (temporary files it made itself are not here)."""
    renamed: tuple[tuple[str, str], ...]
    """(source, destination) of each successful rename, in order."""
    probed_missing: frozenset[str]
    """Lookups that failed with ENOENT or ENOTDIR: opens without O_CREAT, stat family,
    access, readlink, execve (PATH searches), chdir."""
    stat_only: frozenset[str]
    """Metadata looked at (stat family, access, readlink, O_PATH or directory opens) and
    content neither read, written nor executed."""
    listed: frozenset[str]
    """Directories whose entries were read (getdents)."""
    metadata_changed: frozenset[str]
    """chmod, chown, utime family on a path."""
    executed: frozenset[str]
    """Programs run (successful execve/execveat), plus script interpreters named by a
    `#!` line (the kernel opens those without a system call strace can see)."""
    execs: tuple[Exec, ...]
    """Each successful exec, in order, with its argv and launcher."""
    inputs: frozenset[str]
    """Read or executed before the command wrote, created or renamed onto them."""
    outputs: frozenset[str]
    """Paths the command left written, created, renamed into or changed (not deleted or
    renamed away afterwards)."""
    warnings: tuple[str, ...] = ()
    """Lines the parser could not place (unmatched resumptions, pids of unknown parent),
    and io_uring users (their file operations are out of strace's sight)."""
    trace_file: Path | None = None
    output_file: Path | None = None

    def scoped(
        self,
        root: str | os.PathLike[str],
        ignore: Iterable[str] = DEFAULT_IGNORES,
        *,
        keep_outside: bool = False,
    ) -> TraceResult:
        """The same accesses seen from a workspace: paths under `root` become relative
        (POSIX, `.` for the root itself); paths under an ignore prefix are dropped; other
        paths outside the root are dropped, or kept absolute with `keep_outside`.

        `ignore` entries may be absolute, start with `~` (the caller's home) or be
        relative to the root (`target`, `node_modules/.cache`). An absolute prefix that
        contains the root itself (`/tmp` for a workspace under /tmp) only applies outside it.
        """
        mapper = _Scope(os.fspath(root), ignore, keep_outside)
        sets = {name: mapper.set(getattr(self, name)) for name in _PATH_SETS}
        renamed = tuple(
            (a if sa is None else sa, b if sb is None else sb)
            for a, b in self.renamed
            for sa, sb in [(mapper.one(a), mapper.one(b))]
            if sa is not None or sb is not None
        )
        execs = tuple(
            replace(e, path=p) for e in self.execs for p in [mapper.one(e.path)] if p is not None
        )
        return replace(self, renamed=renamed, execs=execs, **sets)

    def to_json(self) -> dict[str, object]:
        """Plain, sorted data (paths as str with surrogates replaced) for reports."""
        out: dict[str, object] = {"exit_code": self.exit_code}
        for name in _PATH_SETS:
            value: frozenset[str] = getattr(self, name)
            out[name] = sorted(printable(p) for p in value)
        out["renamed"] = [[printable(a), printable(b)] for a, b in self.renamed]
        out["warnings"] = list(self.warnings)
        return out


def printable(path: str) -> str:
    """`path` with bytes that are not UTF-8 shown as backslash escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Scope:
    """Maps absolute paths to workspace-relative ones, or None when dropped."""

    def __init__(self, root: str, ignore: Iterable[str], keep_outside: bool) -> None:
        root = normalize(os.path.abspath(root))  # noqa: PTH100 - str paths throughout
        self.roots = [root]
        real = os.path.realpath(root)
        if real != root:
            self.roots.append(real)  # the kernel's paths (AT_FDCWD<...>) are real ones
        self.keep_outside = keep_outside
        self.inside: list[str] = []  # relative to the root
        self.outside: list[str] = []
        for raw in ignore:
            entry = os.path.expanduser(raw)  # noqa: PTH111
            if not entry.startswith("/"):
                self.inside.append(normalize(entry).strip("/"))
                continue
            entry = normalize(entry)
            # A prefix that holds the workspace (/tmp) applies outside it only: `one`
            # looks at the roots first.
            self.outside.append(entry)
            self.inside.extend(posixpath.relpath(entry, r) for r in self.roots if under(entry, r))

    def one(self, path: str) -> str | None:
        for r in self.roots:
            if under(path, r):
                rel = "." if path == r else path[len(r) :].lstrip("/")
                if any(under(rel, i) for i in self.inside):
                    return None
                return rel
        if not self.keep_outside or any(under(path, o) for o in self.outside):
            return None
        return path

    def set(self, paths: Iterable[str]) -> frozenset[str]:
        return frozenset(p for p in map(self.one, paths) if p is not None)


def under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or below it (both normalized, same kind)."""
    if prefix in ("", "."):
        return True
    if prefix == "/":
        return path.startswith("/")
    return path == prefix or path.startswith(prefix + "/")


def normalize(path: str) -> str:
    """Lexically normalized path: no `.`/`..`/double slashes, no trailing slash."""
    p = posixpath.normpath(path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    return p
