"""What kind of entry a path is (lstat's answer), one listing per crowded directory.

Planning checks each step's directory: 10,000 steps in `packages/*` asked for 10,000
lstats of entries of one directory, where one listing of it (`os.scandir`, whose
entries carry their type) answers them all. A directory is listed once it has been
asked about more than `LIST_AFTER` times; until then each path costs one lstat, so a
directory asked about once (`packages/p0001/dist`) is not listed for it.

The answers are lstat's, as of the moment each directory was read: a symlink is a
symlink (never followed), and a missing or unreadable path is None. A directory that
cannot be listed or searched, and a name its listing does not hold, are asked of lstat.
tests/test_entrykinds.py holds the answers to lstat's on generated trees of
directories, files, FIFOs and links.
"""

from __future__ import annotations

import os
import stat

LIST_AFTER = 8  # lstats of one directory's entries before it is listed instead

# What a listed entry's type says, without a system call (d_type); other kinds are
# asked of lstat through the entry.
_LINK, _DIRECTORY, _FILE = stat.S_IFLNK, stat.S_IFDIR, stat.S_IFREG


def is_junction(path: str | os.PathLike[str]) -> bool:
    """A Windows junction: a link that lstat, and a listing, report as a directory."""
    isjunction = getattr(os.path, "isjunction", None)  # Python 3.12+
    return bool(isjunction(path)) if isjunction is not None else False


class EntryKinds:
    """lstat's `S_IFMT` for paths (strings with `/`), or None when there is nothing
    there or it cannot be read. Not thread-safe: one per planning pass.

    Only a name the listing holds is answered from it. Any other name is asked of
    lstat: on a case- or normalisation-insensitive file system (macOS, Windows) lstat
    finds `OUT` where the listing holds `out`, and "missing" there would let a link
    through the check that keeps paths inside the workspace."""

    def __init__(self) -> None:
        self._asked: dict[str, int] = {}
        self._listings: dict[str, dict[str, os.DirEntry[str]] | None] = {}

    def kind(self, path: str) -> int | None:
        parent, slash, name = path.rpartition("/")
        listing = None
        if not slash or name in ("", ".", ".."):
            pass  # no directory to list, or a name a listing never holds: lstat
        elif (listing := self._listings.get(parent)) is None and parent not in self._listings:
            asked = self._asked[parent] = self._asked.get(parent, 0) + 1
            if asked > LIST_AFTER:
                listing = self._listings[parent] = _list(parent or "/")
        entry = listing.get(name) if listing is not None else None
        if entry is not None:
            found = _kind_of(entry)
            if found is not None:
                return found
        try:
            return stat.S_IFMT(os.lstat(path).st_mode)
        except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
            return None


def _list(directory: str) -> dict[str, os.DirEntry[str]] | None:
    """The entries of `directory` by name, from one read (their kinds are worked out
    when asked: a file system without d_type costs an lstat each, for those asked only);
    None when it cannot be read, or searched (then lstat of its entries fails too)."""
    if not os.access(directory, os.X_OK):
        return None
    try:
        with os.scandir(directory) as entries:
            return {entry.name: entry for entry in entries}
    except (OSError, ValueError):  # unreadable; a NUL or an unencodable name
        return None


def _kind_of(entry: os.DirEntry[str]) -> int | None:
    try:
        if entry.is_symlink():
            return _LINK
        if entry.is_dir(follow_symlinks=False):
            return _DIRECTORY
        if entry.is_file(follow_symlinks=False):
            return _FILE
        return stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)  # a FIFO, a socket...
    except OSError:  # gone since the listing was read: asked of lstat
        return None
