"""Content hashes of workspace files, and the globbing that chooses them.

`FileHasher` gives the sha256 of workspace files for fingerprints and output records.
Reading a whole source tree on every build would dominate a no-op build. So hashes
live in a stat cache: a file whose (size, mtime_ns, ctime_ns, inode) has not changed
since it was hashed is not read again. The ctime makes the cache see edits that put
the old mtime back (`os.utime`, `touch -d`, `cp -p`), because a process cannot set
ctime. A file changed within `RACY_WINDOW_NS` of being hashed is never cached
(git's "racy clean" problem): two writes in the same coarse timestamp tick can
leave identical stat data over different contents.

Globs: `**` matches any number of path segments (zero included). `*` and `?` match
within one segment, and also match names that start with a dot. `[...]` is a
character class. A pattern that names a directory means every file under it.
Excludes always win: the step's `exclude` (which the plan extends with the manifest's
`[workspace] exclude`) is applied while walking, so an excluded directory is never
listed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path

from buildlib.core import marshalfile
from buildlib.core.errors import UserError
from buildlib.core.globs import WILDCARD, glob_parts
from buildlib.core.records import record
from buildlib.incremental import statscan

# Wider than any filesystem's timestamp granularity, and than small clock skew.
RACY_WINDOW_NS = 2_000_000_000
# Files up to this size are read in one call and hashed on the calling thread; larger
# ones go to a thread pool, where file_digest's big reads and updates release the GIL.
# Threads only pay for large files: on small ones they fight over the GIL (measured:
# 20,000 small files hash ~2x slower on 2 threads than on 1).
SMALL_FILE = 128 << 10
MAX_ENTRIES = 250_000  # beyond this, `save` drops the entries of files that are gone

_MAGIC = b"buildlib-filehash-v1\n"

_DRIVE = re.compile(r"[A-Za-z]:/")  # a Windows absolute path (matched at the start)

# One cache entry: size, mtime_ns, ctime_ns, inode, hex sha256.
_Entry = statscan.CachedEntry
_Key = statscan.StatKey


class PatternError(UserError):
    """A glob leaves the workspace (absolute, or uses `..`), so it cannot be an input."""


class HashError(UserError):
    """A file that must be hashed exists but cannot be read."""


@record(frozen=False)
class HashCounters:
    """What a `FileHasher` did since it was made. Tests and benchmarks read these."""

    files_hashed: int = 0
    files_reused: int = 0
    bytes_hashed: int = 0
    dirs_scanned: int = 0


# -- globs -----------------------------------------------------------------------------------


@record
class _Glob:
    """A glob two ways. `regex` matches "/" + a relative path that the glob itself names.
    It is used for files: one regex call each. The automaton over path segments is used
    for directories, to prune the ones below which nothing can match. In the automaton,
    state `len(segments)` accepts. A segment is None for `**`, a str for a literal
    (compared with ==), or a compiled pattern when it holds wildcards.
    """

    text: str
    segments: tuple[str | re.Pattern[str] | None, ...]
    closures: tuple[frozenset[int], ...]  # state -> states reachable without consuming
    regex: str

    @property
    def accept(self) -> int:
        return len(self.segments)

    @property
    def fixed(self) -> int:
        """How many leading segments are literal: a walk starts below them."""
        count = 0
        while count < len(self.segments) and isinstance(self.segments[count], str):
            count += 1
        return count

    @property
    def prefix(self) -> str:
        """The leading literal segments, joined: where a walk for this glob starts."""
        return "/".join(str(seg) for seg in self.segments[: self.fixed])

    @property
    def start(self) -> frozenset[int]:
        return self.closures[0]

    def step(self, states: frozenset[int], name: str) -> frozenset[int]:
        """The states after consuming one path segment `name`."""
        nxt: set[int] = set()
        for i in states:
            if i == self.accept:
                continue
            seg = self.segments[i]
            if seg is None:
                nxt |= self.closures[i]
            elif seg == name if isinstance(seg, str) else seg.fullmatch(name):
                nxt |= self.closures[i + 1]
        return frozenset(nxt)

    def excluded_name(self) -> str | None:
        """For `**/NAME/**` and `**/NAME` (NAME literal): NAME, since then any segment equal
        to NAME is excluded and a set lookup replaces the regex."""
        segs = self.segments
        if (
            len(segs) in (2, 3)
            and segs[0] is None
            and isinstance(segs[1], str)
            and (len(segs) == 2 or segs[2] is None)
        ):
            return segs[1]
        return None


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> _Glob:
    """Parse a workspace-relative glob; raises PatternError for one that leaves the root."""
    text = pattern.strip().replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise PatternError(
            f"glob {pattern!r} is absolute", fix="write it relative to the workspace root"
        )
    segments: list[str | re.Pattern[str] | None] = []
    regex: list[str] = []
    for part in glob_parts(text):
        if part == "..":
            raise PatternError(
                f"glob {pattern!r} uses '..' and so may leave the workspace",
                fix="write it relative to the workspace root, without '..'",
            )
        if part == "**":
            if not segments or segments[-1] is not None:
                segments.append(None)
                regex.append("(?:/[^/]+)*")
        elif WILDCARD.search(part):
            segment = segment_regex(part)
            segments.append(re.compile(segment))
            regex.append("/" + segment)
        else:
            segments.append(part)
            regex.append("/" + (part if part.isalnum() else re.escape(part)))
    # closures[i]: state i, and the states after it that `**` segments skip to.
    closures: list[frozenset[int]] = [frozenset((len(segments),))]
    for i in range(len(segments) - 1, -1, -1):
        closures.append(closures[-1] | {i} if segments[i] is None else frozenset((i,)))
    closures.reverse()
    return _Glob(
        text=pattern, segments=tuple(segments), closures=tuple(closures), regex="".join(regex)
    )


def _walk_roots(
    includes: Sequence[_Glob],
) -> list[tuple[tuple[str, ...], tuple[frozenset[int], ...]]]:
    """Where to start walking for `includes`: their literal prefixes, none inside another
    (a prefix below another is walked with it), each with every glob's automaton states
    after its segments."""
    if len(includes) == 1:  # most steps: one glob, walked from its own prefix
        glob = includes[0]
        fixed = glob.fixed
        return [(tuple(str(seg) for seg in glob.segments[:fixed]), (glob.closures[fixed],))]
    prefixes = set()
    for glob in includes:
        prefixes.add(tuple(str(seg) for seg in glob.segments[: glob.fixed]))
    roots: list[tuple[str, ...]] = []
    for prefix in sorted(prefixes, key=len):
        if not any(prefix[: len(root)] == root for root in roots):
            roots.append(prefix)
    walks = []
    for root in roots:
        states = []
        for glob in includes:
            current = glob.start
            for name in root:
                if glob.accept in current:
                    break  # an ancestor matched: everything below it is included
                current = glob.step(current, name)
            states.append(current)
        walks.append((root, tuple(states)))
    return walks


class _Query:
    """One `expand` call's globs, ready to match: the includes, the excludes, and the union
    of the includes as one regex, compiled only when a file must be tested against it
    (a step whose inputs are whole directories never needs it: 1,000 such steps spent
    ~0.5 s compiling regexes for nothing)."""

    def __init__(
        self,
        includes: tuple[_Glob, ...],
        names: frozenset[str],
        excluded: Callable[[str], re.Match[str] | None] | None,
    ) -> None:
        self.includes = includes
        self.names = names  # excluded directory names (`**/node_modules/**`)
        self.skip = tuple(sorted(names))
        self.excluded = excluded
        self._included: Callable[[str], re.Match[str] | None] | None = None

    def included(self, path: str) -> re.Match[str] | None:
        if self._included is None:
            self._included = _compiled_union(tuple(f"(?:{g.regex})" for g in self.includes))
        return self._included(path)


@functools.lru_cache(maxsize=256)
def _compiled_union(regexes: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One fullmatch for the union of `regexes` (steps share their excludes: compiled once)."""
    return re.compile("|".join(regexes)).fullmatch


def segment_regex(part: str) -> str:
    """Regex for one glob segment: `*` and `?` never match '/', `[!...]` negates."""
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := _class_end(part, i)) < n:
            body = part[i:end]
            i = end + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            # Keep '-' only as a range between two other characters; escape the rest so
            # no character can open a nested set or a set operation.
            chars = "".join(
                ch
                if ch == "-" and 0 < k < len(body) - 1 and "-" not in (body[k - 1], body[k + 1])
                else re.escape(ch)
                for k, ch in enumerate(body)
            )
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _class_end(part: str, start: int) -> int:
    """Index of the ']' closing a class whose body starts at `start`; len(part) if none.
    A ']' right after the opening '[' (or '[!') is a literal member."""
    j = start
    if j < len(part) and part[j] in "!^":
        j += 1
    if j < len(part) and part[j] == "]":
        j += 1
    end = part.find("]", j)
    return len(part) if end < 0 else end


# -- hashing ---------------------------------------------------------------------------------


def _hash_path(path: str, is_link: bool, size: int) -> tuple[str, int] | None:
    """(hex sha256, bytes read) of a file's content or a symlink's target string;
    None if it vanished meanwhile. `size` is from lstat, just before."""
    import hashlib  # here, not at start-up: OpenSSL's import costs ~4 ms, no-op builds hash nothing

    try:
        if is_link:
            return hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest(), 0  # noqa: PTH115
        if size > SMALL_FILE:
            with open(path, "rb", buffering=0) as f:  # noqa: PTH123 - str paths: no Path per file
                return hashlib.file_digest(f, "sha256").hexdigest(), f.tell()
        # Small files dominate source trees; raw fds make open-read-close three system
        # calls (a file object adds an fstat and a read to find EOF): ~1.4x faster.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, size + 1)
            digest = hashlib.sha256(data)
            total = len(data)
            if total > size:  # it grew since lstat: read on to the end
                while chunk := os.read(fd, SMALL_FILE):
                    digest.update(chunk)
                    total += len(chunk)
        finally:
            os.close(fd)
        return digest.hexdigest(), total
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise HashError(
            f"cannot read {path}: {exc.strerror}",
            fix="make it readable, or add it to the step's `exclude`",
        ) from exc


class FileHasher:
    """sha256 of files under `root`, with a stat cache persisted at `cache_path`.

    One instance per build. `hash_files` and `expand` may be called from several
    threads. `save` writes the cache atomically; an unreadable or corrupt cache file
    just means starting empty.
    """

    def __init__(
        self,
        root: Path,
        cache_path: Path | None = None,
        *,
        workers: int | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.root = Path(root).resolve()
        self.cache_path = cache_path
        self.workers = workers or os.cpu_count() or 1
        self.counters = HashCounters()
        self._clock = clock  # nanoseconds since the epoch; tests move it to age files
        self._root_str = str(self.root)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] | None = None
        self._dirty = False
        self.accelerated = True  # False: the Python stat loop (tests compare the two)

    # -- globbing --------------------------------------------------------------------------

    def expand(self, patterns: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
        """Sorted relative POSIX paths of regular files and symlinks that match `patterns`,
        minus `exclude`. Symlinks are never followed.

        Each glob is walked from its literal prefix (`packages/p0001/src/**` starts in
        that directory), so a step's cost is that of its own inputs, not of the whole
        tree: in a monorepo of 1,000 packages, walking from the root made every step
        list `packages/` and match its 1,000 entries.
        """
        includes = [compile_glob(p) for p in patterns]
        names: set[str] = set()
        general: list[str] = []
        for glob in (compile_glob(p) for p in exclude):
            name = glob.excluded_name()
            if name is not None:
                names.add(name)
            elif glob.segments:
                # A path under an excluded directory is never reached, so matching the
                # path itself is enough.
                general.append(glob.regex)
        found: list[str] = []
        if includes:
            query = _Query(
                tuple(includes),
                frozenset(names),
                _compiled_union(tuple(general)) if general else None,
            )
            for root, states in _walk_roots(includes):
                self._expand_root(root, states, query, found)
        found.sort()
        return found

    def keep(self, paths: Iterable[str], exclude: Iterable[str]) -> list[str]:
        """`paths` minus those `exclude` names (the paths themselves or a directory above
        them), in the dialect `expand` applies them while walking."""
        names: set[str] = set()
        general: list[str] = []
        for glob in (compile_glob(p) for p in exclude):
            name = glob.excluded_name()
            if name is not None:
                names.add(name)
            elif glob.segments:
                general.append(glob.regex)
        excluded = _compiled_union(tuple(general)) if general else None
        kept = []
        for path in paths:
            parts = path.split("/")
            if names.intersection(parts):
                continue
            if excluded is not None and any(
                excluded("/" + "/".join(parts[:end])) for end in range(1, len(parts) + 1)
            ):
                continue
            kept.append(path)
        return kept

    def _expand_root(
        self,
        root: tuple[str, ...],
        states: tuple[frozenset[int], ...],
        query: _Query,
        found: list[str],
    ) -> None:
        """What the globs match at and below `root` (their common literal prefix)."""
        everything = any(g.accept in s for g, s in zip(query.includes, states, strict=True))
        if not root:
            self._walk("", None if everything else states, query, found)
            return
        rel = "/".join(root)
        excluded = query.excluded
        for end in range(1, len(root) + 1):  # nothing excluded on the way
            if root[end - 1] in query.names or (
                excluded is not None and excluded("/" + "/".join(root[:end]))
            ):
                return
        # The common case (`packages/p0001/src/**`) in one call: the C walk checks that
        # the prefix is made of real directories, as `_kind` does, and lists below it.
        below = any(len(glob.segments) > len(root) for glob in query.includes)
        if (
            everything
            and below
            and excluded is None
            and self._walk_in_c(rel + "/", query.skip, found)
        ):
            return
        kind = self._kind(root)
        if kind == "dir":
            self._walk(rel + "/", None if everything else states, query, found)
        elif kind == "file" and query.included("/" + rel):
            found.append(rel)

    def _kind(self, root: tuple[str, ...]) -> str | None:
        """ "dir", "file" (a regular file or a symlink) or None, for `root` reached through
        real directories only: the walk from the workspace root never followed a symlink
        into a directory, and a walk from a prefix must not either."""
        path = self._root_str
        for index, name in enumerate(root):
            path = f"{path}/{name}"
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise HashError(
                    f"cannot read {path}: {exc.strerror}",
                    fix="make it readable, or add it to the step's `exclude`",
                ) from exc
            if stat.S_ISDIR(mode):
                continue
            if index == len(root) - 1 and (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                return "file"
            return None
        return "dir"

    def _walk(
        self, start: str, states: tuple[frozenset[int], ...] | None, query: _Query, found: list[str]
    ) -> None:
        """Depth-first below `start` ("" or "dir/"). Each frame holds the automaton states
        per include glob, or None once a directory matched, so its whole subtree is
        included."""
        includes, included, excluded, names = (
            query.includes,
            query.included,
            query.excluded,
            query.names,
        )
        stack: list[tuple[str, tuple[frozenset[int], ...] | None]] = [(start, states)]
        skip = query.skip
        in_c = excluded is None  # until the C walk fails once: then Python walks the rest
        while stack:
            prefix, inc = stack.pop()
            if inc is None and in_c:
                if self._walk_in_c(prefix, skip, found):
                    continue
                in_c = False
            entries = self._list(prefix)
            if entries is None:
                continue
            for entry in entries:
                name = entry.name
                if name in names:
                    continue
                rel = prefix + name
                if excluded is not None and excluded("/" + rel):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if inc is None:
                        stack.append((rel + "/", None))
                        continue
                    child = tuple(g.step(s, name) for g, s in zip(includes, inc, strict=True))
                    if any(g.accept in s for g, s in zip(includes, child, strict=True)):
                        stack.append((rel + "/", None))
                    elif any(child):
                        stack.append((rel + "/", child))
                elif (inc is None or included("/" + rel)) and (
                    entry.is_file(follow_symlinks=False) or entry.is_symlink()
                ):
                    found.append(rel)

    def _list(self, prefix: str) -> list[os.DirEntry[str]] | None:
        """The entries of the directory `prefix`; None if it is gone or not a directory."""
        directory = f"{self._root_str}/{prefix}" if prefix else self._root_str
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise HashError(
                f"cannot list {directory}: {exc.strerror}",
                fix="make it readable, or add it to the step's `exclude`",
            ) from exc
        self.counters.dirs_scanned += 1
        return entries

    def _walk_in_c(self, prefix: str, skip: tuple[str, ...], found: list[str]) -> bool:
        """Everything below `prefix` minus the `skip` names, listed by the C module; False
        when it is not in use or met an error, and the Python walk takes the subtree."""
        walked = statscan.walk_files(self._root_str, prefix, skip)
        if walked is None:
            return False
        found.extend(walked[0])
        self.counters.dirs_scanned += walked[1]
        return True

    # -- hashing ---------------------------------------------------------------------------

    def hash_files(
        self,
        rel_paths: Iterable[str],
        keys: dict[str, _Key] | None = None,
        *,
        unread: Container[str] = (),
        stale: list[str] | None = None,
    ) -> dict[str, str]:
        """Hex sha256 per path: of the content of a regular file, of the target string of
        a symlink. Paths that are missing or not files are left out of the result.

        `keys`, when given, receives each hashed path's stat key as it was *before* its
        content was read: a later key that differs means the file may have changed since
        (the gate's changed-while-it-ran check), at no extra lstat.

        Paths in `unread` are stat'ed in the same pass but never read: one whose stat
        matches the cache gets its digest, any other one that exists goes to `stale`
        (the caller hashes it later, if it needs it at all)."""
        now = self._clock()
        trusted_before = now - RACY_WINDOW_NS
        root = self._root_str
        paths = rel_paths if isinstance(rel_paths, list) else list(rel_paths)
        # The entries of these paths, copied under the lock: the lstats then run outside
        # it, so the build's job threads can stat at once instead of taking turns. An
        # entry another thread replaces meanwhile is only older: a file it no longer
        # matches (any write changes its ctime) is hashed again.
        with self._lock:
            entries = self._load()
            known = {rel: entries[rel] for rel in paths if rel in entries}
        result: dict[str, str] = {}
        todo = statscan.check_stats(
            root, paths, known, trusted_before, result, accelerated=self.accelerated
        )
        if keys is not None:
            for rel in result:
                keys[rel] = known[rel][:4]
            for rel, key, _is_link in todo:
                keys[rel] = key
        if unread and todo:
            if stale is not None:
                stale += [rel for rel, _key, _is_link in todo if rel in unread]
            todo = [item for item in todo if item[0] not in unread]
        reused = len(result)
        if not todo:  # a no-op: every file as the cache knows it
            with self._lock:
                self.counters.files_reused += reused
            return result
        hashed = self._hash_all([(f"{root}/{rel}", is_link, key[0]) for rel, key, is_link in todo])
        with self._lock:
            self.counters.files_reused += reused
            for (rel, key, _), outcome in zip(todo, hashed, strict=True):
                if outcome is None:
                    continue
                digest, size = outcome
                result[rel] = digest
                self.counters.files_hashed += 1
                self.counters.bytes_hashed += size
                if max(key[1], key[2]) < trusted_before:
                    entries[rel] = (*key, digest)
                    self._dirty = True
                elif entries.pop(rel, None) is not None:
                    self._dirty = True
        return result

    def _hash_all(self, jobs: list[tuple[str, bool, int]]) -> list[tuple[str, int] | None]:
        """Large files on the pool while this thread hashes the small ones; results in order."""
        large = [
            i for i, (_, is_link, size) in enumerate(jobs) if not is_link and size > SMALL_FILE
        ]
        if len(large) < 2 or self.workers == 1:
            return [_hash_path(*job) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor  # not imported by a no-op build

        results: list[tuple[str, int] | None] = [None] * len(jobs)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="filehash") as pool:
            futures = [(i, pool.submit(_hash_path, *jobs[i])) for i in large]
            is_large = set(large)
            for i, job in enumerate(jobs):
                if i not in is_large:
                    results[i] = _hash_path(*job)
            for i, future in futures:
                results[i] = future.result()
        return results

    def stat_keys(self, rel_paths: Iterable[str]) -> dict[str, _Key]:
        """The stat key of each path that is a file or symlink now (others left out)."""
        paths = list(rel_paths)
        try:
            return statscan.lstat_keys(self._root_str, paths, accelerated=self.accelerated)
        except OSError:  # one path unreadable (EACCES...): that one counts as missing
            keys: dict[str, _Key] = {}
            for rel in paths:
                with contextlib.suppress(OSError):
                    keys |= statscan.lstat_keys(self._root_str, [rel])
            return keys

    # -- persistence -----------------------------------------------------------------------

    def _load(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = _read_cache(self.cache_path) if self.cache_path else {}
        return self._entries

    def save(self) -> None:
        """Write the stat cache atomically, if anything changed. Called once per build."""
        with self._lock:
            if self.cache_path is None or self._entries is None:
                return
            if len(self._entries) > MAX_ENTRIES:
                present = stat_snapshot(self.root, self._entries)
                self._entries = {k: v for k, v in self._entries.items() if present[k][0] >= 0}
                self._dirty = True
            if not self._dirty or self.cache_path.parent.is_symlink():
                return  # unchanged, or a `.buildlib` a repository shipped: not written through
            marshalfile.write(self.cache_path, _MAGIC, self._entries)
            self._dirty = False


def _read_cache(path: Path) -> dict[str, _Entry]:
    """The cache at `path`, or empty if it is missing, truncated, corrupt or foreign."""
    entries = marshalfile.read(path, _MAGIC)
    return entries if isinstance(entries, dict) else {}


def stat_snapshot(root: Path, rel_paths: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of each path under `root` from lstat; (-1, -1) when it is missing
    or no longer a file or symlink."""
    paths = list(rel_paths)
    base = str(root)
    try:
        keys = statscan.lstat_keys(base, paths)
    except OSError:  # one path unreadable (EACCES...): that one counts as missing
        keys = {}
        for rel in paths:
            with contextlib.suppress(OSError):
                keys |= statscan.lstat_keys(base, [rel])
    missing = (-1, -1, 0, 0)
    return {rel: keys.get(rel, missing)[:2] for rel in paths}
