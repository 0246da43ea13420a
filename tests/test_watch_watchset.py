"""What `watch` watches and what a change concerns (buildlib/watch/watchset.py), on
workspaces generated here: the directories of the inputs only, never an output or a
node_modules, and each changed path mapped to the steps and services it concerns."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from helpers import PY_TOML
from repos import npm_workspace

from buildlib.planning.plan import build_plan
from buildlib.watch.inotify import estimate_watches
from buildlib.watch.watchset import WatchSelection
from buildlib.workspace.manifest import load_manifest
from buildlib.workspace.targets import get_target, host_triple

STEPS = textwrap.dedent(f"""
    version = 2
    [modes.development]

    [[step]]
    name = "gen"
    command = [{PY_TOML}, "-c", "pass"]
    cwd = "app"
    inputs = ["src/**", "*.json"]
    exclude = ["src/**/*.md"]
    outputs = ["src/gen", "dist"]

    [[step]]
    name = "pack"
    command = [{PY_TOML}, "-c", "pass"]
    depends_on = ["gen"]
    inputs = ["packages/*/package.json", "packages/*/lib/**", "README.txt"]
    outputs = ["out/pack.tgz"]

    [[step]]
    name = "serve"
    service = true
    command = [{PY_TOML}, "-m", "http.server"]
    cwd = "app"
    depends_on = ["gen"]
    restart_on = ["server.conf"]
""")


def touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def workspace(root: Path) -> WatchSelection:
    touch(root / "build.toml", STEPS)
    for rel in [
        "app/src/main.ts",
        "app/src/lib/util.ts",
        "app/src/gen/routes.ts",
        "app/package.json",
        "app/dist/index.js",
        "app/node_modules/vite/index.js",
        "app/node_modules/vite/deep/er/x.js",
        "packages/a/package.json",
        "packages/a/lib/a.js",
        "packages/a/node_modules/left-pad/index.js",
        "packages/a/docs/a.md",
        "packages/b/package.json",
        "packages/b/lib/b.js",
        "README.txt",
        "notes/todo.txt",
        ".buildlib/state/x",
        "target/debug/big",
    ]:
        touch(root / rel)
    return selection(root)


def selection(root: Path) -> WatchSelection:
    manifest = load_manifest(root / "build.toml")
    plan = build_plan(
        manifest,
        mode="development",
        target=get_target(host_triple()),
        environ=os.environ,
        services=True,
    )
    return WatchSelection(plan, manifest_path=manifest.path, workspace_exclude=manifest.exclude)


def test_only_the_inputs_directories_are_watched_never_outputs_or_node_modules(
    tmp_path: Path,
) -> None:
    sel = workspace(tmp_path)
    watched = sel.watch_set()
    # app/src holds an output (src/gen): flat, with its clean subdirectory recursive;
    # app holds node_modules and dist: flat; packages/*: flat, their lib recursive
    assert watched.recursive == ("app/src/lib", "packages/a/lib", "packages/b/lib")
    assert watched.flat == (".", "app", "app/src", "packages", "packages/a", "packages/b")
    for rel in [
        "app/node_modules",
        "app/dist",
        "app/src/gen",
        "packages/a/node_modules",
        "notes",
        ".buildlib",
        "target",
    ]:
        assert not watched.covers(rel + "/x"), rel
    # what that costs: one inotify watch per directory
    est = estimate_watches(tmp_path, watched.recursive, sel.ignored, watched.flat)
    assert est.total == 9


def test_a_change_concerns_the_steps_whose_inputs_it_touches(tmp_path: Path) -> None:
    sel = workspace(tmp_path)

    def steps(*paths: str) -> set[str]:
        return set(sel.affected(paths).steps)

    assert steps("app/src/main.ts") == {"gen"}
    assert steps("app/package.json") == {"gen"}
    assert steps("packages/b/lib/b.js", "README.txt") == {"pack"}
    assert steps("app/src/notes.md") == set()  # the step's exclude
    assert steps("notes/todo.txt") == set()  # nobody's input
    assert sel.affected(["app/server.conf"]).services == {"serve"}
    assert sel.affected(["build.toml"]).manifest


def test_outputs_and_the_engines_files_never_concern_anything(tmp_path: Path) -> None:
    sel = workspace(tmp_path)
    for rel in [
        "app/src/gen/routes.ts",
        "app/src/gen",
        "app/dist/index.js",
        "out/pack.tgz",
        ".buildlib/state/x",
        "app/node_modules/vite/index.js",
        "packages/a/node_modules/left-pad/index.js",
        ".git/index",
        "target/debug/big",
        # what a restore of the output app/src/gen stages beside it, inside gen's inputs
        "app/src/.gen.1a2b3c4d.restoring",
        "app/src/.gen.1a2b3c4d.restoring/routes.ts",
        "app/src/.gen.1a2b3c4d.old/routes.ts",
    ]:
        assert sel.ignored(rel), rel
        assert sel.affected([rel]).empty, rel
    assert not sel.ignored("app/src/main.ts")
    assert not sel.ignored("app/src/.env.restoring")  # not a staging name: an input


def test_a_directory_or_a_vanished_path_counts_when_an_input_could_lie_below(
    tmp_path: Path,
) -> None:
    sel = workspace(tmp_path)
    # deleted or moved away: only the directory itself is reported
    assert sel.affected(["app/src/feature"]).steps == {"gen"}
    assert sel.affected(["packages/c"]).steps == {"pack"}
    (tmp_path / "packages/c/other").mkdir(parents=True)
    assert sel.affected(["packages/c/other"]).steps == frozenset()  # no glob reaches below
    assert sel.affected(["app/src/gone.ts"]).steps == {"gen"}
    touch(tmp_path / "app/stray.txt")
    assert sel.affected(["app/stray.txt"]).empty  # a file there matches no glob


def test_a_missing_input_directory_is_watched_for_when_it_appears(tmp_path: Path) -> None:
    touch(
        tmp_path / "build.toml",
        textwrap.dedent(f"""
        [modes.development]
        [[step]]
        name = "docs"
        command = [{PY_TOML}, "-c", "pass"]
        inputs = ["docs/api/**", ".config/settings.toml"]
    """),
    )
    watched = selection(tmp_path).watch_set()
    assert watched.recursive == ("docs/api",)
    assert watched.flat == (".", ".config")


def test_a_generated_npm_monorepo_costs_a_watch_per_source_directory(tmp_path: Path) -> None:
    repo = npm_workspace(tmp_path / "repo")
    dirs = sorted({p.path.as_posix() for p in repo.packages})
    steps = "".join(
        textwrap.dedent(f"""
        [[step]]
        name = "build-{d.rsplit("/", 1)[-1]}"
        command = [{PY_TOML}, "-c", "pass"]
        cwd = "{d}"
        inputs = ["src/**", "package.json"]
        outputs = ["dist"]
    """)
        for d in dirs
    )
    (repo.root / "build.toml").write_text("version = 2\n[modes.development]\n" + steps)
    for d in dirs:  # what an install and a build leave there
        for i in range(50):
            touch(repo.root / d / "node_modules" / f"dep{i}" / "lib" / "index.js")
        touch(repo.root / d / "dist" / "index.js")
    sel = selection(repo.root)
    watched = sel.watch_set()
    assert watched.recursive == tuple(f"{d}/src" for d in dirs)
    assert watched.flat == (".", *dirs)
    sources = sum(1 for d in dirs for _ in os.walk(repo.root / d / "src"))
    est = estimate_watches(repo.root, watched.recursive, sel.ignored, watched.flat)
    assert est.total == sources + 1 + len(dirs)  # the sources, the root, each package
    assert est.total < sum(1 for _ in os.walk(repo.root)) / 10
