"""core/entrykinds.py: one listing of a crowded directory answers as lstat would.

Generated trees of directories, files, FIFOs and links (to directories, to files,
dangling, chained, through a linked directory), asked about in any order, with
directories listed after 0 to 8 questions: every answer equals lstat's kind of that
path, None where lstat raises.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildlib.core import entrykinds
from buildlib.core.entrykinds import EntryKinds

NAMES = ["a", "b", "c", "d.e"]
KINDS = ["directory", "file", "fifo", "link to a", "link to a/b", "dangling link", "link to ."]


def lstat_kind(path: str) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return None


@settings(max_examples=300, deadline=None)
@given(
    tree=st.lists(
        st.tuples(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), st.sampled_from(KINDS)),
        max_size=12,
    ),
    queries=st.lists(
        st.lists(st.sampled_from([*NAMES, "missing", ".", ".."]), min_size=1, max_size=4),
        min_size=1,
        max_size=30,
    ),
    list_after=st.sampled_from([0, 1, 2, 8]),
)
def test_answers_are_lstats(
    tree: list[tuple[list[str], str]], queries: list[list[str]], list_after: int
) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary, "root")
        root.mkdir()
        for parts, kind in tree:
            place = root.joinpath(*parts)
            if not place.parent.is_dir() or os.path.lexists(place):
                continue
            if kind == "directory":
                place.mkdir()
            elif kind == "file":
                place.write_text("x")
            elif kind == "fifo":
                os.mkfifo(place)
            elif kind == "dangling link":
                place.symlink_to(root / "nowhere")
            else:
                place.symlink_to(root / kind.removeprefix("link to "))
        original = entrykinds.LIST_AFTER
        entrykinds.LIST_AFTER = list_after
        try:
            kinds = EntryKinds()
            for parts in queries:
                path = "/".join([str(root), *parts])
                assert kinds.kind(path) == lstat_kind(path), path
        finally:
            entrykinds.LIST_AFTER = original


@pytest.mark.parametrize("path", ["relative", "", "/", "/nonexistent/x"])
def test_paths_without_a_listable_directory_are_asked_of_lstat(path: str) -> None:
    original = entrykinds.LIST_AFTER
    entrykinds.LIST_AFTER = 0
    try:
        assert EntryKinds().kind(path) == lstat_kind(path)
    finally:
        entrykinds.LIST_AFTER = original


def test_a_name_the_listing_does_not_hold_is_asked_of_lstat(tmp_path: Path) -> None:
    """On a case-insensitive file system lstat finds `OUT` where the listing holds `out`:
    "missing" there would let a link through the resolver's inside-the-workspace check.
    Here, an entry made after the listing stands for such a name."""
    for index in range(entrykinds.LIST_AFTER + 2):
        (tmp_path / f"d{index}").mkdir()
    kinds = EntryKinds()
    for index in range(entrykinds.LIST_AFTER + 2):  # the directory is listed by now
        assert kinds.kind(f"{tmp_path}/d{index}") == stat.S_IFDIR
    (tmp_path / "late").symlink_to(tmp_path / "d0")
    assert kinds.kind(f"{tmp_path}/late") == stat.S_IFLNK
    assert kinds.kind(f"{tmp_path}/never") is None
