"""`buildlib init`: a starter build.toml and noxfile.py for an existing repository.

A team adopting buildlib should not spend its first hour writing a manifest. init reads
what the repository already declares (package.json files and their workspaces, lockfiles,
`packageManager`, Cargo workspaces through `cargo metadata`, tsconfig and vite configs,
napi-rs packages), proposes the steps a careful person would write, says for each what it
inferred and why, and lists what it skipped and what the user must check. It runs no
install and no build, and writes nothing with --dry-run; it never overwrites build.toml or
noxfile.py without --force. The manifest it writes loads (init checks it before putting
it in place) and, on the repositories the tests generate, builds green as written.

The inference lives in the ecosystem layer (buildlib/ecosystems: node, cargo, and their
*_steps modules); this module finds the repository's parts, joins their steps into one
graph, and talks to the user. docs/adopting.md is the guide.
"""

from __future__ import annotations

import heapq
import os
import posixpath
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from buildlib.core.errors import ManifestError, UserError
from buildlib.ecosystems.cargo import find_workspaces
from buildlib.ecosystems.cargo_steps import NativeCrate, cargo_steps
from buildlib.ecosystems.draft import Draft, DraftStep, render_manifest, render_noxfile
from buildlib.ecosystems.node import NodeProject, find_projects
from buildlib.ecosystems.node_steps import node_steps, sanitize
from buildlib.ecosystems.repo_files import list_files

MANIFEST = "build.toml"
NOXFILE = "noxfile.py"
# How each tool's version is asked for (its output is part of the steps' fingerprints).
TOOL_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "node": ("node", "--version"),
    "npm": ("npm", "--version"),
    "pnpm": ("pnpm", "--version"),
    "yarn": ("yarn", "--version"),
    "cargo": ("cargo", "--version"),
    "rustc": ("rustc", "-vV"),
}
_REGISTERS = "nox_sessions import register"  # a noxfile that already has the sessions


def infer(root: Path, environ: Mapping[str, str] | None = None) -> Draft:
    """The manifest init proposes for the repository at `root`; UserError when there is
    nothing it recognises."""
    files = list_files(root)
    projects, node_notes = find_projects(files)
    workspaces, cargo_notes = (
        ([], []) if not files.named("Cargo.toml") else find_workspaces(files, environ)
    )
    if not projects and not workspaces:
        raise UserError(
            f"nothing buildlib init recognises in {root}: no package.json with a "
            "lockfile or workspaces, and no Cargo.toml"
            + (f" ({'; '.join(node_notes + cargo_notes)})" if node_notes or cargo_notes else ""),
            fix="run it at the root of an npm, pnpm or Yarn project or a Cargo "
            "workspace (--root DIR), or write build.toml by hand "
            "(docs/manifest.md)",
        )
    napi_dirs = {p.dir for project in projects for p in project.packages if "napi" in p.manifest}
    steps: list[DraftStep] = []
    review: list[str] = []
    native: dict[str, NativeCrate] = {}
    found: list[str] = []
    for workspace in workspaces:
        prefix = (
            "cargo"
            if len(workspaces) == 1
            else f"{sanitize(posixpath.basename(workspace.dir) or root.name)}-cargo"
        )
        made = cargo_steps(workspace, napi_dirs, prefix=prefix)
        steps += made.steps
        review += made.review
        native.update(made.native)
        found.append(
            f"Cargo workspace at {workspace.dir} (cargo metadata): "
            + ", ".join(c.name for c in workspace.crates)
        )
    made_node = node_steps(projects, files, native=native, manager_at=_manager_at(root))
    found += [_describe(p) for p in projects]
    review = [*made_node.review, *review]
    ordered = _in_graph_order([*steps, *made_node.steps])
    review += _unignored_state(root) if files.from_git else []
    used = dict.fromkeys(t for s in ordered for t in s.tools)
    return Draft(
        root=root,
        tools={t: TOOL_COMMANDS[t] for t in TOOL_COMMANDS if t in used},
        steps=tuple(ordered),
        found=tuple(found),
        skipped=(*made_node.skipped, *node_notes, *cargo_notes),
        review=tuple(dict.fromkeys(review)),
    )


def _unignored_state(root: Path) -> list[str]:
    """A hint when git would show buildlib's own state directory as untracked files."""
    import subprocess

    try:
        ignored = (
            subprocess.run(
                ["git", "check-ignore", "-q", ".buildlib/state"],
                cwd=root,
                capture_output=True,
                timeout=30,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        []
        if ignored
        else [
            "add `/.buildlib/` (buildlib's logs, reports and step state) and `/.nox/` to .gitignore"
        ]
    )


def _manager_at(root: Path) -> Callable[[str], str]:
    """What the engine will run a `script =` step in a directory with (ecosystems/scripts.py
    looks from there up to the root), or ""."""
    from buildlib.ecosystems.scripts import detect_package_manager

    def manager_at(directory: str) -> str:
        try:
            return detect_package_manager(
                root, "", manifest=root / MANIFEST, start=root / directory
            )
        except ManifestError:
            return ""

    return manager_at


def _describe(project: NodeProject) -> str:
    kind = (
        f"{project.manager.name} workspace"
        if project.is_workspace
        else f"{project.manager.name} package"
    )
    lock = project.lockfile or "no lockfile"
    names = ", ".join(p.name for p in project.packages)
    return f"{kind} at {project.dir} ({lock}; {project.manager.reason}): {names}"


def _in_graph_order(steps: Sequence[DraftStep]) -> list[DraftStep]:
    """`steps` with each after its dependencies, otherwise in the given order; names made
    unique (a clash gets -2, -3...)."""
    from buildlib.core.records import replace

    seen: dict[str, int] = {}
    unique: list[DraftStep] = []
    for step in steps:
        seen[step.name] = seen.get(step.name, 0) + 1
        count = seen[step.name]
        unique.append(step if count == 1 else replace(step, name=f"{step.name}-{count}"))
    index = {s.name: i for i, s in enumerate(unique)}
    waiting = {s.name: {d for d in s.depends_on if d in index} for s in unique}
    ready = [i for i, s in enumerate(unique) if not waiting[s.name]]
    heapq.heapify(ready)
    ordered: list[DraftStep] = []
    while ready:
        step = unique[heapq.heappop(ready)]
        ordered.append(step)
        for other in unique:
            pending = waiting[other.name]
            if step.name in pending:
                pending.discard(step.name)
                if not pending:
                    heapq.heappush(ready, index[other.name])
    return ordered if len(ordered) == len(unique) else list(unique)


# -- telling the user --------------------------------------------------------------------------


def explain(draft: Draft) -> str:
    """What init found, each step with why, what it skipped and what to review."""
    lines = [f"buildlib init: {draft.root}", "found:"]
    lines += [f"  {f}" for f in draft.found]
    width = max((len(s.name) for s in draft.steps), default=0)
    lines.append(f"steps ({len(draft.steps)}):")
    for step in draft.steps:
        where = "" if step.cwd == "." else f" (in {step.cwd})"
        lines.append(f"  {step.name:<{width}}  {step.shown}{where}")
        lines += [f"  {'':<{width}}    {why}" for why in step.why]
    if draft.skipped:
        lines.append("no step (and why):")
        lines += [f"  {s}" for s in draft.skipped]
    if draft.review:
        lines.append("review:")
        lines += [f"  {r}" for r in draft.review]
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------


def run_init(
    root: Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """`buildlib init`: write (or with `dry_run` print) build.toml and noxfile.py for the
    repository at `root`. With --dry-run the manifest alone goes to `out` (so it can be
    redirected into a file) and everything else to `err`."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    root = root.resolve()
    if not root.is_dir():
        raise UserError(
            f"--root {root}: not a directory", fix="name the repository's root directory"
        )
    manifest_path = root / MANIFEST
    if manifest_path.exists() and not force and not dry_run:
        raise UserError(
            f"{manifest_path} exists: init does not overwrite it",
            fix="pass --force to replace it, or --dry-run to print what init would write",
        )
    draft = infer(root, environ)
    manifest = render_manifest(draft)
    report = explain(draft)
    if dry_run:
        out.write(manifest)
        print(report, file=err)
        print(f"(dry run: build.toml would be {_lines(manifest)} lines; nothing written)", file=err)
        return 0
    _write_checked(manifest_path, manifest)
    print(report, file=out)
    print(f"wrote {manifest_path} ({_lines(manifest)} lines)", file=out)
    print(_write_noxfile(root / NOXFILE, force=force), file=out)
    print(
        "next: `python -m buildlib build --dry-run` shows every command; `nox -s build` builds",
        file=out,
    )
    return 0


def _lines(text: str) -> int:
    return text.count("\n")


def _write_checked(path: Path, text: str) -> None:
    """Write `path` only once `text` loads as a manifest: a temporary file beside it is
    loaded, then renamed into place."""
    from buildlib.workspace.manifest import load_manifest

    temporary = path.with_name(f".{path.name}.init-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    try:
        load_manifest(temporary)
    except ManifestError as exc:
        temporary.unlink()
        raise UserError(
            f"the manifest init made does not load: {exc.render()}",
            fix="this is a bug in buildlib init, please report it; "
            "`buildlib init --dry-run` prints the manifest to start from",
        ) from None
    temporary.replace(path)


def _write_noxfile(path: Path, *, force: bool) -> str:
    """Write the thin noxfile, or say why not and what to add instead."""
    if path.exists():
        current = path.read_text(encoding="utf-8", errors="replace")
        if _REGISTERS in current and not force:
            return f"kept {path}: it already defines the sessions from build.toml"
        if not force:
            return (
                f"kept {path} (it exists; --force replaces it): to get the build's "
                "sessions, add\n"
                "    from buildlib.integrations.nox_sessions import register\n"
                '    register(nox, Path(__file__).resolve().parent / "build.toml")'
            )
    path.write_text(render_noxfile(), encoding="utf-8")
    return f"wrote {path}: `nox -l` lists the sessions"
