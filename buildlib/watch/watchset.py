"""What `watch` watches, what it ignores, and which steps a changed path concerns.

Made from a plan (services included) by `WatchSelection`; decides, touches no process:

* `ignored(rel)`: what never triggers anything, even below a watched directory (issue
  16 item 2): every step's declared outputs (services' too), `.buildlib`, `.git`, and
  the manifest's `[workspace] exclude` (node_modules, target, dist... by default).
  A step that writes a declared output into its own input tree cannot loop.
* `watch_set()`: the directories that hold selected inputs, walked from the literal
  prefix of each input glob (and each service's `restart_on`), never the whole tree.
  A directory is watched *recursively* when nothing ignored lies anywhere below it
  (nor is declared there, such as an output not built yet); otherwise it is watched
  *flat* (its own entries) and its children are considered one by one, so a
  node_modules or a target directory beside the sources costs no watch at all. A
  directory whose glob can only match its direct entries (`web/*.json`,
  `crates/*/Cargo.toml`) is flat as well.
* `affected(paths)`: the steps whose inputs a batch of changed paths touches, the
  services whose restart inputs it touches, and whether the manifest itself changed.
  A path that names a directory (or no longer exists) counts for a step whenever
  something below it could match one of the step's globs: a directory deleted or
  moved away reports only itself.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from buildlib.cache.entries import STAGING_NAME
from buildlib.core.layout import DIRECTORY
from buildlib.core.records import record
from buildlib.incremental.filehash import compile_glob
from buildlib.incremental.outputs import OutputScope
from buildlib.planning.plan import Plan, PlannedStep

if TYPE_CHECKING:
    from buildlib.incremental.filehash import _Glob

ALWAYS_IGNORED = (DIRECTORY, ".git")  # the engine's own files; git's (a checkout changes the tree)
_WILDCARD = re.compile(r"[*?\[]")


@record
class WatchSet:
    """Directories relative to the root: watched with everything below, or flat."""

    recursive: tuple[str, ...]
    flat: tuple[str, ...]

    def covers(self, rel: str) -> bool:
        """Whether a change at `rel` is seen: below a recursive directory, or an entry of
        a flat one."""
        if any(_within(rel, d) for d in self.recursive):
            return True
        parent = rel.rpartition("/")[0] or "."
        return parent in self.flat or rel in self.flat

    def describe(self) -> str:
        parts = [
            *(f"{d}/**" if d != "." else "**" for d in self.recursive),
            *(f"{d}/*" if d != "." else "*" for d in self.flat),
        ]
        return ", ".join(parts)


@record
class Affected:
    """What one batch of changes concerns."""

    steps: frozenset[str]  # build steps whose inputs changed
    services: frozenset[str]  # services whose own restart inputs changed
    manifest: bool  # the manifest file itself changed
    paths: tuple[str, ...]  # the changed paths that concern something, sorted

    @property
    def empty(self) -> bool:
        return not (self.steps or self.services or self.manifest)


class _Patterns:
    """One step's include globs and excludes, for matching single paths."""

    def __init__(self, includes: Sequence[str], exclude: Sequence[str]) -> None:
        self.includes = [compile_glob(p) for p in includes]
        self.names: set[str] = set()
        general: list[str] = []
        for glob in (compile_glob(p) for p in exclude):
            name = glob.excluded_name()
            if name is not None:
                self.names.add(name)
            elif glob.segments:
                general.append(glob.regex)
        self.excluded_regex = (
            re.compile("|".join(f"(?:{r})" for r in general)).fullmatch if general else None
        )

    def excluded(self, parts: Sequence[str]) -> bool:
        if self.names.intersection(parts):
            return True
        regex = self.excluded_regex
        return regex is not None and any(
            regex("/" + "/".join(parts[:end])) for end in range(1, len(parts) + 1)
        )

    def matches(self, parts: Sequence[str], is_file: bool) -> bool:
        """Whether the path (split in segments) is, or may hold, one of the inputs."""
        if not self.includes or self.excluded(parts):
            return False
        return any(_could_match(glob, parts, is_file) for glob in self.includes)


def _could_match(glob: _Glob, parts: Sequence[str], is_file: bool) -> bool:
    """Walk the glob's automaton over the path: a matched ancestor (a pattern naming a
    directory means everything below it) or the path itself matches; a directory, or a
    path that is gone, matches when something below it still could."""
    states = glob.start
    accept = glob.accept
    for name in parts:
        if accept in states:
            return True
        states = glob.step(states, name)
        if not states:
            return False
    return accept in states or not is_file


class WatchSelection:
    """The watch rules of one plan (services included); see the module docstring."""

    def __init__(
        self, plan: Plan, *, manifest_path: Path, workspace_exclude: Sequence[str]
    ) -> None:
        self.plan = plan
        self.root = Path(plan.root).resolve()
        self._root = os.fspath(self.root)
        try:
            self.manifest_rel: str | None = (
                manifest_path.resolve().relative_to(self.root).as_posix()
            )
        except ValueError:  # a manifest outside the workspace is not watched
            self.manifest_rel = None
        self._outputs = OutputScope([o for s in plan.steps.values() for o in s.outputs])
        self._exclude = _Patterns((), (*workspace_exclude, *(f"{d}/**" for d in ALWAYS_IGNORED)))
        # Declared output directories (literal prefixes), present or not: a directory
        # holding one is never watched recursively, so a build creating it (npm ci's
        # node_modules) adds no watches.
        self._output_dirs = sorted(
            {_literal_prefix(o) for s in plan.steps.values() for o in s.outputs} - {""}
        )
        self._steps: dict[str, _Patterns] = {}
        self._services: dict[str, _Patterns] = {}
        for name, step in plan.steps.items():
            # An input that lies in an output (a dependency's, usually) never counts: the
            # dependency's rebuild is what reruns the step.
            globs = step.restart_on if step.service else self.input_globs(step)
            kept = [g for g in globs if not self.ignored(_literal_prefix(g))]
            (self._services if step.service else self._steps)[name] = _Patterns(kept, step.exclude)
        self._below: dict[str, bool] = {}

    # -- what is ignored -----------------------------------------------------------------

    def ignored(self, rel: str) -> bool:
        """Never a trigger: outputs, the engine's and git's directories, the excludes, and
        what a restore from the cache stages beside an output (`STAGING_NAME`)."""
        if rel in ("", "."):
            return False
        parts = rel.split("/")
        return (
            self._exclude.excluded(parts)
            or self._outputs.owner(rel) is not None
            or any(STAGING_NAME.fullmatch(part) for part in parts)
        )

    # -- what a change concerns ----------------------------------------------------------

    def input_globs(self, step: PlannedStep) -> tuple[str, ...]:
        """The globs a change to the step's inputs matches: its `inputs`, or everything
        under its cwd when it takes git's files (version 2, no `inputs`)."""
        if step.inputs_from_git:
            cwd = self._relative(step.cwd)
            return ("**",) if cwd == "." else (f"{cwd}/**",)
        return step.inputs

    def affected(self, paths: Iterable[str]) -> Affected:
        steps: set[str] = set()
        services: set[str] = set()
        manifest = False
        concerned: list[str] = []
        for rel in sorted(set(paths)):
            if self.ignored(rel):
                continue
            hit = False
            if rel == self.manifest_rel:
                manifest = hit = True
            parts = rel.split("/")
            is_file = self._is_file(rel)
            for name, patterns in self._steps.items():
                if patterns.matches(parts, is_file):
                    steps.add(name)
                    hit = True
            for name, patterns in self._services.items():
                if patterns.matches(parts, is_file):
                    services.add(name)
                    hit = True
            if hit:
                concerned.append(rel)
        return Affected(
            steps=frozenset(steps),
            services=frozenset(services),
            manifest=manifest,
            paths=tuple(concerned),
        )

    # -- what to watch -------------------------------------------------------------------

    def watch_set(self) -> WatchSet:
        """Walk the input globs' directories as they are now (see the module docstring)."""
        self._below = {}
        recursive: set[str] = set()
        flat: set[str] = set()
        globs: list[str] = [g for p in self._steps.values() for g in _texts(p)]
        globs += [g for p in self._services.values() for g in _texts(p)]
        for text in dict.fromkeys(globs):
            self._plan_glob(text, recursive, flat)
        if self.manifest_rel is not None:
            flat.add(self.manifest_rel.rpartition("/")[0] or ".")
        rec = _outermost(recursive)
        flat_kept = sorted(d for d in flat if not any(_within(d, r) for r in rec))
        return WatchSet(recursive=tuple(rec), flat=tuple(flat_kept))

    def _plan_glob(self, text: str, recursive: set[str], flat: set[str]) -> None:
        glob = compile_glob(text)
        segments = glob.segments
        fixed = 0
        while fixed < len(segments) and isinstance(segments[fixed], str):
            fixed += 1
        prefix = "/".join(str(s) for s in segments[:fixed]) or "."
        if self.ignored(prefix):
            return
        if fixed == len(segments):  # a literal path: a directory means all below it
            kind = self._kind(prefix)
            if kind == "dir":
                self._plan_dir(prefix, frozenset({glob.accept}), glob, recursive, flat)
            else:  # a file, or not there yet: its directory's entries
                flat.add(prefix.rpartition("/")[0] or ".")
            return
        states = glob.closures[fixed]
        if self._kind(prefix) != "dir":
            # Not there yet: watched once it appears (the watcher polls a missing root).
            recursive.add(prefix)
            return
        self._plan_dir(prefix, states, glob, recursive, flat)

    def _plan_dir(
        self, rel: str, states: frozenset[int], glob: _Glob, recursive: set[str], flat: set[str]
    ) -> None:
        accept, segments = glob.accept, glob.segments
        deep = accept in states or any(i < accept and segments[i] is None for i in states)
        if deep and not self._ignored_below(rel):
            recursive.add(rel)
            return
        flat.add(rel)
        for name in self._subdirs(rel):
            child = name if rel == "." else f"{rel}/{name}"
            if self.ignored(child):
                continue
            after = states if accept in states else glob.step(states, name)
            if after:
                self._plan_dir(child, after, glob, recursive, flat)

    def _ignored_below(self, rel: str) -> bool:
        """Whether anything ignored lies (or is declared) anywhere below `rel`."""
        found = self._below.get(rel)
        if found is not None:
            return found
        prefix = "" if rel == "." else rel + "/"
        found = any(d.startswith(prefix) and d != rel for d in self._output_dirs)
        if not found:
            for name in self._subdirs(rel):
                child = prefix + name
                if self.ignored(child) or self._ignored_below(child):
                    found = True
                    break
        self._below[rel] = found
        return found

    # -- the disk ------------------------------------------------------------------------

    def _path(self, rel: str) -> str:
        return self._root if rel in ("", ".") else f"{self._root}/{rel}"

    def _kind(self, rel: str) -> str | None:
        try:
            mode = os.stat(self._path(rel)).st_mode
        except OSError:
            return None
        return "dir" if stat.S_ISDIR(mode) else "file"

    def _is_file(self, rel: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(rel)).st_mode)
        except OSError:
            return False

    def _subdirs(self, rel: str) -> list[str]:
        """Names of the directories in `rel`, symlinks followed as notify follows them."""
        try:
            with os.scandir(self._path(rel)) as entries:
                return sorted(e.name for e in entries if _is_dir(e))
        except OSError:
            return []

    def _relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.root).as_posix() or "."
        except ValueError:
            return "."


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _texts(patterns: _Patterns) -> list[str]:
    return [g.text for g in patterns.includes]


def _literal_prefix(pattern: str) -> str:
    """The part of a root-relative glob before its first wildcard, as a directory path."""
    literal = _WILDCARD.split(pattern, maxsplit=1)[0]
    if literal != pattern:
        literal = literal.rpartition("/")[0]
    return literal.strip("/")


def _within(rel: str, parent: str) -> bool:
    return parent in (".", rel) or rel.startswith(parent + "/")


def _outermost(dirs: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for rel in sorted(dirs, key=lambda r: (r.count("/"), r)):
        if not any(_within(rel, k) for k in kept):
            kept.append(rel)
    return sorted(kept)


def downstream_of(plan: Plan, names: Iterable[str]) -> set[str]:
    """`names` and every build step that depends on them, in `plan`."""
    from buildlib.core import graph

    deps = {n: s.depends_on for n, s in plan.steps.items() if not s.service}
    return graph.downstream(deps, [n for n in names if n in deps])
