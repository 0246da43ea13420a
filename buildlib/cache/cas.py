"""The local content-addressed store: step results under ac/, file contents under cas/.

Layout, with the names of the Bazel HTTP cache so a store and a remote mirror each other:

    <root>/ac/<key>      one step result (a sealed JSON entry, see store.py), named by fingerprint
    <root>/cas/<sha256>  one file's content, named by its sha256

Guarantees: every write goes to a temp file in the same directory, is fsync'd, then
os.replace'd into place, so a reader sees a whole file or none, even after a crash; a
blob is named by the sha256 of the bytes actually written, and its readers check it
again (`read_blob`, `entries.materialize`). Reading an entry touches it, so `prune`
drops the least recently used entries first. Write failures (disk full, read-only
directory) raise `StoreWriteError`, distinct from errors reading a workspace file.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from buildlib.cache.entries import CorruptBlobError, is_digest
from buildlib.core.atomicfile import write_all
from buildlib.core.fmt import human_size
from buildlib.core.records import record
from buildlib.incremental import statscan

CHUNK = 1 << 20
# Blobs nobody references and temp files younger than this may belong to a save
# still in progress (blobs are written before the entry naming them): prune keeps them.
GRACE_SECONDS = 3600.0
TMP_PREFIX = ".tmp-"


class Area(enum.Enum):
    """The two namespaces of a cache, local or remote."""

    AC = "ac"  # action cache: fingerprint -> entry
    CAS = "cas"  # content-addressed storage: sha256 -> bytes


class StoreWriteError(Exception):
    """Writing into the cache failed (ENOSPC, EROFS, EACCES...): the cache's fault, not a step's."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = path
        self.error = error
        super().__init__(f"cannot write {path}: {error.strerror or error}")


Sink = Callable[[bytes], object]


class CacheBackend(Protocol):
    """What the local store and the HTTP remote both offer: named blobs in two areas.

    `fetch` passes the blob's bytes to `sink` in order and returns False when it is
    absent; it does not check digests: the receiving side does (`LocalStore.receive`).
    """

    def fetch(self, area: Area, name: str, sink: Sink) -> bool: ...

    def store(self, area: Area, name: str, source: Path) -> None: ...

    def contains(self, area: Area, name: str) -> bool: ...


@record
class PruneResult:
    before: int
    after: int
    limit: int
    removed_entries: int
    removed_blobs: int

    def __str__(self) -> str:
        return (
            f"pruned {self.removed_entries} entries and {self.removed_blobs} blobs "
            f"({human_size(self.before - self.after)}); the cache holds "
            f"{human_size(self.after)} of a {human_size(self.limit)} limit"
        )


class LocalStore:
    """A cache directory. Safe for concurrent use by threads and by processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._grown = 0  # bytes this object's writes added to the store
        self._grown_lock = threading.Lock()

    def take_growth(self) -> int:
        """Bytes this object's writes added to the store since the last call: a blob that
        was already there adds nothing, an entry written again adds its change in size."""
        with self._grown_lock:
            grown, self._grown = self._grown, 0
        return grown

    def path(self, area: Area, name: str) -> Path:
        return self.root / area.value / name

    # -- CacheBackend --------------------------------------------------------------------

    def fetch(self, area: Area, name: str, sink: Sink) -> bool:
        try:
            with self.path(area, name).open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    sink(chunk)
        except FileNotFoundError:
            return False
        return True

    def store(self, area: Area, name: str, source: Path) -> None:
        """Store `source` under `name`; in CAS, `name` must be its sha256 (else ValueError)."""
        if area is Area.CAS:
            digest, _size = self.add_file(source)
            if digest != name:
                raise ValueError(f"{source}: content has sha256 {digest}, not {name}")
        else:
            self.write_entry(name, source.read_bytes())

    def contains(self, area: Area, name: str) -> bool:
        return self.path(area, name).is_file()

    # -- entries -------------------------------------------------------------------------

    def read_entry(self, key: str) -> bytes | None:
        """The entry's bytes (unchecked: see cache.unseal), touched for LRU; None if absent."""
        path = self.path(Area.AC, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves hits
            os.utime(path)
        return data

    def write_entry(self, key: str, data: bytes) -> None:
        with self._temp(Area.AC) as (fd, tmp):
            _write_all(fd, data, tmp)
            self._commit(fd, tmp, self.path(Area.AC, key))

    # -- blobs ---------------------------------------------------------------------------

    def add_file(self, source: Path) -> tuple[str, int]:
        """Copy `source` into the store; returns (sha256, size) of the bytes stored.

        One pass: the bytes read are hashed and written, so a file that changes while it
        is copied can never be stored under a digest that does not match. Errors reading
        `source` are OSError; errors writing the store are StoreWriteError.
        """
        with source.open("rb") as handle, self._temp(Area.CAS) as (fd, tmp):
            hasher = hashlib.sha256()
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            size = 0
            while count := handle.readinto(buffer):
                hasher.update(view[:count])
                _write_all(fd, view[:count], tmp)
                size += count
            digest = hasher.hexdigest()
            self._commit(fd, tmp, self.path(Area.CAS, digest))
        return digest, size

    def add_stream(self, fill: Callable[[Sink], None]) -> tuple[str, int]:
        """Store what `fill` writes to its sink (an archive as it is packed); returns
        (sha256, size). Errors of `fill` propagate and nothing is stored."""
        with self._temp(Area.CAS) as (fd, tmp):
            hasher = hashlib.sha256()
            size = 0

            def sink(chunk: bytes) -> None:
                nonlocal size
                hasher.update(chunk)
                _write_all(fd, chunk, tmp)
                size += len(chunk)

            fill(sink)
            digest = hasher.hexdigest()
            self._commit(fd, tmp, self.path(Area.CAS, digest))
        return digest, size

    def add_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self._temp(Area.CAS) as (fd, tmp):
            _write_all(fd, data, tmp)
            self._commit(fd, tmp, self.path(Area.CAS, digest))
        return digest

    def receive(self, digest: str, fill: Callable[[Sink], bool]) -> bool:
        """Store the bytes `fill` passes to its sink as blob `digest`, if they hash to it.

        `fill` returns False when the source has no such blob (nothing is stored). Bytes
        that do not hash to `digest` raise CorruptBlobError and are not stored.
        """
        with self._temp(Area.CAS) as (fd, tmp):
            hasher = hashlib.sha256()

            def sink(chunk: bytes) -> None:
                hasher.update(chunk)
                _write_all(fd, chunk, tmp)

            if not fill(sink):
                return False
            if hasher.hexdigest() != digest:
                raise CorruptBlobError(digest, f"downloaded blob {digest[:12]}…")
            self._commit(fd, tmp, self.path(Area.CAS, digest))
        return True

    def blob_sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """The size of each blob present (a lookup checks every blob of an entry)."""
        try:
            keys = statscan.lstat_keys(f"{self.root}/{Area.CAS.value}", digests)
        except OSError:
            return {}  # an unreadable store: a miss, like a missing blob
        return {digest: key[0] for digest, key in keys.items()}

    def read_blob(self, digest: str, label: str) -> bytes | None:
        """The blob's bytes, checked against `digest` (else CorruptBlobError); None if absent."""
        try:
            data = self.path(Area.CAS, digest).read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlobError(digest, label)
        return data

    def discard(self, area: Area, name: str) -> None:
        """Remove a corrupt or unwanted file; a read-only store just keeps it."""
        with contextlib.suppress(OSError):
            self.path(area, name).unlink(missing_ok=True)

    def _remove(self, area: Area, name: str) -> None:
        path = self.path(area, name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreWriteError(path, exc) from exc

    # -- size ----------------------------------------------------------------------------

    def usage(self) -> int:
        return sum(size for _name, size, _mtime in self._listing(Area.AC)) + sum(
            size for _name, size, _mtime in self._listing(Area.CAS)
        )

    def prune(
        self, max_size: int, references: Callable[[bytes], Iterable[str] | None]
    ) -> PruneResult:
        """Shrink to at most `max_size` bytes, dropping least recently used entries first.

        `references(data)` names the blobs an entry uses, or None if it is corrupt (it
        is dropped). A blob goes when no remaining entry uses it. Entries whose blobs
        are missing are dropped; unreferenced blobs older than GRACE_SECONDS too.
        StoreWriteError if a file cannot be removed (a read-only store).
        """
        now = time.time()
        entries: list[tuple[float, str, int, tuple[str, ...]]] = []
        blobs = {name: (size, mtime) for name, size, mtime in self._listing(Area.CAS)}
        before = sum(size for size, _mtime in blobs.values())
        removed_entries = removed_blobs = 0
        for name, size, mtime in self._listing(Area.AC):
            before += size
            try:
                refs = references(self.path(Area.AC, name).read_bytes())
            except FileNotFoundError:  # pruned by another process meanwhile
                continue
            if refs is None or any(ref not in blobs for ref in refs):
                self._remove(Area.AC, name)
                removed_entries += 1
                continue
            entries.append((mtime, name, size, tuple(refs)))
        total = sum(size for _m, _n, size, _r in entries) + sum(s for s, _m in blobs.values())
        users = Counter(ref for *_rest, refs in entries for ref in set(refs))
        for name, (size, mtime) in blobs.items():
            if users[name] == 0 and now - mtime > GRACE_SECONDS:
                self._remove(Area.CAS, name)
                total -= size
                removed_blobs += 1
        entries.sort()
        for _mtime, name, size, refs in entries:
            if total <= max_size:
                break
            self._remove(Area.AC, name)
            total -= size
            removed_entries += 1
            for ref in set(refs):
                users[ref] -= 1
                if users[ref] == 0:
                    self._remove(Area.CAS, ref)
                    total -= blobs[ref][0]
                    removed_blobs += 1
        self._drop_pointers(set(self._names(Area.AC)))
        return PruneResult(
            before=before,
            after=total,
            limit=max_size,
            removed_entries=removed_entries,
            removed_blobs=removed_blobs,
        )

    def _names(self, area: Area) -> Iterator[str]:
        for name, _size, _mtime in self._listing(area):
            yield name

    def _drop_pointers(self, entries: set[str]) -> None:
        """Remove the newest-entry pointers (`latest.py`) whose entry is gone."""
        from buildlib.cache import latest

        directory = self.root / latest.DIRECTORY
        try:
            pointers = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for item in pointers:
            try:
                key = Path(item.path).read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                key = ""
            if key not in entries:
                path = Path(item.path)
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    raise StoreWriteError(path, exc) from exc

    def clear(self) -> None:
        """Remove every entry, blob and newest-entry pointer (each directory is renamed away
        first, then deleted)."""
        from buildlib.cache.latest import DIRECTORY

        for path in (*(self.root / area.value for area in Area), self.root / DIRECTORY):
            if not path.exists():
                continue
            trash = self.root / f"{TMP_PREFIX}trash-{secrets.token_hex(6)}"
            try:
                path.rename(trash)
                shutil.rmtree(trash)
            except OSError as exc:
                raise StoreWriteError(path, exc) from exc

    # -- helpers -------------------------------------------------------------------------

    def _listing(self, area: Area) -> Iterator[tuple[str, int, float]]:
        """(name, size, mtime) of the area's files; stale temp files are removed on the way."""
        directory = self.root / area.value
        try:
            scan = list(os.scandir(directory))
        except FileNotFoundError:
            return
        now = time.time()
        for item in scan:
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if item.name.startswith(TMP_PREFIX):
                if now - info.st_mtime > GRACE_SECONDS:
                    self.discard(area, item.name)
                continue
            if area is Area.CAS and not is_digest(item.name):
                continue
            yield item.name, info.st_size, info.st_mtime

    @contextlib.contextmanager
    def _temp(self, area: Area) -> Iterator[tuple[int, Path]]:
        """An open temp file in the area's directory, removed unless committed."""
        directory = self.root / area.value
        tmp = directory / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreWriteError(tmp, exc) from exc
        try:
            yield fd, tmp
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _commit(self, fd: int, tmp: Path, final: Path) -> None:
        """fsync the temp file and move it into place (a blob already there is kept, touched)."""
        try:
            if final.parent.name == Area.CAS.value and final.exists():
                os.utime(final)  # same name, same content: keep the old one, mark it used
                return
            size = os.fstat(fd).st_size
            os.fsync(fd)
            with contextlib.suppress(FileNotFoundError):  # an entry written again
                size -= final.stat().st_size  # replaces the old one
            tmp.replace(final)
        except OSError as exc:
            raise StoreWriteError(final, exc) from exc
        with self._grown_lock:
            self._grown += size


def _write_all(fd: int, data: bytes | memoryview, tmp: Path) -> None:
    try:
        write_all(fd, data)
    except OSError as exc:
        raise StoreWriteError(tmp, exc) from exc
