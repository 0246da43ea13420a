"""lstat many files under one root, and list directory trees: what decides a no-op build.

A no-op build walks the input directories and lstats every input file to compare it
with the stat cache, and a cache lookup checks that every blob of an entry is still
there. In Python each `os.lstat` costs ~2.7 us (a 20-field stat_result with float
times, an exception per missing file); the optional C module `_speedups` (built at
install time when a C compiler is there) makes the same calls with the GIL released,
on up to 8 threads of at least 1,024 paths each, and compares in C. It also lists
whole directory trees (`walk_files`) for globs that take everything below a directory.
`ACCELERATED` says whether it is in use.

Both versions give the same results, which tests/test_statscan.py checks; the C one
is only stricter about a malformed cache entry (it reuses nothing but a 5-tuple whose
first four items are ints, where Python compares the first four items). A call that
the C loop fails with OSError is redone in Python, so that errors read exactly as
lstat's; a failed C walk returns None and the caller walks in Python. The C code is
not used when the file system encoding is not UTF-8, and is not built on Windows.
"""

from __future__ import annotations

import codecs
import os
import stat
import sys
from collections.abc import Callable, Iterable, Mapping

# (size, mtime_ns, ctime_ns, inode): what says a file is unchanged without reading it.
StatKey = tuple[int, int, int, int]
# A stat cache entry: the key and the digest recorded with it.
CachedEntry = tuple[int, int, int, int, str]
_CheckStats = Callable[
    [str, list[str], dict[str, CachedEntry], int, dict[str, str], int],
    list[tuple[str, StatKey, bool]],
]

_WalkFiles = Callable[[str, str, tuple[str, ...]], tuple[list[str], int] | None]

_c_check_stats: _CheckStats | None
_c_walk_files: _WalkFiles | None
try:
    from buildlib.incremental import _speedups
except ImportError:  # pragma: no cover - depends on the install
    _c_check_stats = _c_walk_files = None
else:  # a stale build from an older source (another ABI) may have another contract
    current = getattr(_speedups, "ABI", None) == 5
    _c_check_stats = _speedups.check_stats if current else None
    _c_walk_files = _speedups.walk_files if current else None
if codecs.lookup(sys.getfilesystemencoding()).name != "utf-8":
    _c_check_stats = _c_walk_files = None  # the C code passes names to the kernel as UTF-8

ACCELERATED = _c_check_stats is not None

_IFMT, _IFREG, _IFLNK = 0o170000, stat.S_IFREG, stat.S_IFLNK
_THREADS = os.cpu_count() or 1


def check_stats(
    root: str,
    rel_paths: Iterable[str],
    entries: Mapping[str, CachedEntry],
    trusted_before: int,
    result: dict[str, str],
    *,
    accelerated: bool = True,
) -> list[tuple[str, StatKey, bool]]:
    """lstat each path under `root`. A regular file or symlink whose key equals its
    entry's, with mtime and ctime before `trusted_before`, gets the entry's digest in
    `result`; every other one is returned as (rel, key, is_link), in order. Missing
    paths and other kinds of file are left out; other lstat errors raise OSError.

    `accelerated=False` forces the Python loop (tests compare the two)."""
    if _c_check_stats is not None and accelerated and isinstance(entries, dict):
        paths = rel_paths if isinstance(rel_paths, list) else list(rel_paths)
        try:
            return _c_check_stats(root, paths, entries, trusted_before, result, _THREADS)
        except OSError:  # rare: let the Python loop raise (or not) exactly as lstat does
            rel_paths = paths
    todo: list[tuple[str, StatKey, bool]] = []
    # Locals, and no call the loop can do without.
    lstat, get = os.lstat, entries.get
    for rel in rel_paths:
        try:
            st = lstat(f"{root}/{rel}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        kind = st.st_mode & _IFMT
        if kind not in (_IFREG, _IFLNK):
            continue
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        cached = get(rel)
        if (
            cached is not None
            and cached[:4] == key
            and key[1] < trusted_before
            and key[2] < trusted_before
        ):
            result[rel] = cached[4]
        else:
            todo.append((rel, key, kind == _IFLNK))
    return todo


def lstat_keys(
    root: str, rel_paths: Iterable[str], *, accelerated: bool = True
) -> dict[str, StatKey]:
    """The key of each path under `root` that is a regular file or a symlink (others and
    missing paths are left out)."""
    todo = check_stats(root, rel_paths, {}, 0, {}, accelerated=accelerated)
    return {rel: key for rel, key, _is_link in todo}


def walk_files(root: str, start: str, skip: Iterable[str]) -> tuple[list[str], int] | None:
    """Every regular file and symlink under `root`/`start` (`start` is "" or ends in
    "/"), as relative paths, never following a symlink and leaving out any entry named
    in `skip`; and the number of directories listed. None when the C module is not in
    use, when `start` is not a directory reached through directories only (missing, a
    file, a symlink or below one), or when the walk met an error: the caller then finds
    out in Python, which skips or reports exactly as it always does."""
    if _c_walk_files is None:
        return None
    try:
        return _c_walk_files(root, start, tuple(skip))
    except (OSError, MemoryError):
        return None
