"""The files of a repository as its owners see them: what git tracks, plus what it would add.

`buildlib init` finds package.json and Cargo.toml files in this list and asks it whether a
path is part of the sources, so it never mistakes an installed package (node_modules), a
build tree (target, dist) or anything .gitignore excludes for one of the repository's own;
and it never walks node_modules, which can take seconds. Outside a git work tree (or
without git) a walk that skips the directories buildlib never reads as inputs stands in.
"""

from __future__ import annotations

import functools
import os
import posixpath
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from buildlib.core.records import record
from buildlib.ecosystems.defaults import DEFAULT_EXCLUDES

# "**/node_modules/**" -> "node_modules": the directories no walk enters.
_SKIPPED_DIRS = frozenset(p.split("/")[1] for p in DEFAULT_EXCLUDES)
_GIT_TIMEOUT = 60.0


@record
class RepoFiles:
    """Paths relative to the repository root, '/'-separated."""

    root: Path
    paths: frozenset[str]
    from_git: bool  # False: a directory walk stood in for git

    def named(self, name: str) -> list[str]:
        """Every file called `name`, shallowest first (then alphabetically)."""
        found = [p for p in self.paths if p == name or p.endswith("/" + name)]
        return sorted(found, key=lambda p: (p.count("/"), p))

    def exists(self, path: str) -> bool:
        """Whether `path` is a source file, or a directory holding one."""
        path = _normal(path)
        return path in self.paths or path in self._directories

    @functools.cached_property
    def _directories(self) -> frozenset[str]:
        """Every directory holding a source file ("." included), worked out once: asking
        each question of every path made init quadratic (300 fixtures among 20,000
        files: 14 s)."""
        found = {"."} if self.paths else set()
        for path in self.paths:
            parent = posixpath.dirname(path)
            while parent and parent not in found:
                found.add(parent)
                parent = posixpath.dirname(parent)
        return frozenset(found)

    def under(self, directory: str) -> list[str]:
        """The files below `directory` ('.' is the root), relative to it."""
        directory = _normal(directory)
        if directory == ".":
            return sorted(self.paths)
        prefix = directory + "/"
        return sorted(p[len(prefix) :] for p in self.paths if p.startswith(prefix))


def _normal(path: str) -> str:
    text = str(PurePosixPath(path.replace("\\", "/")))
    return text.removeprefix("./") or "."


def list_files(root: Path) -> RepoFiles:
    """The repository's source files under `root`: git's view when `root` is in a work tree
    (tracked, plus untracked files that are not ignored), else a walk."""
    listed = _git_files(root)
    if listed is not None:
        return RepoFiles(root=root, paths=frozenset(listed), from_git=True)
    return RepoFiles(root=root, paths=frozenset(_walk(root)), from_git=False)


def _git_files(root: Path) -> list[str] | None:
    """`git ls-files` from `root` (paths relative to it), or None when that is no git work
    tree or git is missing. Files deleted from the work tree but still tracked are left
    out: init reads what is there."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = [os.fsdecode(n) for n in done.stdout.split(b"\0") if n]
    return [n for n in dict.fromkeys(names) if (root / n).is_file()]


def _walk(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        base = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            yield name if base == "." else f"{base}/{name}"
