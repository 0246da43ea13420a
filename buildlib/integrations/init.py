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
from buildlib.ecosystems.cargo import CargoWorkspace, find_workspaces
from buildlib.ecosystems.cargo_steps import NativeCrate, cargo_steps
from buildlib.ecosystems.draft import Draft, DraftStep, render_manifest, render_noxfile
from buildlib.ecosystems.node import NodeProject, find_projects
from buildlib.ecosystems.node_steps import node_steps, sanitize
from buildlib.ecosystems.repo_files import list_files

MANIFEST = "build.toml"
MAX_STEP_NAME = 100  # workspace/manifest.py's STEP_NAME
MAX_CYCLES = 200  # dependency cycles init breaks (each costs a search of the graph)
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
    batches: list[Sequence[DraftStep]] = []
    review: list[str] = []
    native: dict[str, NativeCrate] = {}
    found: list[str] = []
    for workspace, prefix in zip(workspaces, _cargo_prefixes(workspaces, root), strict=True):
        made = cargo_steps(workspace, napi_dirs, prefix=prefix)
        batches.append(made.steps)
        review += made.review
        native.update(made.native)
        found.append(
            f"Cargo workspace at {workspace.dir} (cargo metadata): "
            + ", ".join(c.name for c in workspace.crates)
        )
    made_node = node_steps(projects, files, native=native, manager_at=_manager_at(root))
    batches.append(made_node.steps)
    found += [_describe(p) for p in projects]
    review = [*made_node.review, *review]
    acyclic, broken = _break_cycles(_unique_names(batches))
    review += broken
    ordered = _in_graph_order(acyclic)
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

    seen: dict[Path, str | None] = {}  # the root and `packages/` are asked once, not per package

    def manager_at(directory: str) -> str:
        try:
            return detect_package_manager(
                root, "", manifest=root / MANIFEST, start=root / directory, seen=seen
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


def _cargo_prefixes(workspaces: Sequence[CargoWorkspace], root: Path) -> list[str]:
    """What each Cargo workspace's steps are named after: `cargo` alone, else its
    directory's name, else (two `rust` directories) its whole path."""
    if len(workspaces) == 1:
        return ["cargo"]
    short = [sanitize(posixpath.basename(w.dir) or root.name) for w in workspaces]
    return [
        f"{name if short.count(name) == 1 else sanitize(w.dir)}-cargo"
        for name, w in zip(short, workspaces, strict=True)
    ]


def _unique_names(batches: Sequence[Sequence[DraftStep]]) -> list[DraftStep]:
    """The steps of every batch (a Cargo workspace's, the JavaScript projects'), a name
    that an earlier batch took renamed -2, -3... together with its batch's dependencies
    on it: a batch's steps depend on its own steps and on earlier batches' names."""
    from buildlib.core.records import replace

    taken: set[str] = set()
    earlier: dict[str, str] = {}  # a name of an earlier batch -> what it became
    steps: list[DraftStep] = []
    for batch in batches:
        names: list[str] = []
        renamed: dict[str, str] = {}  # a name of this batch -> its first step's new name
        for step in batch:
            base = _short_name(step.name)
            name, count = base, 1
            while name in taken:
                count += 1
                name = f"{base}-{count}"
            taken.add(name)
            names.append(name)
            renamed.setdefault(step.name, name)
        steps += [
            replace(
                step,
                name=name,
                depends_on=tuple(renamed.get(d, earlier.get(d, d)) for d in step.depends_on),
            )
            for step, name in zip(batch, names, strict=True)
        ]
        for old, new in renamed.items():
            earlier.setdefault(old, new)
    return steps


def _short_name(name: str) -> str:
    """`name` if the manifest takes it, else cut to fit with a digest of the whole (npm
    allows 214-character package names; a step name is at most 100 characters)."""
    if len(name) <= MAX_STEP_NAME - 8:  # room for a "-2" and more
        return name
    import hashlib

    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_STEP_NAME - 18].rstrip('-')}-{digest}"


def _break_cycles(steps: Sequence[DraftStep]) -> tuple[list[DraftStep], list[str]]:
    """`steps` with each dependency that closes a cycle removed (packages that depend on
    each other, often through devDependencies), and a review note for each: the
    manifest must load, and only its reader can say which one really builds first."""
    from buildlib.core.graph import find_cycle
    from buildlib.core.records import replace

    deps = {s.name: [d for d in s.depends_on if d != s.name] for s in steps}
    notes: list[str] = []
    for _ in range(MAX_CYCLES + 1):  # each search is linear; more are refused below
        cycle = find_cycle({n: tuple(d) for n, d in deps.items()})
        if cycle is None:
            break
        before, after = cycle[-2], cycle[-1]
        deps[before].remove(after)
        notes.append(
            f"{' -> '.join(cycle)}: these steps depend on each other (their packages "
            f"do), so {before} no longer waits for {after}: check which one builds "
            "first, and remove the dependency the other way round if that is wrong"
        )
    else:
        raise UserError(
            f"the packages depend on each other in more than {MAX_CYCLES} cycles: init "
            "cannot tell which builds first",
            fix="write the steps by hand (docs/manifest.md), ordering them with depends_on",
        )
    return [replace(s, depends_on=tuple(deps[s.name])) for s in steps], notes


def _in_graph_order(steps: Sequence[DraftStep]) -> list[DraftStep]:
    """`steps` (names unique, no cycle) with each after its dependencies, otherwise in
    the given order."""
    unique = list(steps)
    index = {s.name: i for i, s in enumerate(unique)}
    waiting = {s.name: {d for d in s.depends_on if d in index} for s in unique}
    dependents: dict[str, list[str]] = {}  # once: a scan of every step per step was
    for name, deps in waiting.items():  # quadratic (3,000 steps: 1.7 s)
        for dep in deps:
            dependents.setdefault(dep, []).append(name)
    ready = [i for i, s in enumerate(unique) if not waiting[s.name]]
    heapq.heapify(ready)
    ordered: list[DraftStep] = []
    while ready:
        step = unique[heapq.heappop(ready)]
        ordered.append(step)
        for other in dependents.get(step.name, ()):
            pending = waiting[other]
            pending.discard(step.name)
            if not pending:
                heapq.heappush(ready, index[other])
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

    temporary = _write_new(path, text)
    try:
        load_manifest(temporary)
    except ManifestError as exc:
        temporary.unlink()
        raise UserError(
            "the manifest init made does not load: "
            + exc.render().replace(str(temporary), str(path)),
            fix="this is a bug in buildlib init, please report it; "
            "`buildlib init --dry-run` prints the manifest to start from",
        ) from None
    _replace(temporary, path)


def _write_new(path: Path, text: str) -> Path:
    """`text` in a new file beside `path`, to be renamed over it (`_replace`); returns
    the new file. O_EXCL: never through a link that appears there meanwhile."""
    temporary = path.with_name(f".{path.name}.init-{os.getpid()}")
    temporary.unlink(missing_ok=True)  # a leftover of an interrupted init (a link: itself)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a directory name that is not UTF-8
        bad = text[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        line = text[: exc.start].rpartition("\n")[2] + bad
        raise UserError(
            f"a path init would write is not UTF-8 text ({line.strip()!r})",
            fix="rename that file or directory with a UTF-8 name (the manifest is UTF-8)",
        ) from None
    try:
        with temporary.open("xb") as handle:
            handle.write(encoded)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _cannot_write(temporary, exc) from None
    return temporary


def _replace(temporary: Path, path: Path) -> None:
    """Rename `temporary` over `path`: a symlink there is replaced, never followed."""
    if path.is_dir() and not path.is_symlink():
        temporary.unlink()
        raise UserError(f"{path} is a directory", fix=f"move it away to let init write {path.name}")
    try:
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None


def _cannot_write(path: Path, exc: OSError) -> UserError:
    return UserError(
        f"cannot write {path}: {exc.strerror or exc}",
        fix="check that the directory is writable and the disk not full",
    )


def _write_noxfile(path: Path, *, force: bool) -> str:
    """Write the thin noxfile, or say why not and what to add instead. A symlink found
    there is replaced (with --force) or kept, never written through."""
    if path.is_symlink() and not force:
        return (
            f"kept {path}: it is a symlink (to {path.readlink()}), which init never "
            "writes through (--force replaces the link with a file)"
        )
    if path.is_file() and not path.is_symlink():  # a directory: `_replace` names it
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
    _replace(_write_new(path, render_noxfile()), path)
    return f"wrote {path}: `nox -l` lists the sessions"
