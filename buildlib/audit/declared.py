"""What the manifest declares, for one mode and target, in the form the audit asks about.

`Declarations` is built once per audit from the plan of every step that applies (not
only the audited ones: a file another step declares as its output makes the fix a
`depends_on`, not an input). Patterns are the plan's, templates filled; `clean` paths
are filled here because the plan does not carry them. Matching uses the engine's own
glob dialect (`incremental.outputs.OutputScope`: a pattern covers a path when it
matches the path or one of its parent directories), so "covered" here means what it
means to the fingerprint and the cache.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from buildlib.incremental.filehash import FileHasher, compile_glob
from buildlib.incremental.outputs import OutputScope
from buildlib.planning.plan import Plan, PlannedStep, fill_template, template_variables
from buildlib.workspace.manifest import Manifest

# Inside the workspace, never a step's business: version control, the engine's and
# nox's own state (workspace-relative prefixes), and byte-code caches (any segment).
WORKSPACE_IGNORES: tuple[str, ...] = (".git", ".buildlib", ".nox")
IGNORED_NAMES: frozenset[str] = frozenset({"__pycache__"})


class Declarations:
    """Every applicable step's outputs, `clean` paths and dependencies, plus the
    template variables, for one mode and target."""

    def __init__(self, manifest: Manifest, plan: Plan, environ: Mapping[str, str]) -> None:
        self.manifest = manifest
        self.plan = plan
        self.root = plan.root
        self.variables = template_variables(manifest, plan.mode, plan.target, environ)
        self.deps = {name: step.depends_on for name, step in plan.steps.items()}
        self.outputs = {name: OutputScope(step.outputs) for name, step in plan.steps.items()}
        self.clean_patterns = {
            name: tuple(
                fill_template(c, self.variables, file=manifest.path, step=name, key="clean")
                for c in manifest.steps[name].clean
            )
            for name in plan.steps
        }
        self.clean = {name: OutputScope(p) for name, p in self.clean_patterns.items()}
        self._upstream: dict[str, frozenset[str]] = {}

    def step(self, name: str) -> PlannedStep:
        return self.plan.steps[name]

    def upstream(self, name: str) -> frozenset[str]:
        """Every step `name` depends on, directly or not."""
        found = self._upstream.get(name)
        if found is None:
            seen: set[str] = set()
            todo = list(self.deps[name])
            while todo:
                dep = todo.pop()
                if dep not in seen:
                    seen.add(dep)
                    todo.extend(self.deps[dep])
            found = self._upstream[name] = frozenset(seen)
        return found

    def output_owner(self, path: str, *, besides: str) -> str | None:
        """The first step other than `besides` whose declared outputs cover `path`."""
        for name, scope in self.outputs.items():
            if name != besides and scope.owner(path) is not None:
                return name
        return None

    def clean_owner(self, path: str, steps: Iterable[str] | None = None) -> str | None:
        """The first step (of `steps`, default all) whose `clean` paths cover `path`."""
        for name in self.clean if steps is None else steps:
            if self.clean[name].owner(path) is not None:
                return name
        return None

    def provided_upstream(self, name: str, path: str) -> bool:
        """Whether `path` is an output or `clean` intermediate of the step itself or of a
        step it depends on: the fingerprint already answers for it."""
        if self.outputs[name].owner(path) is not None:
            return True
        return any(
            self.outputs[d].owner(path) is not None or self.clean[d].owner(path) is not None
            for d in (name, *self.upstream(name))
        )

    def downstream(self, name: str) -> frozenset[str]:
        """Every step that depends on `name`, directly or not (a new `depends_on` on one
        of them would be a cycle)."""
        return frozenset(other for other in self.plan.steps if name in self.upstream(other))

    def declared_paths(self) -> list[str]:
        """Every output and `clean` pattern of every step: what an input glob must not
        swallow and a new output must not overlap."""
        found = [p for step in self.plan.steps.values() for p in step.outputs]
        found.extend(p for patterns in self.clean_patterns.values() for p in patterns)
        return found


class StepInputs:
    """One step's input declaration: its globs, its excludes (the manifest's included)
    and the files they select now (`FileHasher.expand`, what the fingerprint hashes)."""

    def __init__(self, root: Path, step: PlannedStep) -> None:
        self.patterns = step.inputs
        self.exclude = step.exclude
        self._inputs = OutputScope(step.inputs)
        self._exclude = OutputScope(step.exclude)
        self.files = frozenset(FileHasher(root).expand(step.inputs, step.exclude))
        self._prefixes = [literal_prefix(p) for p in step.inputs]

    def covers(self, path: str) -> bool:
        """Whether `path` (existing or not) is selected by an input glob and not excluded."""
        return self._inputs.owner(path) is not None and self.excluded_by(path) is None

    def watches(self, path: str) -> bool:
        """Whether creating `path` (missing now) would change the inputs: it is selected,
        or it is a directory an input glob looks into (`.cargo` for `.cargo/config*`)."""
        return self.covers(path) or any(
            prefix == path or prefix.startswith(path + "/") for prefix in self._prefixes
        )

    def excluded_by(self, path: str) -> str | None:
        """The exclude pattern that removes `path` from the inputs, or None."""
        return self._exclude.owner(path)


class Ignores:
    """Workspace paths the audit never reports: `WORKSPACE_IGNORES`, `IGNORED_NAMES`, and
    the user's `--ignore` entries (workspace-relative prefixes or globs)."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        self.prefixes = tuple(p.strip("/") for p in WORKSPACE_IGNORES)
        self._extra = OutputScope(_as_glob(p) for p in extra if not _absolute(p))
        self.outside = tuple(p for p in extra if _absolute(p))  # for TraceResult.scoped

    def __call__(self, path: str) -> bool:
        if path == ".":
            return True
        if path.startswith("/"):
            return False
        if any(path == p or path.startswith(p + "/") for p in self.prefixes):
            return True
        if not IGNORED_NAMES.isdisjoint(path.split("/")):
            return True
        return self._extra.owner(path) is not None


def _absolute(entry: str) -> bool:
    return entry.startswith(("/", "~"))


def _as_glob(entry: str) -> str:
    compile_glob(entry)  # a bad --ignore is a PatternError naming it
    return entry.strip("/")


def literal_prefix(pattern: str) -> str:
    """The leading path segments of a glob before its first wildcard ('' for none)."""
    parts: list[str] = []
    for seg in compile_glob(pattern).segments:
        if not isinstance(seg, str):
            break
        parts.append(seg)
    return "/".join(parts)


def is_file(root: Path, rel: str) -> bool:
    """A regular file or a symlink now (not a directory, not missing)."""
    try:
        st = os.lstat(f"{root}/{rel}")
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
