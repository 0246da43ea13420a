"""A step's declared outputs as a scope: what a restore may write, and what is there now.

The cache's trust boundary rests on this module. A cache entry is accepted for a
step only when every path it holds lies under one of the step's declared output
patterns (templates filled), and every symlink it holds resolves, through the
entry's own links and the workspace's existing ones, to a path under the same
pattern (`archive.scope_problems`). Saving applies the same rule.

Patterns use the glob dialect of inputs (`filehash.compile_glob`): `*`, `?` and
`[...]` within one segment, `**` across segments; a pattern that names a directory
means everything under it. A path is *covered* by a pattern when the path, or one of
its parent directories, matches it.

`resolve` answers where a workspace-relative path leads after a restore: inside
the scope only the entry's links count (a restore leaves a covered path holding
exactly the entry's files), outside it the workspace's symlinks are followed, and a
path that climbs above the root, or leads to an absolute path outside it, leaves
the workspace.
"""

from __future__ import annotations

import bisect
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from buildlib.core.globs import WILDCARD, glob_parts, is_engine_dir
from buildlib.incremental import statscan
from buildlib.incremental.filehash import compile_glob, segment_regex

MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


def _ROOT(path: str) -> re.Match[str] | None:  # noqa: N802 - a marker, compared by identity
    """Stands for the workspace root as the base of `**`."""
    return None


class OutputScope:
    """The output patterns of one step, after templates, ready to answer `owner`."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._single: dict[str, OutputScope] = {}
        self._literal: dict[str, str] = {}  # normalized literal path -> pattern as written
        # (pattern, match, inside): with `inside`, `match` is the pattern without its
        # trailing `/**` and only a path strictly below what it matches is covered.
        self._globs: list[tuple[str, Callable[[str], re.Match[str] | None], bool]] = []
        for pattern in self.patterns:
            glob = compile_glob(pattern)
            parts = glob_parts(pattern)
            if not glob.segments:  # the workspace root (`.`): everything in it, as `**`
                self._globs.append((pattern, _ROOT, True))
            elif all(isinstance(seg, str) for seg in glob.segments):
                self._literal.setdefault("/".join(glob.segments), pattern)  # type: ignore[arg-type]
            elif parts[-1] == "**":
                # `out/**` is what lies inside out/, never `out` itself: the glob's regex
                # lets `**` match no segment, but expanding it lists no file named `out`,
                # so a restore must not write one (it would be nobody's output).
                base = compile_glob("/".join(parts[:-1]))
                match = re.compile(base.regex).fullmatch if base.segments else _ROOT
                self._globs.append((pattern, match, True))
            else:
                self._globs.append((pattern, re.compile(glob.regex).fullmatch, False))

    def owner(self, path: str) -> str | None:
        """The first pattern covering `path` (relative, '/'-separated), or None. Nothing
        in `.buildlib` or `.git` at the root is anyone's: a restore never writes there."""
        if is_engine_dir(path.split("/", 1)[0]):
            return None
        if self._literal:
            prefix = path
            while True:
                found = self._literal.get(prefix)
                if found is not None:
                    return found
                cut = prefix.rfind("/")
                if cut < 0:
                    break
                prefix = prefix[:cut]
        for pattern, match, inside in self._globs:
            parts = path.split("/")
            if inside and match is _ROOT:
                return pattern  # `**`: everything in the workspace
            for end in range(1, len(parts) + (0 if inside else 1)):
                if match("/" + "/".join(parts[:end])):
                    return pattern
        return None

    def covers(self, pattern: str, path: str) -> bool:
        """Whether `pattern` (one of this scope's) covers `path`."""
        single = self._single.get(pattern)
        if single is None:
            single = self._single[pattern] = OutputScope((pattern,))
        return single.owner(path) is not None


# -- what the outputs are now ------------------------------------------------------------


def expand_outputs(root: Path, patterns: Iterable[str]) -> list[str]:
    """Sorted relative paths of the files and symlinks the patterns cover now.

    A directory that a pattern names (or matches) stands for every file and symlink
    under it; symlinks are listed, never followed.
    """
    base = os.fspath(root)
    found: set[str] = set()
    for pattern in patterns:
        glob = compile_glob(pattern)
        segments = glob.segments
        literal = glob.fixed
        start = glob.prefix
        if literal == len(segments):
            _add_tree(base, start, found)
            continue
        # Walk from the literal prefix, matching one segment per directory level.
        states = glob.closures[literal]
        stack = [(start, states)]
        while stack:
            prefix, current = stack.pop()
            for name, is_dir in _entries(base, prefix):
                if not prefix and is_engine_dir(name):
                    continue  # a wildcard at the root never takes .buildlib or .git
                rel = f"{prefix}/{name}" if prefix else name
                after = glob.step(current, name)
                if not after:
                    continue
                if glob.accept in after:
                    _add_tree(base, rel, found)
                elif is_dir:
                    stack.append((rel, after))
    return sorted(found)


def matching_paths(root: Path, pattern: str) -> list[str]:
    """The paths `pattern` itself matches now (files, symlinks or directories, not what
    lies below a matched directory), for removing outputs (`clean`)."""
    base = os.fspath(root)
    glob = compile_glob(pattern)
    segments = glob.segments
    literal = glob.fixed
    start = glob.prefix
    if literal == len(segments):
        return [start] if start and os.path.lexists(f"{base}/{start}") else []
    found: list[str] = []
    stack = [(start, glob.closures[literal])]
    while stack:
        prefix, current = stack.pop()
        for name, is_dir in _entries(base, prefix):
            if not prefix and is_engine_dir(name):
                continue  # as expand_outputs: never by a wildcard
            rel = f"{prefix}/{name}" if prefix else name
            after = glob.step(current, name)
            if glob.accept in after:
                found.append(rel)
            elif after and is_dir:
                stack.append((rel, after))
    return sorted(found)


def missing_patterns(patterns: Iterable[str], paths: Iterable[str]) -> list[str]:
    """The patterns that cover none of `paths` (run for every step of a no-op build: a
    literal pattern, the common case, is answered without compiling anything)."""
    patterns, paths = list(patterns), list(paths)
    missing: list[str] = []
    globs: list[str] = []
    for pattern in patterns:
        # `dir/**` covers any path below `dir`: no glob to compile for the most common
        # output pattern either.
        parts = glob_parts(pattern)
        below_only = bool(parts) and parts[-1] == "**"  # `dir/**` is not `dir` itself
        directory = parts[:-1] if below_only else parts
        if any(WILDCARD.search(part) is not None for part in directory):
            globs.append(pattern)
            continue
        literal = "/".join(directory)
        below = literal + "/"
        itself = None if below_only else literal
        if not literal:  # the workspace root (`.`, `./**`): any path is below it
            if not paths:
                missing.append(pattern)
        elif not any(p == itself or p.startswith(below) for p in paths):
            missing.append(pattern)
    for pattern in globs:  # each on its own: a path two patterns cover counts for both
        scope = OutputScope([pattern])
        if not any(scope.owner(p) is not None for p in paths):
            missing.append(pattern)
    return [p for p in patterns if p in missing]


def _entries(base: str, prefix: str) -> list[tuple[str, bool]]:
    """(name, is a real directory) of each entry of `prefix`; empty if it is not a directory."""
    try:
        with os.scandir(f"{base}/{prefix}" if prefix else base) as it:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _add_tree(base: str, rel: str, found: set[str]) -> None:
    """`rel` itself if it is a file or symlink, else every file and symlink below it."""
    try:
        info = os.lstat(f"{base}/{rel}")
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISDIR(info.st_mode):
        if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
            found.add(rel)
        return
    # Walked from the directory itself: the plan let a symlink above it through (it
    # resolves inside the workspace), and the C walk opens only real directories below
    # its root.
    walked = statscan.walk_files(f"{base}/{rel}" if rel else base, "", ())
    if walked is not None:
        prefix = f"{rel}/" if rel else ""  # `rel` is "" for an output naming the root
        found.update(prefix + path for path in walked[0])
        return
    for dirpath, dirs, files in os.walk(f"{base}/{rel}" if rel else base):
        top = os.path.relpath(dirpath, base).replace(os.sep, "/")
        prefix = "" if top == "." else f"{top}/"
        for name in files:  # regular files and symlinks, as the C walk lists (no FIFOs)
            try:
                kind = stat.S_IFMT(os.lstat(f"{dirpath}/{name}").st_mode)
            except FileNotFoundError:
                continue  # gone since it was listed
            if kind in (stat.S_IFREG, stat.S_IFLNK):
                found.add(prefix + name)
        for name in list(dirs):
            try:
                is_link = stat.S_ISLNK(os.lstat(f"{dirpath}/{name}").st_mode)
            except FileNotFoundError:
                dirs.remove(name)
                continue
            if is_link:
                found.add(prefix + name)
                dirs.remove(name)


# -- where a path leads ------------------------------------------------------------------


def resolve(
    rel: str, *, links: Mapping[str, str], replaced: Callable[[str], bool], root: Path
) -> str | None:
    """The workspace-relative path `rel` leads to, every symlink on the way followed.

    `links` are the symlinks the restore writes (path -> target). A path for which
    `replaced` is true holds only what the entry writes, so the workspace's own entry
    there is ignored; elsewhere existing symlinks are read. Returns None when the path
    leaves the workspace or loops. "" is the root itself.
    """
    base = os.fspath(root)
    real = os.path.realpath(base)
    pending = deque(rel.split("/"))
    done: list[str] = []
    hops = 0
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            if not done:
                return None
            done.pop()
            continue
        here = "/".join((*done, name))
        target = links.get(here)
        if target is None and not replaced(here):
            target = _readlink(f"{base}/{here}")
        if target is None:
            done.append(name)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
        if target.startswith("/"):
            inside = _under(target, (base, real))
            if inside is None:
                return None
            done = []
            target = inside
        pending.extendleft(reversed(target.split("/")))
    return "/".join(done)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)  # noqa: PTH115 - str paths, one per path component
    except OSError:  # not a symlink, or not there
        return None


def _under(target: str, roots: Iterable[str]) -> str | None:
    """`target` (absolute) relative to the first of `roots` it starts with, or None. Not
    normalized: a `..` left in the remainder is resolved (or refused) by the caller."""
    for root in roots:
        if target.rstrip("/") == root:
            return ""
        if target.startswith(root + "/"):
            return target[len(root) + 1 :]
    return None


# -- outputs two steps share ---------------------------------------------------------------


def overlap(outputs: Mapping[str, Iterable[str]]) -> tuple[str, str, str, str] | None:
    """Two steps whose outputs overlap, as (step, pattern, other step, other pattern):
    the same path, one inside the other, or a glob covering another step's path.

    Restoring one would remove the other's files (a restored output holds exactly its
    entry's files), and building both would let the later overwrite the earlier, so the
    plan refuses it, as Bazel does. Linear in the number of outputs, plus the literal
    outputs under each glob's fixed prefix. A property of pairs of output strings alone
    (no file system), so steps that passed keep passing with fewer steps beside them:
    planning after an edit relies on that to skip it (planning/plan.py).
    """
    literal: dict[str, tuple[str, str]] = {}
    globs: list[tuple[str, str, str]] = []  # step, pattern, fixed prefix
    for step, patterns in outputs.items():
        for pattern in patterns:
            if WILDCARD.search(pattern) is None:  # most outputs: no glob to compile
                path = "/".join(glob_parts(pattern))  # as the dialect reads it
            else:
                segments = compile_glob(pattern).segments
                fixed = _fixed_prefix(segments)
                if len(fixed) < len(segments):
                    globs.append((step, pattern, "/".join(fixed)))
                    continue
                path = "/".join(fixed)
            other = literal.get(path)
            if other is not None and other[0] != step:
                return (other[0], other[1], step, pattern)
            literal[path] = (step, pattern)
    for path, (step, pattern) in literal.items():
        parent = path
        while parent:
            parent = parent.rpartition("/")[0]  # up to "" (the root, `.`)
            other = literal.get(parent)
            if other is not None and other[0] != step:
                return (other[0], other[1], step, pattern)
    return _glob_overlap(globs, literal) or _globs_overlap(globs)


def _glob_overlap(
    globs: list[tuple[str, str, str]], literal: Mapping[str, tuple[str, str]]
) -> tuple[str, str, str, str] | None:
    """A glob of one step and a literal output of another that overlap: the glob covers
    the path, or matches something inside it (`a` holds what `a/*` and `*/a` match)."""
    ordered = sorted(literal)
    for step, pattern, prefix in globs:
        above = prefix
        while True:
            found = literal.get(above)
            if found is not None and found[0] != step:
                return (found[0], found[1], step, pattern)
            if not above:
                break
            above = above.rpartition("/")[0]
        parts = glob_parts(pattern)
        # The literals below the prefix: one run of the sorted list ("dist.zip" and
        # "dist-old" sort between "dist" and "dist/x": the run starts after them).
        below = prefix + "/" if prefix else ""
        for path in ordered[bisect.bisect_left(ordered, below) :]:
            if not path.startswith(below):
                break
            other_step, other_pattern = literal[path]
            # Covered by the glob, or holding one of its matches (`a` and `*/a`).
            if other_step != step and _may_meet(parts, path.split("/") if path else []):
                return (step, pattern, other_step, other_pattern)
    return None


def _globs_overlap(globs: list[tuple[str, str, str]]) -> tuple[str, str, str, str] | None:
    """Two steps' globs that may match one path, or a path and one inside it
    (`dist/*.js` and `dist/**`). Only globs whose fixed prefixes are nested can: each is
    compared with those at the prefixes above its own, and at its own prefix with those
    whose first wildcard segment starts compatibly (`pkg1-*` meets `pkg1-a*`, not
    `pkg2-*`): a thousand `dist/pkgN-*.tgz` are a thousand comparisons, not a million."""
    at: dict[str, list[tuple[str, int, str, str, list[str]]]] = {}
    for index, (step, pattern, prefix) in enumerate(globs):
        parts = glob_parts(pattern)
        depth = len(prefix.split("/")) if prefix else 0
        head = _literal_head(parts[depth]) if depth < len(parts) else ""
        at.setdefault(prefix, []).append((head, index, step, pattern, parts))
    for prefix, here in at.items():
        here.sort()
        for i, (head, index, step, _, parts) in enumerate(here):
            for other_head, other, other_step, _, other_parts in here[i + 1 :]:
                if not other_head.startswith(head):
                    break  # sorted: no later head starts with this one either
                if other_step != step and _may_meet(parts, other_parts):
                    return _pair(globs, min(index, other), max(index, other))
            above = prefix
            while above:
                above = above.rpartition("/")[0]
                for _, other, other_step, _, other_parts in at.get(above, ()):
                    if other_step != step and _may_meet(parts, other_parts):
                        return _pair(globs, other, index)  # the wider first
    return None


def _pair(globs: list[tuple[str, str, str]], first: int, second: int) -> tuple[str, str, str, str]:
    return (globs[first][0], globs[first][1], globs[second][0], globs[second][1])


def _may_meet(first: Sequence[str], second: Sequence[str]) -> bool:
    """Whether some path matches both segment lists, or one matches a directory the other
    matches a path inside: an output holds everything under what it matches. Exact for
    literal segments and `**`; two wildcard segments are taken to meet unless their
    literal starts or ends differ (`*.js` and `*.css` never meet), which can only refuse
    a manifest, never let an overlap through."""
    seen: set[tuple[int, int]] = set()
    pending = [(0, 0)]
    while pending:
        i, j = pending.pop()
        if i == len(first) or j == len(second):
            return True  # one is done: its path holds the rest of the other's
        if (i, j) in seen:
            continue
        seen.add((i, j))
        a, b = first[i], second[j]
        if a == "**":
            pending += [(i + 1, j), (i, j + 1)]
        if b == "**":
            pending += [(i, j + 1), (i + 1, j)]
        if a != "**" and b != "**" and _segments_meet(a, b):
            pending.append((i + 1, j + 1))
    return False


def _segments_meet(a: str, b: str) -> bool:
    wild_a, wild_b = WILDCARD.search(a), WILDCARD.search(b)
    if wild_a is None and wild_b is None:
        return a == b
    if wild_a is None or wild_b is None:
        literal, pattern = (a, b) if wild_a is None else (b, a)
        return re.fullmatch(segment_regex(pattern), literal) is not None  # the dialect's own
    head_a, head_b = _literal_head(a), _literal_head(b)
    tail_a, tail_b = _literal_tail(a), _literal_tail(b)
    return (head_a.startswith(head_b) or head_b.startswith(head_a)) and (
        tail_a.endswith(tail_b) or tail_b.endswith(tail_a)
    )


def _literal_head(segment: str) -> str:
    """The characters before a segment's first wildcard (all of a literal segment)."""
    wild = WILDCARD.search(segment)
    return segment if wild is None else segment[: wild.start()]


def _literal_tail(segment: str) -> str:
    """The characters after a segment's last wildcard (`]` closes a `[...]` class)."""
    last = max(segment.rfind("*"), segment.rfind("?"), segment.rfind("]"))
    return segment[last + 1 :]


def _fixed_prefix(segments: Sequence[object]) -> list[str]:
    """The literal segments of a glob before its first wildcard."""
    fixed: list[str] = []
    for seg in segments:
        if not isinstance(seg, str):
            break
        fixed.append(seg)
    return fixed
