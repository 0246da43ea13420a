"""Which steps a change affects, and why: the policy behind `--affected`, without I/O.

A step is affected when something its fingerprint reads may differ between the base and
the work tree, so that a build of the base could not have produced its result:

- `input-changed <path>`: a changed, added, deleted or renamed path (either name) that
  its inputs cover: its `inputs` globs minus its `exclude` (a version 2 step without
  `inputs`: any path under its cwd but its outputs), the same rules the fingerprint
  applies. A changed lockfile that serves a workspace counts only for the packages whose
  own resolved dependencies changed (`ecosystems/lockdiff.py`); the others are listed
  as `spared`, with the lockfile, so nothing is left out silently;
- `manifest-changed`: its definition in `build.toml` differs (`manifest_changes`);
- `tool-version-changed <tool>`: a tool it runs has another version than at its last
  build here, or a file that pins the tool's version (rust-toolchain.toml, .nvmrc...)
  changed;
- `dependency-affected <step>`: it depends on an affected step (the selection is always
  closed downstream: what consumes a changed result is rebuilt too).

When the base cannot be found (a shallow clone deepened to its limit, unrelated
histories), every step is selected with `base-not-found`, whose detail says why. A
comparison that cannot be made at all (no git, no commit, a ref that exists nowhere) is
an error, never a selection of everything. The
steps the affected ones depend on without being affected themselves are `needed`: a
build takes them from the cache, or builds them.

Pure: `commands.py` gathers the facts (git, lockfiles, tool versions; see
`changes/changeset.py`) and renders the result.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from buildlib.core import graph
from buildlib.core.records import field, record
from buildlib.incremental.filehash import compile_glob
from buildlib.incremental.outputs import OutputScope
from buildlib.planning.plan import Plan, PlannedStep
from buildlib.workspace.manifest import TEMPLATE_TOKEN


class Reason(enum.Enum):
    INPUT_CHANGED = "input-changed"
    DEPENDENCY_AFFECTED = "dependency-affected"
    MANIFEST_CHANGED = "manifest-changed"
    TOOL_VERSION_CHANGED = "tool-version-changed"
    BASE_NOT_FOUND = "base-not-found"


@record
class Why:
    """One reason a step is affected: its kind, what it is about (a path, a step, a tool;
    "" for the whole-graph kinds) and a few words more."""

    reason: Reason
    subject: str = ""
    detail: str = ""

    def text(self) -> str:
        head = f"{self.reason.value} {self.subject}".rstrip()
        return f"{head} ({self.detail})" if self.detail else head

    def as_json(self) -> dict[str, str]:
        return {
            "kind": self.reason.value,
            "subject": self.subject,
            "detail": self.detail,
            "text": self.text(),
        }


@record
class ChangedPath:
    """A path that differs between the base and the work tree; a submodule's directory
    stands for anything below it."""

    path: str
    directory: bool = False


@record
class Facts:
    """What the collector found, in workspace-relative paths.

    `lockfiles` maps (lockfile, member directory relative to the lockfile's) to whether
    that member's resolved dependencies changed (None: cannot tell, so yes); a lockfile
    absent from it counts as changed for every step that declares it. `manifest` maps a
    step to what changed in its definition. `tools` maps a step to (tool, detail) pairs."""

    paths: tuple[ChangedPath, ...]
    manifest: Mapping[str, str] = field(default_factory=dict)
    lockfiles: Mapping[tuple[str, str], bool | None] = field(default_factory=dict)
    tools: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


@record
class Selection:
    """The affected steps (plan order) with their reasons, and the rest of the plan."""

    affected: Mapping[str, tuple[Why, ...]]
    needed: tuple[str, ...]  # not affected; affected steps depend on them
    unaffected: tuple[str, ...]  # neither
    spared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # step -> lockfiles

    @property
    def selected(self) -> list[str]:
        """What a build with `--affected` runs: the affected steps (their dependencies
        come along as the plan selects them)."""
        return list(self.affected)


class InputMatcher:
    """Whether a workspace path is one of a step's inputs, by the fingerprint's rules,
    without listing any directory."""

    def __init__(self, step: PlannedStep, root_cwd: str) -> None:
        self.from_git = step.inputs_from_git
        self.cwd = root_cwd  # the step's cwd relative to the root, "." for the root
        if self.from_git:
            self.patterns: tuple[str, ...] = ("**",) if root_cwd == "." else (f"{root_cwd}/**",)
        else:  # a pattern naming the root itself (version 2's "." at the root) takes all
            self.patterns = tuple(p if compile_glob(p).segments else "**" for p in step.inputs)
        self.includes = OutputScope(self.patterns)
        self.excludes = OutputScope(step.exclude)
        self.outputs = OutputScope(step.outputs) if self.from_git and step.outputs else None

    def covers(self, path: str) -> bool:
        if self.includes.owner(path) is None or self.excludes.owner(path) is not None:
            return False
        return self.outputs is None or self.outputs.owner(path) is None

    def covers_below(self, directory: str) -> bool:
        """Whether any path below `directory` could be an input (a moved submodule)."""
        if self.covers(directory):
            return True
        if self.excludes.owner(directory) is not None:
            return False
        segments = [s for s in directory.split("/") if s]
        for pattern in self.patterns:
            glob = compile_glob(pattern)
            states = glob.start
            for name in segments:
                states = glob.step(states, name)
                if not states:
                    break
            if states:
                return True
        return False


def step_cwd(step: PlannedStep, plan: Plan) -> str:
    """The step's cwd relative to the workspace root, POSIX, "." for the root."""
    root = str(plan.root.resolve())
    cwd = str(step.cwd)
    if cwd == root:
        return "."
    if cwd.startswith(root + "/"):
        return cwd[len(root) + 1 :]
    return cwd


def lock_member(step: PlannedStep, plan: Plan, lockfile: str) -> str:
    """The step's directory relative to the lockfile's: the workspace package whose
    resolved dependencies the step uses ("." when it runs where the lockfile is)."""
    base = posixpath.dirname(lockfile) or "."
    return posixpath.relpath(step_cwd(step, plan), base)


def matching_inputs(plan: Plan, paths: Sequence[ChangedPath]) -> dict[str, list[str]]:
    """For each step, the changed paths its inputs cover, in `paths` order."""
    found: dict[str, list[str]] = {}
    if not paths:
        return found
    for name, step in plan.steps.items():
        matcher = InputMatcher(step, step_cwd(step, plan))
        hits = [
            c.path
            for c in paths
            if (matcher.covers_below(c.path) if c.directory else matcher.covers(c.path))
        ]
        if hits:
            found[name] = hits
    return found


def select(
    plan: Plan, facts: Facts, *, is_lockfile: Callable[[str], bool] | None = None
) -> Selection:
    """The affected steps of `plan` and why, closed downstream; `is_lockfile(path)` tells
    which changed inputs are lockfiles whose verdicts are in `facts.lockfiles`."""
    direct: dict[str, list[Why]] = {}
    spared: dict[str, list[str]] = {}
    for name, hits in matching_inputs(plan, facts.paths).items():
        step = plan.steps[name]
        for path in hits:
            verdict: bool | None = True
            if is_lockfile is not None and is_lockfile(path):
                verdict = facts.lockfiles.get((path, lock_member(step, plan, path)), True)
            if verdict is False:
                spared.setdefault(name, []).append(path)
                continue
            detail = ""
            if is_lockfile is not None and is_lockfile(path):
                member = lock_member(step, plan, path)
                detail = (
                    "any change to it counts here"
                    if member == "."
                    else f"the resolved dependencies of {member} changed"
                    if verdict
                    else "cannot tell which packages it changed"
                )
            direct.setdefault(name, []).append(
                Why(reason=Reason.INPUT_CHANGED, subject=path, detail=detail)
            )
    for name, detail in facts.manifest.items():
        if name in plan.steps:
            direct.setdefault(name, []).append(
                Why(reason=Reason.MANIFEST_CHANGED, subject="", detail=detail)
            )
    for name, tools in facts.tools.items():
        if name in plan.steps:
            direct.setdefault(name, []).extend(
                Why(reason=Reason.TOOL_VERSION_CHANGED, subject=tool, detail=detail)
                for tool, detail in tools
            )
    return _close(plan, direct, spared)


def select_all(plan: Plan, reason: Reason, detail: str) -> Selection:
    """Every step, for one whole-graph reason (`base-not-found`)."""
    why = (Why(reason=reason, detail=detail),)
    return Selection(affected=dict.fromkeys(plan.steps, why), needed=(), unaffected=())


def _close(
    plan: Plan, direct: Mapping[str, list[Why]], spared: Mapping[str, list[str]]
) -> Selection:
    deps = {name: s.depends_on for name, s in plan.steps.items()}
    affected: dict[str, tuple[Why, ...]] = {}
    for name in plan.steps:  # topological order: a dependency is decided first
        whys = list(direct.get(name, ()))
        whys += [
            Why(reason=Reason.DEPENDENCY_AFFECTED, subject=dep)
            for dep in deps[name]
            if dep in affected
        ]
        if whys:
            affected[name] = tuple(whys)
    needed = graph.select(deps, affected) - set(affected)
    return Selection(
        affected=affected,
        needed=tuple(n for n in plan.steps if n in needed),
        unaffected=tuple(n for n in plan.steps if n not in affected and n not in needed),
        spared={n: tuple(p) for n, p in spared.items() if n not in affected},
    )


# -- the manifest ------------------------------------------------------------------------------

_NOT_FINGERPRINTED = frozenset({"description", "group", "retries", "clean"})


def manifest_changes(
    base: Mapping[str, Any] | None, current: Mapping[str, Any], *, mode: str, target: str
) -> dict[str, str]:
    """The steps of `current` (a parsed build.toml) whose definition for `mode` and
    `target` differs from `base` (the same file at the base; None when it had none or
    it was not valid TOML), each with what differs.

    Precise where the file allows: a step's own keys (not `description`, `group`,
    `retries`, `clean`, which change no result), its override for this mode and target,
    the template variables it uses (global and this mode's `vars`), this mode's `env`
    (every step gets it), the `[tools]` commands of its tools, `package_manager` for a
    `script` step; `version` and `[workspace] exclude` change every step. `[cache]`,
    `[[artifact]]` and other modes change none."""
    now = _steps(current)
    if base is None:
        return dict.fromkeys(now, "the base has no readable build.toml")
    then = _steps(base)
    context = _ManifestDelta(base, current, mode)
    result: dict[str, str] = {}
    for name, table in now.items():
        why = list(context.everywhere)
        old = then.get(name)
        if old is None:
            why.append("a new step")
        else:
            keys = _changed_keys(old, table, mode, target)
            if keys:
                why.append("its " + ", ".join(keys) + " changed")
        used = sorted(_template_names(table) & context.variables)
        if used:
            why.append(
                "template variable"
                + ("s " if len(used) > 1 else " ")
                + ", ".join("{" + v + "}" for v in used)
                + " changed"
            )
        tools = sorted(_step_tools(table, mode, target) & context.tools)
        if tools:
            why.append("[tools] " + ", ".join(tools) + " changed")
        if context.package_manager and "script" in table:
            why.append("[workspace] package_manager changed")
        if why:
            result[name] = "; ".join(why)
    return result


class _ManifestDelta:
    """What changed in the parts of the manifest that reach many steps."""

    def __init__(self, base: Mapping[str, Any], current: Mapping[str, Any], mode: str) -> None:
        self.everywhere: list[str] = []
        if base.get("version", 1) != current.get("version", 1):
            self.everywhere.append("the manifest's version changed")
        old_ws, new_ws = _table(base, "workspace"), _table(current, "workspace")
        if old_ws.get("exclude") != new_ws.get("exclude"):
            self.everywhere.append("[workspace] exclude changed")
        old_mode = _table(_table(base, "modes"), mode)
        new_mode = _table(_table(current, "modes"), mode)
        if old_mode.get("env") != new_mode.get("env"):
            self.everywhere.append(f"[modes.{mode}] env changed")
        old_vars = {**_table(base, "vars"), **_table(old_mode, "vars")}
        new_vars = {**_table(current, "vars"), **_table(new_mode, "vars")}
        self.variables = {k for k in (*old_vars, *new_vars) if old_vars.get(k) != new_vars.get(k)}
        old_tools, new_tools = _table(base, "tools"), _table(current, "tools")
        self.tools = {k for k in (*old_tools, *new_tools) if old_tools.get(k) != new_tools.get(k)}
        self.package_manager = old_ws.get("package_manager") != new_ws.get("package_manager")


def _changed_keys(
    old: Mapping[str, Any], new: Mapping[str, Any], mode: str, target: str
) -> list[str]:
    keys = sorted(
        k
        for k in {*old, *new}
        if k not in _NOT_FINGERPRINTED and k not in ("mode", "target") and old.get(k) != new.get(k)
    )
    if _table(_table(old, "mode"), mode) != _table(_table(new, "mode"), mode):
        keys.append(f"mode.{mode}")
    if _table(_table(old, "target"), target) != _table(_table(new, "target"), target):
        keys.append(f"target.{target}")
    return keys


def _steps(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    steps = doc.get("step", [])
    if not isinstance(steps, list):
        return {}
    return {s["name"]: s for s in steps if isinstance(s, dict) and isinstance(s.get("name"), str)}


def _table(doc: Any, key: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def _template_names(value: Any) -> set[str]:
    found: set[str] = set()
    for text in _strings(value):
        found.update(m.group(1) for m in TEMPLATE_TOKEN.finditer(text) if m.group(1))
    return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _step_tools(table: Mapping[str, Any], mode: str, target: str) -> set[str]:
    names = {t for t in table.get("tools", []) if isinstance(t, str)}
    for override in (_table(_table(table, "mode"), mode), _table(_table(table, "target"), target)):
        names |= {t for t in override.get("tools", []) if isinstance(t, str)}
    return names
