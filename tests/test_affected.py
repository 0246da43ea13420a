"""`--affected` on real git repositories made here: which steps a change selects and why.

Every repository is made by the test with the real git (`repos.git_init`/`git_commit`),
clones are `git clone --depth 1 file://...` where CI's shallow checkout matters, and every
selection is read from `plan --affected --json` (or a real `build --affected`). The
manifest's steps run `mk.py`, which concatenates its inputs into its output and notes its
name in runs.log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import MODES, PY_TOML, ROOT, make_tool
from repos import cargo_workspace, git_commit, git_init, npm_workspace, relock

MK = textwrap.dedent("""
    import glob, pathlib, sys
    name, out, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
    text = "".join(pathlib.Path(p).read_text() for pattern in patterns
                   for p in sorted(glob.glob(pattern, recursive=True)) if pathlib.Path(p).is_file())
    if out != "-":
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(name + ":" + text)
    open("runs.log", "a").write(name + "\\n")
""")

STEPS = f"""
[vars]
greeting = "hello"

[tools]
fake = ["fake-tool", "--version"]

[[step]]
name = "lib"
description = "the library"
command = [{PY_TOML}, "mk.py", "lib", "out/lib.txt", "lib/**"]
inputs = ["lib/**"]
outputs = ["out/lib.txt"]

[[step]]
name = "app"
command = [{PY_TOML}, "mk.py", "app", "out/app.txt", "app/**", "out/lib.txt"]
depends_on = ["lib"]
inputs = ["app/**"]
exclude = ["app/**/*.md"]
outputs = ["out/app.txt"]

[[step]]
name = "app-test"
command = [{PY_TOML}, "mk.py", "app-test", "-", "tests/**"]
depends_on = ["app"]
inputs = ["tests/**"]

[[step]]
name = "docs"
command = [{PY_TOML}, "mk.py", "docs-{{greeting}}", "out/docs.txt", "docs/**"]
inputs = ["docs/**"]
outputs = ["out/docs.txt"]
tools = ["fake"]
"""

FILES = {
    "lib/a.txt": "a\n",
    "lib/b.txt": "b\n",
    "app/main.txt": "main\n",
    "app/notes.md": "notes\n",
    "tests/t.txt": "t\n",
    "docs/index.txt": "docs\n",
    "README.md": "readme\n",
    ".gitignore": "out/\n.buildlib/\nruns.log\n",
}


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    )
    return env


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        env=_git_env(),
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def make_repo(root: Path, *, extra: str = "") -> Path:
    """The workspace above, committed on `main`."""
    root.mkdir(parents=True)
    (root / "mk.py").write_text(MK)
    (root / "build.toml").write_text(MODES + STEPS + textwrap.dedent(extra))
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git_init(root)
    return root


def clone(source: Path, dest: Path, *args: str) -> Path:
    done = subprocess.run(
        ["git", "clone", "-q", *args, f"file://{source}", str(dest)],
        env=_git_env(),
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    git(dest, "config", "user.name", "Buildlib Tests")
    git(dest, "config", "user.email", "tests@buildlib.invalid")
    return dest


def engine(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in _git_env().items() if not k.startswith(("BUILDLIB_", "GITHUB_"))}
    full.update(
        {
            "PYTHONPATH": str(ROOT),
            "BUILDLIB_CACHE_DIR": str(root.parent / "cache"),
            "PATH": f"{root.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
            **env,
        }
    )
    if not (root.parent / "bin" / "fake-tool").exists():
        make_tool(root.parent / "bin", "1.0")
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=root,
        env=full,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


def affected(root: Path, *args: str, **env: str) -> dict[str, Any]:
    done = engine(root, "plan", "--affected", "--json", *args, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)["affected"]
    data["stderr"] = done.stderr
    return data


def reasons(data: dict[str, Any]) -> dict[str, list[str]]:
    return {s["name"]: [r["text"] for r in s["reasons"]] for s in data["affected"]}


def kinds(data: dict[str, Any]) -> dict[str, set[str]]:
    return {s["name"]: {r["kind"] for r in s["reasons"]} for s in data["affected"]}


def feature_branch(root: Path) -> None:
    git(root, "checkout", "-q", "-b", "feature")


# -- kinds of change ---------------------------------------------------------------------------


def test_a_committed_change_selects_its_step_and_everything_downstream(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    feature_branch(repo)
    (repo / "lib/a.txt").write_text("a2\n")
    git_commit(repo, "change lib")

    data = affected(repo, "--base", "main")

    assert reasons(data) == {
        "lib": ["input-changed lib/a.txt"],
        "app": ["dependency-affected lib"],
        "app-test": ["dependency-affected app"],
    }
    assert data["unaffected"] == ["docs"]
    assert data["total"] == 4
    assert data["base"]["merge_base"] == git(repo, "rev-parse", "main")
    assert [c["path"] for c in data["changes"]] == ["lib/a.txt"]


def test_staged_unstaged_and_untracked_changes_all_count(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "docs/index.txt").write_text("edited, not staged\n")
    (repo / "tests/new.txt").write_text("staged\n")
    git(repo, "add", "tests/new.txt")
    (repo / "lib/untracked.txt").write_text("never added\n")
    (repo / "out").mkdir()
    (repo / "out/ignored.txt").write_text("ignored by .gitignore\n")

    data = affected(repo, "--base", "HEAD")

    assert reasons(data) == {
        "lib": ["input-changed lib/untracked.txt"],
        "app": ["dependency-affected lib"],
        "app-test": ["input-changed tests/new.txt", "dependency-affected app"],
        "docs": ["input-changed docs/index.txt"],
    }
    kinds_of = {c["path"]: c["kind"] for c in data["changes"]}
    assert kinds_of == {
        "docs/index.txt": "modified",
        "tests/new.txt": "added",
        "lib/untracked.txt": "untracked",
    }


def test_a_rename_affects_the_steps_of_both_names(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    feature_branch(repo)
    git(repo, "mv", "docs/index.txt", "tests/index.txt")
    git_commit(repo, "move a file")

    data = affected(repo, "--base", "main")

    assert reasons(data)["docs"] == ["input-changed docs/index.txt"]
    assert reasons(data)["app-test"] == ["input-changed tests/index.txt"]
    assert data["changes"] == [
        {
            "path": "tests/index.txt",
            "kind": "renamed",
            "old_path": "docs/index.txt",
            "submodule": False,
        }
    ]
    assert "lib" not in reasons(data)


def test_a_deleted_input_affects_its_step(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "lib/b.txt").unlink()  # deleted in the work tree, not even staged

    data = affected(repo, "--base", "HEAD")

    assert reasons(data)["lib"] == ["input-changed lib/b.txt"]
    assert data["changes"][0]["kind"] == "deleted"


def test_a_path_no_step_takes_affects_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "README.md").write_text("edited\n")
    (repo / "app/notes.md").write_text("excluded by app's exclude\n")

    data = affected(repo, "--base", "HEAD")

    assert data["affected"] == []
    assert data["unaffected"] == ["lib", "app", "app-test", "docs"]
    assert "0 of 4 steps affected" in data["stderr"]


def test_a_change_to_a_dependency_output_path_is_not_an_input(tmp_path: Path) -> None:
    """The fingerprint takes a dependency through its outputs: a committed output is no
    input of the step that makes it (version 1 globs never took outputs anyway)."""
    repo = make_repo(tmp_path / "repo")
    (repo / "lib/sub").mkdir()
    (repo / "lib/sub/deep.txt").write_text("deep\n")

    data = affected(repo, "--base", "HEAD")

    assert reasons(data)["lib"] == ["input-changed lib/sub/deep.txt"]


# -- the base -------------------------------------------------------------------------------


def _upstream_with_history(root: Path, *, main_commits: int, feature_commits: int) -> Path:
    """main: the workspace, then `main_commits` commits touching docs; feature branches
    off at the first of them and changes lib/a.txt `feature_commits` times."""
    repo = make_repo(root)
    fork = git(repo, "rev-parse", "HEAD")
    for i in range(main_commits):
        (repo / "docs/index.txt").write_text(f"docs {i}\n")
        git_commit(repo, f"docs {i}")
    git(repo, "checkout", "-q", "-b", "feature", fork)
    for i in range(feature_commits):
        (repo / "lib/a.txt").write_text(f"a {i}\n")
        git_commit(repo, f"lib {i}")
    git(repo, "checkout", "-q", "main")
    return repo


def test_a_shallow_clone_is_deepened_until_the_merge_base_is_found(tmp_path: Path) -> None:
    upstream = _upstream_with_history(tmp_path / "up", main_commits=90, feature_commits=80)
    ci = clone(upstream, tmp_path / "ci", "--depth", "1", "--branch", "feature")
    assert git(ci, "rev-list", "--count", "HEAD") == "1"

    data = affected(ci, "--base", "origin/main")

    assert reasons(data) == {
        "lib": ["input-changed lib/a.txt"],
        "app": ["dependency-affected lib"],
        "app-test": ["dependency-affected app"],
    }
    base = data["base"]
    assert base["shallow"] is True
    assert base["deepened"] >= 80  # the first step (64 commits) was not enough
    # What came, not what was asked for: the whole history has 171 commits.
    assert 0 < base["fetched"] <= 171 - 1 and base["fetched"] < base["deepened"]
    assert f"{base['fetched']} commits fetched ({base['deepened']} asked for)" in data["stderr"]
    assert base["merge_base"] == git(upstream, "merge-base", "main", "feature")
    assert "fetching" in data["stderr"] and "more commits of history" in data["stderr"]
    # The docs commits on main since the fork are not the change's: docs is not affected.
    assert "docs" in data["unaffected"]


def test_a_merge_base_beyond_the_deepening_limit_selects_everything_and_says_so(
    tmp_path: Path,
) -> None:
    upstream = _upstream_with_history(tmp_path / "up", main_commits=3, feature_commits=30)
    ci = clone(upstream, tmp_path / "ci", "--depth", "1", "--branch", "feature")

    data = affected(ci, "--base", "origin/main", BUILDLIB_DEEPEN_LIMIT="10")

    assert kinds(data) == {name: {"base-not-found"} for name in ("lib", "app", "app-test", "docs")}
    detail = data["affected"][0]["reasons"][0]["detail"]
    assert "no merge-base of origin/main and HEAD" in detail
    assert "BUILDLIB_DEEPEN_LIMIT=10" in detail
    assert "warning: --affected:" in data["stderr"]
    assert "every step is selected" in data["stderr"]


def test_unrelated_histories_select_everything_with_base_not_found(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--orphan", "other")
    git_commit(repo, "a new root")

    data = affected(repo, "--base", "main")

    assert kinds(data) == {name: {"base-not-found"} for name in ("lib", "app", "app-test", "docs")}
    assert "share no history" in data["affected"][0]["reasons"][0]["detail"]


def test_the_default_base_is_the_remote_default_branch(tmp_path: Path) -> None:
    upstream = _upstream_with_history(tmp_path / "up", main_commits=2, feature_commits=1)
    work = clone(upstream, tmp_path / "work")
    git(work, "checkout", "-q", "feature")

    data = affected(work)

    assert data["base"]["ref"] == "origin/main"
    assert data["base"]["source"] == "origin/HEAD"
    assert list(reasons(data)) == ["lib", "app", "app-test"]


def test_github_base_ref_is_fetched_into_a_shallow_single_branch_clone(tmp_path: Path) -> None:
    upstream = _upstream_with_history(tmp_path / "up", main_commits=2, feature_commits=2)
    ci = clone(upstream, tmp_path / "ci", "--depth", "1", "--branch", "feature")
    assert "origin/main" not in git(ci, "branch", "-r")

    data = affected(ci, GITHUB_BASE_REF="main")

    assert (data["base"]["ref"], data["base"]["source"]) == ("origin/main", "GITHUB_BASE_REF")
    assert list(reasons(data)) == ["lib", "app", "app-test"]


def test_buildlib_base_and_head_compare_two_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    start = git(repo, "rev-parse", "HEAD")
    (repo / "tests/t.txt").write_text("t2\n")
    head = git_commit(repo, "tests")
    (repo / "docs/index.txt").write_text("later, and uncommitted\n")

    data = affected(repo, BUILDLIB_BASE=start, BUILDLIB_HEAD=head)

    assert reasons(data) == {"app-test": ["input-changed tests/t.txt"]}
    assert data["base"]["source"] == "BUILDLIB_BASE"
    assert data["base"]["head_ref"] == head
    # Without BUILDLIB_HEAD the work tree counts, uncommitted docs included.
    assert set(reasons(affected(repo, BUILDLIB_BASE=start))) == {"app-test", "docs"}


def test_an_unknown_base_ref_is_one_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")

    done = engine(repo, "plan", "--affected", "--base", "no-such-branch")

    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown base ref 'no-such-branch'")
    assert "fix:" in done.stderr and "Traceback" not in done.stderr


def test_affected_outside_a_git_repository_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "mk.py").write_text(MK)
    (root / "build.toml").write_text(MODES + STEPS)

    done = engine(root, "build", "--affected")

    assert done.returncode == 1
    assert "is not in a git repository" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--base", "main"), "--base and --head only mean something with --affected"),
        (("build", "--affected", "--only", "lib"), "cannot be combined with --only"),
        (("plan", "--shards", "0"), "--shards 0: at least one job is needed"),
        (("plan", "--waves", "2"), "only means something with --shards"),
    ],
)
def test_option_combinations_that_mean_nothing_are_refused(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    repo = make_repo(tmp_path / "repo")

    done = engine(repo, *args)

    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


# -- the manifest ---------------------------------------------------------------------------


def _edit_manifest(repo: Path, old: str, new: str) -> None:
    text = (repo / "build.toml").read_text()
    assert old in text
    (repo / "build.toml").write_text(text.replace(old, new, 1))


def test_a_changed_command_affects_that_step_only(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    _edit_manifest(repo, '"app-test", "-", "tests/**"]', '"app-test", "-", "tests/**", "x"]')

    data = affected(repo, "--base", "HEAD")

    assert reasons(data) == {"app-test": ["manifest-changed (build.toml: its command changed)"]}


def test_a_changed_description_affects_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    _edit_manifest(repo, 'description = "the library"', 'description = "the core library"')

    assert affected(repo, "--base", "HEAD")["affected"] == []


def test_a_changed_variable_affects_the_steps_that_use_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    _edit_manifest(repo, 'greeting = "hello"', 'greeting = "bonjour"')

    data = affected(repo, "--base", "HEAD")

    assert reasons(data) == {
        "docs": ["manifest-changed (build.toml: template variable {greeting} changed)"]
    }


def test_a_changed_mode_environment_affects_every_step_of_that_mode_only(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    _edit_manifest(
        repo, 'env = { NODE_ENV = "production" }', 'env = { NODE_ENV = "production", EXTRA = "1" }'
    )

    assert affected(repo, "--base", "HEAD")["affected"] == []  # development is the default
    data = affected(repo, "--base", "HEAD", "--mode", "production")
    assert kinds(data)["lib"] == {"manifest-changed"}
    assert "[modes.production] env changed" in reasons(data)["lib"][0]
    assert set(reasons(data)) == {"lib", "app", "app-test", "docs"}


def test_a_new_step_is_affected(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "build.toml").write_text(
        (repo / "build.toml").read_text()
        + textwrap.dedent(f"""
        [[step]]
        name = "extra"
        command = [{PY_TOML}, "mk.py", "extra", "-"]
        depends_on = ["lib"]
        """)
    )

    data = affected(repo, "--base", "HEAD")

    assert reasons(data) == {"extra": ["manifest-changed (build.toml: a new step)"]}
    assert data["needed"] == ["lib"]


def test_a_base_without_a_readable_manifest_affects_every_step(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "rm", "-q", "--cached", "build.toml")
    git(repo, "commit", "-q", "-m", "no manifest")
    git(repo, "add", "build.toml")  # the manifest comes back, staged

    data = affected(repo, "--base", "HEAD")

    assert set(kinds(data)) == {"lib", "app", "app-test", "docs"}
    assert all("manifest-changed" in found for found in kinds(data).values())
    assert "the base has no readable build.toml" in reasons(data)["lib"][0]


# -- tools ------------------------------------------------------------------------------------


def test_a_tool_version_change_since_the_last_build_affects_the_steps_using_it(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    done = engine(repo, "build", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert affected(repo, "--base", "HEAD")["affected"] == []

    make_tool(tmp_path / "bin", "2.0")  # the same command now prints another version

    data = affected(repo, "--base", "HEAD")
    assert reasons(data) == {
        "docs": [
            "tool-version-changed fake (fake-tool 1.0 at its last build here, fake-tool 2.0 now)"
        ]
    }


def test_a_file_pinning_tool_versions_affects_the_steps_below_it_that_run_them(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".tool-versions").write_text("fake-tool 2.0\n")

    data = affected(repo, "--base", "HEAD")

    assert reasons(data) == {"docs": ["tool-version-changed fake (.tool-versions changed)"]}


# -- building -------------------------------------------------------------------------------


def test_build_affected_runs_the_affected_steps_and_takes_what_they_need_from_the_cache(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    done = engine(repo, "build", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    (repo / "runs.log").unlink()
    feature_branch(repo)
    (repo / "app/main.txt").write_text("main 2\n")
    git_commit(repo, "app")

    done = engine(repo, "build", "--plain", "--affected", "--base", "main")

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted((repo / "runs.log").read_text().split()) == ["app", "app-test"]
    assert "--affected: 2 of 4 steps affected" in done.stderr
    assert "needed by them, from the cache or built: lib" in done.stderr
    report = json.loads((repo / ".buildlib/reports/latest.json").read_text())
    assert {s["name"]: s["outcome"] for s in report["steps"]} == {
        "lib": "cached",
        "app": "built",
        "app-test": "built",
    }


def test_plan_affected_with_nothing_affected_says_so_without_mentioning_jobs(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")

    plain = engine(repo, "plan", "--affected", "--base", "HEAD")
    sharded = engine(repo, "plan", "--affected", "--base", "HEAD", "--shards", "2")

    assert plain.returncode == sharded.returncode == 0, plain.stderr + sharded.stderr
    assert plain.stdout.splitlines()[-1] == "--affected: nothing to build"
    assert "job" not in plain.stdout
    assert sharded.stdout.splitlines()[-1] == "nothing is affected: no job to lay out"


def test_base_help_names_the_head_and_github_base_ref(tmp_path: Path) -> None:
    done = engine(make_repo(tmp_path / "repo"), "plan", "--help")

    text = " ".join(done.stdout.split())
    assert "merge-base of REF and the head (HEAD, or --head)" in text
    assert "$GITHUB_BASE_REF" in text


def test_build_affected_with_nothing_affected_builds_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")

    done = engine(repo, "build", "--plain", "--affected", "--base", "HEAD")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "--affected: nothing to build" in done.stderr
    assert not (repo / "runs.log").exists()


def test_verify_built_only_checks_the_artifacts_of_what_the_last_build_selected(
    tmp_path: Path,
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        extra="""
        [[artifact]]
        path = "out/docs.txt"
        step = "docs"
        kind = "exists"

        [[artifact]]
        path = "out/app.txt"
        step = "app"
        kind = "exists"
        """,
    )
    (repo / "docs/index.txt").write_text("docs 2\n")

    done = engine(repo, "build", "--plain", "--affected", "--base", "HEAD")
    assert done.returncode == 0, done.stdout + done.stderr

    assert engine(repo, "verify").returncode == 1  # out/app.txt was never built
    checked = engine(repo, "verify", "--built-only")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "out/docs.txt" in checked.stdout and "out/app.txt" not in checked.stdout


def test_plan_affected_text_names_each_step_with_its_reasons(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "lib/a.txt").write_text("a2\n")

    done = engine(repo, "plan", "--affected", "--base", "HEAD")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        done.stdout.splitlines()[0],
        "  lib: input-changed lib/a.txt",
        "  app: dependency-affected lib",
        "  app-test: dependency-affected app",
    ]
    assert done.stdout.startswith("--affected: 3 of 4 steps affected: the work tree against HEAD")


def _pull_request_checkout(upstream: Path, dest: Path) -> Path:
    """What actions/checkout does on `pull_request` with its default fetch-depth 1: the
    merge commit GitHub made (refs/pull/N/merge: the base branch's tip merged with the
    pull request), one commit deep, detached."""
    head = git(upstream, "rev-parse", "feature")
    git(upstream, "checkout", "-q", "--detach", "main")
    git(upstream, "merge", "-q", "--no-ff", "-m", "Merge feature into main", head)
    git(upstream, "update-ref", "refs/pull/1/merge", "HEAD")
    git(upstream, "checkout", "-q", "main")
    dest.mkdir()
    git(dest, "init", "-q")
    git(dest, "remote", "add", "origin", f"file://{upstream}")
    git(
        dest,
        "fetch",
        "-q",
        "--no-tags",
        "--depth=1",
        "origin",
        "+refs/pull/1/merge:refs/remotes/pull/1/merge",
    )
    git(dest, "checkout", "-q", "--force", "refs/remotes/pull/1/merge")
    return dest


def test_a_pull_request_merge_checkout_one_commit_deep_compares_with_github_base_ref(
    tmp_path: Path,
) -> None:
    upstream = _upstream_with_history(tmp_path / "up", main_commits=70, feature_commits=5)
    ci = _pull_request_checkout(upstream, tmp_path / "ci")
    assert git(ci, "rev-list", "--count", "HEAD") == "1"

    data = affected(ci, GITHUB_BASE_REF="main")

    assert (data["base"]["ref"], data["base"]["source"]) == ("origin/main", "GITHUB_BASE_REF")
    # The merge commit against main's tip: the pull request's change, not main's docs commits.
    assert reasons(data) == {
        "lib": ["input-changed lib/a.txt"],
        "app": ["dependency-affected lib"],
        "app-test": ["dependency-affected app"],
    }
    assert data["base"]["merge_base"] == git(upstream, "rev-parse", "main")


# -- lockfiles serving a workspace: only the packages whose resolution changed -----------------


def _workspace_steps(members: dict[str, str], lockfile: str, manifest_name: str) -> str:
    """One step per workspace member (name -> directory), reading its sources, its manifest
    and the root lockfile, as a step that installs or compiles it does."""
    return "".join(
        textwrap.dedent(f"""
        [[step]]
        name = "{name}"
        cwd = "{directory}"
        command = [{PY_TOML}, "-c", ""]
        inputs = ["src/**", "{manifest_name}", "//{lockfile}"]
        """)
        for name, directory in members.items()
    )


def _lock_workspace(root: Path, steps: str) -> Path:
    # version 2: paths are relative to each step's cwd, "//" is the workspace root.
    (root / "build.toml").write_text("version = 2\n" + MODES + steps)
    with (root / ".gitignore").open("a") as ignore:
        ignore.write(".buildlib/\n")
    git_init(root)
    git(root, "checkout", "-q", "-b", "feature")
    return root


def _edit_json(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


NPM_MEMBERS = {"core": "packages/core", "ui": "packages/ui", "cli": "packages/cli"}
CARGO_MEMBERS = {"core": "crates/core", "cli": "crates/cli", "native": "crates/native"}


@pytest.mark.timeout(600)
def test_npm_a_dependency_added_to_one_workspace_package_spares_the_others(tmp_path: Path) -> None:
    repo = npm_workspace(tmp_path / "repo")
    _lock_workspace(repo.root, _workspace_steps(NPM_MEMBERS, "package-lock.json", "package.json"))
    _edit_json(
        repo.root / "packages/cli/package.json", lambda m: m["dependencies"].update({"ms": "2.1.3"})
    )
    assert relock(repo.root, "npm") == [Path("package-lock.json")]
    git_commit(repo.root, "cli: ms")

    data = affected(repo.root, "--base", "main")

    assert reasons(data) == {
        "cli": [
            "input-changed package-lock.json (the resolved dependencies of packages/cli changed)",
            "input-changed packages/cli/package.json",
        ]
    }
    assert data["spared"] == [
        {"name": "core", "lockfiles": ["package-lock.json"]},
        {"name": "ui", "lockfiles": ["package-lock.json"]},
    ]
    assert (
        "not affected: ui (package-lock.json changed, but not what it resolves)" in data["stderr"]
    )


@pytest.mark.timeout(600)
def test_npm_a_dependency_removed_from_one_workspace_package_spares_the_others(
    tmp_path: Path,
) -> None:
    repo = npm_workspace(tmp_path / "repo")
    _edit_json(
        repo.root / "packages/cli/package.json", lambda m: m["dependencies"].update({"ms": "2.1.3"})
    )
    relock(repo.root, "npm")
    _lock_workspace(repo.root, _workspace_steps(NPM_MEMBERS, "package-lock.json", "package.json"))
    _edit_json(repo.root / "packages/cli/package.json", lambda m: m["dependencies"].pop("ms"))
    relock(repo.root, "npm")
    assert '"node_modules/ms"' not in (repo.root / "package-lock.json").read_text()
    git_commit(repo.root, "cli: no ms")

    data = affected(repo.root, "--base", "main")

    assert list(reasons(data)) == ["cli"]
    assert {s["name"] for s in data["spared"]} == {"core", "ui"}


@pytest.mark.timeout(900)
def test_cargo_a_dependency_added_to_one_member_spares_the_others(tmp_path: Path) -> None:
    repo = cargo_workspace(tmp_path / "repo")
    _lock_workspace(repo.root, _workspace_steps(CARGO_MEMBERS, "Cargo.lock", "Cargo.toml"))
    toml = repo.root / "crates/cli/Cargo.toml"
    manifest = toml.read_text()
    # memchr is locked already (napi's closure has it): the version the lockfile holds.
    (locked,) = re.findall(
        r'name = "memchr"\nversion = "([^"]+)"', (repo.root / "Cargo.lock").read_text()
    )
    toml.write_text(manifest + f'memchr = "={locked}"\n')
    assert relock(repo.root, "cargo") == [Path("Cargo.lock")]
    git_commit(repo.root, "cli: memchr")

    data = affected(repo.root, "--base", "main")

    assert reasons(data) == {
        "cli": [
            "input-changed Cargo.lock (the resolved dependencies of crates/cli changed)",
            "input-changed crates/cli/Cargo.toml",
        ]
    }
    assert {s["name"] for s in data["spared"]} == {"core", "native"}

    # Pinning an older memchr moves the one that native resolves too: both are affected.
    toml.write_text(manifest + 'memchr = "=2.7.4"\n')
    relock(repo.root, "cargo")
    assert locked != "2.7.4"
    git_commit(repo.root, "cli: an older memchr")

    data = affected(repo.root, "--base", "main")

    assert reasons(data)["native"] == [
        "input-changed Cargo.lock (the resolved dependencies of crates/native changed)"
    ]
    assert {s["name"] for s in data["spared"]} == {"core"}


@pytest.mark.timeout(900)
def test_cargo_a_dependency_removed_from_one_member_spares_the_others(tmp_path: Path) -> None:
    repo = cargo_workspace(tmp_path / "repo")
    _lock_workspace(repo.root, _workspace_steps(CARGO_MEMBERS, "Cargo.lock", "Cargo.toml"))
    toml = repo.root / "crates/cli/Cargo.toml"
    toml.write_text(toml.read_text().replace("clap.workspace = true\n", ""))
    relock(repo.root, "cargo")
    assert 'name = "clap"' not in (repo.root / "Cargo.lock").read_text()
    git_commit(repo.root, "cli: no clap")

    data = affected(repo.root, "--base", "main")

    assert list(reasons(data)) == ["cli"]
    assert {s["name"] for s in data["spared"]} == {"core", "native"}
