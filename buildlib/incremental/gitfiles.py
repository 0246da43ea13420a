"""The files git knows in the workspace: a version 2 step's inputs when it declares none.

Turborepo's rule, and the only one that cannot silently go stale: a step without
`inputs` takes every file under its cwd that git tracks, or that is untracked and not
ignored (`git ls-files --cached --others --exclude-standard`), minus its outputs and
the excludes. One `git ls-files` per build, sorted once, so each step finds its own
files by bisection; the listing is taken again after a step has run (it may have
written files). Outside a git repository, `files` is None and the caller falls back to
every file under the cwd, with a warning.
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path

GIT_TIMEOUT = 120.0  # seconds: `git ls-files` of a very large repository
LISTING_LIMIT = 1 << 30  # bytes of listing kept


class GitFiles:
    """The listing for one workspace root, taken on first use. Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._files: list[str] | None = None
        self._taken = False

    def under(self, directory: str) -> list[str] | None:
        """Sorted files below `directory` ("." for the root), or None outside git."""
        with self._lock:
            if not self._taken:
                self._files = _list(self.root)
                self._taken = True
            files = self._files
        if files is None:
            return None
        if directory in ("", "."):
            return list(files)
        prefix = directory.rstrip("/") + "/"
        start = bisect.bisect_left(files, prefix)
        end = bisect.bisect_left(files, prefix[:-1] + "0")  # "0" sorts right after "/"
        return files[start:end]

    def forget(self) -> None:
        """A step ran and may have added files: list again on next use."""
        with self._lock:
            self._taken = False
            self._files = None


def _list(root: Path) -> list[str] | None:
    from buildlib.core.bounded import run_bounded

    try:
        done = run_bounded(
            [
                "git",
                "-c",
                "core.quotepath=off",
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            cwd=root,
            timeout=GIT_TIMEOUT,
            limit=LISTING_LIMIT,
            errors="surrogateescape",
        )
    except OSError:  # no git on this machine
        return None
    if done.returncode != 0:  # not a repository (or git refuses it)
        return None
    # A tracked file deleted in the work tree is listed too; hashing leaves it out.
    return sorted({name for name in done.stdout.split("\0") if name})
