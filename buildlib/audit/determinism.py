"""`audit --twice`: did two runs of a step from clean outputs make the same bytes?

Between the runs the first run's outputs are moved aside (`set_aside`, a rename per
declared output, so nothing is copied), then `compare` walks both trees: a file present
in one run only, a symlink with another target, or a file whose bytes differ is listed,
the latter with the first differing byte offset and a few bytes of each run around it
(where a timestamp or an absolute path usually shows).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from buildlib.core.records import record
from buildlib.incremental.outputs import expand_outputs, matching_paths

CHUNK = 1 << 16
CONTEXT = 16  # bytes shown either side of the first difference


@record
class Difference:
    """One output that differs between the two runs."""

    path: str
    offset: int | None  # first differing byte; None when the file is in one run only
    sizes: tuple[int | None, int | None]  # None: absent in that run
    first: bytes = b""  # the bytes around `offset` in each run
    second: bytes = b""
    note: str = ""


def remove_outputs(root: Path, patterns: Iterable[str]) -> None:
    """Delete what the output patterns name now (symlinks as links, never followed)."""
    for rel in _top_level(root, patterns):
        _remove(root / rel)


def set_aside(root: Path, patterns: Iterable[str], holding: Path) -> None:
    """Move what the output patterns name into `holding`, keeping relative paths."""
    if holding.exists():
        shutil.rmtree(holding)
    for rel in _top_level(root, patterns):
        target = holding / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            (root / rel).rename(target)
        except OSError:  # another file system: copy, then remove
            if (root / rel).is_dir() and not (root / rel).is_symlink():
                shutil.copytree(root / rel, target, symlinks=True)
            else:
                shutil.copy2(root / rel, target, follow_symlinks=False)
            _remove(root / rel)


def compare(holding: Path, root: Path, patterns: Iterable[str]) -> list[Difference]:
    """The outputs that differ between the first run (in `holding`) and the second (in
    place), sorted by path."""
    patterns = list(patterns)
    first = set(expand_outputs(holding, patterns))
    second = set(expand_outputs(root, patterns))
    found: list[Difference] = []
    for rel in sorted(first | second):
        a, b = holding / rel, root / rel
        if rel not in second:
            found.append(
                Difference(
                    path=rel, offset=None, sizes=(_size(a), None), note="made by the first run only"
                )
            )
        elif rel not in first:
            found.append(
                Difference(
                    path=rel,
                    offset=None,
                    sizes=(None, _size(b)),
                    note="made by the second run only",
                )
            )
        elif a.is_symlink() or b.is_symlink():
            ta = str(a.readlink()) if a.is_symlink() else None
            tb = str(b.readlink()) if b.is_symlink() else None
            if ta != tb:
                found.append(
                    Difference(
                        path=rel,
                        offset=None,
                        sizes=(_size(a), _size(b)),
                        note=f"symlink target {ta!r} then {tb!r}",
                    )
                )
        else:
            offset = first_difference(a, b)
            if offset is not None:
                found.append(
                    Difference(
                        path=rel,
                        offset=offset,
                        sizes=(_size(a), _size(b)),
                        first=_around(a, offset),
                        second=_around(b, offset),
                    )
                )
    return found


def first_difference(a: Path, b: Path) -> int | None:
    """The offset of the first byte where the files differ (the shorter one's length when
    one is a prefix of the other), or None when they are equal."""
    offset = 0
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                n = min(len(ca), len(cb))
                i = next((i for i in range(n) if ca[i] != cb[i]), n)
                return offset + i
            if not ca:
                return None
            offset += len(ca)


def _around(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, offset - CONTEXT))
        return f.read(2 * CONTEXT)


def _size(path: Path) -> int | None:
    try:
        return path.lstat().st_size
    except OSError:
        return None


def _top_level(root: Path, patterns: Iterable[str]) -> list[str]:
    """What the patterns name now, without paths inside another one named."""
    found = sorted({rel for p in patterns for rel in matching_paths(root, p)})
    kept: list[str] = []
    for rel in found:
        if not any(rel.startswith(k + "/") for k in kept):
            kept.append(rel)
    return kept


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)
