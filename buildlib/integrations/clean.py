"""Remove what the manifest declares as build output, and nothing else.

Every candidate is checked to lie inside the workspace (its parent directory
resolved, so a symlinked directory cannot lead outside); a symlink is removed as a
link, never followed; directories are removed with `shutil.rmtree`, which does not
follow symlinks either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from buildlib.core.errors import ManifestError, UserError
from buildlib.core.fmt import human_size
from buildlib.core.globs import kept_in_reach
from buildlib.incremental.outputs import matching_paths
from buildlib.planning.plan import (
    StepPaths,
    fill_template,
    manifest_relative,
    template_variables,
)
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target


def planned_removals(manifest: Manifest, *, target: Target, selection: Sequence[str]) -> list[Path]:
    """Existing paths the selected steps declare (outputs and `clean`), for every mode."""
    groups = {s.group for s in manifest.steps.values()}
    for name in selection:
        if name not in groups and name not in manifest.steps:
            raise UserError(
                f"clean: '{name}' is neither a step group nor a step",
                fix="groups: " + ", ".join(sorted(groups)),
            )
    steps = [
        s
        for s in manifest.steps.values()
        if not selection or s.group in selection or s.name in selection
    ]
    root = manifest.root.resolve()
    found: dict[Path, None] = {}
    for mode in manifest.modes:
        variables = template_variables(manifest, mode, target, os.environ)
        for step in steps:

            def fill(
                text: str,
                key: str,
                step_name: str = step.name,
                values: Mapping[str, str] = variables,
            ) -> str:
                return fill_template(text, values, file=manifest.path, step=step_name, key=key)

            step_paths = StepPaths(manifest, step, fill(step.cwd, "cwd"), fill)
            for key, pattern in (
                *(("outputs", p) for p in step_paths.of("outputs", step.outputs)),
                *(("clean", p) for p in step_paths.of("clean", step.clean)),
            ):
                for path in _expand(root, pattern):
                    _check_removable(manifest, root, path, step=step.name, key=key)
                    found[path] = None
    # A path inside another removed directory goes with it.
    paths = sorted(found)
    return [p for p in paths if not any(q != p and p.is_relative_to(q) for q in paths)]


def _check_removable(manifest: Manifest, root: Path, path: Path, *, step: str, key: str) -> None:
    """Never the manifest, `.buildlib` or `.git`, nor a directory holding one (`*`), as
    the entry really lies (`g/objects` with `g -> .git` is `.git/objects`)."""
    real = Path(os.path.realpath(path.parent)) / path.name  # `_expand` kept it inside
    rel = real.relative_to(root).as_posix()
    hit = kept_in_reach(rel, manifest_relative(manifest))
    if hit:
        raise ManifestError(
            f"{key} matches {rel}"
            + (f", which holds {hit}" if hit.startswith(rel + "/") else "")
            + ": clean would delete it",
            file=manifest.path,
            step=step,
            key=key,
            fix="name what the step writes (dist, out/*.js), never the manifest, .buildlib or .git",
        )


def _expand(root: Path, pattern: str) -> Iterable[Path]:
    """What `pattern` names now, in the glob dialect of inputs and outputs."""
    for rel in matching_paths(root, pattern):
        path = root / rel
        if inside(root, path):
            yield path


def inside(root: Path, path: Path) -> bool:
    """True when the directory entry `path` (not what a symlink points to) is inside `root`.

    Its parent is resolved, so `out/` being a symlink to /elsewhere cannot lead outside.
    """
    parent = Path(os.path.realpath(path.parent))
    return parent.is_relative_to(root) and parent / path.name != root


def size_of(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):  # os.walk does not follow symlinks by default
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def clean(
    manifest: Manifest,
    *,
    target: Target,
    selection: Sequence[str],
    dry_run: bool,
    cache: bool,
    cache_dir: Path | None,
) -> int:
    """`nox -s clean [-- GROUP... --cache --dry-run]`; prints what goes, with sizes."""
    paths = planned_removals(manifest, target=target, selection=selection)
    root = manifest.root.resolve()
    total = 0
    verb = "would remove" if dry_run else "removed"
    for path in paths:
        size = size_of(path)
        total += size
        if not dry_run:
            remove(path)
        print(f"{verb} {path.relative_to(root)} ({human_size(size)})")
    if cache:
        from buildlib.cache.admin import clear_cache
        from buildlib.cache.config import cache_config

        config = cache_config(
            manifest, os.environ, cache_dir=cache_dir, remote_url=None, read_only=True
        )
        total += clear_cache(config, dry_run=dry_run)
    print(f"{verb} {len(paths)} path(s), {human_size(total)}" + (" and the cache" if cache else ""))
    return 0
