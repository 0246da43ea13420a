"""The steps of a Cargo workspace: check, build and test, with the inputs and outputs Cargo's
own metadata implies.

- `cargo check --workspace --all-targets` first: the fastest answer to "does it compile",
  tests and examples included.
- `cargo build --workspace` next, its outputs the files the targets' kinds leave in
  target/debug: a `bin` its executable, a `cdylib`/`dylib` its shared library.
- `cargo test --workspace` last, reusing what the build compiled.
- napi-rs crates (their directory holds a package.json with a `napi` field) are left out of
  build and test: their build is the package's `napi build` step, and a test executable
  of a Node-API crate cannot link (the napi symbols come from node at load time). They are
  checked, which needs no linking. Their build step comes after `cargo build` when they
  depend on workspace crates it compiles (those crates' errors show up there first, and
  the two cargo processes do not queue on the target directory's lock), and its inputs are
  the sources of those crates too.
Inputs are each crate's Cargo.toml and the directories of its targets' sources (src/,
tests/, benches/, examples/, build.rs), the workspace's Cargo.toml and Cargo.lock, and
.cargo/config.toml and rust-toolchain.toml when they exist: everything cargo reads, and not
what other steps write into the crates' directories (napi's .node files, index.js).
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping, Sequence

from buildlib.core.records import field, record
from buildlib.ecosystems.cargo import ARTIFACT_KINDS, CargoWorkspace, Crate
from buildlib.ecosystems.draft import DraftStep, Output

CARGO_TOOLS = ("cargo", "rustc")
# Target kinds a `cargo build` compiles (not tests, benches, examples).
BUILT_KINDS = ("lib", "rlib", "bin", "cdylib", "dylib", "staticlib", "proc-macro", "custom-build")
ENV_INPUTS = ("RUSTFLAGS",)  # changes what rustc emits; read from the caller's environment
PROFILE_DIR = "debug"  # `cargo build` without --release


@record
class NativeCrate:
    """What the `napi build` step of a napi-rs package takes from its crate."""

    inputs: tuple[str, ...]  # relative to the crate's directory; "//x" from the root
    depends_on: tuple[str, ...]
    typedefs: bool  # napi-derive generates index.d.ts (its default `type-def` feature)
    why: str


@record
class CargoSteps:
    steps: tuple[DraftStep, ...]
    native: Mapping[str, NativeCrate] = field(default_factory=dict)  # crate dir -> ...
    review: tuple[str, ...] = ()


def cargo_steps(
    workspace: CargoWorkspace, napi_dirs: Collection[str], *, prefix: str = "cargo"
) -> CargoSteps:
    """Steps named `<prefix>-check`, `-build`, `-test` for `workspace`; `napi_dirs` are
    the directories (relative to the root) of napi-rs packages."""
    native = [c for c in workspace.crates if c.dir in napi_dirs]
    others = [c for c in workspace.crates if c.dir not in napi_dirs]
    excludes = tuple(a for c in native for a in ("--exclude", c.name))
    locked = ("--locked",) if workspace.lockfile else ()
    review: list[str] = []
    if workspace.lockfile_ignored:
        review.append(
            f"{_at(workspace.dir, 'Cargo.lock')}: git ignores it, so a fresh clone (CI) "
            "has none and cargo resolves versions afresh: the commands run without "
            "--locked; commit it (remove it from .gitignore) for reproducible builds, "
            "then add --locked"
        )
    elif not workspace.lockfile:
        review.append(
            f"{_at(workspace.dir, 'Cargo.toml')}: no Cargo.lock, so cargo resolves "
            "versions afresh (and writes one): commit it for reproducible builds "
            "(`cargo generate-lockfile`), then add --locked to the cargo commands"
        )
    review += [
        f"{_at(workspace.dir, 'Cargo.toml')}: member {name} lies outside the repository "
        "(a symlink?): no step reads or builds it, and cargo's steps do not see its changes"
        for name in workspace.outside
    ]
    review += [
        f"{crate.name}: path dependency {dep.name} lies outside the repository: its "
        "changes do not make cargo's steps run again"
        for crate in workspace.crates
        for dep in crate.dependencies
        if dep.outside
    ]
    members = ", ".join(c.name for c in workspace.crates)
    check = DraftStep(
        name=f"{prefix}-check",
        cwd=workspace.dir,
        command=("cargo", "check", "--workspace", "--all-targets", *locked),
        inputs=_inputs(workspace, workspace.crates, kinds=None),
        tools=CARGO_TOOLS,
        why=(
            f"cargo metadata: a workspace of {members}; check compiles every target "
            "(tests and examples too) without linking",
        ),
    )
    steps = [check]
    if not others:
        return CargoSteps(
            steps=tuple(steps),
            review=tuple(review),
            native=_native(workspace, native, build_step=None),
        )
    outputs, unknown = _outputs(workspace, others)
    review += unknown
    left_out = (
        f"; {', '.join(c.name for c in native)} left out (napi build builds it)" if native else ""
    )
    build = DraftStep(
        name=f"{prefix}-build",
        cwd=workspace.dir,
        command=("cargo", "build", "--workspace", *excludes, *locked),
        env_inputs=ENV_INPUTS,
        depends_on=(check.name,),
        inputs=_inputs(workspace, others, kinds=BUILT_KINDS),
        outputs=outputs,
        tools=CARGO_TOOLS,
        why=(
            (
                "outputs from the targets' kinds: " + ", ".join(o.path for o in outputs)
                if outputs
                else "libraries only: nothing outside target/ to declare"
            )
            + left_out,
        ),
    )
    test = DraftStep(
        name=f"{prefix}-test",
        cwd=workspace.dir,
        command=("cargo", "test", "--workspace", *excludes, *locked),
        depends_on=(build.name,),
        inputs=_inputs(workspace, others, kinds=None),
        tools=CARGO_TOOLS,
        why=(
            "after the build, whose compiled dependencies it reuses"
            + (
                f"; {', '.join(c.name for c in native)} left out (a Node-API test "
                "executable cannot link)"
                if native
                else ""
            ),
        ),
    )
    steps += [build, test]
    return CargoSteps(
        steps=tuple(steps),
        review=tuple(review),
        native=_native(workspace, native, build_step=build.name, built={c.dir for c in others}),
    )


def _at(directory: str, path: str) -> str:
    return path if directory == "." else f"{directory}/{path}"


def _source_roots(crate: Crate, kinds: tuple[str, ...] | None) -> list[str]:
    """Globs of the crate's target sources, relative to the crate: the top directory of
    each target's root file (src/lib.rs -> src/**), or the file itself at the top
    (build.rs)."""
    roots: list[str] = []
    for target in crate.targets:
        if kinds is not None and not any(k in kinds for k in target.kinds):
            continue
        if target.src.startswith("../"):
            continue  # a target outside its crate: rare, and listed by its own crate
        top, _, rest = target.src.partition("/")
        roots.append(f"{top}/**" if rest else top)
    return list(dict.fromkeys(roots))


def _inputs(
    workspace: CargoWorkspace, crates: Sequence[Crate], *, kinds: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Relative to the workspace directory."""
    found = ["Cargo.toml", *(["Cargo.lock"] if workspace.lockfile else []), *workspace.config_files]
    # Crates outside the members that cargo compiles all the same (build trees excluded
    # by default: **/target/**).
    found += [f"{_relative(d, workspace.dir)}/**" for d in workspace.external_paths()]
    for crate in crates:
        base = _relative(crate.dir, workspace.dir)
        found += [
            posixpath.join(base, "Cargo.toml"),
            *(posixpath.join(base, r) for r in _source_roots(crate, kinds)),
        ]
    return tuple(dict.fromkeys(posixpath.normpath(p) for p in found))


def _relative(path: str, directory: str) -> str:
    """`path` (from the root) as seen from `directory`: a relative path inside it, "//x"
    outside it."""
    if directory == ".":
        return path
    if path == directory:
        return "."
    if path.startswith(directory + "/"):
        return path[len(directory) + 1 :]
    return "//" + path


def _outputs(
    workspace: CargoWorkspace, crates: list[Crate]
) -> tuple[tuple[Output, ...], list[str]]:
    if workspace.target_dir is None:
        return (), [
            f"{_at(workspace.dir, 'Cargo.toml')}: cargo's target directory is outside "
            "the repository (CARGO_TARGET_DIR or .cargo/config.toml): the build's "
            "outputs cannot be declared, so they are not cached"
        ]
    target = posixpath.join(_relative(workspace.target_dir, workspace.dir), PROFILE_DIR)
    outputs: list[Output] = []
    review: list[str] = []
    for crate in crates:
        for t in crate.targets:
            if "bin" in t.kinds:
                outputs.append(Output(path=f"{target}/{t.name}{{exe_suffix}}"))
            elif "cdylib" in t.kinds or "dylib" in t.kinds:
                outputs.append(Output(path=f"{target}/*{t.name.replace('-', '_')}{{dylib_suffix}}"))
            elif any(k in ARTIFACT_KINDS for k in t.kinds):
                review.append(
                    f"{crate.name}: the {'/'.join(t.kinds)} target {t.name} is not "
                    "declared among cargo-build's outputs: add it if another step "
                    "uses it"
                )
    return tuple(outputs), review


def _native(
    workspace: CargoWorkspace,
    native: list[Crate],
    *,
    build_step: str | None,
    built: Collection[str] = (),
) -> dict[str, NativeCrate]:
    result = {}
    for crate in native:
        deps = workspace.path_dependencies(crate)
        inputs = [*_source_roots(crate, BUILT_KINDS), "Cargo.toml", "package.json"]
        inputs += [
            _relative(_at(workspace.dir, f), crate.dir)
            for f in (
                "Cargo.toml",
                *(["Cargo.lock"] if workspace.lockfile else []),
                *workspace.config_files,
            )
        ]
        for dep in deps:
            base = _relative(dep.dir, crate.dir)
            inputs += [
                posixpath.join(base, "Cargo.toml") if base != "." else "Cargo.toml",
                *(posixpath.join(base, r) for r in _source_roots(dep, BUILT_KINDS)),
            ]
        after = build_step is not None and any(d.dir in built for d in deps)
        names = ", ".join(d.name for d in deps)
        why = (
            f"napi-rs crate {crate.name}: after {build_step}, which compiles {names} first"
            if after
            else f"napi-rs crate {crate.name}"
        )
        result[crate.dir] = NativeCrate(
            inputs=tuple(dict.fromkeys(inputs)),
            depends_on=(build_step,) if after and build_step else (),
            typedefs=_typedefs(crate),
            why=why,
        )
    return result


def _typedefs(crate: Crate) -> bool:
    """Whether napi-derive's `type-def` feature (on by default) is on: then `napi build`
    writes index.d.ts."""
    for dep in crate.dependencies:
        if dep.name == "napi-derive" and dep.kind == "normal":
            return dep.default_features or "type-def" in dep.features
    return True
