"""Cargo workspaces as `cargo metadata` describes them: members, their targets and the
workspace crates each depends on.

`cargo metadata --format-version 1 --no-deps` is Cargo's own, stable answer (members from
globs, `exclude`, auto-discovered targets, the target directory with CARGO_TARGET_DIR and
.cargo/config.toml applied) and, with `--no-deps`, it neither resolves dependencies nor
touches the network or Cargo.lock. Parsing Cargo.toml files here instead would re-implement
all of that, and get it wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.ecosystems.repo_files import RepoFiles

METADATA_TIMEOUT = 120.0
# Files beside the workspace's Cargo.toml that change what cargo builds, when they exist.
CARGO_CONFIG = (".cargo/config.toml", ".cargo/config", "rust-toolchain.toml", "rust-toolchain")
# Target kinds whose files a build leaves in target/<profile>/ for others to use.
ARTIFACT_KINDS = ("bin", "cdylib", "dylib", "staticlib")


@record
class CargoTarget:
    name: str
    kinds: tuple[str, ...]  # "lib", "bin", "cdylib", "test", "bench", "example", "custom-build"...
    src: str  # the root source file, relative to the crate's directory


@record
class CargoDependency:
    name: str
    kind: str  # "normal", "dev" or "build"
    path: str  # a path dependency's directory relative to the repository root, else ""
    default_features: bool
    features: tuple[str, ...]
    outside: bool = False  # a path dependency outside the repository (path is "")


@record
class Crate:
    name: str
    dir: str  # relative to the repository root
    targets: tuple[CargoTarget, ...]
    dependencies: tuple[CargoDependency, ...]

    def has_kind(self, *kinds: str) -> bool:
        return any(k in kinds for t in self.targets for k in t.kinds)


@record
class CargoWorkspace:
    dir: str  # the workspace root, relative to the repository root
    crates: tuple[Crate, ...]
    target_dir: str | None  # relative to the repository root; None when outside it
    lockfile: bool  # Cargo.lock is committed (or would be: there, and not ignored by git)
    config_files: tuple[str, ...]  # CARGO_CONFIG files that exist, relative to `dir`
    lockfile_ignored: bool = False  # a Cargo.lock is there, but git ignores it
    outside: tuple[str, ...] = ()  # members whose directory is outside the repository

    def external_paths(self) -> list[str]:
        """The directories (from the root) of path dependencies inside the repository
        that are not members (`exclude`d crates, vendored ones): cargo compiles them."""
        members = {c.dir for c in self.crates}
        found = [d.path for c in self.crates for d in c.dependencies if d.path]
        return sorted({p for p in found if p not in members})

    def crate_at(self, directory: str) -> Crate | None:
        return next((c for c in self.crates if c.dir == directory), None)

    def path_dependencies(
        self, crate: Crate, *, kinds: tuple[str, ...] = ("normal", "build")
    ) -> list[Crate]:
        """The workspace crates `crate` depends on, directly or not (normal and build
        dependencies: what compiling it compiles)."""
        by_dir = {c.dir: c for c in self.crates}
        found: dict[str, Crate] = {}
        queue = [crate]
        while queue:
            current = queue.pop()
            for dep in current.dependencies:
                target = by_dir.get(dep.path) if dep.kind in kinds else None
                if target is not None and target.dir not in found and target is not crate:
                    found[target.dir] = target
                    queue.append(target)
        return list(found.values())


def find_workspaces(
    files: RepoFiles, environ: Mapping[str, str] | None = None
) -> tuple[list[CargoWorkspace], list[str]]:
    """Every Cargo workspace (or single package) of the repository, and notes on the
    Cargo.toml files left out (with why)."""
    workspaces: list[CargoWorkspace] = []
    notes: list[str] = []
    covered: set[str] = set()
    for manifest in files.named("Cargo.toml"):
        directory = str(PurePosixPath(manifest).parent)
        if directory in covered:
            continue
        inside = next(
            (w for w in workspaces if w.dir == "." or directory.startswith(w.dir + "/")), None
        )
        if inside is not None:
            notes.append(
                f"{manifest}: a path dependency of the Cargo workspace at {inside.dir}, "
                "not a member: its files are inputs of that workspace's steps"
                if directory in inside.external_paths()
                else f"{manifest}: inside the Cargo workspace at {inside.dir} but not a "
                "member of it (a test fixture?): no steps"
            )
            continue
        try:
            workspace = load_workspace(files, directory, environ)
        except UserError as exc:
            if directory == ".":
                raise
            notes.append(f"{manifest}: {exc.message}: no steps")
            continue
        workspaces.append(workspace)
        covered.update(c.dir for c in workspace.crates)
        covered.add(workspace.dir)
    return workspaces, notes


def load_workspace(
    files: RepoFiles, directory: str, environ: Mapping[str, str] | None = None
) -> CargoWorkspace:
    """`cargo metadata` in `directory` (relative to the repository root)."""
    cwd = files.root / directory
    argv = ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"]
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=METADATA_TIMEOUT,
            check=False,
            env=dict(os.environ if environ is None else environ),
        )
    except FileNotFoundError:
        raise UserError(
            f"{cwd / 'Cargo.toml'} is a Rust package, but cargo is not on PATH",
            fix="install Rust (https://rustup.rs) and run init again",
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"`{' '.join(argv)}` in {cwd} failed: {exc}", fix="run it yourself to see why"
        ) from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()][:6]
        raise UserError(
            f"`{' '.join(argv)}` in {cwd} exited {done.returncode}:\n    " + "\n    ".join(lines),
            fix="fix the Cargo.toml it names (cargo build would fail the same way)",
        )
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"`{' '.join(argv)}` printed no JSON ({exc})",
            fix="check that `cargo` on PATH is Rust's cargo",
        ) from None
    return _workspace(files, data)


def _relative(root: Path, path: str) -> str | None:
    """`path` relative to `root`, or None when it is outside."""
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    if relative == ".." or relative.startswith(".." + os.sep):
        return None
    return Path(relative).as_posix()


def _workspace(files: RepoFiles, data: dict[str, Any]) -> CargoWorkspace:
    root = files.root
    workspace_dir = _relative(root, data["workspace_root"])
    if workspace_dir is None:
        raise UserError(
            f"the Cargo workspace's root, {data['workspace_root']}, is outside {root}",
            fix=f"run init at the workspace's root, {data['workspace_root']}",
        )
    members = set(data.get("workspace_members", []))
    crates = []
    outside: list[str] = []
    for package in data.get("packages", []):
        if members and package["id"] not in members:
            continue
        crate_dir = _relative(root, str(Path(package["manifest_path"]).parent))
        if crate_dir is None:  # a member through a symlink: never read or built as ours
            outside.append(package["name"])
            continue
        base = Path(package["manifest_path"]).parent
        targets = tuple(
            CargoTarget(
                name=t["name"],
                kinds=tuple(t.get("kind", ())),
                src=Path(os.path.relpath(t["src_path"], base)).as_posix(),
            )
            for t in package.get("targets", [])
        )
        dependencies = tuple(
            CargoDependency(
                name=d["name"],
                kind=d.get("kind") or "normal",
                path=(_relative(root, d["path"]) or "") if d.get("path") else "",
                default_features=bool(d.get("uses_default_features", True)),
                features=tuple(d.get("features", ())),
                outside=bool(d.get("path")) and _relative(root, d["path"]) is None,
            )
            for d in package.get("dependencies", [])
        )
        crates.append(
            Crate(name=package["name"], dir=crate_dir, targets=targets, dependencies=dependencies)
        )
    target = _relative(root, data["target_directory"]) if data.get("target_directory") else None
    prefix = "" if workspace_dir == "." else workspace_dir + "/"
    return CargoWorkspace(
        dir=workspace_dir,
        crates=tuple(crates),
        target_dir=target,
        # As git sees it: a Cargo.lock that .gitignore leaves out is not in a fresh
        # clone, where `--locked` would fail.
        lockfile=files.exists(prefix + "Cargo.lock"),
        lockfile_ignored=files.from_git
        and not files.exists(prefix + "Cargo.lock")
        and (root / prefix / "Cargo.lock").is_file(),
        config_files=tuple(f for f in CARGO_CONFIG if files.exists(prefix + f)),
        outside=tuple(outside),
    )
