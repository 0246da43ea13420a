"""`buildlib init` on repositories shaped the way strangers' are: two lockfiles, broken
fixtures, brace globs, crates outside the workspace, a gitignored Cargo.lock, packages
that depend on each other, two Cargo workspaces with one directory name, and a noxfile.py
that is a symlink. Each was found by reading init as a newcomer would use it (stop 28);
the manifests are loaded by the engine, cargo metadata is the real one.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import git_init
from test_init import buildlib, steps_of, write

from buildlib.core.errors import UserError
from buildlib.ecosystems.js_config import read_tsconfig
from buildlib.ecosystems.node import find_projects
from buildlib.ecosystems.repo_files import RepoFiles, list_files
from buildlib.integrations.init import infer
from buildlib.workspace.manifest import load_manifest


def manifest_steps(root: Path) -> dict[str, dict[str, Any]]:
    return steps_of((root / "build.toml").read_text())


CRATE_LIB = "pub fn f() -> u32 { 1 }\n"


def crate(name: str, deps: str = "") -> dict[str, str]:
    return {
        "Cargo.toml": f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n'
        f"[dependencies]\n{deps}",
        "src/lib.rs": CRATE_LIB,
    }


def under(prefix: str, files: Mapping[str, str]) -> dict[str, str | dict[str, Any]]:
    return {f"{prefix}/{name}": text for name, text in files.items()}


# --- JavaScript projects ------------------------------------------------------------------------


def test_the_lockfile_of_the_declared_manager_wins_over_a_stale_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "packageManager": "npm@10.8.0"},
            "package-lock.json": json.dumps({"lockfileVersion": 3, "packages": {"": {}}}),
            "yarn.lock": "# yarn lockfile v1\n",
        },
    )
    (project,), _ = find_projects(list_files(tmp_path))
    assert project.lockfile == "package-lock.json"
    assert "package-lock.json" in project.install_inputs
    assert "fails until" not in project.manager.reason  # its lockfile is committed


def test_a_broken_fixture_no_install_reads_is_a_note_and_a_bom_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": '\ufeff{"name": "r"}',  # npm reads a BOM
            "package-lock.json": "{}",
            "test/fixtures/broken/package.json": '{"name": "broken",',
            "test/fixtures/odd/package.json": {"name": "odd", "workspaces": 5},
        },
    )
    projects, notes = find_projects(list_files(tmp_path))
    assert [p.root.name for p in projects] == ["r"]
    assert any("broken/package.json: not a readable package.json" in n for n in notes)
    assert any('odd/package.json: "workspaces" is 5' in n for n in notes)


def test_workspaces_of_the_wrong_type_are_an_error_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": {"name": "r", "workspaces": {"packages": "x"}}})
    with pytest.raises(UserError) as caught:
        find_projects(list_files(tmp_path))
    assert f'{tmp_path / "package.json"}: "workspaces" is "x"' in caught.value.message
    assert "packages/*" in caught.value.fix


def test_brace_globs_name_their_members_and_inputs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "workspaces": ["packages/{a,b}"]},
            "package-lock.json": "{}",
            "packages/a/package.json": {"name": "a"},
            "packages/b/package.json": {"name": "b"},
            "packages/c/package.json": {"name": "c"},
        },
    )
    (project,), _ = find_projects(list_files(tmp_path))
    assert [m.name for m in project.members] == ["a", "b"]
    assert project.install_inputs[2:4] == ("packages/a/package.json", "packages/b/package.json")


@pytest.mark.parametrize(
    ("pattern", "expanded"),
    [
        ("packages/*", ["packages/*"]),
        ("packages/{a,b}", ["packages/a", "packages/b"]),
        ("{apps,libs}/{x,y}", ["apps/x", "apps/y", "libs/x", "libs/y"]),
        ("p/{a,{b,c}}", ["p/a", "p/b", "p/c"]),
        ("p/{a}/{b,c}", ["p/{a}/b", "p/{a}/c"]),  # `{a}` is no list: kept
        ("p/{a,b", ["p/{a,b"]),  # unclosed: kept as written
        ("p/{,x}", ["p/", "p/x"]),
    ],
)
def test_brace_expansion(pattern: str, expanded: list[str]) -> None:
    from buildlib.ecosystems.node import expand_braces

    assert expand_braces(pattern) == expanded


def test_a_pnpm_flow_list_over_several_lines_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "r"},
            "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
            "pnpm-workspace.yaml": "packages: [\n  'packages/*',\n  \"tools/x\", # one\n]\n",
            "packages/a/package.json": {"name": "a"},
            "tools/x/package.json": {"name": "x"},
        },
    )
    (project,), _ = find_projects(list_files(tmp_path))
    assert [m.name for m in project.members] == ["a", "x"]


def test_a_config_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": {"name": "r"}, "pnpm-lock.yaml": "lockfileVersion: 9\n"})
    (tmp_path / "pnpm-workspace.yaml").write_bytes(b"packages:\n  - 'caf\xe9/*'\n")
    done = buildlib(tmp_path, "init", "--dry-run")
    assert done.returncode == 1, done.stderr
    assert f"{tmp_path / 'pnpm-workspace.yaml'}: not a readable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", [5, True, None, ["out"]])
def test_a_tsconfig_path_that_is_not_a_string_is_as_if_unset(tmp_path: Path, value: Any) -> None:
    options = {"outDir": value, "tsBuildInfoFile": value, "declarationDir": value}
    write(tmp_path, {"tsconfig.json": {"compilerOptions": {**options, "strict": True}}})
    read = read_tsconfig(tmp_path, "tsconfig.json")
    assert read is not None
    assert read.options == {"strict": True}


# --- Cargo workspaces ------------------------------------------------------------------------------


def test_path_dependencies_outside_the_members_are_inputs(tmp_path: Path) -> None:
    """An `exclude`d crate and one beside the workspace are compiled by cargo: their
    edits must make cargo's steps run again."""
    outside = tmp_path / "elsewhere"
    write(outside, crate("far"))
    root = tmp_path / "repo"
    write(
        root,
        {
            "ws/Cargo.toml": '[workspace]\nmembers = ["app"]\nexclude = ["shim"]\n',
            **under("ws/app", crate("app", 'shim = { path = "../shim" }\n')),
            **under("ws/shim", crate("shim", 'helper = { path = "../../vendor/helper" }\n')),
            **under("vendor/helper", crate("helper", f'far = {{ path = "{outside}/" }}\n')),
        },
    )
    git_init(root)
    draft = infer(root)
    check = next(s for s in draft.steps if s.name.endswith("-check") and s.cwd == "ws")
    assert {"shim/**"} <= set(check.inputs or ())
    assert any("path dependency of the Cargo workspace at ws" in n for n in draft.skipped)
    (root / "build.toml").write_text("")  # infer only; the loaded manifest comes from init
    done = buildlib(root, "init", "--force")
    assert done.returncode == 0, done.stderr
    for step in manifest_steps(root).values():
        if step.get("cwd") == "ws":
            assert "shim/**" in step["inputs"]


def test_a_path_dependency_outside_the_repository_is_named_for_review(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    write(outside, crate("far"))
    root = tmp_path / "repo"
    write(root, crate("app", f'far = {{ path = "{outside}" }}\n'))
    git_init(root)
    draft = infer(root)
    assert any("path dependency far lies outside the repository" in r for r in draft.review)


def test_a_member_through_a_symlink_out_of_the_repository_is_not_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    write(outside, crate("ext"))
    root = tmp_path / "repo"
    write(
        root,
        {
            "Cargo.toml": '[workspace]\nmembers = ["app", "ext"]\n',
            **under("app", crate("app")),
        },
    )
    (root / "ext").symlink_to(outside)
    draft = infer(root)
    assert any("member ext lies outside the repository" in r for r in draft.review)
    for step in draft.steps:
        assert not any(i == "src/**" for i in step.inputs or ()), step  # not the root's


def test_a_gitignored_cargo_lock_gets_no_locked_flag(tmp_path: Path) -> None:
    """A fresh clone has no Cargo.lock when git ignores it, and `--locked` then fails."""
    write(tmp_path, {**crate("lib"), ".gitignore": "/target\nCargo.lock\n"})
    subprocess.run(["cargo", "generate-lockfile", "--offline"], cwd=tmp_path, check=True)
    git_init(tmp_path)
    draft = infer(tmp_path)
    assert all("--locked" not in s.command for s in draft.steps)
    assert all("Cargo.lock" not in (s.inputs or ()) for s in draft.steps)
    assert any("Cargo.lock: git ignores it" in r for r in draft.review)
    (tmp_path / ".gitignore").write_text("/target\n")  # committed: --locked again
    draft = infer(tmp_path)
    assert all("--locked" in s.command for s in draft.steps)


def test_two_cargo_workspaces_of_one_directory_name_keep_their_own_graphs(tmp_path: Path) -> None:
    files: dict[str, str | dict[str, Any]] = {}
    for side in ("a", "b"):
        files.update(under(f"{side}/rust", crate(f"lib{side}")))
    write(tmp_path, files)
    git_init(tmp_path)
    done = buildlib(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    steps = manifest_steps(tmp_path)
    for side in ("a", "b"):
        check, build, test = (f"{side}-rust-cargo-{verb}" for verb in ("check", "build", "test"))
        assert steps[check]["cwd"] == steps[build]["cwd"] == steps[test]["cwd"] == f"{side}/rust"
        assert steps[build]["depends_on"] == [check]
        assert steps[test]["depends_on"] == [build]


# --- the graph and the files init writes ---------------------------------------------------------


def test_packages_that_depend_on_each_other_get_a_manifest_that_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "workspaces": ["packages/*"]},
            "package-lock.json": "{}",
            "packages/a/package.json": {
                "name": "a",
                "scripts": {"build": "tsc"},
                "dependencies": {"b": "*"},
            },
            "packages/b/package.json": {
                "name": "b",
                "scripts": {"build": "tsc"},
                "devDependencies": {"a": "*"},
            },
        },
    )
    git_init(tmp_path)
    done = buildlib(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    assert "depend on each other" in done.stdout
    steps = load_manifest(tmp_path / "build.toml").steps
    assert not ({"b-build"} <= set(steps["a-build"].depends_on)) or not (
        {"a-build"} <= set(steps["b-build"].depends_on)
    )


def test_a_noxfile_symlink_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "repo"
    write(root, {"package.json": {"name": "r"}, "package-lock.json": "{}"})
    (root / "noxfile.py").symlink_to(outside / "noxfile.py")  # dangling
    done = buildlib(root, "init")
    assert done.returncode == 0, done.stderr
    assert "it is a symlink" in done.stdout
    assert not (outside / "noxfile.py").exists()
    (outside / "noxfile.py").write_text("# theirs\n")
    done = buildlib(root, "init", "--force")
    assert done.returncode == 0, done.stderr
    assert (outside / "noxfile.py").read_text() == "# theirs\n"
    assert not (root / "noxfile.py").is_symlink()
    assert "register(nox" in (root / "noxfile.py").read_text()
    assert sorted(p.name for p in root.iterdir()) == [
        "build.toml",
        "noxfile.py",
        "package-lock.json",
        "package.json",
    ]


def test_a_noxfile_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": {"name": "r"}, "package-lock.json": "{}"})
    (tmp_path / "noxfile.py").mkdir()
    done = buildlib(tmp_path, "init", "--force")
    assert done.returncode == 1
    assert f"{tmp_path / 'noxfile.py'} is a directory" in done.stderr
    assert "Traceback" not in done.stderr


# --- the file list ------------------------------------------------------------------------------

_SEGMENTS = st.sampled_from(["a", "b", "src", "a.b", "x y", "é"])


@settings(max_examples=200, deadline=None)
@given(
    paths=st.frozensets(st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join), max_size=12),
    asked=st.lists(st.lists(_SEGMENTS, min_size=0, max_size=4).map("/".join), max_size=12),
)
def test_exists_answers_as_a_scan_of_every_path(paths: frozenset[str], asked: list[str]) -> None:
    """The set of directories answers what scanning each path for the prefix did."""
    files = RepoFiles(root=Path("/nonexistent"), paths=paths, from_git=True)
    for question in [*asked, ".", "./a", "a/", *paths, *(posixpath.dirname(p) for p in paths)]:
        normal = posixpath.normpath(question.rstrip("/") or ".")
        prefix = "" if normal == "." else normal + "/"
        scanned = normal in paths or any(p.startswith(prefix) for p in paths)
        assert files.exists(question) == scanned, question


def test_two_scripts_of_one_step_name_get_names_of_their_own(tmp_path: Path) -> None:
    """`build:js` and `build:JS` both sanitise to `build-js`: the second is `-2`, and
    nothing depends on the wrong one."""
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "scripts": {"build:js": "tsc", "build:JS": "tsc -b"}},
            "package-lock.json": "{}",
        },
    )
    git_init(tmp_path)
    done = buildlib(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    names = list(manifest_steps(tmp_path))
    assert len(names) == len(set(names)), names


def test_a_package_name_longer_than_a_step_name_is_shortened(tmp_path: Path) -> None:
    long = "@s/" + "a" * 110
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "workspaces": ["packages/*"]},
            "package-lock.json": "{}",
            "packages/p/package.json": {"name": long, "scripts": {"build": "tsc"}},
        },
    )
    git_init(tmp_path)
    done = buildlib(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    names = [n for n in manifest_steps(tmp_path) if n.startswith("aaa")]
    assert names and all(len(n) <= 100 for n in names), names


def test_a_directory_name_in_no_encoding_is_a_clear_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"package.json": {"name": "r", "workspaces": ["packages/*"]}, "package-lock.json": "{}"},
    )
    odd = os.fsencode(tmp_path / "packages") + b"/caf\xe9"
    os.makedirs(odd)
    with open(odd + b"/package.json", "w") as handle:
        handle.write(json.dumps({"name": "cafe", "scripts": {"build": "tsc"}}))
    done = buildlib(tmp_path, "init")
    assert done.returncode == 1
    assert "is not UTF-8 text" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob(".build.toml.init-*"))


@pytest.mark.parametrize(
    ("braces", "needle"),
    [("{a,b}" * 9, "expands to over 256 globs"), ("{a,b}" * 1500, "over 16 brace lists")],
    ids=["512 globs", "1500 lists"],
)
def test_braces_that_expand_beyond_reason_are_refused(
    tmp_path: Path, braces: str, needle: str
) -> None:
    write(tmp_path, {"package.json": {"name": "r", "workspaces": ["p/" + braces]}})
    done = buildlib(tmp_path, "init", "--dry-run")
    assert done.returncode == 1
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_a_dependency_on_a_shortened_name_of_an_earlier_batch_follows_it() -> None:
    """A napi step depends on its Cargo workspace's build: when that name is cut to fit,
    the dependency is cut the same way."""
    from buildlib.ecosystems.draft import DraftStep
    from buildlib.integrations.init import _unique_names

    long = "a" * 96
    cargo = [DraftStep(name=long, command=("cargo", "build"))]
    node = [DraftStep(name="pkg-build", command=("napi", "build"), depends_on=(long,))]
    first, second = _unique_names([cargo, node])
    assert len(first.name) <= 100 and second.depends_on == (first.name,)
