"""The steps of JavaScript projects: one install per lockfile, one step per script that
builds, checks or tests, ordered by the workspace graph.

- The install runs first; every script step depends on its project's install.
- A package's build and checks come after the builds of the workspace packages it depends
  on (any dependency field; a package without a build passes its own dependencies on), as
  Turborepo's `"dependsOn": ["^build"]`. Its tests come after its own build as well
  (`"dependsOn": ["build"]`): tests usually import what the build wrote. A dependency on a
  package of another project (`file:../x`) counts too.
- A script step names the script (`script = "build"`) when the engine will run it with the
  project's package manager (it looks from the step's directory up, ecosystems/scripts.py);
  otherwise, and for Yarn releases committed below the root, it gets the explicit command.
- A build's outputs come from js_outputs; a napi-rs package's build also gets its crate's
  sources as inputs and its place after the cargo build (cargo_steps.NativeCrate).
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from buildlib.core.records import record
from buildlib.ecosystems.cargo_steps import CARGO_TOOLS, ENV_INPUTS, NativeCrate
from buildlib.ecosystems.draft import DraftStep, Output
from buildlib.ecosystems.js_outputs import build_outputs
from buildlib.ecosystems.node import DEPENDENCY_FIELDS, NodePackage, NodeProject
from buildlib.ecosystems.package_scripts import Role, ScriptChoice, classify
from buildlib.ecosystems.repo_files import RepoFiles

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_LOCAL_SPEC = ("file:", "link:", "portal:")
ROLE_ORDER = (Role.BUILD, Role.CHECK, Role.TEST)


@record
class NodeSteps:
    steps: tuple[DraftStep, ...]  # each project's install, then its packages' script steps
    skipped: tuple[str, ...]
    review: tuple[str, ...]


def sanitize(text: str) -> str:
    """A step-name part: lower case, runs of anything else than [a-z0-9] as one '-'."""
    return _NOT_NAME.sub("-", text.lower()).strip("-") or "package"


def package_prefixes(projects: Sequence[NodeProject]) -> dict[str, str]:
    """Package directory -> what its steps' names start with: the short package name
    (@demo/core -> core), a project's own directory name for its root package (web), and
    nothing for the repository's root package. Names that would collide use the path."""
    wanted: dict[str, str] = {}
    for project in projects:
        for package in project.packages:
            if package.dir == ".":
                wanted[package.dir] = ""
            elif package is project.root:
                wanted[package.dir] = sanitize(posixpath.basename(package.dir))
            else:
                wanted[package.dir] = sanitize(package.short_name)
    counts = Counter(wanted.values())
    return {d: p if counts[p] == 1 else sanitize(d) for d, p in wanted.items()}


def install_name(project: NodeProject, prefixes: Mapping[str, str]) -> str:
    prefix = prefixes.get(project.dir, "")
    return f"{prefix}-install" if prefix else "install"


@record
class _Planned:
    package: NodePackage
    project: NodeProject
    choice: ScriptChoice
    name: str


def node_steps(
    projects: Sequence[NodeProject],
    files: RepoFiles,
    *,
    native: Mapping[str, NativeCrate],
    manager_at: Callable[[str], str],
) -> NodeSteps:
    """Every project's install and script steps. `native`: napi-rs crates by directory;
    `manager_at`: the package manager the engine runs a `script =` step in a directory
    with ("" when it would find none)."""
    prefixes = package_prefixes(projects)
    planned: list[_Planned] = []
    skipped: list[str] = []
    review: list[str] = []
    for project in projects:
        review += project.notes
        for package in _in_dependency_order(project):
            workspace_root = package is project.root and project.is_workspace
            choices = classify(package.scripts, workspace_root=workspace_root)
            for choice in sorted(
                (c for c in choices if c.role is not None), key=lambda c: ROLE_ORDER.index(c.role)
            ):
                name = "-".join(p for p in (prefixes[package.dir], sanitize(choice.script)) if p)
                planned.append(_Planned(package=package, project=project, choice=choice, name=name))
            skipped += [
                f"{package.name} `{c.script}`: {c.reason}" for c in choices if c.role is None
            ]
    graph = _Graph(projects, planned)
    steps: list[DraftStep] = []
    for project in projects:
        steps.append(_install(project, prefixes))
        for item in (i for i in planned if i.project is project):
            step, notes = _script_step(
                item,
                graph,
                files,
                native=native,
                install=install_name(project, prefixes),
                manager_at=manager_at,
            )
            steps.append(step)
            review += notes
    return NodeSteps(steps=tuple(steps), skipped=tuple(skipped), review=tuple(review))


def _in_dependency_order(project: NodeProject) -> list[NodePackage]:
    """The project's packages, each after the workspace packages it depends on."""
    by_name = {p.name: p for p in project.packages}
    done: dict[str, NodePackage] = {}

    def visit(package: NodePackage, path: tuple[str, ...]) -> None:
        if package.dir in done or package.dir in path:
            return
        for dep in package.dependencies:
            if dep in by_name:
                visit(by_name[dep], (*path, package.dir))
        done[package.dir] = package

    for package in project.packages:
        visit(package, ())
    return list(done.values())


def _install(project: NodeProject, prefixes: Mapping[str, str]) -> DraftStep:
    manager = project.manager
    what = f"{project.lockfile}" if project.lockfile else "package.json (no lockfile)"
    trap = {
        "npm": "--include=dev keeps devDependencies when NODE_ENV=production",
        "pnpm": "--prod=false keeps devDependencies under NODE_ENV or npm_config_production",
        "yarn": "Yarn 2+ installs devDependencies whatever NODE_ENV says"
        if manager.berry
        else "--production=false keeps devDependencies when NODE_ENV=production",
    }[manager.name]
    stored = tuple(
        Output(path=o, store="archive") if o.endswith("node_modules") else Output(path=o)
        for o in project.install_outputs
    )
    return DraftStep(
        name=install_name(project, prefixes),
        cwd=project.dir,
        command=project.install_argv(),
        inputs=project.install_inputs,
        outputs=stored,
        tools=project.tools(),
        why=(
            f"one install for {what}, with {manager.name} ({manager.reason})",
            trap,
            "node_modules is stored as one archive, not file by file",
        ),
    )


class _Graph:
    """Which steps build which package, and which packages each package depends on."""

    def __init__(self, projects: Sequence[NodeProject], planned: Sequence[_Planned]) -> None:
        self.by_dir = {p.dir: p for project in projects for p in project.packages}
        self.project_of = {p.dir: project for project in projects for p in project.packages}
        self.builds: dict[str, list[str]] = {}
        self._by_name: dict[str, dict[str, NodePackage]] = {}
        for item in planned:
            if item.choice.role is Role.BUILD:
                self.builds.setdefault(item.package.dir, []).append(item.name)

    def _names(self, project: NodeProject) -> dict[str, NodePackage]:
        """A project's packages by name, made once per project (not once per question)."""
        found = self._by_name.get(project.dir)
        if found is None:
            found = self._by_name[project.dir] = {p.name: p for p in project.packages}
        return found

    def dependencies(self, package: NodePackage) -> list[NodePackage]:
        """Packages of the repository `package` depends on: by name in its own workspace,
        or by a local path (`file:../x`, `link:`, `portal:`) anywhere."""
        names = self._names(self.project_of[package.dir])
        found: dict[str, NodePackage] = {}
        for section in DEPENDENCY_FIELDS:
            table = package.manifest.get(section)
            if not isinstance(table, dict):
                continue
            for name, spec in table.items():
                target = names.get(name)
                if isinstance(spec, str) and spec.startswith(_LOCAL_SPEC):
                    where = posixpath.normpath(posixpath.join(package.dir, spec.split(":", 1)[1]))
                    target = self.by_dir.get(where, target)
                if target is not None and target.dir != package.dir:
                    found.setdefault(target.dir, target)
        return list(found.values())

    def builds_of_dependencies(self, package: NodePackage) -> tuple[list[str], list[str]]:
        """(the build steps of the packages `package` depends on, passing through packages
        without a build to their dependencies; the names of the packages built)."""
        steps: list[str] = []
        names: list[str] = []
        seen = {package.dir}
        queue = self.dependencies(package)
        while queue:
            dep = queue.pop(0)
            if dep.dir in seen:
                continue
            seen.add(dep.dir)
            if dep.dir in self.builds:
                steps += [s for s in self.builds[dep.dir] if s not in steps]
                names.append(dep.name)
            else:
                queue += self.dependencies(dep)
        return steps, names


def _script_step(
    item: _Planned,
    graph: _Graph,
    files: RepoFiles,
    *,
    native: Mapping[str, NativeCrate],
    install: str,
    manager_at: Callable[[str], str],
) -> tuple[DraftStep, list[str]]:
    package, project, choice = item.package, item.project, item.choice
    role = choice.role
    why = [f"`{choice.script}` of {package.name}: {choice.reason} (`{choice.command}`)"]
    review: list[str] = []
    depends = [install]
    built, names = graph.builds_of_dependencies(package)
    if role is Role.TEST and package.dir in graph.builds:
        depends += [s for s in graph.builds[package.dir] if s != item.name]
        why.append("after its own build: tests run what it wrote")
    if built:
        depends += built
        why.append(f"after the builds of {', '.join(names)}, which it depends on")
    crate = native.get(package.dir) if "napi" in package.manifest else None
    outputs: tuple[Output, ...] = ()
    placeholder = ""
    tools = project.tools()
    inputs: tuple[str, ...] | None = None
    env_inputs: tuple[str, ...] = ()
    if role is Role.BUILD:
        guess = build_outputs(
            package, choice.command, files, typedefs=crate.typedefs if crate else True
        )
        outputs = tuple(Output(path=p) for p in guess.paths)
        if guess.paths:
            why.append(f"outputs {', '.join(guess.paths)}: {'; '.join(guess.reasons)}")
        if guess.unknown:
            placeholder = (
                f'outputs = ["..."]  # TODO: {guess.unknown[0]}; declare what '
                "the build writes, for the cache and dependents"
            )
            review.append(f"{item.name}: {'; '.join(guess.unknown)}: fill in its outputs")
    if crate is not None and role is Role.BUILD:
        inputs, env_inputs = crate.inputs, ENV_INPUTS
        tools = (*tools, *CARGO_TOOLS)
        depends += list(crate.depends_on)
        why.append(f"{crate.why}; inputs are the crates' sources, not the files napi writes")
    elif "napi" in package.manifest and role is Role.BUILD:
        review.append(
            f"{item.name}: {package.name} is a napi-rs package, but no crate of a "
            "Cargo workspace is in its directory: add the Rust sources it builds "
            "to its inputs"
        )
    use_script = manager_at(package.dir) == project.manager.name and (
        project.manager.name != "yarn" or project.dir == "."
    )
    command = () if use_script else _run_argv(project, choice.script)
    return DraftStep(
        name=item.name,
        cwd=package.dir,
        script=choice.script if use_script else "",
        command=command,
        env_inputs=env_inputs,
        depends_on=tuple(dict.fromkeys(depends)),
        inputs=inputs,
        outputs=outputs,
        placeholder=placeholder,
        tools=tools,
        why=tuple(why),
        runs=" ".join((project.manager.name, "run", choice.script)) if use_script else "",
    ), review


def _run_argv(project: NodeProject, script: str) -> tuple[str, ...]:
    """`<manager> run <script>` from the package's directory; a committed Yarn release is
    named from the root ({root} is the workspace root, filled by the engine)."""
    manager = project.manager
    if manager.yarn_release:
        release = posixpath.normpath(posixpath.join(project.dir, manager.yarn_release))
        return ("node", f"{{root}}/{release}", "run", script)
    return (manager.name, "run", script)
