"""A debounced, never-lossy change watcher over some directories of a workspace.

`loop.WatchLoop` hands it the directories that hold the selected steps' inputs (see
`watchset.py`: recursive where nothing ignored lies below, flat above an ignored
directory such as node_modules) and an ``ignored(rel)`` callback (the steps' outputs,
`.buildlib` and the workspace's excludes). :class:`ChangeWatcher` watches them with
watchfiles' Rust backend (``RustNotify``, the ``notify`` crate: inotify on Linux) in
background threads and hands out *batches* of changed relative paths:

* a batch is ready once no relevant change arrived for ``debounce`` seconds (default
  0.1 s), or once its first change is ``max_delay`` seconds old (default 2 s), so a
  continuous stream still yields a batch every 2 s;
* changes that arrive while the caller is busy (rebuilding) accumulate in one pending set
  and come out with the next :meth:`ChangeWatcher.next_batch` call; nothing is dropped
  and there is only ever one consumer, so there is never a second build beside the first;
* ignored paths never enter a batch and never delay one;
* a directory created (or moved in) after the start is watched by notify; the watcher
  then checks, in ``/proc/self/fdinfo``, that the kernel really holds a watch for it and
  its subdirectories and walks it, so files written into it before the watch existed
  are reported too;
* a watched directory that is deleted (or replaced) and comes back is watched again;
* when inotify's limits are exhausted, :class:`~buildlib.watch.inotify.InotifyLimitError`
  names the limit, its value, the usage and the ``sysctl`` fix, at the start *and* later
  (notify itself drops a failed watch for a new directory silently, which would miss
  changes); above ``max_watches`` the constructor refuses with
  :class:`~buildlib.watch.inotify.TooManyWatchesError`.

A path in a batch may name a directory: then anything below it may have changed (a
directory moved away or a watched directory deleted reports only itself).

watchfiles is imported when a watcher is made, never at the engine's start-up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from buildlib.watch.inotify import (
    Ignored,
    InotifyLimitError,
    KernelId,
    TooManyWatchesError,
    WatchError,
    WatchEstimate,
    estimate_watches,
    fd_watches,
    inotify_fds,
    instance_limit_error,
    join,
    kernel_backlog,
    normalize_dirs,
    scan,
    stat_id,
    watch_limit_error,
    within,
)

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

__all__ = [
    "DEFAULT_DEBOUNCE",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_WATCHES",
    "ChangeWatcher",
    "InotifyLimitError",
    "prefix_ignorer",
]

DEFAULT_DEBOUNCE: Final = 0.1
"""Quiet time that ends a burst (an editor's save, a ``git checkout``), in seconds."""
DEFAULT_MAX_DELAY: Final = 2.0
"""A batch is handed out at the latest this long after its first change."""
DEFAULT_MAX_WATCHES: Final = 10_000
"""Refuse to watch more directories than this (a node_modules is 5,000-50,000)."""

# watchfiles change kinds (watchfiles.Change)
_ADDED: Final = 1

_STEP_MS: Final = 20  # RustNotify wakes this often: close() and event pick-up latency
_RUST_GROUP_MS: Final = 50  # RustNotify.watch returns at least this often while busy
_TICK_MS: Final = 20  # idle return: each return proves "nothing new up to its start"
_CHECK_DIRS_EVERY: Final = 0.1  # seconds between stats of the watched directories
_AUDIT_EVERY: Final = 5.0  # seconds between checks that the kernel still holds the roots
_SETTLE_TIMEOUT: Final = 1.0  # how long notify may take to watch a new directory
_MAX_PENDING: Final = 100_000  # beyond this a batch is "every watched directory"

_CREATE_LOCK = threading.Lock()  # one RustNotify created at a time: finds its inotify fd


def prefix_ignorer(prefixes: Iterable[str]) -> Ignored:
    """``ignored`` callback for directory (or file) prefixes such as outputs and .buildlib."""
    exact = {p.strip("/") for p in prefixes if p.strip("/")}
    starts = tuple(p + "/" for p in exact)

    def ignored(rel: str) -> bool:
        return rel in exact or rel.startswith(starts)

    return ignored


class _Group:
    """One RustNotify (one inotify instance) over some directories, one thread."""

    def __init__(self, dirs: list[str], recursive: bool) -> None:
        self.dirs = dirs
        self.dirset = frozenset(dirs)
        self.recursive = recursive
        self.rn: RustNotify | None = None
        self.fd: int | None = None  # its inotify fd, for fdinfo checks (None: polling/unknown)
        self.ids: dict[str, KernelId | None] = {}
        self.thread: threading.Thread | None = None


class ChangeWatcher:
    """Debounced batches of changed paths below some directories of ``root``.

    ``dirs`` are watched recursively, ``flat_dirs`` only for their direct entries (for
    inputs like ``web/*.json`` whose directory also holds node_modules).  ``ignored`` is
    called (in the watcher's threads) with each changed relative POSIX path.

    The watches are in place when the constructor returns.  Raises
    :class:`TooManyWatchesError` above ``max_watches`` (None: no check) and
    :class:`InotifyLimitError` when inotify's limits are exhausted.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dirs: Sequence[str],
        ignored: Ignored | None = None,
        *,
        flat_dirs: Sequence[str] = (),
        debounce: float = DEFAULT_DEBOUNCE,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_watches: int | None = DEFAULT_MAX_WATCHES,
        force_polling: bool = False,
        poll_delay: float = 0.3,
    ) -> None:
        if debounce < 0 or max_delay < debounce:
            raise ValueError("need 0 <= debounce <= max_delay")
        self.root = os.path.abspath(root)
        self._ignored: Ignored = ignored if ignored is not None else (lambda rel: False)
        self._debounce = debounce
        self._max_delay = max_delay
        self._max_watches = max_watches
        self._force_polling = force_polling
        self._poll_delay_ms = max(1, int(poll_delay * 1000))

        rec = normalize_dirs(self.root, dirs)
        flat = [
            d
            for d in normalize_dirs(self.root, flat_dirs, keep_nested=True)
            if not any(within(d, r) for r in rec)
        ]
        if not rec and not flat:
            raise ValueError("no directory to watch")
        self.dirs = rec
        self.flat_dirs = flat
        self.estimate: WatchEstimate | None = None
        if max_watches is not None:
            self.estimate = estimate_watches(self.root, rec, self._ignored, flat)
            if self.estimate.total > max_watches:
                raise TooManyWatchesError(
                    f"watching {', '.join(rec + flat)} would take {self.estimate.describe()}, "
                    f"more than the {max_watches} allowed; narrow the inputs' directories "
                    "(an output such as node_modules inside a watched directory is watched too)",
                    self.estimate,
                )

        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._first = 0.0
        self._last = 0.0  # when the newest pending change was picked up
        self._error: BaseException | None = None
        self._closed = False
        self._stop = threading.Event()
        self._groups = [g for g in (_Group(rec, True), _Group(flat, False)) if g.dirs]
        # per group: start of its newest watch() call that has returned; everything the
        # kernel reported before that moment has been absorbed (see _run)
        self._seen_upto = [0.0] * len(self._groups)

        try:
            for group in self._groups:
                group.ids = {d: stat_id(join(self.root, d)) for d in group.dirs}
                group.rn, group.fd = self._open(group, group.ids)
        except BaseException:
            for group in self._groups:
                if group.rn is not None:
                    group.rn.close()
            raise
        for index, group in enumerate(self._groups):
            name = "buildlib-watch" if group.recursive else "buildlib-watch-flat"
            group.thread = threading.Thread(
                target=self._run, args=(index, group), name=name, daemon=True
            )
            group.thread.start()

    # ----------------------------------------------------------------- public API

    def next_batch(self, timeout: float | None = None) -> set[str] | None:
        """The next batch of changed relative paths, or None after ``timeout`` seconds.

        Returns as soon as the pending changes have been quiet for ``debounce`` seconds
        (at once if that happened while the caller was busy) or the oldest is
        ``max_delay`` old.  Returns None once closed; raises the watcher's error
        (e.g. :class:`InotifyLimitError`) if it can no longer see every change.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return None
                now = time.monotonic()
                wait: float | None = None
                if self._pending:
                    quiet_at = self._last + self._debounce
                    # quiet is *verified*: a watch() call that started after the quiet
                    # period began has returned nothing new (a lagging thread cannot
                    # make a burst look quiet and split it)
                    verified = min(self._seen_upto) >= quiet_at
                    if verified or now >= self._first + self._max_delay:
                        batch, self._pending = self._pending, set()
                        return batch
                    wait = max(quiet_at - now, 0.0)
                    wait = min(wait, self._first + self._max_delay - now)
                    if wait == 0.0:
                        wait = 0.05  # woken by the watcher thread's next return
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def add_changes(self, rels: Iterable[str]) -> None:
        """Count ``rels`` as changed, as if seen now (what a replaced watcher still held)."""
        self._add_pending({rel for rel in rels if not self._ignored(rel)})

    def drain(self) -> set[str]:
        """Every pending path, at once and whatever the debounce (a closed watcher's
        leftovers, handed to the one that replaces it)."""
        with self._cond:
            batch, self._pending = self._pending, set()
            return batch

    def pending(self) -> int:
        """How many changed paths are waiting for the next batch."""
        with self._cond:
            return len(self._pending)

    def watch_count(self) -> int | None:
        """Inotify watches held now (from /proc/self/fdinfo); None when polling."""
        total = 0
        for group in self._groups:
            if group.fd is None:
                return None
            watched = fd_watches(group.fd)
            if watched is None:
                return None
            total += len(watched)
        return total

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (within ~one 20 ms step) and release the inotify instances."""
        self._stop.set()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for group in self._groups:
            if group.thread is not None and group.thread is not threading.current_thread():
                group.thread.join(timeout)

    def __enter__(self) -> ChangeWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _open(
        self, group: _Group, ids: dict[str, KernelId | None]
    ) -> tuple[RustNotify | None, int | None]:
        """A RustNotify over the present directories of ``group`` and its inotify fd."""
        from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

        for _attempt in range(3):
            present = [d for d in group.dirs if ids.get(d) is not None]
            if not present:
                return None, None
            paths = [join(self.root, d) for d in present]
            with _CREATE_LOCK:
                before = set(inotify_fds()) if not self._force_polling else set()
                try:
                    rn = RustNotify(
                        paths,
                        False,
                        self._force_polling,
                        self._poll_delay_ms,
                        group.recursive,
                        False,
                    )
                except FileNotFoundError:
                    # a directory vanished between stat and watch: look again
                    for d in group.dirs:
                        ids[d] = stat_id(join(self.root, d))
                    continue
                except WatchfilesRustInternalError as e:
                    if "os error 24" in str(e):
                        raise instance_limit_error(str(e)) from e
                    raise WatchError(f"cannot watch {', '.join(present)}: {e}") from e
                except OSError as e:
                    if "MaxFilesWatch" in str(e) or "watch limit" in str(e):
                        needed = estimate_watches(
                            self.root,
                            present if group.recursive else [],
                            None,
                            [] if group.recursive else present,
                        ).total
                        raise watch_limit_error(
                            f"while watching {', '.join(present)}", needed
                        ) from e
                    raise WatchError(f"cannot watch {', '.join(present)}: {e}") from e
                new = [fd for fd in inotify_fds() if fd not in before]
            fd = None
            if not self._force_polling:
                wanted = {kid for kid in ids.values() if kid is not None}
                for cand in new:
                    watched = fd_watches(cand)
                    if watched is not None and wanted <= watched:
                        fd = cand
                        break
            return rn, fd
        raise WatchError(f"the watched directories keep disappearing: {', '.join(group.dirs)}")

    def _rel(self, path: str) -> str | None:
        root = self.root
        if path.startswith(root) and len(path) > len(root) and path[len(root)] == os.sep:
            return path[len(root) + 1 :].replace(os.sep, "/")
        if path == root:
            return "."
        return None

    def _add_pending(self, rels: set[str]) -> None:
        if not rels:
            return
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first = now
            self._pending |= rels
            if len(self._pending) > _MAX_PENDING:
                # too many to list: "everything watched may have changed"
                self._pending = set(self.dirs) | set(self.flat_dirs)
            self._last = now
            self._cond.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()
        self._stop.set()

    def _run(self, index: int, group: _Group) -> None:
        """The group's thread: notify's events into the pending set, until closed."""
        clocks = [time.monotonic(), time.monotonic()]  # last directory check, last audit
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                # events still in the kernel's queue at `start` are not in notify's set
                # yet: then this call proves nothing about `start`
                clean = group.fd is None or not kernel_backlog(group.fd)
                touched = self._watch_once(group)
                if touched is None:
                    break
                self._check_now_and_then(group, touched, clocks)
                if clean:
                    with self._cond:
                        self._seen_upto[index] = start
                        if self._pending:
                            self._cond.notify_all()
        except BaseException as e:  # handed to the consumer by next_batch
            if not self._stop.is_set():
                self._fail(e)
        finally:
            if group.rn is not None:
                group.rn.close()
                group.rn = None

    def _watch_once(self, group: _Group) -> bool | None:
        """One wait for notify's events (at most ~50 ms): whether a watched root itself was
        touched; None when told to stop."""
        rn = group.rn
        if rn is None:
            self._stop.wait(_TICK_MS / 1000)
            return False
        raw = rn.watch(_RUST_GROUP_MS, _STEP_MS, _TICK_MS, self._stop)
        if raw == "stop":
            return None
        if isinstance(raw, set) and raw:
            return self._absorb(group, raw)
        return False

    def _check_now_and_then(self, group: _Group, touched: bool, clocks: list[float]) -> None:
        """Stat the roots every 0.1 s (and at once when one was touched); check in fdinfo
        that the kernel still holds their watches every 5 s."""
        now = time.monotonic()
        if touched or now - clocks[0] >= _CHECK_DIRS_EVERY:
            clocks[0] = now
            audit = touched or now - clocks[1] >= _AUDIT_EVERY
            if audit:
                clocks[1] = now
            self._check_dirs(group, audit)

    def _absorb(self, group: _Group, raw: set[tuple[int, str]]) -> bool:
        """Filter one RustNotify result into the pending set; True if a root was touched."""
        rels: set[str] = set()
        added_dirs: list[str] = []
        touched = False
        for kind, path in raw:
            rel = self._rel(path)
            if rel is None:
                continue
            if rel in group.dirset:
                touched = True
            if self._ignored(rel):
                continue
            rels.add(rel)
            if (
                kind == _ADDED
                and group.recursive
                and rel not in group.dirset
                and os.path.isdir(path)
            ):
                added_dirs.append(rel)
        settled: list[str] = []
        # read before the walks below (see _settle); once, as it lists every watch
        watched = fd_watches(group.fd) if added_dirs and group.fd is not None else None
        for rel in sorted(added_dirs):
            if any(within(rel, s) for s in settled):
                continue
            settled.append(rel)
            rels |= self._settle(group, join(self.root, rel), watched)
        self._add_pending(rels)  # once: a new directory and its files are one batch
        return touched

    def _settle(self, group: _Group, top: str, watched: set[KernelId] | None = None) -> set[str]:
        """Wait until the kernel watches ``top`` and its subdirectories; list its paths.

        notify adds the watch for a new directory after reporting it, so files written
        into it before that are never reported: the walk below, made after the watches
        are confirmed, finds them.  If notify could not add a watch (it drops that
        error), the directory stays unwatched: raise instead of missing changes.
        """
        deadline = time.monotonic() + _SETTLE_TIMEOUT
        flat = not group.recursive
        while True:
            if watched is None and group.fd is not None:
                watched = fd_watches(group.fd)  # read before the walk: see above
            dirs, files = scan(self.root, top, self._ignored, files=True, recursive=not flat)
            rels = set(files)
            rels.update(self._rel(p) or "." for p, _kid, ign in dirs if not ign and p != self.root)
            if watched is None:
                return rels
            missing = [p for p, kid, ign in dirs if not ign and kid not in watched]
            if not missing or self._stop.is_set():
                return rels
            if time.monotonic() >= deadline:
                missing = [p for p in missing if os.path.isdir(p)]
                if not missing:
                    return rels
                shown = ", ".join(self._rel(p) or p for p in missing[:3])
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                raise watch_limit_error(
                    f"(no watch could be added for {shown}{more}; holding {len(watched)})",
                    None,
                )
            time.sleep(0.01)
            watched = None

    def _check_dirs(self, group: _Group, audit: bool) -> None:
        """Re-watch directories that appeared, were replaced, or lost their watch."""
        changed = [d for d in group.dirs if stat_id(join(self.root, d)) != group.ids.get(d)]
        if not changed and audit and group.fd is not None:
            watched = fd_watches(group.fd)
            if watched is not None:
                changed = [
                    d for d, kid in group.ids.items() if kid is not None and kid not in watched
                ]
        if changed:
            self._restart(group, changed)

    def _restart(self, group: _Group, changed: list[str]) -> None:
        from watchfiles._rust_notify import WatchfilesRustInternalError

        ids = {d: stat_id(join(self.root, d)) for d in group.dirs}
        new_rn, new_fd = self._open(group, ids)  # before closing the old one: no gap
        old = group.rn
        group.rn, group.fd, group.ids = new_rn, new_fd, ids
        if old is not None:
            try:
                raw = old.watch(1, 1, 1, None)  # what the old one saw last
                if isinstance(raw, set) and raw:
                    self._absorb(group, raw)
            except WatchfilesRustInternalError:
                pass
            finally:
                old.close()
        rels = {d for d in changed if not self._ignored(d)}
        for d in changed:
            if ids[d] is not None and not self._ignored(d):
                rels |= self._settle(group, join(self.root, d))
        self._add_pending(rels)
