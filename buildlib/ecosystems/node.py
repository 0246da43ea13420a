"""JavaScript projects as their files declare them: packages, workspaces, package managers,
lockfiles and how to install them.

A *project* is what one install sets up: a directory with a package.json and (normally) a
lockfile, plus the workspace packages its `workspaces` field (npm, Yarn) or
pnpm-workspace.yaml (pnpm) names. A repository may hold several (this repository's app has
three, each with its own package-lock.json). `find_projects` reads them from the files git
knows about and runs nothing: `buildlib init` calls it on repositories it has never seen,
before anything is installed.

The package manager is the one `packageManager` names (what Corepack enforces), else the
one whose lockfile is there, else npm. The install command it gets is frozen (the lockfile
is the truth, as on CI) and immune to the NODE_ENV trap: with NODE_ENV=production in the
environment npm ci and Yarn 1 silently skip devDependencies (the compilers and bundlers
the build needs), and so does pnpm under `npm_config_production`; the flags below say
"install them" whatever the environment says. Yarn 2+ has no production install, so it
needs none. docs/adopting.md tells the story.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from buildlib.core.errors import UserError
from buildlib.core.records import field, record
from buildlib.ecosystems.repo_files import RepoFiles

DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")
# In order of preference when several lie in one directory.
LOCKFILES = {
    "pnpm-lock.yaml": "pnpm",
    "yarn.lock": "yarn",
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "bun.lock": "bun",
    "bun.lockb": "bun",
}
SUPPORTED_MANAGERS = ("npm", "pnpm", "yarn")
PNPM_WORKSPACE = "pnpm-workspace.yaml"
MAX_EXPANDED = 256  # globs one workspace pattern's braces may stand for
MAX_BRACE_LISTS = 16
# Files next to the lockfile that change what an install does, when they exist.
INSTALL_CONFIG = (".npmrc", ".pnpmfile.cjs", "pnpm-workspace.yaml", ".yarnrc.yml", ".yarnrc")
PATCH_DIRS = ("patches", ".yarn/patches")  # patch-package, pnpm patch, yarn patch


@record
class NodePackage:
    """One package.json."""

    dir: str  # relative to the repository root, "." for the root
    name: str  # its "name", else the directory's name
    scripts: Mapping[str, str]
    dependencies: tuple[str, ...]  # every name in the four dependency fields
    manifest: Mapping[str, Any] = field(compare=False)  # the whole parsed package.json

    @property
    def short_name(self) -> str:
        """ "@demo/core" -> "core": what step names start with."""
        return self.name.rsplit("/", 1)[-1]


@record
class PackageManager:
    name: str  # "npm" | "pnpm" | "yarn"
    reason: str  # how it was chosen, for init's explanation
    version: str = ""  # from packageManager, when it says
    berry: bool = False  # Yarn 2 or later
    yarn_release: str = ""  # a committed Yarn release, relative to the project directory
    node_linker: str = ""  # Yarn 2+'s nodeLinker ("" is its default, Plug'n'Play)

    def run_argv(self, *args: str) -> tuple[str, ...]:
        """`<manager> <args>` as an argv, from the project directory: a committed Yarn
        release runs with node, as its yarnPath says, so Yarn need not be installed."""
        if self.yarn_release:
            return ("node", self.yarn_release, *args)
        return (self.name, *args)


@record
class NodeProject:
    """What one install sets up."""

    dir: str  # relative to the repository root
    manager: PackageManager
    lockfile: str  # relative to `dir`; "" when there is none
    root: NodePackage
    members: tuple[NodePackage, ...]  # the workspace packages, root excluded
    member_patterns: tuple[str, ...]  # as written (without negations)
    install_inputs: tuple[str, ...]  # relative to `dir`
    install_outputs: tuple[str, ...]  # relative to `dir`
    notes: tuple[str, ...] = ()  # what the user should know about it

    @property
    def packages(self) -> tuple[NodePackage, ...]:
        return (self.root, *self.members)

    @property
    def is_workspace(self) -> bool:
        return bool(self.members)

    def install_argv(self) -> tuple[str, ...]:
        """The frozen install, immune to the NODE_ENV trap (see the module docstring)."""
        manager = self.manager
        if manager.name == "pnpm":
            return ("pnpm", "install", "--frozen-lockfile", "--prod=false")
        if manager.name == "yarn" and manager.berry:
            return manager.run_argv("install", "--immutable")
        if manager.name == "yarn":
            return ("yarn", "install", "--frozen-lockfile", "--production=false")
        verb = "ci" if self.lockfile else "install"
        extra = () if self.lockfile else ("--no-package-lock",)
        return ("npm", verb, "--include=dev", *extra, "--no-audit", "--no-fund")

    def tools(self) -> tuple[str, ...]:
        """The [tools] whose versions decide what the install and the scripts do."""
        if self.manager.yarn_release:
            return ("node",)  # the release itself is an input of the install
        return ("node", self.manager.name)


def read_package(files: RepoFiles, path: str) -> NodePackage:
    """The package.json at `path` (relative to the repository root)."""
    try:
        text = (files.root / path).read_text(encoding="utf-8-sig")  # npm accepts a BOM
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{files.root / path}: not a readable package.json ({exc})",
            fix="fix the file (npm would reject it too), or remove it",
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"{files.root / path}: not a JSON object",
            fix='a package.json holds one object: {"name": ...}',
        )
    directory = str(PurePosixPath(path).parent)
    name = data.get("name")
    scripts = data.get("scripts")
    names: list[str] = []
    for section in DEPENDENCY_FIELDS:
        table = data.get(section)
        if isinstance(table, dict):
            names += [n for n in table if n not in names]
    return NodePackage(
        dir=directory,
        name=name
        if isinstance(name, str) and name
        else PurePosixPath(files.root.name if directory == "." else directory).name,
        scripts={k: v for k, v in scripts.items() if isinstance(v, str)}
        if isinstance(scripts, dict)
        else {},
        dependencies=tuple(names),
        manifest=data,
    )


def find_projects(files: RepoFiles) -> tuple[list[NodeProject], list[str]]:
    """Every project in the repository, shallowest first, and notes on the package.json
    files that belong to none (with why)."""
    manifests = [p for p in files.named("package.json") if "node_modules/" not in p]
    claimed: set[str] = set()
    projects: list[NodeProject] = []
    notes: list[str] = []
    for path in manifests:
        directory = str(PurePosixPath(path).parent)
        if directory in claimed:
            continue
        lockfiles = [n for n in LOCKFILES if files.exists(_join(directory, n))]
        try:
            package = read_package(files, path)
            patterns = _workspace_patterns(files, directory, package)
        except UserError as exc:
            if lockfiles or directory == "." or files.exists(_join(directory, PNPM_WORKSPACE)):
                raise
            # No install would read it: a fixture of a test, broken on purpose perhaps.
            notes.append(f"{exc.message}, and no lockfile or workspace claims it: no steps")
            continue
        lockfile = _lockfile(lockfiles, package)
        if not lockfile and not patterns and directory != ".":
            notes.append(
                f"{path}: no lockfile and no workspace claims it (a test fixture or "
                "an example?): no steps"
            )
            continue
        manager = detect_manager(files, directory, package, lockfile)
        if manager.name not in SUPPORTED_MANAGERS:
            notes.append(
                f"{path}: {manager.name} ({manager.reason}) is not supported by init "
                "yet: write its steps by hand (docs/manifest.md)"
            )
            continue
        members = _members(files, directory, patterns, manifests)
        claimed.update(m.dir for m in members)
        claimed.add(directory)
        projects.append(
            _project(
                files,
                directory,
                manager=manager,
                lockfile=lockfile,
                root=package,
                members=members,
                patterns=patterns,
            )
        )
    return projects, notes


def _lockfile(found: Sequence[str], package: NodePackage) -> str:
    """The lockfile of the manager `packageManager` names, when it is among those `found`
    in the package's directory (a stale one of another manager may lie beside it); else
    the first in LOCKFILES' order."""
    declared = package.manifest.get("packageManager")
    name = declared.partition("@")[0] if isinstance(declared, str) else ""
    return next((n for n in found if LOCKFILES[n] == name), found[0] if found else "")


def read_text(files: RepoFiles, path: str, what: str) -> str:
    """A configuration file's text, or a UserError naming it (not UTF-8, unreadable)."""
    try:
        return (files.root / path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{files.root / path}: not a readable {what} ({exc})",
            fix="save it as UTF-8 text",
        ) from None


def _join(directory: str, name: str) -> str:
    return name if directory == "." else f"{directory}/{name}"


def _relative(directory: str, path: str) -> str:
    return path if directory == "." else path[len(directory) + 1 :]


def _workspace_patterns(files: RepoFiles, directory: str, package: NodePackage) -> tuple[str, ...]:
    """The workspace globs: package.json's `workspaces` (npm, Yarn; a list or
    {"packages": [...]}) and pnpm-workspace.yaml's `packages`."""
    declared = package.manifest.get("workspaces")
    if isinstance(declared, dict):
        declared = declared.get("packages", [])
    if declared is not None and not (
        isinstance(declared, list) and all(isinstance(p, str) for p in declared)
    ):
        raise UserError(
            f'{files.root / _join(directory, "package.json")}: "workspaces" is '
            f"{json.dumps(declared)}, not a list of globs",
            fix='write "workspaces": ["packages/*"] (or {"packages": [...]}), as npm '
            "and Yarn read it",
        )
    patterns = list(declared or [])
    pnpm_file = _join(directory, PNPM_WORKSPACE)
    if files.exists(pnpm_file):
        patterns += _pnpm_packages(read_text(files, pnpm_file, "pnpm-workspace.yaml file"))
    try:
        expanded = [x for p in patterns for x in expand_braces(p.strip().rstrip("/")) if x]
    except ValueError as exc:
        raise UserError(
            f"{files.root / _join(directory, 'package.json')}: a workspace glob {exc}",
            fix="name the packages with fewer brace lists (packages/*)",
        ) from None
    for pattern in expanded:
        parts = pattern.removeprefix("!").split("/")
        if pattern.removeprefix("!").startswith("/") or ".." in parts:
            raise UserError(
                f"{files.root / _join(directory, 'package.json')}: the workspace glob "
                f"{pattern!r} leaves the project's directory",
                fix="name workspace packages by globs below it (packages/*)",
            )
    return tuple(dict.fromkeys(expanded))


def expand_braces(pattern: str) -> list[str]:
    """`packages/{a,b}` -> `packages/a`, `packages/b` (nested and repeated braces too), as
    npm's and pnpm's glob matchers expand them; a pattern without a closed brace list
    stays as it is."""
    if pattern.count("{") > MAX_BRACE_LISTS:  # before recursing once a list
        raise ValueError(f"{pattern!r} holds over {MAX_BRACE_LISTS} brace lists")
    start = pattern.find("{")
    while start >= 0:
        depth, commas, end = 0, [], -1
        for index in range(start, len(pattern)):
            char = pattern[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    end = index
                    break
            elif char == "," and depth == 1:
                commas.append(index)
        if end < 0:
            return [pattern]
        if commas:
            head, tail = pattern[:start], pattern[end + 1 :]
            bounds = [start, *commas, end]
            expanded: list[str] = []
            for a, b in itertools.pairwise(bounds):
                expanded += expand_braces(head + pattern[a + 1 : b] + tail)
                if len(expanded) > MAX_EXPANDED:  # 30 `{a,b}` would be a billion
                    raise ValueError(f"{pattern!r} expands to over {MAX_EXPANDED} globs")
            return expanded
        start = pattern.find("{", end + 1)  # `{x}` alone is no list: kept as written
    return [pattern]


def _pnpm_packages(text: str) -> list[str]:
    """The `packages:` list of a pnpm-workspace.yaml: the block form (`  - "pkgs/*"`) or
    a flow list (`packages: [a, b]`); the rest of the file is pnpm settings, not read."""
    found: list[str] = []
    inside = False
    flow = ""  # a flow list written over several lines, until its "]"
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if flow:
            flow += " " + line.strip()
            if "]" in line:
                found += _flow_items(flow)
                flow = ""
            continue
        if not line[0].isspace() and not line.startswith("-"):
            key, _, rest = line.partition(":")
            inside = key.strip() == "packages"
            if inside and rest.strip().startswith("["):
                if "]" in rest:
                    found += _flow_items(rest)
                else:
                    flow = rest.strip()
                inside = False
            continue
        item = line.strip()
        if inside and item.startswith("-"):
            found.append(_unquote(item[1:]))
    return found


def _flow_items(text: str) -> list[str]:
    return [_unquote(x) for x in text.strip().strip("[]").split(",") if x.strip()]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _members(
    files: RepoFiles, directory: str, patterns: Sequence[str], manifests: Sequence[str]
) -> tuple[NodePackage, ...]:
    """The packages the patterns name (negations, "!x", remove), in file order."""
    include = [p.removeprefix("./") for p in patterns if not p.startswith("!")]
    exclude = [p[1:].removeprefix("./") for p in patterns if p.startswith("!")]
    members = []
    for path in manifests:
        member = str(PurePosixPath(path).parent)
        if member == directory or (directory != "." and not member.startswith(directory + "/")):
            continue
        relative = _relative(directory, member)
        if any(_glob_match(p, relative) for p in include) and not any(
            _glob_match(p, relative) for p in exclude
        ):
            members.append(read_package(files, path))
    return tuple(members)


def _glob_match(pattern: str, path: str) -> bool:
    """A workspace glob against a directory: `*` is one segment, `**` any number."""
    return _match_parts(pattern.strip("/").split("/"), path.split("/"))


def _match_parts(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _match_parts(pattern[1:], parts[1:])
    )


# -- the package manager ---------------------------------------------------------------------


def detect_manager(
    files: RepoFiles, directory: str, package: NodePackage, lockfile: str
) -> PackageManager:
    """`packageManager` first (Corepack enforces it), else the lockfile, else npm."""
    declared = package.manifest.get("packageManager")
    name, version, reason = "", "", ""
    if isinstance(declared, str) and "@" in declared:
        name, _, version = declared.partition("@")
        version = version.split("+", 1)[0]
        reason = f'package.json "packageManager": "{name}@{version}"'
        if lockfile and LOCKFILES[lockfile] != name:
            reason += (
                f" (the lockfile is {lockfile}, {LOCKFILES[lockfile]}'s: the frozen "
                f"install fails until {name}'s lockfile is committed)"
            )
    elif lockfile:
        name, reason = LOCKFILES[lockfile], f"the lockfile {_join(directory, lockfile)}"
    else:
        name, reason = "npm", "no packageManager field and no lockfile: npm, the default"
    if name != "yarn":
        return PackageManager(name=name, version=version, reason=reason)
    return _yarn(files, directory, lockfile, version, reason)


def _yarn(
    files: RepoFiles, directory: str, lockfile: str, version: str, reason: str
) -> PackageManager:
    """Yarn 1 or 2+ (berry): the version packageManager names, else the lockfile's form,
    else whether .yarnrc.yml (a berry file) exists; and berry's yarnPath and nodeLinker."""
    rc_path = _join(directory, ".yarnrc.yml")
    settings = _yarnrc(files, rc_path)
    if version:
        berry = not version.startswith("1.")
    elif lockfile == "yarn.lock":
        head = read_text(files, _join(directory, lockfile), "yarn.lock file")[:2000]
        berry = "__metadata:" in head or "yarn lockfile v1" not in head
    else:
        berry = files.exists(rc_path)
    if not berry:
        return PackageManager(name="yarn", version=version, reason=reason)
    release = settings.get("yarnPath", "")
    if release and not files.exists(_join(directory, release)):
        release = ""  # named but not committed: Yarn on PATH (or Corepack) runs instead
    if not release:
        committed = [
            p for p in files.under(directory) if re.fullmatch(r"\.yarn/releases/[^/]+\.c?js", p)
        ]
        release = committed[0] if len(committed) == 1 else ""
    return PackageManager(
        name="yarn",
        version=version,
        reason=reason,
        berry=True,
        yarn_release=release,
        node_linker=settings.get("nodeLinker", ""),
    )


def _yarnrc(files: RepoFiles, path: str) -> dict[str, str]:
    """The top-level scalar settings of a .yarnrc.yml (`key: value` lines)."""
    if not files.exists(path):
        return {}
    found = {}
    for line in read_text(files, path, ".yarnrc.yml file").splitlines():
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*:\s*(\S.*?)\s*", line.split(" #")[0])
        if match:
            found[match.group(1)] = _unquote(match.group(2))
    return found


# -- what an install reads and writes ------------------------------------------------------------


def _project(
    files: RepoFiles,
    directory: str,
    *,
    manager: PackageManager,
    lockfile: str,
    root: NodePackage,
    members: tuple[NodePackage, ...],
    patterns: tuple[str, ...],
) -> NodeProject:
    notes: list[str] = []
    if not lockfile:
        notes.append(
            f"{_join(directory, 'package.json')}: no lockfile, so the install "
            "resolves versions afresh each time: commit one (`npm install` writes "
            "package-lock.json) and run init again for a frozen install"
        )
    if any("electron" in p.dependencies for p in (root, *members)):
        notes.append(
            f"{_join(directory, 'package.json')}: Electron's install script downloads "
            "its binary (~100 MB) on every install: if no step runs Electron, add "
            'env = { ELECTRON_SKIP_BINARY_DOWNLOAD = "1" } to the install step'
        )
    inputs = ["package.json", *([lockfile] if lockfile else [])]
    inputs += [f"{p.removeprefix('./')}/package.json" for p in patterns if not p.startswith("!")]
    inputs += [n for n in INSTALL_CONFIG if files.exists(_join(directory, n))]
    if manager.yarn_release:
        inputs.append(manager.yarn_release)
    inputs += [f"{d}/**" for d in PATCH_DIRS if files.exists(_join(directory, d))]
    outputs, more = _install_outputs(files, directory, manager, lockfile, members)
    notes += more
    return NodeProject(
        dir=directory,
        manager=manager,
        lockfile=lockfile,
        root=root,
        members=members,
        member_patterns=tuple(p for p in patterns if not p.startswith("!")),
        install_inputs=tuple(dict.fromkeys(inputs)),
        install_outputs=outputs,
        notes=tuple(notes),
    )


def _install_outputs(
    files: RepoFiles,
    directory: str,
    manager: PackageManager,
    lockfile: str,
    members: Sequence[NodePackage],
) -> tuple[tuple[str, ...], list[str]]:
    """What the install writes, relative to the project: node_modules, and each workspace
    package's own node_modules where the install makes one. A declared output that the
    install does not write fails the step, so only what is certain is declared."""
    if manager.name == "yarn" and manager.berry and manager.node_linker in ("", "pnp"):
        return (".pnp.cjs",), [
            f"{_join(directory, '.yarnrc.yml')}: Plug'n'Play (no "
            "nodeLinker): the install writes .pnp.cjs (declared) and, for "
            "some packages, .pnp.loader.mjs and .yarn/unplugged: add "
            "those to its outputs if they appear"
        ]
    outputs = ["node_modules"]
    if manager.name == "pnpm" or manager.node_linker == "pnpm":
        # pnpm links each package's dependencies into its own node_modules.
        outputs += [
            f"{_relative(directory, m.dir)}/node_modules" for m in members if m.dependencies
        ]
        return tuple(outputs), []
    if manager.name == "npm" and lockfile:
        nested = _npm_nested(files, directory, lockfile)
        outputs += [
            f"{_relative(directory, m.dir)}/node_modules"
            for m in members
            if _relative(directory, m.dir) in nested
        ]
        return tuple(outputs), []
    if members:
        return tuple(outputs), [
            f"{_join(directory, lockfile or 'package.json')}: Yarn may "
            "put a workspace package's dependencies in its own "
            "node_modules: if one appears after the install, add it to "
            "the install step's outputs"
        ]
    return tuple(outputs), []


def _npm_nested(files: RepoFiles, directory: str, lockfile: str) -> set[str]:
    """The workspace directories package-lock.json installs packages under (the keys
    "<dir>/node_modules/<name>" of its `packages`): where npm could not hoist."""
    try:
        lock = json.loads((files.root / _join(directory, lockfile)).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    packages = lock.get("packages") if isinstance(lock, dict) else None
    if not isinstance(packages, dict):
        return set()
    return {
        key.split("/node_modules/", 1)[0]
        for key in packages
        if "/node_modules/" in key and not key.startswith("node_modules/")
    }
