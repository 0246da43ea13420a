"""The repositories tests/repos.py generates are real: their committed lockfiles install with
the real package managers (frozen), and every package builds.

The e2e tests install and build (npm ci, cargo, napi build, pnpm, Yarn: minutes on 2 cores);
the others only generate, which needs the network once per machine and is then served from
the lockfile cache (see tests/repos.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import repos
from repos import (
    Repo,
    cargo_workspace,
    git_commit,
    git_init,
    npm_workspace,
    pnpm_workspace,
    polyglot_repo,
    yarn_berry_workspace,
)


def run(repo: Repo, argv: Sequence[str], cwd: Path | None = None) -> str:
    env = repo.env()
    env.pop("CARGO_TARGET_DIR", None)  # outputs go where the repository says
    done = subprocess.run(
        list(argv), cwd=cwd or repo.root, env=env, text=True, capture_output=True, timeout=1500
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def git_status(root: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        text=True,
        capture_output=True,
        check=True,
    ).stdout


def assert_clean_and_remove(repo: Repo) -> None:
    """The build left git status clean; then free the disk (node_modules, target: ~1 GB)
    now rather than when pytest prunes old base temp directories at a later session start."""
    assert git_status(repo.root) == ""
    shutil.rmtree(repo.root)


def assert_built(repo: Repo) -> None:
    for package in repo.packages:
        for output in package.outputs:
            assert (repo.root / output).exists(), f"{package.name}: no {output}"


# --- descriptions and files (generation only) ---------------------------------------------


def test_npm_workspace_is_described_by_its_files(tmp_path: Path) -> None:
    repo = npm_workspace(tmp_path / "repo")
    root = json.loads((repo.root / "package.json").read_text())
    assert root["workspaces"] == ["packages/*"]
    assert root["packageManager"] == f"npm@{repo.tools['npm']}"
    assert repo.names() == ["@demo/core", "@demo/ui", "@demo/cli"]
    for package in repo.packages:
        manifest = json.loads((repo.root / package.path / "package.json").read_text())
        assert (manifest["name"], manifest["scripts"]) == (package.name, package.scripts)
        assert package.outputs == (package.path / "dist",)
    assert set(repo.package("@demo/core").scripts) == {"build", "typecheck", "test"}
    assert repo.package("@demo/ui").scripts["check"].startswith("svelte-check")
    assert repo.package("@demo/ui").depends_on == ("@demo/core",)
    assert repo.package("@demo/cli").depends_on == ("@demo/core",)
    assert "outDir: 'dist'" in (repo.dir("@demo/ui") / "vite.config.ts").read_text()
    tsconfig = json.loads((repo.dir("@demo/core") / "tsconfig.json").read_text())
    assert tsconfig["compilerOptions"]["outDir"] == "dist"
    assert (repo.root / ".gitignore").read_text().split() == ["node_modules/", "dist/", "target/"]

    assert repo.lockfiles == (Path("package-lock.json"),)
    lock = json.loads((repo.root / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == 3
    assert lock["packages"]["node_modules/@demo/core"] == {
        "resolved": "packages/core",
        "link": True,
    }
    assert lock["packages"]["node_modules/vite"]["version"] == repos.PINNED["vite"]
    assert not (repo.root / "node_modules").exists()


def test_polyglot_repo_has_both_workspaces_and_the_native_package_in_npm(tmp_path: Path) -> None:
    repo = polyglot_repo(tmp_path / "repo")
    assert repo.package_manager == "npm"
    assert repo.names("cargo") == ["demo-core", "demo-cli", "demo-native"]
    assert repo.names("npm") == ["@demo/core", "@demo/ui", "@demo/cli", "@demo/native"]
    assert repo.dir("demo-native") == repo.dir("@demo/native") == repo.root / "crates/native"
    assert repo.package("@demo/native").scripts["build"] == "napi build --platform --release"
    assert repo.package("@demo/cli").depends_on == ("@demo/core", "@demo/native")
    assert set(repo.lockfiles) == {Path("Cargo.lock"), Path("package-lock.json")}
    assert not (repo.root / "crates/native/package-lock.json").exists()  # one npm lockfile
    native = json.loads((repo.root / "crates/native/package.json").read_text())
    assert native["napi"]["binaryName"] == "demo-native"
    lock = json.loads((repo.root / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@demo/native"]["link"] is True
    cargo_lock = (repo.root / "Cargo.lock").read_text()
    assert 'name = "napi"\nversion = "3.16.1"' in cargo_lock


def test_git_init_commits_everything_and_git_commit_adds_history(tmp_path: Path) -> None:
    repo = yarn_berry_workspace(tmp_path / "repo")
    first = git_init(repo.root)
    files = subprocess.run(
        ["git", "ls-files"], cwd=repo.root, text=True, capture_output=True, check=True
    ).stdout.split()
    assert {
        "yarn.lock",
        ".yarnrc.yml",
        f".yarn/releases/yarn-{repo.tools['yarn']}.cjs",
        "packages/app/package.json",
    } <= set(files)
    assert git_status(repo.root) == ""
    (repo.dir("@demo/lib") / "src/index.ts").write_text("export const changed = true\n")
    second = git_commit(repo.root, "Change lib")
    parent = subprocess.run(
        ["git", "rev-parse", "HEAD~1"], cwd=repo.root, text=True, capture_output=True, check=True
    ).stdout.strip()
    assert parent == first != second
    author = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae>"],
        cwd=repo.root,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    assert author == "Buildlib Tests <tests@buildlib.invalid>"


# --- the lockfile cache (a fake tool: no network) --------------------------------------------

FAKE_TOOL = textwrap.dedent("""
    import pathlib, sys, time
    runs = pathlib.Path(sys.argv[1])
    with runs.open("a") as f:
        f.write("run\\n")
    time.sleep(1)
    manifest = pathlib.Path("package.json").read_text()
    pathlib.Path("fake.lock").write_text("locked " + manifest)
""")


def fake_spec(runs: Path) -> repos._LockSpec:
    return repos._LockSpec(
        label="fake",
        cwd=".",
        manifests=("package.json",),
        commands=((sys.executable, "-c", FAKE_TOOL, str(runs)),),
        outputs=("fake.lock",),
        tools=(("fake", "1.0"),),
    )


def test_the_cache_key_covers_manifests_tools_and_commands_only(tmp_path: Path) -> None:
    (tmp_path / "packages/a/node_modules/x").mkdir(parents=True)
    (tmp_path / "package.json").write_text('{"name": "r"}')
    (tmp_path / "packages/a/package.json").write_text('{"name": "a"}')
    spec = fake_spec(tmp_path / "runs")
    key, material = repos._cache_key(tmp_path, spec)
    assert set(material["manifests"]) == {"package.json", "packages/a/package.json"}

    (tmp_path / "packages/a/node_modules/x/package.json").write_text("{}")
    (tmp_path / "packages/a/index.js").write_text("source files are not inputs")
    assert repos._cache_key(tmp_path, spec)[0] == key

    (tmp_path / "packages/a/package.json").write_text('{"name": "a", "version": "1.0.0"}')
    changed = repos._cache_key(tmp_path, spec)[0]
    assert changed != key
    newer_tool = repos._LockSpec(**{**spec.__dict__, "tools": (("fake", "1.1"),)})
    assert repos._cache_key(tmp_path, newer_tool)[0] not in {key, changed}
    other_command = repos._LockSpec(**{**spec.__dict__, "commands": ((sys.executable,),)})
    assert repos._cache_key(tmp_path, other_command)[0] not in {key, changed}


def test_two_processes_generate_once_and_both_get_the_lockfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(repos.CACHE_ENV, str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        root.mkdir()
        (root / "package.json").write_text('{"name": "same"}')
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(repos.__file__).parent)!r})
        import repos, test_repos
        repos._lock(Path(sys.argv[1]), test_repos.fake_spec(Path({str(runs)!r})))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root)], cwd=Path(repos.__file__).parent)
        for root in roots
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert runs.read_text() == "run\n"
    assert [(r / "fake.lock").read_text() for r in roots] == ['locked {"name": "same"}'] * 2
    entries = [p for p in (tmp_path / "cache/locks").iterdir() if p.is_dir()]
    assert [sorted(f.name for f in entries[0].iterdir())] == [["fake.lock", "key.json"]]

    # Warm: served from the cache without running the tool; another manifest runs it again.
    third = tmp_path / "three"
    third.mkdir()
    (third / "package.json").write_text('{"name": "same"}')
    repos._lock(third, fake_spec(runs))
    assert runs.read_text() == "run\n"
    (third / "package.json").write_text('{"name": "other"}')
    repos._lock(third, fake_spec(runs))
    assert runs.read_text() == "run\nrun\n"
    assert (third / "fake.lock").read_text() == 'locked {"name": "other"}'


# --- real installs and builds ------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.xdist_group("repos")
@pytest.mark.timeout(1800)
def test_npm_workspace_installs_frozen_and_builds(tmp_path: Path) -> None:
    repo = npm_workspace(tmp_path / "repo")
    git_init(repo.root)
    run(repo, repo.install_command)
    run(repo, ["npm", "run", "build", "--workspaces"])
    assert_built(repo)
    assert (repo.dir("@demo/ui") / "dist/index.html").is_file()
    assert (repo.dir("@demo/core") / "dist/index.d.ts").is_file()
    run(repo, ["npm", "test", "-w", "@demo/core"])
    run(repo, ["npm", "run", "typecheck", "-w", "@demo/core"])
    run(repo, ["npm", "run", "check", "-w", "@demo/ui"])
    assert run(repo, ["node", "packages/cli/dist/cli.js", "npm"]) == "Hello, npm!\n"
    assert_clean_and_remove(repo)  # lockfile untouched, outputs ignored


@pytest.mark.e2e
@pytest.mark.xdist_group("repos")
@pytest.mark.timeout(1800)
def test_cargo_workspace_builds_the_cli_and_the_napi_module(tmp_path: Path) -> None:
    repo = cargo_workspace(tmp_path / "repo")
    git_init(repo.root)
    run(repo, ["cargo", "build", "--locked", "-p", "demo-cli"])
    assert run(repo, ["target/debug/demo", "slug", "Hello, Cargo!"]) == "hello-cargo\n"
    native = repo.dir("@demo/native", "npm")
    run(repo, ["npm", "ci"], cwd=native)
    run(repo, ["npm", "run", "build"], cwd=native)
    assert_built(repo)
    script = "const m = require('./index.js'); console.log(m.greet('napi'), m.version())"
    assert run(repo, ["node", "-e", script], cwd=native) == "Hello, napi! 0.1.0\n"
    assert_clean_and_remove(repo)


@pytest.mark.e2e
@pytest.mark.xdist_group("repos")
@pytest.mark.timeout(1800)
def test_polyglot_repo_installs_once_and_builds_js_and_rust(tmp_path: Path) -> None:
    repo = polyglot_repo(tmp_path / "repo")
    git_init(repo.root)
    run(repo, repo.install_command)
    run(repo, repo.build_command)  # includes `napi build` of crates/native
    assert_built(repo)
    out = run(repo, ["node", "packages/cli/dist/cli.js", "Poly Glot"])
    assert out == "Hello, Poly Glot!\npoly-glot\n"  # the second line comes from Rust
    assert_clean_and_remove(repo)


@pytest.mark.e2e
@pytest.mark.xdist_group("repos")
@pytest.mark.timeout(1800)
def test_pnpm_workspace_installs_frozen_and_builds(tmp_path: Path) -> None:
    repo = pnpm_workspace(tmp_path / "repo")
    git_init(repo.root)
    run(repo, repo.install_command)
    run(repo, ["pnpm", "run", "build"])  # the root script: pnpm -r run build, on PATH
    assert_built(repo)
    assert (repo.dir("@demo/app") / "dist/greeting.txt").read_text() == "Hello, app!\n"
    assert_clean_and_remove(repo)


@pytest.mark.e2e
@pytest.mark.xdist_group("repos")
@pytest.mark.timeout(1800)
def test_yarn_berry_workspace_installs_immutable_and_builds(tmp_path: Path) -> None:
    repo = yarn_berry_workspace(tmp_path / "repo")
    git_init(repo.root)
    run(repo, repo.install_command)
    run(repo, [*repo.install_command[:2], "run", "build"])  # the root script, via yarnPath
    assert_built(repo)
    assert (repo.dir("@demo/app") / "dist/greeting.txt").read_text() == "Hello, app!\n"
    assert os.path.islink(repo.root / "node_modules/@demo/lib")
    assert_clean_and_remove(repo)
