"""`script = "build"`: running a package.json script through the workspace's package manager.

The engine knows nothing of npm; a step that names a script instead of a command gets
its argv here: `npm run build`, `pnpm run build`, `yarn run build` (yarn berry through
its committed release file when no `yarn` is on PATH). The package manager is, in
order: the manifest's `[workspace] package_manager`, then, from the step's directory up
to the workspace root, the first package.json with a `packageManager` field (corepack's
`name@version`) or lockfile found (a repository may hold several projects).
Extra arguments (a mode's or target's `args`) go after `--` for npm and pnpm, which
would otherwise take them for themselves, and straight after the script for yarn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from buildlib.core.errors import ManifestError

MANAGERS = ("npm", "pnpm", "yarn")
LOCKFILES = (
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
)


def detect_package_manager(
    root: Path,
    declared: str,
    *,
    manifest: Path,
    start: Path | None = None,
    seen: dict[Path, str | None] | None = None,
) -> str:
    """npm, pnpm or yarn for a step in `start` (default: the root); see the docstring.
    `seen` keeps what each directory said, for a caller asking about many directories
    under the same parents (`init` on a workspace of 1,000 packages)."""
    if declared:
        if declared not in MANAGERS:
            raise ManifestError(
                f"unknown package manager {declared!r}",
                file=manifest,
                key="workspace.package_manager",
                fix="use one of: " + ", ".join(MANAGERS),
            )
        return declared
    directory = start or root
    seen = {} if seen is None else seen
    while True:
        if directory not in seen:
            seen[directory] = _manager_in(directory)
        found = seen[directory]
        if found is not None:
            return found
        if directory in (root, directory.parent):
            break
        directory = directory.parent
    raise ManifestError(
        "a step names a `script`, but the package manager is unknown: no "
        "packageManager field in a package.json and no lockfile from "
        f"{start or root} up to the workspace root",
        file=manifest,
        key="workspace.package_manager",
        fix='declare it: [workspace] package_manager = "npm" (or pnpm, yarn)',
    )


def _manager_in(directory: Path) -> str | None:
    try:
        field = json.loads((directory / "package.json").read_text(encoding="utf-8")).get(
            "packageManager"
        )
    except (OSError, ValueError, AttributeError):
        field = None
    if isinstance(field, str) and field.partition("@")[0] in MANAGERS:
        return field.partition("@")[0]
    for name, manager in LOCKFILES:
        if (directory / name).is_file():
            return manager
    return None


def script_argv(manager: str, script: str, args: tuple[str, ...], *, root: Path) -> tuple[str, ...]:
    """The command that runs `script` with `args` through `manager`."""
    if manager == "yarn":
        return (*_yarn(root), "run", script, *args)
    return (manager, "run", script, *(("--", *args) if args else ()))


def _yarn(root: Path) -> tuple[str, ...]:
    """`yarn`, or node with the release file `.yarnrc.yml` names when yarn is not on PATH
    (yarn berry repositories commit it under .yarn/releases/)."""
    if shutil.which("yarn") is not None:
        return ("yarn",)
    try:
        text = (root / ".yarnrc.yml").read_text(encoding="utf-8")
    except OSError:
        return ("yarn",)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "yarnPath" and value.strip():
            return ("node", str(root / value.strip().strip("'\"")))
    return ("yarn",)
