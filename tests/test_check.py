"""`buildlib check`: the files git knows that no step reads, the input patterns that match
nothing, on a generated npm workspace (tests/repos.py) and on small hand-made repositories;
every run is a real `python -m buildlib check` in a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from helpers import ROOT
from repos import git_commit, git_init, npm_workspace


def check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "buildlib", "check", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def findings(root: Path) -> dict[str, Any]:
    done = check(root, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return {s["step"]: s for s in data["steps"]} | {"problems": data["problems"]}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


MANIFEST = textwrap.dedent("""\
    version = 2

    [workspace]
    exclude = ["README.md"]

    [[step]]
    name = "lib-build"
    cwd = "lib"
    command = ["sh", "-c", "mkdir -p dist && cat src/*.ts > dist/lib.js"]
    inputs = ["src/**/*.ts", "package.json", "tsconfig.jsn"]
    outputs = ["dist"]

    [[step]]
    name = "app-build"
    cwd = "app"
    depends_on = ["lib-build"]
    command = ["sh", "-c", "mkdir -p out && cp ../lib/dist/lib.js out/"]
    inputs = ["index.html", "//lib/dist/**"]
    outputs = ["out"]

    [[step]]
    name = "lint"
    command = ["true"]
    inputs = ["lib/src/**", "app/index.html"]
    """)


def small_repo(root: Path) -> None:
    write(
        root,
        {
            "build.toml": MANIFEST,
            "README.md": "# demo\n",
            ".gitignore": "ignored.log\n",
            "lib/package.json": "{}\n",
            "lib/src/a.ts": "export const a = 1;\n",
            "lib/src/b.ts": "export const b = 2;\n",
            "lib/src/style.css": "body {}\n",
            "app/index.html": "<html></html>\n",
            "app/assets/logo.svg": "<svg/>\n",
            "app/assets/icon.svg": "<svg/>\n",
            "app/assets/deep/x.svg": "<svg/>\n",
            "docs/guide.md": "guide\n",
            "docs/api.md": "api\n",
        },
    )
    git_init(root)


def test_unread_files_are_listed_under_the_step_whose_cwd_holds_them(tmp_path: Path) -> None:
    small_repo(tmp_path)
    write(tmp_path, {"ignored.log": "x\n", "app/new.ts": "untracked, not ignored\n"})
    result = findings(tmp_path)
    # lib/src/style.css: under lib (lint reads lib/src/**: it is read, so not listed).
    assert result["lib-build"]["unread"] == []
    # app/: the whole assets directory once (3 files, one in a subdirectory), the new file;
    # git's untracked-but-not-ignored files count, ignored ones do not.
    assert result["app-build"]["unread"] == [
        {"path": "app/assets/", "files": 3},
        {"path": "app/new.ts", "files": 1},
    ]
    # The root step gets what no deeper step holds; README.md is excluded, build.toml is not.
    assert result["lint"]["unread"] == [
        {"path": ".gitignore", "files": 1},
        {"path": "build.toml", "files": 1},
        {"path": "docs/", "files": 2},
    ]


def test_a_typo_in_an_input_is_a_finding_and_another_steps_outputs_are_pending(
    tmp_path: Path,
) -> None:
    small_repo(tmp_path)
    result = findings(tmp_path)
    assert result["lib-build"]["empty_patterns"] == ["lib/tsconfig.jsn"]
    # Before a build lib/dist does not exist: that is lib-build's output, not a typo.
    assert result["app-build"]["empty_patterns"] == []
    assert result["app-build"]["pending_patterns"] == [
        {"pattern": "lib/dist/**", "producer": "lib-build"}
    ]
    text = check(tmp_path)
    assert text.returncode == 0  # findings are information unless --strict
    assert "lib-build: input 'lib/tsconfig.jsn' matches no file" in text.stdout
    assert "app-build: input 'lib/dist/**' matches nothing yet: it names lib-build's" in text.stdout
    assert "app-build (cwd app): 3 files no step reads" in text.stdout
    assert "    app/assets/ (3 files)" in text.stdout
    strict = check(tmp_path, "--strict")
    assert strict.returncode == 1
    assert "fix: add each file to the `inputs` of the step that reads it" in strict.stdout


def test_a_manifest_that_covers_everything_passes_strict(tmp_path: Path) -> None:
    small_repo(tmp_path)
    manifest = (
        MANIFEST.replace('"tsconfig.jsn"', '"src/**/*.css"')
        .replace(
            'exclude = ["README.md"]',
            'exclude = ["README.md", "docs/**", ".gitignore", "build.toml"]',
        )
        .replace('inputs = ["index.html", ', 'inputs = ["index.html", "assets/**", ')
    )
    write(tmp_path, {"build.toml": manifest})
    git_commit(tmp_path, "cover everything")
    done = check(tmp_path, "--strict")
    assert done.returncode == 0, done.stdout
    assert "every file git knows is some step's input" in done.stdout, done.stdout
    # After a build the pending pattern matches: nothing is said about it.
    build = subprocess.run(
        [sys.executable, "-m", "buildlib", "build", "--plain"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "matches nothing yet" not in check(tmp_path, "--strict").stdout


def test_a_step_without_inputs_takes_its_whole_cwd(tmp_path: Path) -> None:
    small_repo(tmp_path)
    write(
        tmp_path, {"build.toml": MANIFEST.replace('inputs = ["index.html", "//lib/dist/**"]\n', "")}
    )
    result = findings(tmp_path)
    assert result["app-build"]["unread"] == []  # git's files under app/ are its inputs
    assert result["app-build"]["empty_patterns"] == []


def test_outside_git_only_the_patterns_are_checked(tmp_path: Path) -> None:
    write(tmp_path, {"build.toml": MANIFEST, "lib/src/a.ts": "x\n", "lib/package.json": "{}"})
    done = check(tmp_path, "--json")
    data = json.loads(done.stdout)
    assert data["in_git"] is False
    assert {s["step"]: s["empty_patterns"] for s in data["steps"]}["lib-build"] == [
        "lib/tsconfig.jsn"
    ]
    assert check(tmp_path).stdout.startswith("not a git repository")


def test_init_on_an_npm_workspace_leaves_nothing_unread_under_its_packages(tmp_path: Path) -> None:
    """Outside in: a generated npm workspace (tsc library, Vite + Svelte app, Node CLI),
    the manifest `init` writes for it, then a hand-made input list that forgets a file."""
    repo = npm_workspace(tmp_path / "ws")
    git_init(repo.root)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    init = subprocess.run(
        [sys.executable, "-m", "buildlib", "init"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    result = findings(repo.root)
    for name, step in result.items():
        if name == "problems":
            continue
        assert not [u for u in step["unread"] if u["path"].startswith("packages/")], step
        assert step["empty_patterns"] == [], step
    # Narrow the core package's steps to its TypeScript sources: its tsconfig.json and
    # its tests are now read by no step, and listed under it.
    core = next(p for p in repo.packages if p.name == "@demo/core").path.as_posix()
    manifest = (repo.root / "build.toml").read_text()
    assert f'cwd = "{core}"\n' in manifest, manifest
    (repo.root / "build.toml").write_text(
        manifest.replace(f'cwd = "{core}"\n', f'cwd = "{core}"\ninputs = ["src/**/*.ts"]\n')
    )
    narrowed = findings(repo.root)
    unread = {
        u["path"]
        for step in narrowed.values()
        if isinstance(step, dict) and step["cwd"] == core
        for u in step["unread"]
    }
    # package.json stays read (the install step takes every package.json); the rest is not.
    assert unread == {f"{core}/tsconfig.json", f"{core}/test/"}, narrowed
