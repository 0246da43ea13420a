"""The step cache: a step's outputs and log, stored under its fingerprint, locally and remotely.

Called by the executor's gate (`run/caching_gate.CachingGate`) from several job threads at once:
`lookup` (local store first, then the remote; a remote hit is copied into the local
store), `restore`, `log_text`, and `save` after a step succeeded.

Guarantees:
- A wrong output is never restored. An entry is sealed JSON whose body carries its own
  sha256 (`seal`/`unseal`), every blob is checked against its sha256 when it is read
  or downloaded, and an entry that fails a check is reported, discarded and treated
  as a miss.
- A restore writes only the step's declared outputs (`entries.materialize`, which
  refuses an entry holding anything else, or a symlink leading out of its output);
  `save` applies the same rule, so such a result is never stored either.
- With `[cache] trusted_keys`, an entry from the remote is used only when it carries an
  Ed25519 signature by one of those keys over its key and content (`signing.py`);
  with BUILDLIB_CACHE_SIGNING_KEY set, the entries this build uploads are signed.
- The cache never fails a build. `save` reports instead of raising when the store
  cannot be written (disk full, read-only); after that this build stops writing
  locally. A remote that is down, slow or erroring is switched off after its first
  failure (one bounded deadline, one warning).
- Every refused, corrupt or unstored entry is reported with its step (`drain_warnings`)
  and counted (`problem_counts`); problems of the store or the remote as a whole are
  reported once.
- The store stays under `max_size`: entries are touched when used and `save` prunes
  the least recently used ones when the store grows past the limit.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from buildlib.cache.cas import Area, LocalStore, PruneResult, StoreWriteError
from buildlib.cache.config import CacheConfig, resolve_cache_dir
from buildlib.cache.entries import (
    UNHASHED,
    CorruptBlobError,
    CorruptEntryError,
    FileKind,
    OutputFile,
    UnsafeEntryError,
    check_safe,
    is_digest,
    materialize,
    path_problem,
    scope_problems,
    symlink_problem,
    symlink_record,
)
from buildlib.core.errors import UserError
from buildlib.core.records import field, record, replace

if TYPE_CHECKING:  # the remote client (http.client, ssl), the protobuf codec and
    # cryptography's signatures are imported only when configured
    from buildlib.cache.reapi import RemoteResult
    from buildlib.cache.remote import HttpRemote, RemoteError
    from buildlib.cache.signing import Signer, Verifier
    from buildlib.incremental.outputs import OutputScope

FORMAT = "buildlib-cache-entry/1"
SIGNATURE_CONTEXT = "buildlib-cache-signature/1"
# After the store outgrows its limit, prune to this share of it, so the next few
# saves do not each pay for a prune.
PRUNE_TO = 0.9
SAVE_WORKERS = 8


class CacheSource(enum.StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


class WarningKind(enum.Enum):
    # Problems of one entry: each is reported and counted.
    CORRUPT = "corrupt"
    REFUSED = "refused"
    NOT_RESTORED = "not restored"
    NOT_STORED = "not stored"
    # Problems of a store as a whole: reported once per build.
    LOCAL_WRITE = "local write"
    LOCAL_READ = "local read"
    REMOTE_UNAVAILABLE = "remote unavailable"
    REMOTE_UPLOAD_REFUSED = "remote upload refused"


ONCE_PER_BUILD = frozenset(
    {
        WarningKind.LOCAL_WRITE,
        WarningKind.LOCAL_READ,
        WarningKind.REMOTE_UNAVAILABLE,
        WarningKind.REMOTE_UPLOAD_REFUSED,
    }
)


class _NotStoredError(Exception):
    """An output the cache cannot hold (a symlink leading outside, a FIFO...)."""


@record
class CacheEntry:
    """One stored step result. Every file's content is the blob named by its sha256."""

    step: str
    key: str
    files: tuple[OutputFile, ...]
    log_sha256: str
    log_size: int
    created: float
    meta: Mapping[str, object] = field(default_factory=dict)
    source: CacheSource = CacheSource.LOCAL

    def blobs(self) -> dict[str, int]:
        """sha256 -> size of every blob the entry needs (its files and its log)."""
        found = {f.sha256: f.size for f in self.files if f.kind is not FileKind.SYMLINK}
        found[self.log_sha256] = self.log_size
        return found


def seal(entry: CacheEntry) -> bytes:
    """The entry as JSON that carries the sha256 of its own canonical body."""
    body: dict[str, object] = {
        "step": entry.step,
        "key": entry.key,
        "created": entry.created,
        "files": [f.to_json() for f in entry.files],
        "log": {"sha256": entry.log_sha256, "size": entry.log_size},
        "meta": json.loads(json.dumps(dict(entry.meta), default=str)),
    }
    return _canonical({"format": FORMAT, "sha256": _digest(body), "body": body})


def unseal(data: bytes, key: str | None) -> CacheEntry:
    """Parse and check an entry: CorruptEntryError if damaged, UnsafeEntryError if refused."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CorruptEntryError("not valid JSON (truncated?)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CorruptEntryError("not a buildlib cache entry")
    body = document.get("body")
    if not isinstance(body, dict) or document.get("sha256") != _digest(body):
        raise CorruptEntryError("its checksum does not match its content")
    step, stored_key, created = body.get("step"), body.get("key"), body.get("created")
    files, log, meta = body.get("files"), body.get("log"), body.get("meta")
    if key is not None and stored_key != key:
        raise CorruptEntryError("it is stored under another key")
    if not (
        isinstance(step, str)
        and isinstance(stored_key, str)
        and isinstance(created, (int, float))
        and isinstance(files, list)
        and isinstance(log, dict)
        and isinstance(meta, dict)
    ):
        raise CorruptEntryError("a field is missing or has the wrong type")
    log_sha256, log_size = log.get("sha256"), log.get("size")
    if not (isinstance(log_sha256, str) and is_digest(log_sha256) and isinstance(log_size, int)):
        raise CorruptEntryError("its log record is malformed")
    records = tuple(OutputFile.from_json(item) for item in files)
    check_safe(records)
    return CacheEntry(
        step=step,
        key=stored_key,
        files=records,
        log_sha256=log_sha256,
        log_size=log_size,
        created=float(created),
        meta=meta,
    )


def _canonical(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _digest(body: object) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


class StepCache:
    """The local store plus an optional remote, for one build. Thread-safe."""

    def __init__(self, config: CacheConfig, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.local = LocalStore(
            resolve_cache_dir(config.local_dir, os.environ if environ is None else environ)
        )
        self.remote: HttpRemote | None = None
        if config.remote_url:
            from buildlib.cache.remote import HttpRemote

            self.remote = HttpRemote(
                config.remote_url,
                header=config.remote_header,
                timeout=config.remote_timeout,
                read_only=config.remote_read_only,
            )
        self._signer: Signer | None = None
        self._verifier: Verifier | None = None
        if config.signing_key:
            from buildlib.cache.signing import Signer

            self._signer = Signer.from_text(config.signing_key)
        if config.trusted_keys:
            from buildlib.cache.signing import Verifier

            self._verifier = Verifier(config.trusted_keys)
        self.warnings: list[str] = []  # every warning of this build, in order
        self._drained = 0  # how many of them `drain_warnings` has handed out
        self._warned: set[WarningKind] = set()
        self._counts: Counter[WarningKind] = Counter()
        self._lock = threading.Lock()
        self._prune_lock = threading.Lock()
        self._local_writes = True
        self._usage: int | None = None

    # -- reading -------------------------------------------------------------------------

    def lookup(self, step: str, key: str, *, shared: bool = True) -> CacheEntry | None:
        """The entry stored for `key`, complete in the local store, or None (a miss).
        `shared=False` (a step with a `store = "local"` output) never asks the remote."""
        if not is_digest(key):
            raise ValueError(f"cache key {key!r} is not a sha256 hex digest")
        entry = self._lookup_local(step, key)
        if entry is None and shared and self.remote is not None and self.remote.reads:
            entry = self._lookup_remote(step, key)
        return entry

    def peek(
        self, step: str, key: str, *, shared: bool = True
    ) -> tuple[CacheSource, str | None] | None:
        """Where `lookup` would find a usable entry for `key`, and the outputs digest its
        restore would give (`fingerprint.outputs_digest`; None when only the restore can
        tell, for an archived output of a remote entry), without downloading blobs or
        writing anything (for `--dry-run`). A remote entry counts when its action result
        is there and, with trusted keys, carries a trusted signature."""
        from buildlib.incremental.fingerprint import outputs_digest

        if not is_digest(key):
            raise ValueError(f"cache key {key!r} is not a sha256 hex digest")
        try:
            data = self.local.read_entry(key)
        except OSError:
            data = None
        if data is not None:
            try:
                entry = unseal(data, key)
            except ValueError:
                entry = None
            if entry is not None:
                needed = entry.blobs()
                if self.local.blob_sizes(needed) == needed:
                    return CacheSource.LOCAL, _outputs_digest(entry)
        if not shared or self.remote is None or not self.remote.reads:
            return None
        from buildlib.cache.remote import RemoteError

        try:
            result = self._trusted_result(step, key)
        except RemoteError as exc:
            self._remote_failed(exc, step)
            return None
        if result is None:
            return None
        if any(described[0] == "archive" for described in result.listing.values()):
            return CacheSource.REMOTE, None
        return CacheSource.REMOTE, outputs_digest(
            {  # a symlink's is its target string's
                path: str(described[1])
                if described[0] == "file"
                else hashlib.sha256(os.fsencode(str(described[1]))).hexdigest()
                for path, described in result.listing.items()
            }
        )

    def restore(self, entry: CacheEntry, root: Path, scope: OutputScope) -> bool:
        """Make the step's declared outputs under `root` hold exactly the entry's files.

        False when the entry is refused (it holds a path outside `scope`, a symlink that
        leads out of its output...), a blob turns out corrupt (blob and entry are
        discarded) or the workspace cannot be written; each is reported, and the caller
        runs the step instead.
        """
        try:
            materialize(entry.files, root, lambda digest: self.local.path(Area.CAS, digest), scope)
        except UnsafeEntryError as exc:
            self._note(
                WarningKind.REFUSED,
                f"cache entry refused for {entry.step} "
                f"({entry.source} cache): {exc}; the step runs",
            )
            return False
        except CorruptBlobError as exc:
            self.local.discard(Area.CAS, exc.digest)
            self.local.discard(Area.AC, entry.key)
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt for {entry.step}: {exc}; it was discarded and the step runs",
            )
            return False
        except OSError as exc:
            self._note(
                WarningKind.NOT_RESTORED,
                f"cache entry for {entry.step} could not be "
                f"restored: {exc.strerror or exc} ({exc.filename or 'workspace'}); "
                "the step runs",
            )
            return False
        return True

    def log_text(self, entry: CacheEntry) -> str:
        """The step's log as stored with the entry; empty if it is gone or damaged."""
        try:
            data = self.local.read_blob(entry.log_sha256, f"the log of {entry.step}")
        except CorruptBlobError:
            self.local.discard(Area.CAS, entry.log_sha256)
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt: the stored log of "
                f"{entry.step} does not match its sha256; it was discarded",
            )
            return ""
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace") if data is not None else ""

    # -- writing -------------------------------------------------------------------------

    def save(  # noqa: PLR0917 - the executor's call
        self,
        step: str,
        key: str,
        root: Path,
        output_paths: Sequence[str],
        log_path: Path,
        meta: Mapping[str, object],
        *,
        scope: OutputScope,
        archives: Collection[str] = (),
        shared: bool = True,
    ) -> str | None:
        """Store the outputs and log of a successful step (a step without outputs stores its
        log alone, replayed on a hit). `output_paths` are workspace-relative files and
        symlinks, all under `scope`; those under an output named in `archives` are stored
        as one archive per output. `shared=False` keeps the entry out of the remote.
        Problems are noted as warnings, never raised; the one this call noted is returned
        (None: stored, or already reported)."""
        if not is_digest(key):
            raise ValueError(f"cache key {key!r} is not a sha256 hex digest")
        if not self._local_writes:
            return None
        try:
            files = self._store_outputs(root, output_paths, scope, archives)
            log_sha256, log_size = self._store_log(log_path)
            entry = CacheEntry(
                step=step,
                key=key,
                files=files,
                log_sha256=log_sha256,
                log_size=log_size,
                created=time.time(),
                meta=meta,
            )
            data = seal(entry)
            self.local.write_entry(key, data)
            latest_of = _mode_target(meta)
            if latest_of is not None:
                from buildlib.cache import latest

                latest.record_local(self.local.root, step, *latest_of, key)
        except _NotStoredError as exc:
            return self._note(WarningKind.NOT_STORED, f"not cached: {step}: {exc}")
        except StoreWriteError as exc:
            return self._local_write_failed(exc)
        self._account()
        if shared and self.remote is not None and self.remote.writes:
            self._push(entry, data)
        return None

    def _store_outputs(
        self, root: Path, output_paths: Sequence[str], scope: OutputScope, archives: Collection[str]
    ) -> tuple[OutputFile, ...]:
        """Copy the outputs into the store; raises _NotStoredError for an output we cannot
        cache, or for outputs a restore would refuse (the rule is the same both ways).

        Several files are stored at once: each blob is fsync'd, and concurrent fsyncs
        share the file system's journal commits, which makes saving many small
        files several times faster than one at a time.
        """
        packed: dict[str, list[str]] = {output: [] for output in archives}
        if packed:
            loose: list[str] = []
            for rel in output_paths:
                owner = scope.owner(rel)
                if owner is not None and owner == rel and owner in packed:
                    raise _NotStoredError(
                        f'{rel}: store = "archive" packs a directory, and this is a file or '
                        'a symlink (drop store = "archive" for it: it is stored as it is)'
                    )
                packed.get(owner or "", loose).append(rel)
            output_paths = loose
        record = functools.partial(self._record, root)
        if len(output_paths) < 4:
            files = [record(rel) for rel in output_paths]
        else:
            pool = ThreadPoolExecutor(max_workers=SAVE_WORKERS, thread_name_prefix="cache-save")
            try:
                files = list(pool.map(record, output_paths))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        members = [self._describe(root, rel) for paths in packed.values() for rel in paths]
        try:
            check_safe([*files, *members])
        except UnsafeEntryError as exc:
            raise _NotStoredError("; ".join(exc.problems)) from None
        problems = scope_problems([*files, *members], scope, root)
        if problems:
            raise _NotStoredError("; ".join(problems))
        return (
            *files,
            *(self._archive(root, output, paths) for output, paths in packed.items() if paths),
        )

    def _describe(self, root: Path, rel: str) -> OutputFile:
        """A member of an archived output, described for the checks (not stored alone)."""
        problem = path_problem(rel)
        if problem is not None:
            raise _NotStoredError(problem)
        try:
            info = os.lstat(root / rel)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(root / rel)  # noqa: PTH115 - one call per member
                problem = symlink_problem(rel, target)
                if problem is not None:
                    raise _NotStoredError(problem)
                return symlink_record(rel, target)
        except OSError as exc:
            raise _NotStoredError(f"{rel}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):
            raise _NotStoredError(f"{rel}: not a regular file or a symlink")
        return OutputFile(
            path=rel,
            kind=FileKind.FILE,
            sha256=UNHASHED,
            size=info.st_size,
            mode=stat.S_IMODE(info.st_mode) & 0o777,
        )

    def _archive(self, root: Path, output: str, paths: Sequence[str]) -> OutputFile:
        """Store an archived output as one blob (cache/archives.py)."""
        from buildlib.cache import archives

        try:
            digest, size = self.local.add_stream(
                functools.partial(archives.pack, os.fspath(root), output, paths)
            )
        except OSError as exc:  # reading the workspace; the store's are StoreWriteError
            raise _NotStoredError(f"{output}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise _NotStoredError(str(exc)) from None
        return OutputFile(path=output, kind=FileKind.ARCHIVE, sha256=digest, size=size, mode=0o755)

    def _record(self, root: Path, rel: str) -> OutputFile:
        """Store one output (a file's content as a blob) and describe it."""
        problem = path_problem(rel)
        if problem is not None:
            raise _NotStoredError(problem)
        path = root / rel
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = str(path.readlink())
                problem = symlink_problem(rel, target)
                if problem is not None:
                    raise _NotStoredError(problem)
                return symlink_record(rel, target)
            if stat.S_ISREG(info.st_mode):
                digest, size = self.local.add_file(path)
                return OutputFile(
                    path=rel,
                    kind=FileKind.FILE,
                    sha256=digest,
                    size=size,
                    mode=stat.S_IMODE(info.st_mode) & 0o777,
                )
        except OSError as exc:  # reading the workspace; store errors are StoreWriteError
            raise _NotStoredError(f"{rel}: {exc.strerror or exc}") from None
        raise _NotStoredError(f"{rel}: not a regular file or a symlink")

    def _store_log(self, log_path: Path) -> tuple[str, int]:
        try:
            return self.local.add_file(log_path)
        except OSError:  # no log: store an empty one
            return self.local.add_bytes(b""), 0

    def _push(self, entry: CacheEntry, data: bytes) -> None:
        """Upload the blobs first, the entry last, as a REAPI ActionResult that references
        the sealed entry (and carries its signature): a remote entry never names a missing
        blob, and servers that check action results (bazel-remote) accept it."""
        assert self.remote is not None
        from buildlib.cache.reapi import encode_action_result
        from buildlib.cache.remote import RemoteError

        meta_sha256 = hashlib.sha256(data).hexdigest()
        signature = (
            None
            if self._signer is None
            else self._signer.sign(signed_message(entry.key, meta_sha256))
        )
        try:
            for digest in entry.blobs():
                if not self.remote.contains(Area.CAS, digest):
                    self.remote.store(Area.CAS, digest, self.local.path(Area.CAS, digest))
            if not self.remote.contains(Area.CAS, meta_sha256):
                self.remote.put_bytes(Area.CAS, meta_sha256, data)
            result = encode_action_result(
                entry.files,
                log_sha256=entry.log_sha256,
                log_size=entry.log_size,
                meta_sha256=meta_sha256,
                meta_size=len(data),
                signature=signature,
            )
            self.remote.put_bytes(Area.AC, entry.key, result)
            latest_of = _mode_target(entry.meta)
            if latest_of is not None:  # the step's newest entry, for explain-miss
                from buildlib.cache.latest import pointer_name

                self.remote.put_bytes(Area.AC, pointer_name(entry.step, *latest_of), result)
        except RemoteError as exc:
            self._remote_failed(exc, entry.step)
        except OSError as exc:  # a blob pruned meanwhile by another build
            self._note(
                WarningKind.NOT_STORED,
                f"cache entry not uploaded for {entry.step}: {exc.strerror or exc}",
            )

    # -- the newest entry of a step (explain-miss, cache/latest.py) ----------------------

    def newest_entries(self, step: str, mode: str, target: str) -> list[CacheEntry]:
        """The entries the latest saves of `step` on this mode and target recorded: the
        local store's and the remote's (when configured), without their blobs; for
        explanations only, never restored. Problems are warnings, never errors."""
        from buildlib.cache import latest

        found: list[CacheEntry] = []
        key = latest.read_local(self.local.root, step, mode, target)
        data = None
        if key is not None:
            with contextlib.suppress(OSError):
                data = self.local.read_entry(key)
        if key is not None and data is not None:
            entry = self._decode(step, data, key, CacheSource.LOCAL)
            if entry is not None:
                found.append(entry)
        if self.remote is not None and self.remote.reads:
            from buildlib.cache.remote import RemoteError

            try:
                remote = self._remote_pointer(step, latest.pointer_name(step, mode, target))
            except RemoteError as exc:
                self._remote_failed(exc, step)
                remote = None
            if remote is not None:
                found.append(remote)
        return found

    def _remote_pointer(self, step: str, name: str) -> CacheEntry | None:
        """The sealed entry the remote's pointer `name` leads to, checked like a hit's
        (its digest, and with trusted keys its signature over its own key)."""
        assert self.remote is not None
        from buildlib.cache.reapi import decode_action_result

        data = self.remote.get_bytes(Area.AC, name)
        if data is None:
            return None
        try:
            result = decode_action_result(data)
        except CorruptEntryError:
            return None
        sealed = self.remote.get_bytes(Area.CAS, result.meta_sha256)
        if sealed is None or hashlib.sha256(sealed).hexdigest() != result.meta_sha256:
            return None
        entry = self._decode(step, sealed, None, CacheSource.REMOTE)
        if entry is None or entry.step != step:
            return None
        if (
            self._verifier is not None
            and self._verifier.problem(
                signed_message(entry.key, result.meta_sha256), result.signature
            )
            is not None
        ):
            return None
        return replace(entry, source=CacheSource.REMOTE)

    # -- size ----------------------------------------------------------------------------

    def size(self) -> int:
        return self.local.usage()

    def prune(self, max_size: int) -> PruneResult:
        """Drop least recently used entries (and blobs no entry uses) down to `max_size`.

        For the `prune` command: a store that cannot be written is a UserError.
        """
        try:
            return self._prune(max_size)
        except StoreWriteError as exc:
            raise UserError(
                f"cannot prune the cache: {exc}",
                fix="check the cache directory's permissions, or pass --cache-dir",
            ) from None

    def clear(self) -> None:
        """Empty the local store (for `clean --cache`); UserError if it cannot be written."""
        try:
            with self._prune_lock:
                self.local.clear()
        except StoreWriteError as exc:
            raise UserError(
                f"cannot empty the cache: {exc}",
                fix="check the cache directory's permissions, or pass --cache-dir",
            ) from None
        with self._lock:
            self._usage = 0

    def _prune(self, max_size: int) -> PruneResult:
        with self._prune_lock:
            result = self.local.prune(max_size, _references)
        with self._lock:
            self.local.take_growth()  # counted in `result.after` already
            self._usage = result.after
        return result

    def _account(self) -> None:
        """Track the store's size (measured once per build, then grown by what this build's
        writes added: a blob that was already stored adds nothing); prune when over."""
        with self._lock:
            grown = self.local.take_growth()
            if self._usage is None:
                self._usage = self.local.usage()  # already holds what was just written
            else:
                self._usage += grown
            over = self._usage > self.config.max_size
        if over:
            try:
                self._prune(int(self.config.max_size * PRUNE_TO))
            except StoreWriteError as exc:
                self._local_write_failed(exc)

    # -- lookups -------------------------------------------------------------------------

    def _lookup_local(self, step: str, key: str) -> CacheEntry | None:
        try:
            data = self.local.read_entry(key)
        except OSError as exc:
            self._note(
                WarningKind.LOCAL_READ,
                f"local cache unreadable ({self.local.root}): "
                f"{exc.strerror or exc}; treating it as empty",
            )
            return None
        if data is None:
            return None
        entry = self._decode(step, data, key, CacheSource.LOCAL)
        if entry is None:
            self.local.discard(Area.AC, key)
            return None
        needed = entry.blobs()
        present = self.local.blob_sizes(needed)
        for digest, size in needed.items():
            actual = present.get(digest)
            if actual is None:  # pruned by another build: a plain miss
                self.local.discard(Area.AC, key)
                return None
            if actual != size:
                self.local.discard(Area.CAS, digest)
                self.local.discard(Area.AC, key)
                self._note(
                    WarningKind.CORRUPT,
                    f"cache entry corrupt for {step}: a stored "
                    "file is truncated; it was discarded and the step runs",
                )
                return None
        return entry

    def _lookup_remote(self, step: str, key: str) -> CacheEntry | None:
        from buildlib.cache.remote import RemoteError

        try:
            entry = self._fetch_remote(step, key)
        except RemoteError as exc:
            self._remote_failed(exc, step)
            return None
        except CorruptBlobError:
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt for {step}: the remote "
                "cache served a blob that does not match its sha256; not used",
            )
            return None
        except StoreWriteError as exc:
            self._local_write_failed(exc)
            return None
        return None if entry is None else replace(entry, source=CacheSource.REMOTE)

    def _fetch_remote(self, step: str, key: str) -> CacheEntry | None:
        """Download the action result, check its signature, then the sealed entry it names
        and the blobs the local store lacks; then store the entry locally."""
        assert self.remote is not None
        remote = self.remote
        result = self._trusted_result(step, key)
        if result is None:
            return None
        sealed = remote.get_bytes(Area.CAS, result.meta_sha256)
        if sealed is None:
            return None  # the remote lost the entry's body: a miss
        if hashlib.sha256(sealed).hexdigest() != result.meta_sha256:
            raise CorruptBlobError(result.meta_sha256, f"the cache entry of {step}")
        entry = self._decode(step, sealed, key, CacheSource.REMOTE)
        if entry is None:
            return None
        mismatch = result.mismatch(entry.files, entry.log_sha256)
        if mismatch is not None:
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt for {step} (remote cache): "
                f"its action result and its body disagree ({mismatch}); not used",
            )
            return None
        needed = entry.blobs()
        present = self.local.blob_sizes(needed)
        for digest, size in needed.items():
            if present.get(digest) == size:
                continue
            if not self.local.receive(digest, functools.partial(remote.fetch, Area.CAS, digest)):
                return None  # the remote lost a blob: a miss
        self.local.write_entry(key, sealed)
        return entry

    def _trusted_result(self, step: str, key: str) -> RemoteResult | None:
        """The remote's action result for `key`, if it has one buildlib wrote and, with
        trusted keys configured, a trusted key signed; problems are reported."""
        assert self.remote is not None
        from buildlib.cache.reapi import decode_action_result

        data = self.remote.get_bytes(Area.AC, key)
        if data is None:
            return None
        try:
            result = decode_action_result(data)
        except CorruptEntryError as exc:
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt for {step} (remote cache): {exc}; not used, the step runs",
            )
            return None
        if self._verifier is not None:
            problem = self._verifier.problem(
                signed_message(key, result.meta_sha256), result.signature
            )
            if problem is not None:
                self._note(
                    WarningKind.REFUSED,
                    f"cache entry refused for {step} (remote "
                    f"cache): {problem}; [cache] trusted_keys accepts only entries "
                    "signed by those keys, so the step runs",
                )
                return None
        return result

    def _decode(
        self, step: str, data: bytes, key: str | None, source: CacheSource
    ) -> CacheEntry | None:
        try:
            return unseal(data, key)
        except UnsafeEntryError as exc:
            self._note(
                WarningKind.REFUSED,
                f"cache entry refused for {step} ({source} cache): {exc}; the step runs",
            )
        except CorruptEntryError as exc:
            self._note(
                WarningKind.CORRUPT,
                f"cache entry corrupt for {step} ({source} cache): "
                f"{exc}; it was discarded and the step runs",
            )
        return None

    # -- warnings and interruption -------------------------------------------------------

    def drain_warnings(self) -> list[str]:
        """The warnings noted since the last call, in order."""
        with self._lock:
            found = self.warnings[self._drained :]
            self._drained = len(self.warnings)
        return found

    def problem_counts(self) -> dict[str, int]:
        """How many entries were refused, corrupt, not restored or not stored, by kind."""
        with self._lock:
            return {kind.value: count for kind, count in self._counts.items() if count}

    def interrupt(self) -> None:
        """Abort the remote's requests in flight and refuse new ones (SIGINT, SIGTERM)."""
        if self.remote is not None:
            self.remote.abort()

    def _note(self, kind: WarningKind, message: str) -> str | None:
        """Record a warning: every one of an entry's problems, the first of the store's.
        Returns it, or None when it was a repeat."""
        with self._lock:
            if kind in ONCE_PER_BUILD:
                if kind in self._warned:
                    return None
                self._warned.add(kind)
            else:
                self._counts[kind] += 1
            self.warnings.append(message)
        return message

    def _local_write_failed(self, exc: StoreWriteError) -> str | None:
        with self._lock:
            self._local_writes = False
        return self._note(
            WarningKind.LOCAL_WRITE,
            f"local cache not writable: {exc}; results "
            "of this build are not cached (the build itself is unaffected)",
        )

    def _remote_failed(self, exc: RemoteError, step: str) -> None:
        from buildlib.cache.remote import RemoteFailure

        if exc.failure is RemoteFailure.UNAVAILABLE:
            self._note(
                WarningKind.REMOTE_UNAVAILABLE,
                f"remote cache unavailable: {exc}; "
                "it is off for the rest of this build, the local cache still works",
            )
        elif exc.failure is RemoteFailure.INTERRUPTED:
            return
        elif exc.status == 400 and exc.area is Area.AC:
            self._note(
                WarningKind.REMOTE_UPLOAD_REFUSED,
                f"remote cache rejected the entry of "
                f"{step}: {exc}. The server checks /ac/ uploads (bazel-remote parses them "
                "as REAPI ActionResult messages and wants every blob they name in its "
                "CAS); check that it is a Bazel HTTP cache and that its CAS keeps "
                "blobs long enough (bazel-remote: a larger --max_size). Nothing more "
                "is uploaded in this build",
            )
        else:
            self._note(
                WarningKind.REMOTE_UPLOAD_REFUSED,
                f"remote cache refused an upload: {exc}; nothing more is uploaded in this build",
            )


def _mode_target(meta: Mapping[str, object]) -> tuple[str, str] | None:
    """The entry's mode and target (the gate puts them in its meta), or None."""
    mode, target = meta.get("mode"), meta.get("target")
    return (mode, target) if isinstance(mode, str) and isinstance(target, str) else None


def _outputs_digest(entry: CacheEntry) -> str | None:
    """The outputs digest a restore of `entry` gives. For an archived output the saver
    recorded it in the entry's meta (hashing every member here would cost a restore)."""
    from buildlib.incremental.fingerprint import outputs_digest

    if any(f.kind is FileKind.ARCHIVE for f in entry.files):
        recorded = entry.meta.get("outputs_digest")
        return recorded if isinstance(recorded, str) else None
    return outputs_digest({f.path: f.sha256 for f in entry.files})


def signed_message(key: str, meta_sha256: str) -> bytes:
    """What a signature covers: the fingerprint and the sha256 of the sealed entry (which
    lists every output's digest and the log's), so it cannot be moved to another key."""
    return f"{SIGNATURE_CONTEXT}\n{key}\n{meta_sha256}\n".encode()


def _references(data: bytes) -> list[str] | None:
    try:
        return list(unseal(data, None).blobs())
    except ValueError:
        return None
