"""Tests of the issue-17 monorepo generator: `python -m pytest benchmarks/test_monorepo.py`.

What is checked: the tree is seeded, its lockfile is byte for byte what npm writes,
buildlib accepts its build.toml, and turbo (when `find_turbo` already installed it;
the tests never download it) sees the same graph.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import monorepo
from benchmarks.harness import tool_env


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_generate_is_seeded(tmp_path: Path) -> None:
    one = monorepo.generate(tmp_path / "a", packages=30, seed=3)
    two = monorepo.generate(tmp_path / "b", packages=30, seed=3)
    other = monorepo.generate(tmp_path / "c", packages=30, seed=4)
    assert _digest(one.root) == _digest(two.root) != _digest(other.root)
    assert len(list((one.root / "packages" / "p0000" / "src").iterdir())) == 20
    assert monorepo.load(one.root).deps == one.deps
    for i, name in enumerate(one.names):  # dependencies only on earlier packages
        assert set(one.deps[name]) <= set(one.names[:i]) and len(one.deps[name]) <= 3


def test_middle_is_inside_the_graph_and_edits_are_reproducible(tmp_path: Path) -> None:
    repo = monorepo.generate(tmp_path / "r", packages=200)
    assert repo.deps[repo.middle] and repo.dependents(repo.middle)
    edited = monorepo.edit_middle(repo, 1)
    first = edited.read_bytes()
    monorepo.edit_middle(repo, 2)
    assert edited.read_bytes() != first
    monorepo.edit_middle(repo, 1)
    assert edited.read_bytes() == first


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_lockfile_is_what_npm_writes(tmp_path: Path) -> None:
    repo = monorepo.generate(tmp_path / "r", packages=15)
    ours = (repo.root / "package-lock.json").read_bytes()
    (repo.root / "package-lock.json").unlink()
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--offline"],
        cwd=repo.root,
        check=True,
        capture_output=True,
    )
    assert (repo.root / "package-lock.json").read_bytes() == ours
    assert not (repo.root / "node_modules").exists()


def test_buildlib_accepts_the_manifest(tmp_path: Path) -> None:
    repo = monorepo.generate(tmp_path / "r", packages=12)
    env = tool_env() | {"BUILDLIB_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "buildlib", "build", "--dry-run", "--plain"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for name in repo.names:
        assert name in out.stdout


def test_turbo_sees_the_same_graph(tmp_path: Path) -> None:
    prefix = monorepo.TURBO_HOME / f"turbo-{monorepo.TURBO_VERSION}"
    if not prefix.is_dir():
        pytest.skip("turbo is not installed; `python benchmarks/monorepo.py turbo` installs it")
    turbo = monorepo.find_turbo()
    repo = monorepo.generate(tmp_path / "r", packages=12)
    out = subprocess.run(
        monorepo.turbo_argv(turbo, "--dry=json"),
        cwd=repo.root,
        env=monorepo.turbo_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    tasks = {t["package"]: t for t in json.loads(out.stdout)["tasks"]}
    assert set(tasks) == set(repo.names)
    for name in repo.names:
        assert sorted(tasks[name]["dependencies"]) == [f"{d}#build" for d in repo.deps[name]]
        # turbo adds the package's own package.json to the declared inputs
        assert set(tasks[name]["inputs"]) == {
            "package.json",
            *(f"src/m{i:02d}.js" for i in range(20)),
        }


def test_an_edit_must_run_what_a_changed_output_reaches_and_no_more(tmp_path: Path) -> None:
    """The edit check of `measure` judges early cutoff from the outputs on disk: in a chain
    a -> b -> c -> d (and e beside c, on b too), after editing a, c runs only when b's
    output changed, d only when c's did."""
    from benchmarks.monorepo_measure import must_run

    repo = monorepo.Monorepo(
        root=tmp_path,
        names=("a", "b", "c", "d", "e"),
        deps={"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "e": ("b",)},
        files_per_package=1,
    )
    before = {"b": "1", "c": "1", "d": "1", "e": "1"}
    assert must_run(repo, "a", before, dict(before)) == {"a", "b"}
    assert must_run(repo, "a", before, {**before, "b": "2"}) == {"a", "b", "c", "e"}
    assert must_run(repo, "a", before, {**before, "b": "2", "c": "2"}) == {"a", "b", "c", "d", "e"}
