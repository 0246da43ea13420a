"""The plan: every selected step made concrete for one mode and one target.

A plan is computed once, before anything runs; every field of a `PlannedStep` is
resolved here (templates filled, overrides applied, priority computed) so the
executor never re-derives anything on a scheduling pass.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildlib.core import graph
from buildlib.core.entrykinds import EntryKinds
from buildlib.core.errors import ManifestError, UserError
from buildlib.core.fmt import some_names
from buildlib.core.globs import (
    glob_parts,
    is_engine_dir,
    kept_in_reach,
    literal_prefix,
    normal_path,
)
from buildlib.core.records import field, record, restore
from buildlib.planning import remembered
from buildlib.workspace.artifacts import Artifact
from buildlib.workspace.manifest import (
    MANIFEST_NAME,
    TEMPLATE_TOKEN,
    Manifest,
    StepSpec,
    root_relative,
)
from buildlib.workspace.targets import Target

VAR_PREFIX = "BUILDLIB_VAR_"
DEFAULT_ESTIMATE = 1.0  # seconds, for a step with no earlier timing


@record
class PlannedStep:
    name: str
    description: str
    group: str
    argv: tuple[str, ...]  # as written (templates filled); resolved with shutil.which at spawn
    cwd: Path  # absolute, symlinks resolved
    cwd_relative: str  # the same from the (resolved) root, "/"-separated: "." for the root
    env: Mapping[str, str]  # the variables this step sets (mode + step + overrides), not os.environ
    env_inputs: tuple[str, ...]  # names read from the caller's environment; fingerprinted
    depends_on: tuple[str, ...]
    inputs: tuple[str, ...]  # glob patterns relative to the root
    exclude: tuple[str, ...]  # the step's glob patterns, then the manifest's [workspace] exclude
    outputs: tuple[str, ...]  # paths or globs relative to the root, all inside it
    tools: tuple[str, ...]  # names of [tools] entries whose versions are fingerprinted
    retries: int
    cacheable: bool
    priority: float  # remaining critical path in seconds, this step included
    estimate: float  # expected duration in seconds (earlier builds, else 1.0)
    inputs_from_git: bool = False  # no inputs declared (version 2): git's files under cwd
    store: Mapping[str, str] = field(default_factory=dict)  # output -> "archive" | "local"
    service: bool = False  # started and kept running by `watch`; never in a build's plan
    restart_on: tuple[str, ...] = ()  # a service's restart globs, relative to the root
    restart_on_deps: bool = False  # restart the service when a dependency's outputs change


@record
class Plan:
    root: Path
    manifest_path: Path
    mode: str
    target: Target
    steps: Mapping[str, PlannedStep]  # in topological order
    requested: tuple[str, ...]
    tool_commands: Mapping[str, tuple[str, ...]]  # tool name -> argv printing its version


def fill_template(
    text: str, variables: Mapping[str, str], *, file: Path, step: str | None, key: str
) -> str:
    """Replace `{name}` with its value, `{{`/`}}` with braces; an unknown name is an error."""
    if "{" not in text and "}" not in text:
        return text  # most strings of a manifest hold no template: no regex pass for them

    def replace(match: re.Match[str]) -> str:
        text_match = match.group(0)
        if text_match == "{{":
            return "{"
        if text_match == "}}":
            return "}"
        name = match.group(1)
        if name is None or name not in variables:
            known = ", ".join(sorted(variables))
            raise ManifestError(
                f"unknown template variable {text_match} in {text!r}",
                file=file,
                step=step,
                key=key,
                fix=f"use one of: {known}",
            )
        return variables[name]

    filled = TEMPLATE_TOKEN.sub(replace, text)
    if "\0" in filled:  # from a [vars] value (or the environment): the text was checked
        raise ManifestError(
            f"{text!r} fills to a value holding a NUL character, which no argument, "
            "variable or path can hold",
            file=file,
            step=step,
            key=key,
            fix="remove the NUL (\\u0000) from the variable",
        )
    return filled


def template_variables(
    manifest: Manifest, mode: str, target: Target, environ: Mapping[str, str]
) -> dict[str, str]:
    """Built-ins < global [vars] < mode vars < BUILDLIB_VAR_<NAME> from the environment."""
    variables = {
        "mode": mode,
        "root": str(manifest.root),
        "python": sys.executable,
        **target.template_vars,
        **manifest.vars,
        **manifest.modes[mode].vars,
    }
    for key, value in environ.items():
        if key.startswith(VAR_PREFIX) and len(key) > len(VAR_PREFIX):
            variables[key[len(VAR_PREFIX) :].lower()] = value
    return variables


def marker_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values describing the *target*, so cross plans pick the target's steps."""
    machine = {  # what platform.machine() reports on each OS
        "linux": {"x86_64": "x86_64", "aarch64": "aarch64"},
        "darwin": {"x86_64": "x86_64", "aarch64": "arm64"},
        "windows": {"x86_64": "AMD64", "aarch64": "ARM64"},
    }[target.os][target.arch]
    from packaging.markers import default_environment

    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    env.update(
        {
            "sys_platform": target.node_platform,
            "platform_system": {"linux": "Linux", "darwin": "Darwin", "windows": "Windows"}[
                target.os
            ],
            "os_name": "nt" if target.os == "windows" else "posix",
            "platform_machine": machine,
        }
    )
    return env


def applicable(
    step: StepSpec, mode: str, markers: Mapping[str, str], manifest: Path | str = MANIFEST_NAME
) -> bool:
    """Whether `step` exists for this mode and target (its `modes` and `when` marker).
    A marker that cannot be compared with this target's values (`os_name ~= "posix"`:
    a version operator on a name) is a ManifestError naming the step."""
    if step.modes is not None and mode not in step.modes:
        return False
    if step.when is None:
        return True
    from packaging.markers import UndefinedComparison, UndefinedEnvironmentName

    try:
        return step.when.evaluate(dict(markers))
    except (UndefinedComparison, UndefinedEnvironmentName) as exc:
        raise ManifestError(
            f"marker {str(step.when)!r} cannot be evaluated here: {exc}",
            file=manifest,
            step=step.name,
            key="when",
            fix='compare names with == or != (os_name == "posix"); ~=, <, > are for versions',
        ) from None


def build_plan(
    manifest: Manifest,
    *,
    mode: str,
    target: Target,
    requested: Sequence[str] = (),
    environ: Mapping[str, str],
    estimates: Mapping[str, float] | None = None,
    services: bool = False,
) -> Plan:
    """Select the steps `requested` needs (all when empty), fill templates, order and prioritise.

    A dependency that does not apply to this mode or target (its `modes`/`when`) is
    treated as satisfied; requesting such a step directly is an error. Service steps
    (`service = true`) are in the plan only with `services` (`watch`): a build never
    starts them, and requesting one is an error naming `watch`.
    """
    if mode not in manifest.modes:
        raise UserError(f"unknown mode '{mode}'", fix="use one of: " + ", ".join(manifest.modes))
    has_markers = any(s.when is not None for s in manifest.steps.values())
    markers = marker_environment(target) if has_markers else {}
    present = {
        name: s
        for name, s in manifest.steps.items()
        if applicable(s, mode, markers, manifest.path) and (services or not s.service)
    }
    _check_requested(manifest, present, requested, mode=mode, target=target, services=services)
    variables = template_variables(manifest, mode, target, environ)
    key = (
        _plan_key(
            manifest,
            mode=mode,
            target=target,
            requested=requested,
            services=services,
            variables=variables,
            markers=markers,
        )
        if manifest.remembered_as
        else ""
    )
    stored = remembered.recall(manifest.root, key) if key else None
    same = stored if stored is not None and stored.manifest == manifest.remembered_as else None
    reverse = None
    if same is not None:  # the same manifest: the same selection, order and fields
        sub = {name: step["depends_on"] for name, step in same.steps.items()}
        order = list(same.steps)
    else:
        deps = {name: tuple(d for d in s.depends_on if d in present) for name, s in present.items()}
        if requested:
            selected = graph.select(deps, requested)
            sub = {name: deps[name] for name in present if name in selected}
        else:
            sub = deps  # every step present, and only those: no walk to find them
        reverse = graph.dependents(sub)  # once, for the order and the priorities
        order = graph.topo_order(sub, reverse)
    durations = {name: (estimates or {}).get(name, DEFAULT_ESTIMATE) for name in order}
    priority = graph.remaining_critical_path(sub, durations, order, reverse)
    place = _Placer(manifest, priority, durations)
    if same is not None:
        steps = {name: place(step) for name, step in same.steps.items()}
    else:
        # Another manifest's plan (an edit) lends each step of the same origin whose
        # dependencies in this plan are the same: the key names the rest it was filled from.
        lent = (
            {
                stored.origins[name]: step
                for name, step in stored.steps.items()
                if stored.origins.get(name)
            }
            if stored is not None
            else {}
        )
        filled: dict[str, dict[str, Any]] = {}
        steps = {}
        for name in order:  # each step filled then placed, so errors come in step order
            spec = manifest.steps[name]
            found = lent.get(spec.origin) if spec.origin else None
            filled[name] = (
                found
                if found is not None and found["depends_on"] == sub[name]
                else _fill_step(
                    manifest, spec, deps=sub[name], mode=mode, target=target, variables=variables
                )
            )
            steps[name] = place(filled[name])
        # A stored plan passed this check before it was stored: the same outputs, or
        # fewer steps with them, cannot overlap either.
        if stored is None or any(
            stored.steps.get(name, {}).get("outputs") != step["outputs"]
            for name, step in filled.items()
        ):
            _check_overlap(manifest, steps)
        if key and manifest.remember:
            origins = {name: manifest.steps[name].origin for name in filled}
            remembered.remember(
                manifest.root,
                key,
                remembered.Remembered(
                    manifest=manifest.remembered_as, steps=filled, origins=origins
                ),
            )
    return Plan(
        root=manifest.root,
        manifest_path=manifest.path,
        mode=mode,
        target=target,
        steps=steps,
        requested=tuple(requested),
        tool_commands=dict(manifest.tools),
    )


def _check_requested(
    manifest: Manifest,
    present: Mapping[str, StepSpec],
    requested: Sequence[str],
    *,
    mode: str,
    target: Target,
    services: bool,
) -> None:
    """Each step asked for by name exists, applies, and is not a service (unless `services`)."""
    for name in requested:
        if name not in manifest.steps:
            import difflib  # error paths only

            close = difflib.get_close_matches(name, list(manifest.steps), n=1)
            raise UserError(
                f"unknown step '{name}'",
                fix=(f"did you mean '{close[0]}'? " if close else "")
                + "steps: "
                + some_names(manifest.steps),
            )
        if name not in present and manifest.steps[name].service and not services:
            raise UserError(
                f"step '{name}' is a service (service = true): a build never "
                "starts one, since it runs until it is stopped",
                fix=f"run it with `buildlib watch {name}` (`buildlib watch` alone "
                "runs every service of the mode beside a rebuild-on-change loop; "
                "docs/watch.md)",
            )
        if name not in present:
            raise UserError(
                f"step '{name}' does not apply to mode '{mode}' and target {target.triple}",
                fix="check its `modes` and `when` keys in " + str(manifest.path),
            )


def _plan_key(
    manifest: Manifest,
    *,
    mode: str,
    target: Target,
    requested: Sequence[str],
    services: bool,
    variables: Mapping[str, str],
    markers: Mapping[str, str],
) -> str:
    """What the filled steps are computed from besides the steps themselves (their
    origins and dependencies, compared step by step) and the engine (in the digest):
    what `_fill_step` reads of the manifest, and what the plan is asked for."""
    from buildlib.core.engine import derived_key

    parts = [os.fspath(manifest.path), str(manifest.version), mode, target.triple]
    parts.append("services" if services else "")
    # Each list counted and each name apart from its value (a variable's name may hold
    # '='), so that no two keys' parts read the same: derived_key frames each part.
    parts += ["exclude", str(len(manifest.exclude)), *manifest.exclude]
    parts += ["requested", str(len(requested)), *requested]
    for label, table in (
        ("env", manifest.modes[mode].env),
        ("variables", dict(sorted(variables.items()))),
        ("markers", dict(sorted(markers.items()))),
    ):
        parts += [label, str(len(table)), *(part for item in table.items() for part in item)]
    return derived_key(*(part.encode("utf-8", "surrogatepass") for part in parts))


def _check_overlap(manifest: Manifest, steps: Mapping[str, PlannedStep]) -> None:
    from buildlib.incremental.outputs import overlap

    shared = overlap({name: step.outputs for name, step in steps.items()})
    if shared is not None:
        first, first_pattern, second, second_pattern = shared
        raise ManifestError(
            f"steps '{first}' and '{second}' declare overlapping outputs "
            f"({first_pattern!r} and {second_pattern!r})",
            file=manifest.path,
            step=second,
            key="outputs",
            fix="give each step its own output paths (a restore of one "
            "would remove the other's files)",
        )


def _fill_step(
    manifest: Manifest,
    spec: StepSpec,
    *,
    deps: tuple[str, ...],
    mode: str,
    target: Target,
    variables: Mapping[str, str],
) -> dict[str, Any]:
    """The part of a step's plan decided by the manifest, mode, target and variables
    alone (remembered.py keeps it): a PlannedStep's fields, less those `_Placer` adds,
    plus what `_Placer` reads from disk with: `cwd_text`, `output_prefixes`, and
    `script`/`extra_args` for a script step (whose argv needs the package manager)."""

    def fill(text: str, key: str) -> str:
        if "{" not in text and "}" not in text:
            return text  # most strings hold no template: not even a call to fill_template
        return fill_template(text, variables, file=manifest.path, step=spec.name, key=key)

    overrides = [
        o
        for o in (spec.mode_overrides.get(mode), spec.target_overrides.get(target.triple))
        if o is not None
    ]
    extra_args = tuple(fill(a, "args") for override in overrides for a in override.args)
    env = {k: fill(v, f"env.{k}") for k, v in manifest.modes[mode].env.items()}
    env.update({k: fill(v, f"env.{k}") for k, v in spec.env.items()})
    for override in overrides:
        env.update({k: fill(v, f"env.{k}") for k, v in override.env.items()})
    cwd_text = fill(spec.cwd, "cwd")
    paths = StepPaths(manifest, spec, cwd_text, fill)
    outputs = paths.of("outputs", spec.outputs)
    _check_output_places(manifest, spec, outputs)
    return {
        "name": spec.name,
        "description": spec.description,
        "group": spec.group,
        "argv": None
        if spec.script is not None
        else (*(fill(a, "command") for a in spec.command), *extra_args),
        "script": None if spec.script is None else fill(spec.script, "script"),
        "extra_args": extra_args,
        "cwd_text": cwd_text,
        "env": env,
        "env_inputs": spec.env_inputs,
        "depends_on": deps,
        "inputs": paths.of("inputs", spec.inputs),
        "exclude": (*paths.of("exclude", spec.exclude), *manifest.exclude),
        "outputs": outputs,
        # Each output's literal part, read as the glob dialect reads it: a segment with a
        # wildcard names no single path to resolve (what it matches is kept inside the
        # workspace when outputs are expanded and restored). `_Placer` resolves them.
        "output_prefixes": tuple(literal_prefix(output) for output in outputs),
        "tools": tuple(dict.fromkeys((*spec.tools, *(t for o in overrides for t in o.tools)))),
        "retries": spec.retries,
        "cacheable": spec.cache,
        "inputs_from_git": not spec.inputs_declared,
        "store": {
            output: spec.store[pattern]
            for pattern, output in zip(spec.outputs, outputs, strict=True)
            if pattern in spec.store
        },
        "service": spec.service,
        "restart_on": paths.of("restart_on", spec.restart_on),
        "restart_on_deps": spec.restart_on_deps,
    }


class _Placer:
    """The part of a step's plan read from the file system and the history, computed at
    every plan: cwd and outputs resolved through symlinks and kept inside the workspace,
    a script step's package manager, and the priority from the latest durations."""

    def __init__(
        self, manifest: Manifest, priority: Mapping[str, float], durations: Mapping[str, float]
    ) -> None:
        self.manifest, self.priority, self.durations = manifest, priority, durations
        self.resolver = _Resolver(manifest.root.resolve())
        self.managers: dict[Path, str] = {}
        self._manifest_rel = manifest_relative(manifest)

    def __call__(self, filled: Mapping[str, Any]) -> PlannedStep:
        values = dict(filled)
        name, cwd_text = values["name"], values.pop("cwd_text")
        script, extra_args = values.pop("script"), values.pop("extra_args")
        prefixes = values.pop("output_prefixes")
        resolver = self.resolver
        if not resolver.inside(cwd_text):
            raise ManifestError(
                "cwd resolves outside the workspace",
                file=self.manifest.path,
                step=name,
                key="cwd",
                fix="use a directory inside the workspace",
            )
        for output, prefix in zip(values["outputs"], prefixes, strict=True):
            if not resolver.inside(prefix):
                raise ManifestError(
                    f"output {output!r} resolves outside the workspace",
                    file=self.manifest.path,
                    step=name,
                    key="outputs",
                    fix="declare outputs under the workspace root",
                )
            reached = self._reached(prefix) if prefix else ""
            if reached:
                raise ManifestError(
                    f"output {output!r} resolves to {reached} through a symlink: a restore "
                    "would replace what is there",
                    file=self.manifest.path,
                    step=name,
                    key="outputs",
                    fix="declare the real directory the step writes, not a link to the "
                    "root, the manifest, .buildlib or .git",
                )
        cwd = resolver.path(cwd_text)
        if script is not None:
            values["argv"] = self._script_argv(cwd, script, extra_args)
        values["cwd"] = cwd
        values["cwd_relative"] = resolver.relative(cwd_text)
        values["priority"] = self.priority[name]
        values["estimate"] = self.durations[name]
        return restore(PlannedStep, values)

    def _reached(self, prefix: str) -> str:
        """What an output's literal part resolves to when it is the root, the manifest, or
        in `.buildlib` or `.git` (a symlink such as `self -> .` or `g -> .git`: the
        manifest's own check reads the text alone), else ""."""
        real = self.resolver.relative(prefix)
        kept = kept_in_reach(real, self._manifest_rel)
        return "the workspace root" if kept == "." else real if kept else ""

    def _script_argv(self, cwd: Path, script: str, extra_args: tuple[str, ...]) -> tuple[str, ...]:
        from buildlib.ecosystems.scripts import detect_package_manager, script_argv

        manager = self.managers.get(cwd)
        if manager is None:
            manager = self.managers[cwd] = detect_package_manager(
                self.resolver.root,
                self.manifest.package_manager,
                manifest=self.manifest.path,
                start=cwd,
            )
        return tuple(script_argv(manager, script, extra_args, root=self.resolver.root))


def manifest_relative(manifest: Manifest) -> str:
    """The manifest's path from the workspace root, '/'-separated."""
    return Path(os.path.relpath(manifest.path, manifest.root)).as_posix()


def _check_output_places(manifest: Manifest, spec: StepSpec, outputs: Sequence[str]) -> None:
    """No output is the workspace root, or covers or lies in the manifest, `.buildlib` or
    `.git`: a restore of such an entry (a checkout's build of it, shared through the
    cache) would delete the sources or the engine's state."""
    manifest_rel = manifest_relative(manifest)
    for written, output in zip(spec.outputs, outputs, strict=True):
        prefix = literal_prefix(output)
        first = prefix.split("/", 1)[0]
        if not glob_parts(output):
            covered = "the whole workspace"
        elif prefix == normal_path(output):  # a literal path
            covered = kept_in_reach(prefix, manifest_rel)
        elif is_engine_dir(first):  # a glob whose literal part lies in one
            covered = first
        else:  # the dialect's own answer: `*` and `**` hold the manifest, `**/dist` not
            from buildlib.incremental.outputs import OutputScope

            owns = OutputScope((output,)).owner(manifest_rel) is not None
            covered = manifest_rel if owns else ""
        if covered:
            raise ManifestError(
                f"output {written!r} reaches {covered}: a restore replaces an output with "
                "exactly the files of its cache entry, so it would delete or replace "
                + ("the sources" if covered == "the whole workspace" else covered),
                file=manifest.path,
                step=spec.name,
                key="outputs",
                fix="declare the directories and files the step writes (dist, "
                "out/app.js...): never the root, the manifest, .buildlib or .git",
            )


class StepPaths:
    """A step's inputs, outputs, exclude and clean made relative to the workspace root,
    templates filled: as written (version 1), or joined to the step's cwd (version 2;
    `//path` from the root). Raises ManifestError for a path that climbs out."""

    def __init__(
        self, manifest: Manifest, spec: StepSpec, cwd: str, fill: Callable[[str, str], str]
    ) -> None:
        self.manifest, self.spec, self.cwd, self.fill = manifest, spec, cwd, fill

    def of(self, key: str, patterns: Sequence[str]) -> tuple[str, ...]:
        if not patterns:
            return ()
        filled = [self.fill(p, key) for p in patterns]
        if self.manifest.version < 2:
            return tuple(filled)
        joined = tuple(root_relative(self.cwd, p) for p in filled)
        for written, path in zip(filled, joined, strict=True):
            if path == ".." or path.startswith("../"):
                raise ManifestError(
                    f"{key} {written!r} climbs out of the workspace from the "
                    f"step's cwd ({self.cwd})",
                    file=self.manifest.path,
                    step=self.spec.name,
                    key=key,
                    fix="name a path from the root with '//' (//dir/file), or climb less",
                )
        return joined


class _Resolver:
    """Paths under the root with symlinks resolved, one lstat per new path component:
    `a/b/c` reuses what `a/b` resolved to, so a thousand steps in `packages/*` cost a
    thousand lstats, not one per component of every path (Path.resolve), and strings
    all the way (pathlib's objects cost more than the lstat here)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._kinds = EntryKinds()  # lstat, or one listing of a crowded directory
        self._below = self._root.rstrip("/") + "/"
        self._done: dict[str, str] = {"": self._root}
        self._paths: dict[str, Path] = {}

    def resolve(self, rel: str) -> str:
        """The real path of `rel` (relative to the root), as a string."""
        found = self._done.get(rel)  # as written: a step's cwd is asked for more than once
        if found is not None:
            return found
        key = normal_path(rel)
        if key != rel:
            found = self._done.get(key)
            if found is not None:
                self._done[rel] = found
                return found
        parent, _, name = key.rpartition("/")
        base = self.resolve(parent)
        if name == "..":
            found = os.path.dirname(base)  # noqa: PTH120 - strings, see the docstring
        else:
            candidate = f"{base.rstrip('/')}/{name}"  # the root may be "/"
            # Missing (an output not built yet): None, taken as it is written.
            is_link = self._kinds.kind(candidate) == stat.S_IFLNK
            found = os.path.realpath(candidate) if is_link else candidate
        self._done[key] = found
        return found

    def inside(self, rel: str) -> bool:
        """Whether `rel` resolves to the root or below it."""
        found = self.resolve(rel)
        return found == self._root or found.startswith(self._below)

    def relative(self, rel: str) -> str:
        """What `rel` resolves to, from the root ("." for the root); `rel` is inside."""
        found = self.resolve(rel)
        return "." if found == self._root else found[len(self._below) :]

    def path(self, rel: str) -> Path:
        found = self._paths.get(rel)
        if found is None:
            found = self._paths[rel] = Path(self.resolve(rel))
        return found


def resolve_artifacts(manifest: Manifest, plan: Plan, environ: Mapping[str, str]) -> list[Artifact]:
    """The manifest's artifacts for the plan's mode and target, templates filled."""
    variables = template_variables(manifest, plan.mode, plan.target, environ)
    result: list[Artifact] = []
    for spec in manifest.artifacts:
        if spec.modes is not None and plan.mode not in spec.modes:
            continue
        rel = fill_template(
            spec.path, variables, file=manifest.path, step=spec.step, key="artifact.path"
        )
        path = manifest.root / rel
        run_vars = {**variables, "path": str(path)}
        result.append(
            Artifact(
                path=path,
                rel=rel,
                step=spec.step,
                kind=spec.kind,
                run=tuple(
                    fill_template(
                        a, run_vars, file=manifest.path, step=spec.step, key="artifact.run"
                    )
                    for a in spec.run
                ),
                expect=fill_template(
                    spec.expect,
                    variables,
                    file=manifest.path,
                    step=spec.step,
                    key="artifact.expect",
                ),
            )
        )
    return result
