"""Modes do not overwrite each other (issue 13 item 4): the app's manifest gives every mode
and target its own output paths, and verify rejects an artifact of another mode by name.

The layout is checked on build.toml itself (the plan of each mode and target, as the engine
makes it); the mode checks run the real scripts/verify-*.cjs in node on pages and a
compiled-main layout written here. tests/test_e2e.py builds the real app in two modes and
switches between them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildlib.incremental.outputs import overlap
from buildlib.planning.plan import build_plan, resolve_artifacts
from buildlib.workspace.manifest import Manifest, load_manifest
from buildlib.workspace.targets import get_target, host_triple

ROOT = Path(__file__).resolve().parent.parent
MODES = ("development", "production", "test")
OTHER_TARGET = "aarch64-apple-darwin"
# Outputs whose bytes do not depend on the mode or target: the same lockfile installs the
# same node_modules (npm ci --include=dev), and napi's type definitions come from the source.
SAME_IN_EVERY_MODE = {
    "web/node_modules",
    "electron/node_modules",
    "crates/tachikoma-native/node_modules",
    "crates/tachikoma-native/index.d.ts",
}

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return load_manifest(ROOT / "build.toml")


def outputs(manifest: Manifest, mode: str, triple: str) -> dict[str, tuple[str, ...]]:
    plan = build_plan(manifest, mode=mode, target=get_target(triple), environ={})
    return {f"{name} ({mode}, {triple})": step.outputs for name, step in plan.steps.items()}


def shared_outputs(
    first: dict[str, tuple[str, ...]], second: dict[str, tuple[str, ...]]
) -> set[str]:
    """Every output of `first` that overlaps one of `second` (the same path, or one inside
    the other), found with the plan's own overlap check."""
    found = set()
    for (a, a_out), (b, b_out) in itertools.product(first.items(), second.items()):
        for pattern in a_out:
            if overlap({a: [pattern], b: b_out}) is not None:
                found.add(pattern)
    return found


@pytest.mark.parametrize(("mode", "other"), list(itertools.combinations(MODES, 2)))
def test_two_modes_write_different_paths(manifest: Manifest, mode: str, other: str) -> None:
    host = host_triple()
    shared = shared_outputs(outputs(manifest, mode, host), outputs(manifest, other, host))
    assert shared <= SAME_IN_EVERY_MODE, f"{mode} and {other} both write {shared}"
    # Each mode's page, module, main and CLI are in a place of their own.
    for step in ("svelte-build", "native-module", "electron-build", "rust-build"):
        mine = outputs(manifest, mode, host)[f"{step} ({mode}, {host})"]
        assert not set(mine) & SAME_IN_EVERY_MODE - {"crates/tachikoma-native/index.d.ts"}


def test_two_targets_write_different_paths(manifest: Manifest) -> None:
    host = outputs(manifest, "production", host_triple())
    cross = outputs(manifest, "production", OTHER_TARGET)
    # The page is the same for every target (it runs in Chromium); nothing else is shared.
    assert shared_outputs(host, cross) <= SAME_IN_EVERY_MODE | {"web/dist/production"}


@pytest.mark.parametrize(("mode", "other"), list(itertools.combinations(MODES, 2)))
def test_no_artifact_path_is_another_modes(manifest: Manifest, mode: str, other: str) -> None:
    def paths(of: str) -> set[str]:
        plan = build_plan(manifest, mode=of, target=get_target(host_triple()), environ={})
        return {a.rel for a in resolve_artifacts(manifest, plan, {})}

    assert not paths(mode) & paths(other)


def test_electron_main_is_told_the_page_and_module_of_its_mode(manifest: Manifest) -> None:
    plan = build_plan(manifest, mode="test", target=get_target(host_triple()), environ={})
    argv = plan.steps["electron-build"].argv
    page = argv[argv.index("--web-entry") + 1]
    module = argv[argv.index("--native-module") + 1]
    electron = plan.steps["electron-build"].cwd
    native, web = plan.steps["native-module"], plan.steps["svelte-build"]
    # What main is told to load is what the other steps of the same mode write.
    rel_module = os.path.relpath(electron / module, ROOT)
    assert rel_module in native.outputs
    assert os.path.relpath(electron / page, ROOT).startswith(web.outputs[0] + "/")
    assert "/test/" in rel_module


# --- verify rejects an artifact of another mode by name --------------------------------------


def node(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def page(path: Path, mode: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "assets").mkdir(exist_ok=True)
    (path.parent / "assets" / "index.js").write_text("")
    meta = f'<meta name="tachikoma-build-mode" content="{mode}">' if mode else ""
    path.write_text(
        f"<!doctype html><html><head>{meta}"
        '<script type="module" src="./assets/index.js"></script></head></html>'
    )
    return path


@needs_node
def test_verify_web_rejects_a_page_of_another_mode_by_name(tmp_path: Path) -> None:
    production = page(tmp_path / "web/dist/production/index.html", "production")
    ok = node("scripts/verify-web.cjs", production, "--expect-mode", "production")
    assert ok.returncode == 0, ok.stderr
    assert "was built for mode production" in ok.stdout

    copied = page(tmp_path / "web/dist/production/index.html", "test")
    wrong = node("scripts/verify-web.cjs", copied, "--expect-mode", "production")
    assert wrong.returncode == 1
    assert f"{copied} was built for mode 'test', expected 'production'" in wrong.stderr

    unstamped = page(tmp_path / "old/index.html", None)
    old = node("scripts/verify-web.cjs", unstamped, "--expect-mode", "production")
    assert old.returncode == 1
    assert "names no build mode" in old.stderr and "svelte-build" in old.stderr

    usage = node("scripts/verify-web.cjs", production)
    assert usage.returncode == 1 and "usage:" in usage.stderr


def compiled_main(root: Path, mode: str, page_mode: str) -> Path:
    """A compiled main's layout, as electron/scripts/build.cjs writes it: main requires
    ./paths.js, whose RELATIVE_PATHS and BUILD_MODE come from build.json."""
    main = root / f"electron/dist/x/{mode}/main"
    main.mkdir(parents=True)
    (main / "index.js").write_text("'use strict'\nrequire('./paths.js')\n")
    (main / "paths.js").write_text(
        "const c = require('./build.json')\n"
        "exports.BUILD_MODE = c.mode\nexports.RELATIVE_PATHS = c.paths\n"
    )
    (main / "build.json").write_text(
        json.dumps(
            {
                "mode": mode,
                "paths": {
                    "preload": "../preload/index.js",
                    "webEntry": f"../../../../../web/dist/{mode}/index.html",
                    "nativeModule": f"../../../../../native/{mode}/m.node",
                },
            }
        )
    )
    (main.parent / "preload").mkdir()
    (main.parent / "preload/index.js").write_text("require('electron')\n")
    page(root / f"web/dist/{mode}/index.html", page_mode)
    (root / f"native/{mode}").mkdir(parents=True)
    (root / f"native/{mode}/m.node").write_bytes(b"")
    return main / "index.js"


@needs_node
def test_verify_electron_rejects_a_main_or_page_of_another_mode(tmp_path: Path) -> None:
    good = compiled_main(tmp_path / "good", "production", "production")
    ok = node("scripts/verify-electron.cjs", good, "--expect-mode", "production")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "main was built for mode production" in ok.stdout

    # A development main where production's should be, loading a page of yet another mode.
    dev = compiled_main(tmp_path / "bad", "development", "test")
    wrong = node("scripts/verify-electron.cjs", dev, "--expect-mode", "production")
    assert wrong.returncode == 1
    assert f"{dev} was built for mode 'development', expected 'production'" in wrong.stderr
    assert "was built for mode 'test', but main (mode 'development') loads it" in wrong.stderr

    # The module main loads is named, with the step that makes it, when it is missing.
    (tmp_path / "good/native/production/m.node").unlink()
    missing = node("scripts/verify-electron.cjs", good, "--expect-mode", "production")
    assert missing.returncode == 1
    assert "nativeModule" in missing.stderr and "native-module step" in missing.stderr
