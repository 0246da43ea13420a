"""Gather what `--affected` decides from: the base, the changed paths, the manifest and
lockfiles at the base, the tools' versions. The deciding is `changes/affected.py`'s.

`affected_selection` is the one entry point (`plan --affected`, `build --affected`): it
finds the base (deepening a shallow clone), lists the changes, reads the base's
build.toml and the changed lockfiles the plan's steps declare, compares each step's tool
versions with those of its last success here (`.buildlib/state/`) and looks for changed
files that pin a tool's version; then asks `affected.select`. A base that cannot be
found selects every step (`base-not-found`), with a warning; a work tree that is not a
git repository raises `GitError` (the user asked for a comparison that cannot be made).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from buildlib.changes.affected import (
    ChangedPath,
    Facts,
    Reason,
    Selection,
    lock_member,
    manifest_changes,
    matching_inputs,
    select,
    select_all,
    step_cwd,
)
from buildlib.changes.gitchanges import BaseCommit, Change, GitRepo
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.ecosystems.lockdiff import cargo_package_name, closures_changed, lockfile_kind
from buildlib.ecosystems.toolpins import ANY, package_json_pins, pinned_programs, program_of
from buildlib.planning.plan import Plan


@record
class AffectedRun:
    """A selection and what it was computed from."""

    base: BaseCommit
    changes: tuple[Change, ...]
    selection: Selection


def affected_selection(
    plan: Plan,
    *,
    base: str | None,
    head: str | None,
    environ: Mapping[str, str],
    say: Callable[[str], None],
    warn: Callable[[str], None],
) -> AffectedRun:
    """The affected steps of `plan` against `base` (None: the default), and why."""
    repo = GitRepo(plan.root, environ=environ, say=say)
    found = repo.find_base(base=base, head=head)
    if found.merge_base is None:
        detail = f"no merge-base of {found.ref} and {found.head_ref or 'HEAD'}: {found.note}"
        warn(f"--affected: {detail}; every step is selected")
        return AffectedRun(
            base=found, changes=(), selection=select_all(plan, Reason.BASE_NOT_FOUND, detail)
        )
    changes = tuple(repo.changes(found))
    paths = tuple(ChangedPath(path=p, directory=c.submodule) for c in changes for p in c.paths)
    reader = _Reader(repo, found, plan.root)
    facts = Facts(
        paths=paths,
        manifest=_manifest_facts(plan, reader, {p.path for p in paths}),
        lockfiles=_lockfile_facts(plan, reader, paths),
        tools=_tool_facts(plan, reader, paths, warn),
    )
    return AffectedRun(
        base=found,
        changes=changes,
        selection=select(plan, facts, is_lockfile=lambda p: lockfile_kind(p) is not None),
    )


class _Reader:
    """A workspace file at the base, and now (the work tree, or the head ref's commit)."""

    def __init__(self, repo: GitRepo, base: BaseCommit, root: Path) -> None:
        self.repo, self.base, self.root = repo, base, root

    def at_base(self, path: str) -> bytes | None:
        assert self.base.merge_base is not None
        return self.repo.show(self.base.merge_base, path)

    def now(self, path: str) -> bytes | None:
        if self.base.head_ref:
            return self.repo.show(self.base.head, path)
        try:
            return (self.root / path).read_bytes()
        except OSError:
            return None


def _manifest_facts(plan: Plan, reader: _Reader, changed: set[str]) -> dict[str, str]:
    rel = posixpath.relpath(plan.manifest_path.resolve().as_posix(), plan.root.resolve().as_posix())
    if rel not in changed:
        return {}
    current = _toml(reader.now(rel))
    if current is None:  # the build loaded it, so only a head ref can get here
        return dict.fromkeys(plan.steps, "build.toml cannot be read at the head")
    changes = manifest_changes(
        _toml(reader.at_base(rel)), current, mode=plan.mode, target=plan.target.triple
    )
    return {name: f"{rel}: {what}" for name, what in changes.items()}


def _toml(text: bytes | None) -> dict[str, Any] | None:
    if text is None:
        return None
    from buildlib.core import toml

    try:
        return toml.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, toml.TOMLDecodeError):
        return None


def _lockfile_facts(
    plan: Plan, reader: _Reader, paths: tuple[ChangedPath, ...]
) -> dict[tuple[str, str], bool | None]:
    """For each changed lockfile a step declares: per member directory of those steps,
    whether its resolved dependencies changed."""
    locks = tuple(p for p in paths if not p.directory and lockfile_kind(p.path))
    members: dict[str, set[str]] = {}
    for name, hits in matching_inputs(plan, locks).items():
        for path in hits:
            members.setdefault(path, set()).add(lock_member(plan.steps[name], plan, path))
    facts: dict[tuple[str, str], bool | None] = {}
    for path, wanted in members.items():
        kind = lockfile_kind(path)
        assert kind is not None
        directory = posixpath.dirname(path)
        cargo_names: dict[str, str] = {}
        if kind == "cargo":
            for member in wanted:
                text = reader.now(
                    posixpath.normpath(posixpath.join(directory, member, "Cargo.toml"))
                )
                crate = cargo_package_name(text) if text is not None else None
                if crate is not None:
                    cargo_names[member] = crate
        verdicts = closures_changed(
            kind, reader.at_base(path), reader.now(path), sorted(wanted), cargo_names=cargo_names
        )
        facts.update({(path, member): verdict for member, verdict in verdicts.items()})
    return facts


def _tool_facts(
    plan: Plan, reader: _Reader, paths: tuple[ChangedPath, ...], warn: Callable[[str], None]
) -> dict[str, tuple[tuple[str, str], ...]]:
    found: dict[str, list[tuple[str, str]]] = {}
    programs = {name: program_of(argv) for name, argv in plan.tool_commands.items()}
    # Files that pin a tool's version, for the steps below them.
    for changed in paths:
        pinned = pinned_programs(changed.path)
        if pinned is None and posixpath.basename(changed.path) == "package.json":
            pinned = package_json_pins(reader.at_base(changed.path), reader.now(changed.path))
        if not pinned:
            continue
        where = posixpath.dirname(changed.path)
        for name, step in plan.steps.items():
            cwd = step_cwd(step, plan)
            if where and cwd != where and not cwd.startswith(where + "/"):
                continue
            for tool in step.tools:
                if pinned is ANY or programs.get(tool) in pinned:
                    found.setdefault(name, []).append((tool, f"{changed.path} changed"))
    # The versions each step's last success here was built with.
    for name, (tool, before, now) in _recorded_versions(plan, warn):
        found.setdefault(name, []).append(
            (tool, f"{_first_line(before)} at its last build here, {_first_line(now)} now")
        )
    return {name: tuple(dict.fromkeys(pairs)) for name, pairs in found.items()}


def _recorded_versions(
    plan: Plan, warn: Callable[[str], None]
) -> list[tuple[str, tuple[str, str, str]]]:
    from buildlib.run.step_state import StepState

    state = StepState(BuildDir(plan.root).state(plan.mode, plan.target.triple))
    recorded: dict[str, dict[str, str]] = {}
    for name, step in plan.steps.items():
        if not step.tools or state.get(name) is None:
            continue
        components = state.details(name).get("components")
        if isinstance(components, dict):
            recorded[name] = {
                t: str(components[f"tool:{t}"]) for t in step.tools if f"tool:{t}" in components
            }
    wanted = {t for tools in recorded.values() for t in tools}
    if not wanted:
        return []
    from buildlib.core.errors import UserError
    from buildlib.incremental.toolversions import detect_tool_versions

    try:
        now = detect_tool_versions(
            plan.tool_commands, wanted, BuildDir(plan.root).tool_versions, cwd=plan.root
        )
    except UserError as exc:
        warn(f"--affected: tool versions not compared: {exc.message}")
        return []
    return [
        (name, (tool, before, now[tool]))
        for name, tools in recorded.items()
        for tool, before in tools.items()
        if tool in now and now[tool] != before
    ]


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no output)"
    return line if len(line) <= 80 else line[:77] + "..."
