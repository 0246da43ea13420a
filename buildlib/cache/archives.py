"""An output stored as one compressed archive instead of file by file (`store = "archive"`).

`node_modules` is thousands of small files; stored one blob per file it costs a file
system entry per file in the cache and a hash and a copy per file on every restore.
As one tar.gz it is one blob: a lockfile version costs its compressed size, a restore
is one sequential read, and prune drops a whole version at once.

The archive is deterministic (members sorted, owners and times zeroed, gzip without
a name or time), so the same tree always gives the same blob. It holds regular files
and symlinks only, with paths relative to the output directory.

`extract` is the one way an archive comes back. It writes into a fresh staging
directory, never through a link (each member's parents are directories it created
itself; a member below a symlink or a file member is refused), refuses every member
kind but files, directories and symlinks, and checks the blob's sha256 on the bytes
it read. It returns the members as `OutputFile` records, so that the caller holds
them to the same rules as any entry (`entries.check_safe`, `entries.scope_problems`)
before the staging directory takes the output's place.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from buildlib.cache.entries import (
    UNHASHED,
    CorruptBlobError,
    FileKind,
    OutputFile,
    UnsafeEntryError,
    path_problem,
)
from buildlib.core.atomicfile import write_all

ARCHIVE_FORMAT = "tar+gzip"
# Level 1: node_modules compresses to about a third at level 1 and barely better at 6,
# which packs three times slower (measured on the app's web/node_modules, 76 MB).
COMPRESS_LEVEL = 1
CHUNK = 1 << 20


class _HashingReader:
    """A file object that hashes what it reads (the archive is checked in the same pass)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        raise OSError("an archive is read once, front to back")

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _SinkWriter:
    """The file object gzip writes to: every chunk goes to the store's sink."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def pack(root: str, output: str, members: Sequence[str], sink: Callable[[bytes], None]) -> None:
    """Write the archive of `members` (workspace-relative paths under `output`, files and
    symlinks) to `sink`. OSError if a member cannot be read or shrank while it was read;
    ValueError for a member that is neither a file nor a symlink."""
    prefix = output + "/"
    with (
        gzip.GzipFile(
            filename="", mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0, fileobj=_SinkWriter(sink)
        ) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in sorted(members):
            if not rel.startswith(prefix):
                raise ValueError(f"{rel}: not under the archived output {output}")
            path = f"{root}/{rel}"
            info = tarfile.TarInfo(rel[len(prefix) :])
            meta = os.lstat(path)
            info.mtime = 0
            if stat.S_ISLNK(meta.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)  # noqa: PTH115 - str paths, one per file
                info.mode = 0o777
                tar.addfile(info)
            elif stat.S_ISREG(meta.st_mode):
                info.size = meta.st_size
                info.mode = stat.S_IMODE(meta.st_mode) & 0o777
                with open(path, "rb") as handle:  # noqa: PTH123 - str paths, one per file
                    tar.addfile(info, handle)  # OSError if the file shrank meanwhile
            else:
                raise ValueError(f"{rel}: not a regular file or a symlink")


def extract(blob: str, digest: str, output: str, staging: str) -> list[OutputFile]:
    """Unpack the archive at `blob` into the new directory `staging` (it must not exist)
    and return its members as records under `output`.

    Raises UnsafeEntryError for a member that is not a file, directory or symlink, or
    whose path is absolute, not normalized, climbs with `..` or goes through another
    member that is not a directory; CorruptBlobError when the bytes read do not hash to
    `digest` or are not a valid archive. On any error `staging` is removed.
    """
    os.mkdir(staging, 0o755)  # noqa: PTH102 - fails if it exists: nothing of ours is there
    try:
        return _read(blob, digest, output, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _read(blob: str, digest: str, output: str, staging: str) -> list[OutputFile]:
    with open(blob, "rb") as raw:  # noqa: PTH123
        reader = _HashingReader(raw)
        try:
            records = _unpack(reader, output, staging)
            reader.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
            raise CorruptBlobError(digest, f"the archive of {output}") from None
    if reader.sha256.hexdigest() != digest:
        raise CorruptBlobError(digest, f"the archive of {output}")
    return records


def _unpack(reader: _HashingReader, output: str, staging: str) -> list[OutputFile]:
    records: list[OutputFile] = []
    problems: list[str] = []
    not_dirs: set[str] = set()  # member paths that are files or symlinks
    made: set[str] = {""}
    with (
        gzip.GzipFile(fileobj=reader, mode="rb") as compressed,
        tarfile.open(fileobj=compressed, mode="r|") as tar,
    ):
        for member in tar:
            name = member.name
            problem = path_problem(name)
            if problem is None:
                problem = _kind_problem(member)
            if problem is None:
                parent = name.rpartition("/")[0]
                through = [p for p in _prefixes(parent) if p in not_dirs]
                if through or name in not_dirs or (name in made and not member.isdir()):
                    problem = f"{name}: goes through or replaces another member"
            if problem is not None:
                problems.append(f"{output}/{problem}")
                continue
            parent = name.rpartition("/")[0]
            if parent not in made:
                _make_dirs(staging, parent, made)
            dest = f"{staging}/{name}"
            if member.isdir():
                if name not in made:
                    os.mkdir(dest, 0o755)  # noqa: PTH102
                    made.add(name)
                continue
            not_dirs.add(name)
            rel = f"{output}/{name}"
            if member.issym():
                os.symlink(member.linkname, dest)  # noqa: PTH211
                raw = os.fsencode(member.linkname)
                records.append(
                    OutputFile(
                        path=rel,
                        kind=FileKind.SYMLINK,
                        sha256=UNHASHED,
                        size=len(raw),
                        mode=0o777,
                        target=member.linkname,
                    )
                )
                continue
            mode = member.mode & 0o7777
            records.append(
                OutputFile(
                    path=rel, kind=FileKind.FILE, sha256=UNHASHED, size=member.size, mode=mode
                )
            )
            _write_member(tar, member, dest, mode & 0o777)
    if problems:
        raise UnsafeEntryError(problems)
    return records


def _kind_problem(member: tarfile.TarInfo) -> str | None:
    if member.isfile() or member.isdir():
        return None
    if member.issym():
        return None if member.linkname else f"{member.name}: symlink without a target"
    if member.islnk():
        return f"{member.name}: hard links are never restored"
    return f"{member.name}: device files, FIFOs and other special files are never restored"


def _prefixes(path: str) -> Iterator[str]:
    if not path:
        return
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        yield "/".join(parts[:end])


def _make_dirs(staging: str, parent: str, made: set[str]) -> None:
    for prefix in _prefixes(parent):
        if prefix not in made:
            with contextlib.suppress(FileExistsError):  # an earlier directory member
                os.mkdir(f"{staging}/{prefix}", 0o755)  # noqa: PTH102
            made.add(prefix)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str, mode: int) -> None:
    source = tar.extractfile(member)
    assert source is not None  # a regular file member always has a reader
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # O_EXCL: never through an entry found there
    fd = os.open(dest, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        while chunk := source.read(CHUNK):
            write_all(fd, chunk)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
