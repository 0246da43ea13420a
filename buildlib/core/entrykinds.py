"""What kind of entry a path is (lstat's answer), one listing per crowded directory.

Planning checks each step's directory: 10,000 steps in `packages/*` asked for 10,000
lstats of entries of one directory, where one listing of it (`os.scandir`, whose
entries carry their type) answers them all. A directory is listed once it has been
asked about more than `LIST_AFTER` times; until then each path costs one lstat, so a
directory asked about once (`packages/p0001/dist`) is not listed for it.

The answers are lstat's, as of the moment each directory was read: a symlink is a
symlink (never followed), and a missing or unreadable path is None. A directory that
cannot be listed is asked entry by entry. tests/test_entrykinds.py holds the answers
to lstat's on generated trees of directories, files, FIFOs and links.
"""

from __future__ import annotations

import os
import stat

LIST_AFTER = 8  # lstats of one directory's entries before it is listed instead

# What a listed entry's type says, without a system call (d_type); other kinds are
# asked of lstat through the entry.
_LINK, _DIRECTORY, _FILE = stat.S_IFLNK, stat.S_IFDIR, stat.S_IFREG


class EntryKinds:
    """lstat's `S_IFMT` for paths (strings with `/`), or None when there is nothing
    there or it cannot be read. Not thread-safe: one per planning pass."""

    def __init__(self) -> None:
        self._asked: dict[str, int] = {}
        self._listings: dict[str, dict[str, int | None] | None] = {}

    def kind(self, path: str) -> int | None:
        parent, slash, name = path.rpartition("/")
        listing = None
        if not slash or name in ("", ".", ".."):
            pass  # no directory to list, or a name a listing never holds: lstat
        elif (listing := self._listings.get(parent)) is None and parent not in self._listings:
            asked = self._asked[parent] = self._asked.get(parent, 0) + 1
            if asked > LIST_AFTER:
                listing = self._listings[parent] = _list(parent or "/")
        if listing is not None:
            return listing.get(name)
        try:
            return stat.S_IFMT(os.lstat(path).st_mode)
        except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
            return None


def _list(directory: str) -> dict[str, int | None] | None:
    """Each entry's kind, from one read of `directory`; None when it cannot be read."""
    kinds: dict[str, int | None] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                kinds[entry.name] = _kind_of(entry)
    except OSError:
        return None
    return kinds


def _kind_of(entry: os.DirEntry[str]) -> int | None:
    try:
        if entry.is_symlink():
            return _LINK
        if entry.is_dir(follow_symlinks=False):
            return _DIRECTORY
        if entry.is_file(follow_symlinks=False):
            return _FILE
        return stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)  # a FIFO, a socket...
    except OSError:  # gone since the listing was read
        return None
