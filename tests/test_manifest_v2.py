"""Manifest version 2 (issue 12): shorter manifests that cannot silently go stale.

Paths relative to each step's cwd (`//` from the root), `script =` through the package
manager, no [modes] needed, and a step without `inputs` fingerprinted on the files git
knows under its cwd. Real builds through the CLI, in temporary git repositories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import PY_TOML, ROOT

from buildlib.core.errors import ManifestError
from buildlib.planning.plan import PlannedStep, build_plan
from buildlib.workspace.manifest import load_manifest, root_relative
from buildlib.workspace.targets import get_target, host_triple

# Concatenate the *.txt files under a directory (outside dist/) into one output file.
COPY = (
    "import pathlib, sys; src, out = sys.argv[1:]; p = pathlib.Path(out); "
    "p.parent.mkdir(parents=True, exist_ok=True); "
    "p.write_text(''.join(f.read_text() for f in sorted(pathlib.Path(src).rglob('*.txt')) "
    "if 'dist' not in f.parts))"
)


def build(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "buildlib", "build", "--plain", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def outcomes(root: Path) -> dict[str, str]:
    report = json.loads((root / ".buildlib/reports/latest.json").read_text())
    return {s["name"]: s["outcome"] for s in report["steps"]}


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def plan_of(root: Path) -> dict[str, PlannedStep]:
    manifest = load_manifest(root / "build.toml")
    plan = build_plan(
        manifest, mode=manifest.default_mode, target=get_target(host_triple()), environ=os.environ
    )
    return dict(plan.steps)


@pytest.mark.parametrize(
    ("cwd", "pattern", "joined"),
    [
        ("packages/ui", "src/**", "packages/ui/src/**"),
        ("packages/ui", "//Cargo.lock", "Cargo.lock"),
        ("packages/ui", "../core/dist", "packages/core/dist"),
        (".", "src/*.ts", "src/*.ts"),
        ("packages/ui", ".", "packages/ui"),
        ("packages/ui", "//", "."),
    ],
)
def test_a_version_2_path_is_joined_to_the_cwd(cwd: str, pattern: str, joined: str) -> None:
    assert root_relative(cwd, pattern) == joined


def test_paths_are_relative_to_the_cwd_and_no_modes_are_needed(tmp_path: Path) -> None:
    (tmp_path / "web/src").mkdir(parents=True)
    (tmp_path / "web/src/a.txt").write_text("a\n")
    (tmp_path / "shared.txt").write_text("shared\n")
    (tmp_path / "build.toml").write_text(
        textwrap.dedent(f"""
        version = 2

        [[step]]
        name = "web"
        cwd = "web"
        command = [{PY_TOML}, "-c", {json.dumps(COPY)}, "src", "dist/all.txt"]
        inputs = ["src/**", "//shared.txt"]
        outputs = ["dist"]
        """)
    )
    steps = plan_of(tmp_path)
    web = steps["web"]
    assert web.inputs == ("web/src/**", "shared.txt")
    assert web.outputs == ("web/dist",)
    done = build(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "web/dist/all.txt").read_text() == "a\n"
    assert "build default for" in done.stdout  # the one implicit mode
    (tmp_path / "shared.txt").write_text("changed\n")
    assert build(tmp_path).returncode == 0
    assert outcomes(tmp_path) == {"web": "built"}


def test_a_path_that_climbs_out_of_the_workspace_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "build.toml").write_text(
        textwrap.dedent("""
        version = 2
        [[step]]
        name = "web"
        cwd = "web"
        command = ["true"]
        inputs = ["../../secret/**"]
        """)
    )
    with pytest.raises(ManifestError, match=r"(?s)step 'web', key 'inputs'.*climbs out.*//"):
        plan_of(tmp_path)


@pytest.mark.parametrize(
    ("cwd", "output"),
    [
        (".", "link/dist"),
        (".", "link/**"),  # a glob: its literal part, through the symlink, is outside
        (".", "web/../link/*.js"),
        (".", "link\\**"),  # a backslash separates as in the glob dialect
        (".", " link/**"),  # leading space stripped, as the glob dialect strips it
        ("link", "dist"),  # the cwd itself leads outside
    ],
)
def test_an_output_or_cwd_through_a_symlink_leaving_the_workspace_is_refused(
    tmp_path: Path, cwd: str, output: str
) -> None:
    root = tmp_path / "ws"
    (root / "web").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    (root / "build.toml").write_text(
        textwrap.dedent(f"""
        version = 2
        [[step]]
        name = "web"
        cwd = "{cwd}"
        command = ["true"]
        inputs = []
        outputs = ['{output}']
        """)
    )
    key = "cwd" if cwd == "link" else "outputs"
    with pytest.raises(ManifestError, match=rf"(?s)step 'web', key '{key}'.*outside the workspace"):
        plan_of(root)


def test_an_output_glob_inside_the_workspace_is_planned(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "build.toml").write_text(
        'version = 2\n[[step]]\nname = "web"\ncwd = "web"\ncommand = ["true"]\n'
        'inputs = []\noutputs = ["dist/**", "*.tgz"]\n'
    )
    assert plan_of(tmp_path)["web"].outputs == ("web/dist/**", "web/*.tgz")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('script = "build"\ncommand = ["true"]', "both `command` and `script`"),
        ('script = " "', "empty script name"),
        ("", "missing required key|empty command"),
        ('command = ["true"]\noutputs = [{ path = "x", store = "zip" }]', "unknown store 'zip'"),
    ],
)
def test_command_script_and_output_tables_are_checked(
    tmp_path: Path, body: str, message: str
) -> None:
    (tmp_path / "build.toml").write_text(f'version = 2\n[[step]]\nname = "s"\n{body}\n')
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path / "build.toml")


def write_package(root: Path, manager_field: str | None) -> None:
    package = {
        "name": "demo",
        "version": "1.0.0",
        "private": True,
        "scripts": {"build": "node build.js"},
    }
    if manager_field:
        package["packageManager"] = manager_field
    (root / "package.json").write_text(json.dumps(package))
    (root / "build.js").write_text(
        "require('fs').mkdirSync('dist', {recursive: true});"
        "require('fs').writeFileSync('dist/out.txt', 'built ' + process.argv.slice(2).join(' '))"
    )


def test_a_script_runs_through_the_package_manager(tmp_path: Path) -> None:
    write_package(tmp_path, "npm@10.0.0")
    (tmp_path / "build.toml").write_text(
        textwrap.dedent("""
        version = 2
        [modes.development]
        [modes.production]

        [[step]]
        name = "build"
        script = "build"
        inputs = ["build.js", "package.json"]
        outputs = ["dist"]
        [step.mode.production]
        args = ["--minify"]
        """)
    )
    assert plan_of(tmp_path)["build"].argv == ("npm", "run", "build")
    done = build(tmp_path, "--mode", "production")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "dist/out.txt").read_text() == "built --minify"  # after `--` for npm


@pytest.mark.parametrize(
    ("field", "lockfile", "manager"),
    [
        (None, "pnpm-lock.yaml", "pnpm"),
        (None, "yarn.lock", "yarn"),
        (None, "package-lock.json", "npm"),
        ("pnpm@9.1.0", "package-lock.json", "pnpm"),
    ],
)
def test_the_package_manager_comes_from_package_json_then_the_lockfile(
    tmp_path: Path, field: str | None, lockfile: str, manager: str
) -> None:
    write_package(tmp_path, field)
    (tmp_path / lockfile).write_text("")
    (tmp_path / "build.toml").write_text('version = 2\n[[step]]\nname = "b"\nscript = "build"\n')
    argv = plan_of(tmp_path)["b"].argv
    assert argv[-2:] == ("run", "build") and manager in argv[0]


def test_an_unknown_package_manager_is_a_manifest_error_naming_the_fix(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text('version = 2\n[[step]]\nname = "b"\nscript = "build"\n')
    with pytest.raises(ManifestError, match=r"package_manager.*\n  fix: declare it"):
        plan_of(tmp_path)


def default_inputs_workspace(root: Path) -> None:
    (root / "app/src").mkdir(parents=True)
    (root / "app/src/a.txt").write_text("a\n")
    (root / "app/notes.txt").write_text("notes\n")
    (root / ".gitignore").write_text("dist/\n*.tmp\n")
    (root / "build.toml").write_text(
        textwrap.dedent(f"""
        version = 2
        [[step]]
        name = "app"
        cwd = "app"
        command = [{PY_TOML}, "-c", {json.dumps(COPY)}, ".", "dist/all.txt"]
        outputs = ["dist"]
        """)
    )


def test_a_step_without_inputs_takes_the_files_git_knows_under_its_cwd(tmp_path: Path) -> None:
    default_inputs_workspace(tmp_path)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "init")
    assert build(tmp_path).returncode == 0
    assert build(tmp_path).returncode == 0
    assert outcomes(tmp_path) == {"app": "cached"}
    (tmp_path / "app/src/a.txt").write_text("edited\n")  # a tracked file
    assert build(tmp_path).returncode == 0
    assert outcomes(tmp_path) == {"app": "built"}
    (tmp_path / "app/scratch.tmp").write_text("ignored by git\n")
    assert build(tmp_path).returncode == 0
    assert outcomes(tmp_path) == {"app": "cached"}
    (tmp_path / "app/src/new.txt").write_text("untracked, not ignored\n")
    done = build(tmp_path, "--explain")
    assert outcomes(tmp_path) == {"app": "built"}
    assert "input file app/src/new.txt added" in done.stdout
    assert "dist" not in done.stdout.split("why steps ran:")[1]  # its outputs are not inputs


def test_outside_git_a_step_without_inputs_is_warned_about_and_takes_its_tree(
    tmp_path: Path,
) -> None:
    default_inputs_workspace(tmp_path)
    done = build(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: app: no `inputs` declared and" in done.stdout
    assert "is not a git repository" in done.stdout
    (tmp_path / "app/notes.txt").write_text("edited\n")
    assert build(tmp_path).returncode == 0
    assert outcomes(tmp_path) == {"app": "built"}
