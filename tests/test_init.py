"""`buildlib init` (issue 12 item 1): a starter manifest for an existing repository.

Three layers:
- the rules, on small hand-made inputs: which scripts become steps, what tools' configs say
  about outputs, how workspaces, package managers and lockfiles are read, the TOML text;
- init on the repositories tests/repos.py generates (real lockfiles, real `cargo
  metadata`): the manifest loads and has the graph a careful person would write;
- end to end (`e2e`): the manifest init writes builds green, unedited, with the real npm,
  pnpm, Yarn, cargo and napi, under NODE_ENV=production (the trap its installs avoid).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import repos
from helpers import ROOT
from repos import Repo, git_init

from buildlib.ecosystems.cargo_steps import cargo_steps
from buildlib.ecosystems.draft import Draft, DraftStep, Output, render_manifest
from buildlib.ecosystems.js_config import object_entries, read_jsonc, read_tsconfig
from buildlib.ecosystems.js_outputs import build_outputs
from buildlib.ecosystems.node import find_projects, read_package
from buildlib.ecosystems.package_scripts import Role, classify
from buildlib.ecosystems.repo_files import list_files
from buildlib.integrations.init import infer
from buildlib.workspace.manifest import load_manifest

# --- helpers ----------------------------------------------------------------------------------


def write(root: Path, files: Mapping[str, str | dict[str, Any]]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
        )
    return root


def buildlib(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {
        k: v for k, v in (os.environ if env is None else env).items() if not k.startswith("GITHUB_")
    }
    full["PYTHONPATH"] = str(ROOT)
    full.pop("CARGO_TARGET_DIR", None)  # outputs go where the repository says
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def steps_of(text: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in tomllib.loads(text)["step"]}


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def roles(scripts: dict[str, str], *, workspace_root: bool = False) -> dict[str, str]:
    return {
        c.script: c.role.value if c.role else "-"
        for c in classify(scripts, workspace_root=workspace_root)
    }


# --- which scripts are steps ------------------------------------------------------------------


def test_scripts_that_build_check_or_test_become_steps_by_their_names() -> None:
    assert roles(
        {
            "build": "tsc -p .",
            "compile": "babel src",
            "typecheck": "tsc --noEmit",
            "lint": "eslint .",
            "format:check": "prettier --check .",
            "test": "vitest run",
            "test:unit": "vitest run unit",
            "something": "node x.js",
        }
    ) == {
        "build": "build",
        "compile": "build",
        "typecheck": "check",
        "lint": "check",
        "format:check": "check",
        "test": "test",
        "test:unit": "-",
        "something": "-",
    }


def test_servers_watchers_hooks_and_source_rewriters_get_no_step_and_a_reason() -> None:
    choices = {
        c.script: c
        for c in classify(
            {
                "dev": "vite",
                "start": "node dist/cli.js",
                "preview": "vite preview",
                "watch": "tsc -w",
                "build:watch": "vite build --watch",
                "serve": "http-server dist",
                "prebuild": "node gen.js",
                "build": "vite build",
                "postinstall": "patch-package",
                "prepare": "husky",
                "format": "prettier --write .",
                "lint:fix": "eslint --fix .",
                "clean": "rimraf dist",
                "release": "changeset publish",
                "e2e": "playwright test",
                "test": 'echo "Error: no test specified" && exit 1',
            }
        )
    }
    assert [n for n, c in choices.items() if c.role] == ["build"]
    reasons = {name: c.reason for name, c in choices.items()}
    assert "never finishes" in reasons["dev"] and "never finishes" in reasons["build:watch"]
    assert "never finishes" in reasons["start"] and "never finishes" in reasons["watch"]
    assert "before 'build'" in reasons["prebuild"]
    assert "lifecycle" in reasons["postinstall"] and "lifecycle" in reasons["prepare"]
    assert "rewrites the sources" in reasons["format"] == reasons["lint:fix"]
    assert "placeholder" in reasons["test"] and "end-to-end" in reasons["e2e"]


def test_a_workspace_roots_orchestrating_scripts_and_other_task_runners_are_skipped() -> None:
    scripts = {
        "build": "npm run build --workspaces --if-present",
        "test": "pnpm -r test",
        "check": "yarn workspaces foreach --all run check",
        "lint": "eslint .",
    }
    assert roles(scripts, workspace_root=True) == {
        "build": "-",
        "test": "-",
        "check": "-",
        "lint": "check",
    }
    # In a single package the same words are not an orchestration.
    assert roles({"build": "npm run build:js -w"})["build"] == "build"
    assert roles({"build": "turbo run build"}) == {"build": "-"}


def test_variants_and_scripts_another_step_runs_are_covered_by_it() -> None:
    assert roles(
        {
            "build": "vite build",
            "build:debug": "vite build --mode dev",
            "test": "vitest run",
            "test:ci": "vitest run --reporter=junit",
        }
    ) == {"build": "build", "build:debug": "-", "test": "test", "test:ci": "-"}
    choices = {
        c.script: c
        for c in classify({"build": "npm run typecheck && vite build", "typecheck": "tsc --noEmit"})
    }
    assert choices["build"].role is Role.BUILD and choices["typecheck"].role is None
    assert choices["typecheck"].reason == "'build' runs it, so its step covers it"
    # Without the plain script, its variants are the steps.
    assert roles({"build:js": "tsc", "build:css": "sass a:b"}) == {
        "build:js": "build",
        "build:css": "build",
    }


# --- what tools' configs say --------------------------------------------------------------------


def test_vite_configs_are_read_statically_and_only_literals_count() -> None:
    source = textwrap.dedent("""
        import { defineConfig } from 'vite'
        // outDir: 'commented' is not read
        export default defineConfig(({ mode }) => ({
          root: resolve(__dirname, "src"),
          plugins: [dts({ outDir: 'types' })],
          build: { outDir: fileURLToPath(new URL('../out', import.meta.url)), minify: mode },
          base: "https://cdn//x",
        }))
    """)
    entries = {
        (tuple(k for k in stack if k), key): value for stack, key, value in object_entries(source)
    }
    assert entries[((), "root")].text == "src" and entries[((), "root")].anchored
    assert entries[(("build",), "outDir")].text == "../out"
    assert entries[((), "outDir")].text == "types"  # the plugin's, not build's
    assert entries[(("build",), "minify")].static is False
    assert entries[((), "base")].text == "https://cdn//x"


def test_build_outputs_follow_vite_and_tsc_configs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tsconfig.base.json": '{ "compilerOptions": { "outDir": "lib", /* c */ }, }',
            "pkgs/a/package.json": {"name": "a"},
            "pkgs/a/tsconfig.json": '{"extends": "../../tsconfig.base.json",'
            ' "compilerOptions": {"declarationDir": "types"}}',
            "pkgs/b/package.json": {"name": "b"},
            "pkgs/b/vite.config.mjs": "export default { build: { outDir: 'public/app' } }",
            "pkgs/c/package.json": {"name": "c"},
            "pkgs/c/vite.config.ts": "export default { build: { outDir: process.env.OUT } }",
            "pkgs/d/package.json": {"name": "d", "main": "build/index.js", "types": "src/x.d.ts"},
            "pkgs/d/src/x.d.ts": "",
            "pkgs/e/package.json": {"name": "e"},
            "pkgs/e/tsconfig.json": '{"compilerOptions": {"noEmit": true}}',
        },
    )
    files = list_files(tmp_path)

    def outputs(package: str, command: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        guess = build_outputs(read_package(files, f"pkgs/{package}/package.json"), command, files)
        return guess.paths, guess.unknown

    assert read_tsconfig(tmp_path / "pkgs/a", "tsconfig.json") is not None
    assert outputs("a", "tsc") == (("//lib", "types"), ())  # outDir from the base config
    assert outputs("a", "tsc --outDir out") == (("out", "types"), ())
    assert outputs("b", "vite build") == (("public/app",), ())
    assert outputs("b", "vite build --outDir www") == (("www",), ())
    paths, unknown = outputs("c", "vite build")
    assert paths == () and "process.env.OUT" in unknown[0]
    assert outputs("d", "node build.mjs") == (("build",), ())  # main points into build/
    assert outputs("e", "tsc") == ((), ())  # noEmit: a build that writes nothing
    paths, unknown = outputs("e", "rollup -c")
    assert paths == () and "rollup -c" in unknown[0]


def test_napi_outputs_follow_its_flags_and_binary_name(tmp_path: Path) -> None:
    write(tmp_path, {"n/package.json": {"name": "@x/n", "napi": {"binaryName": "fast"}}})
    files = list_files(tmp_path)
    package = read_package(files, "n/package.json")
    assert build_outputs(package, "napi build --platform --release", files).paths == (
        "fast.{node_triple}.node",
        "index.js",
        "index.d.ts",
    )
    assert build_outputs(
        package, "napi build --platform --no-js -o dist", files, typedefs=False
    ).paths == ("dist/fast.{node_triple}.node",)
    assert build_outputs(package, "napi build", files).paths == ("fast.node", "index.d.ts")


def test_jsonc_comments_and_trailing_commas_but_not_inside_strings() -> None:
    assert read_jsonc('{"a": "x//y,}", /* c */ "b": [1, 2,], // z\n}') == {
        "a": "x//y,}",
        "b": [1, 2],
    }


# --- projects, package managers, installs -----------------------------------------------------


def test_workspaces_package_managers_and_lockfiles_are_read_from_the_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "root", "workspaces": {"packages": ["apps/*", "!apps/old"]}},
            "package-lock.json": json.dumps({"packages": {"": {}, "apps/web/node_modules/x": {}}}),
            "apps/web/package.json": {"name": "web"},
            "apps/old/package.json": {"name": "old"},
            "tools/pn/package.json": {"name": "pn", "packageManager": "pnpm@9.1.0+sha512.ab"},
            "tools/pn/pnpm-workspace.yaml": "packages:\n  - 'libs/**'  # all\nonlyBuilt: [x]\n",
            "tools/pn/pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
            "tools/pn/libs/deep/a/package.json": {"name": "a", "dependencies": {"b": "1"}},
            "tools/pn/libs/b/package.json": {"name": "b"},
            "tests/fixture/package.json": {"name": "fixture"},
            "bunny/package.json": {"name": "bunny"},
            "bunny/bun.lockb": "",
        },
    )
    projects, notes = find_projects(list_files(tmp_path))
    npm, pnpm = projects
    assert (npm.dir, npm.manager.name, [m.dir for m in npm.members]) == (".", "npm", ["apps/web"])
    assert npm.install_outputs == ("node_modules", "apps/web/node_modules")  # from the lock
    assert npm.install_argv() == ("npm", "ci", "--include=dev", "--no-audit", "--no-fund")
    assert npm.install_inputs == ("package.json", "package-lock.json", "apps/*/package.json")
    assert (pnpm.dir, pnpm.manager.name, pnpm.manager.version) == ("tools/pn", "pnpm", "9.1.0")
    assert [m.dir for m in pnpm.members] == ["tools/pn/libs/b", "tools/pn/libs/deep/a"]
    assert pnpm.install_outputs == ("node_modules", "libs/deep/a/node_modules")
    assert pnpm.install_argv() == ("pnpm", "install", "--frozen-lockfile", "--prod=false")
    assert any("tests/fixture/package.json: no lockfile" in n for n in notes)
    assert any("bun" in n and "not supported" in n for n in notes)


def test_yarn_berry_runs_its_committed_release_and_yarn_1_keeps_dev_dependencies(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "berry/package.json": {"name": "b"},
            "berry/yarn.lock": "__metadata:\n  version: 8\n",
            "berry/.yarnrc.yml": "nodeLinker: node-modules\nyarnPath: .yarn/releases/yarn-4.1.cjs\n",
            "berry/.yarn/releases/yarn-4.1.cjs": "",
            "classic/package.json": {"name": "c"},
            "classic/yarn.lock": "# THIS IS AN AUTOGENERATED FILE.\n# yarn lockfile v1\n",
            "pnp/package.json": {"name": "p", "packageManager": "yarn@4.1.0"},
            "pnp/yarn.lock": "__metadata:\n",
        },
    )
    berry, classic, pnp = find_projects(list_files(tmp_path))[0]
    assert berry.install_argv() == ("node", ".yarn/releases/yarn-4.1.cjs", "install", "--immutable")
    assert ".yarn/releases/yarn-4.1.cjs" in berry.install_inputs
    assert berry.tools() == ("node",) and berry.install_outputs == ("node_modules",)
    assert classic.install_argv() == ("yarn", "install", "--frozen-lockfile", "--production=false")
    assert pnp.install_outputs == (".pnp.cjs",) and pnp.install_argv()[0] == "yarn"


def test_two_packages_with_one_short_name_get_steps_named_by_their_paths(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": {"name": "r", "workspaces": ["a/*", "b/*"]},
            "package-lock.json": "{}",
            "a/core/package.json": {"name": "@a/core", "scripts": {"build": "tsc"}},
            "a/core/tsconfig.json": '{"compilerOptions": {"outDir": "dist"}}',
            "b/core/package.json": {
                "name": "@b/core",
                "scripts": {"build": "tsc"},
                "dependencies": {"@a/core": "*"},
            },
            "b/core/tsconfig.json": '{"compilerOptions": {"outDir": "dist"}}',
        },
    )
    steps = steps_of(render_manifest(infer(tmp_path)))
    assert list(steps) == ["install", "a-core-build", "b-core-build"]
    assert steps["b-core-build"]["depends_on"] == ["install", "a-core-build"]


# --- the manifest's text ------------------------------------------------------------------------


def test_the_manifest_text_is_toml_with_long_arrays_wrapped(tmp_path: Path) -> None:
    long_inputs = tuple(f"crates/crate-{i}/src/**" for i in range(8))
    draft = Draft(
        root=tmp_path,
        tools={"node": ("node", "--version")},
        steps=(
            DraftStep(
                name="a",
                command=("echo", 'say "hi"\\'),
                inputs=long_inputs,
                outputs=(Output(path="node_modules", store="archive"), Output(path="x")),
                env={"NODE_ENV": "development"},
                placeholder='outputs = ["..."]  # TODO',
            ),
            DraftStep(name="b", cwd="web", script="build", depends_on=("a",), tools=("node",)),
        ),
    )
    text = render_manifest(draft)
    assert all(len(line) <= 100 for line in text.splitlines())
    data = tomllib.loads(text)
    assert data["version"] == 2 and set(data) == {"version", "tools", "step"}
    a, b = data["step"]
    assert a["command"] == ["echo", 'say "hi"\\'] and a["inputs"] == list(long_inputs)
    assert a["outputs"] == [{"path": "node_modules", "store": "archive"}, "x"]
    assert "cwd" not in a and b == {
        "name": "b",
        "cwd": "web",
        "script": "build",
        "depends_on": ["a"],
        "tools": ["node"],
    }
    assert '# outputs = ["..."]  # TODO' in text


# --- init on the generated repositories --------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Repo]:
    """Every shape tests/repos.py makes, committed to git (lockfiles from the cache)."""
    base = tmp_path_factory.mktemp("init-repos")
    made = {}
    for builder in (
        repos.npm_workspace,
        repos.cargo_workspace,
        repos.polyglot_repo,
        repos.pnpm_workspace,
        repos.yarn_berry_workspace,
    ):
        repo = builder(base / builder.__name__)
        git_init(repo.root)
        made[builder.__name__] = repo
    return made


@pytest.mark.parametrize(
    "shape",
    ["npm_workspace", "cargo_workspace", "polyglot_repo", "pnpm_workspace", "yarn_berry_workspace"],
)
def test_init_writes_a_manifest_that_loads_and_a_thin_noxfile(
    generated: dict[str, Repo], shape: str, tmp_path: Path
) -> None:
    root = tmp_path / shape
    shutil.copytree(generated[shape].root, root, symlinks=True)
    done = buildlib(root, "init")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "found:" in done.stdout
    manifest = load_manifest(root / "build.toml")
    assert manifest.version == 2 and list(manifest.modes) == ["default"]
    for step in manifest.steps.values():
        assert step.tools, f"{step.name}: tools fingerprint what runs it"
    noxfile = (root / "noxfile.py").read_text()
    assert 'register(nox, ROOT / "build.toml")' in noxfile and len(noxfile.splitlines()) < 20
    # The plan resolves: scripts, templates, paths, tools.
    dry = buildlib(root, "build", "--dry-run", env=generated[shape].env())
    assert dry.returncode == 0, dry.stderr


def test_the_polyglot_repository_gets_the_graph_a_careful_person_writes(
    generated: dict[str, Repo],
) -> None:
    repo = generated["polyglot_repo"]
    done = buildlib(repo.root, "init", "--dry-run")
    assert done.returncode == 0, done.stderr
    steps = steps_of(done.stdout)
    assert list(steps) == [
        "cargo-check",
        "cargo-build",
        "cargo-test",
        "install",
        "native-build",
        "core-build",
        "core-typecheck",
        "core-test",
        "cli-build",
        "ui-build",
        "ui-check",
    ]
    install = steps["install"]
    assert install["command"] == ["npm", "ci", "--include=dev", "--no-audit", "--no-fund"]
    assert install["outputs"] == [{"path": "node_modules", "store": "archive"}]
    assert set(install["inputs"]) == {
        "package.json",
        "package-lock.json",
        "packages/*/package.json",
        "crates/native/package.json",
    }
    deps = {name: s.get("depends_on", []) for name, s in steps.items()}
    assert deps["ui-build"] == deps["ui-check"] == ["install", "core-build"]
    assert deps["core-typecheck"] == ["install"] and deps["core-test"] == ["install", "core-build"]
    assert deps["cli-build"] == ["install", "core-build", "native-build"]
    assert deps["native-build"] == ["install", "cargo-build"]
    assert deps["cargo-test"] == ["cargo-build"] and deps["cargo-build"] == ["cargo-check"]
    outputs = {name: s.get("outputs") for name, s in steps.items()}
    assert outputs["core-build"] == outputs["ui-build"] == outputs["cli-build"] == ["dist"]
    assert outputs["native-build"] == ["demo-native.{node_triple}.node", "index.js", "index.d.ts"]
    assert outputs["cargo-build"] == ["target/debug/demo{exe_suffix}"]
    native = steps["native-build"]
    assert native["script"] == "build" and native["cwd"] == "crates/native"
    assert "//crates/core/src/**" in native["inputs"] and "index.js" not in native["inputs"]
    assert native["tools"] == ["node", "npm", "cargo", "rustc"]
    assert "--exclude" in steps["cargo-test"]["command"]  # a napi test binary cannot link
    assert "inputs" not in steps["ui-build"]  # git's files under packages/ui
    # Why, on stderr: the skipped scripts and their reasons.
    assert "@demo/ui `dev`: a dev server" in done.stderr
    assert "demo-monorepo `build`: runs the workspace packages' scripts" in done.stderr
    assert "outputs dist: vite.config.ts: build.outDir" in done.stderr


def test_a_project_below_the_root_gets_its_own_install_and_script_steps(
    generated: dict[str, Repo],
) -> None:
    """cargo_workspace has its only package.json (and lockfile) in crates/native: the
    engine finds its package manager from the step's directory up."""
    done = buildlib(generated["cargo_workspace"].root, "init", "--dry-run")
    assert "workspace" not in tomllib.loads(done.stdout)
    steps = steps_of(done.stdout)
    assert steps["native-build"]["script"] == "build"
    assert steps["native-install"]["cwd"] == "crates/native"
    assert steps["native-build"]["depends_on"] == ["native-install", "cargo-build"]


# --- the command ----------------------------------------------------------------------------------


def test_dry_run_prints_and_writes_nothing(generated: dict[str, Repo]) -> None:
    root = generated["npm_workspace"].root
    before = listing(root)
    done = buildlib(root, "init", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert listing(root) == before
    assert tomllib.loads(done.stdout)["version"] == 2  # stdout is the manifest alone
    assert "steps (7):" in done.stderr and "nothing written" in done.stderr


def test_an_existing_manifest_is_kept_without_force(
    tmp_path: Path, generated: dict[str, Repo]
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(generated["pnpm_workspace"].root, root, symlinks=True)
    (root / "build.toml").write_text("# mine\n")
    (root / "noxfile.py").write_text("# my sessions\n")
    done = buildlib(root, "init")
    assert done.returncode == 1
    assert "build.toml exists: init does not overwrite it" in done.stderr
    assert "fix: pass --force" in done.stderr
    assert (root / "build.toml").read_text() == "# mine\n"
    (root / "build.toml").unlink()  # a noxfile of its own is kept, with what to add to it
    done = buildlib(root, "init")
    assert done.returncode == 0, done.stderr
    assert (root / "noxfile.py").read_text() == "# my sessions\n"
    assert "from buildlib.integrations.nox_sessions import register" in done.stdout
    done = buildlib(root, "init", "--force")
    assert done.returncode == 0, done.stderr
    assert "register(nox" in (root / "noxfile.py").read_text()
    assert load_manifest(root / "build.toml").steps


def test_a_repository_with_nothing_recognisable_gets_a_clear_message(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "hello\n", "docs/package.json": {"name": "docs-fixture"}})
    done = buildlib(tmp_path, "init", "--root", str(tmp_path))
    assert done.returncode == 1
    assert f"nothing buildlib init recognises in {tmp_path}" in done.stderr
    assert "docs/package.json: no lockfile" in done.stderr  # why the one it saw was skipped
    assert "fix: run it at the root of an npm, pnpm or Yarn project" in done.stderr
    assert not (tmp_path / "build.toml").exists()


def test_a_broken_cargo_manifest_names_the_file_and_cargo_s_words(tmp_path: Path) -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    write(tmp_path, {"Cargo.toml": "[package]\nname = \n"})
    done = buildlib(tmp_path, "init", "--dry-run")
    assert done.returncode == 1
    assert "cargo metadata" in done.stderr and "Cargo.toml" in done.stderr
    assert "fix: fix the Cargo.toml it names" in done.stderr


def test_cargo_steps_leave_napi_crates_to_napi_and_name_target_kinds(
    generated: dict[str, Repo],
) -> None:
    from buildlib.ecosystems.cargo import find_workspaces

    files = list_files(generated["cargo_workspace"].root)
    (workspace,), _ = find_workspaces(files)
    made = cargo_steps(workspace, {"crates/native"})
    check, build, test = made.steps
    assert "crates/native/src/**" in (check.inputs or ())  # checked: no linking
    assert "crates/native/src/**" not in (build.inputs or ())
    assert test.depends_on == ("cargo-build",) and "demo-native" in test.command
    assert build.command[-3:] == ("--exclude", "demo-native", "--locked")
    assert [o.path for o in build.outputs] == ["target/debug/demo{exe_suffix}"]
    native = made.native["crates/native"]
    assert native.depends_on == ("cargo-build",) and native.typedefs
    assert {"src/**", "build.rs", "//crates/core/src/**", "//Cargo.lock"} <= set(native.inputs)


# --- end to end: the real tools ------------------------------------------------------------------


def _production_env(repo: Repo) -> dict[str, str]:
    """The repository's tools on PATH, and the NODE_ENV trap set: NODE_ENV=production (npm,
    Yarn 1) and npm_config_production (pnpm) make a plain install skip devDependencies."""
    env = repo.env()
    env.update({"NODE_ENV": "production", "npm_config_production": "true"})
    return env


def _init_and_build(repo: Repo) -> subprocess.CompletedProcess[str]:
    done = buildlib(repo.root, "init")
    assert done.returncode == 0, done.stderr
    return buildlib(repo.root, "build", "-j", "2", env=_production_env(repo), timeout=1700)


@pytest.mark.e2e
@pytest.mark.xdist_group("init")
@pytest.mark.timeout(1800)
def test_the_node_env_trap_is_real(tmp_path: Path) -> None:
    """What docs/adopting.md says happens without init's flag: npm ci under
    NODE_ENV=production installs no devDependencies (no tsc, no vite), silently."""
    repo = repos.npm_workspace(tmp_path / "repo")
    env = _production_env(repo)
    plain = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert plain.returncode == 0, plain.stderr
    assert not (repo.root / "node_modules/.bin/tsc").exists()
    shutil.rmtree(repo.root / "node_modules")
    steps = steps_of(buildlib(repo.root, "init", "--dry-run").stdout)
    fixed = subprocess.run(
        steps["install"]["command"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert (repo.root / "node_modules/.bin/tsc").exists()
    assert (repo.root / "node_modules/.bin/vite").exists()


@pytest.mark.e2e
@pytest.mark.xdist_group("init")
@pytest.mark.timeout(1800)
def test_the_polyglot_repository_builds_green_with_the_manifest_as_written(tmp_path: Path) -> None:
    repo = repos.polyglot_repo(tmp_path / "repo")
    git_init(repo.root)
    done = _init_and_build(repo)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "build succeeded" in done.stdout
    for package in repo.packages:
        for output in package.outputs:
            assert (repo.root / output).exists(), f"{package.name}: no {output}"
    assert (repo.root / "target/debug/demo").is_file()
    cli = subprocess.run(
        ["node", "packages/cli/dist/cli.js", "Poly Glot"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert cli.stdout == "Hello, Poly Glot!\npoly-glot\n"  # the second line comes from Rust
    again = buildlib(repo.root, "build", env=_production_env(repo))
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((repo.root / ".buildlib/reports/latest.json").read_text())
    ran = [s["name"] for s in report["steps"] if s["outcome"] in ("built", "failed")]
    assert (len(report["steps"]), ran) == (11, [])  # the second build runs nothing
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo.root, text=True, capture_output=True, check=True
    ).stdout.split("\n")
    assert sorted(filter(None, status)) == ["?? .buildlib/", "?? build.toml", "?? noxfile.py"]
    shutil.rmtree(repo.root)  # node_modules and target: ~1 GB


@pytest.mark.e2e
@pytest.mark.xdist_group("init")
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "builder", [repos.pnpm_workspace, repos.yarn_berry_workspace], ids=["pnpm", "yarn-berry"]
)
def test_pnpm_and_yarn_workspaces_build_green_with_the_manifest_as_written(
    tmp_path: Path, builder: Any
) -> None:
    repo: Repo = builder(tmp_path / "repo")
    git_init(repo.root)
    done = _init_and_build(repo)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert (repo.dir("@demo/lib") / "dist/index.d.ts").is_file()  # tsc: a devDependency
    assert (repo.dir("@demo/app") / "dist/greeting.txt").read_text() == "Hello, app!\n"
