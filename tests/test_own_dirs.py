"""`make_own_dirs`: below a workspace's `.buildlib/`, the engine writes only into
directories of its own, whatever a repository shipped at their places.

The invariant, tested on generated trees: after `make_own_dirs(root/.buildlib/a/b...)`
every directory from `.buildlib` down is a real directory (not a symlink), and nothing
outside the workspace changed: no entry made, removed or rewritten there, whatever
symlinks, files or FIFOs stood at those places. A symlinked `.buildlib` itself is
refused, and nothing is made through it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildlib.core.atomicfile import make_own_dirs, write_text_atomic

# What may stand at the place of a directory the engine makes.
PLANTS = ("nothing", "directory", "link to a directory", "dangling link", "link to a file", "file", "fifo")  # fmt: skip
NAMES = st.sampled_from(["logs", "state", "reports", "x-y", "a"])


def snapshot(top: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under `top`: its kind and (for a file) its content, not following links."""
    found: dict[str, tuple[str, bytes]] = {}
    for directory, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(top))] = ("link", os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                found[str(path.relative_to(top))] = ("file", path.read_bytes())
            else:
                found[str(path.relative_to(top))] = (stat.filemode(info.st_mode)[0], b"")
    return found


def plant(place: Path, kind: str, outside: Path) -> None:
    """Put `kind` at `place` (whose parent exists), aimed into `outside` for links."""
    target = outside / f"target-{place.name}-{len(list(outside.iterdir()))}"
    if kind == "directory":
        place.mkdir()
    elif kind == "link to a directory":
        target.mkdir()
        (target / "precious.txt").write_text("precious")
        place.symlink_to(target)
    elif kind == "dangling link":
        place.symlink_to(target)  # a writer following it would create `target`
    elif kind == "link to a file":
        target.write_text("precious")
        place.symlink_to(target)
    elif kind == "file":
        place.write_text("shipped")
    elif kind == "fifo":
        os.mkfifo(place)


@settings(max_examples=300, deadline=None)
@given(
    below=st.lists(NAMES, min_size=1, max_size=3),
    plants=st.lists(st.sampled_from(PLANTS), min_size=4, max_size=4),
)
def test_directories_below_buildlib_are_the_engines_own(
    below: list[str], plants: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        root, outside = base / "ws", base / "outside"
        root.mkdir()
        outside.mkdir()
        (outside / "canary.txt").write_text("canary")
        places = [root / ".buildlib"]
        for name in below:
            places.append(places[-1] / name)
        for place, kind in zip(places, plants, strict=False):
            if kind == "nothing" or not place.parent.is_dir() or place.parent.is_symlink():
                break  # what follows a link or a missing directory cannot be planted
            plant(place, kind, outside)
        before = snapshot(outside)
        buildlib = places[0]
        if buildlib.is_symlink():
            with pytest.raises(OSError) as refused:
                make_own_dirs(places[-1])
            assert refused.value.errno == errno.ELOOP and ".buildlib is a symlink" in str(
                refused.value
            )
        else:
            make_own_dirs(places[-1])
            for place in places:
                assert stat.S_ISDIR(place.lstat().st_mode), place
            write_text_atomic(places[-1] / "file.json", "{}")  # the writers' path too
            assert (places[-1] / "file.json").read_text() == "{}"
        assert snapshot(outside) == before


def test_directories_above_buildlib_are_the_users(tmp_path: Path) -> None:
    """A workspace reached through a symlink (a symlinked home or checkout) is used as is:
    only what lies below `.buildlib` is the engine's to replace."""
    real = tmp_path / "disk" / "checkout"
    real.mkdir(parents=True)
    (tmp_path / "home").symlink_to(tmp_path / "disk")
    make_own_dirs(tmp_path / "home" / "checkout" / ".buildlib" / "logs" / "tag")
    assert (real / ".buildlib" / "logs" / "tag").is_dir()
    assert (tmp_path / "home").is_symlink()
    make_own_dirs(tmp_path / "home" / "elsewhere" / "cache")  # no .buildlib: mkdir -p
    assert (tmp_path / "disk" / "elsewhere" / "cache").is_dir()
