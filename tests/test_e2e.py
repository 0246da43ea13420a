"""End to end: a clean clone of this repository built with the real toolchains, through nox.

All tests here share one clone and its cold production build, so they run on one xdist
worker (`xdist_group`); `nox -s tests` passes `--dist loadgroup`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRIPLE = "x86_64-unknown-linux-gnu"
PROD = "build-3.12(mode='production')"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(1800)]


def _env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "BUILDLIB_", "PYTEST_", "NOX_", "VIRTUAL_ENV"))
    }
    env["BUILDLIB_CACHE_DIR"] = str(tmp / "cache")
    env["ELECTRON_SKIP_BINARY_DOWNLOAD"] = "1"
    return env


class App:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def nox(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nox", *args],
            cwd=self.path,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=1500,
        )

    def engine(self, *args: str) -> subprocess.CompletedProcess[str]:
        python = self.path / ".nox" / "_engine-py3.12" / "bin" / "python"
        return subprocess.run(
            [str(python), "-m", "buildlib", *args],
            cwd=self.path,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=1500,
        )

    def latest_report(self) -> dict[str, object]:
        report: dict[str, object] = json.loads(
            (self.path / ".buildlib" / "reports" / "latest.json").read_text()
        )
        return report

    def outcomes(self) -> dict[str, str]:
        steps = self.latest_report()["steps"]
        assert isinstance(steps, list)
        return {s["name"]: s["outcome"] for s in steps}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    if shutil.which("nox") is None:
        pytest.skip("nox is not on PATH")
    tmp = tmp_path_factory.mktemp("e2e")
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    app = App(clone, _env(tmp))
    build = app.nox("-s", PROD)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    yield app


def test_production_build_from_a_clean_clone_then_verify(app: App) -> None:
    outcomes = app.outcomes()
    assert set(outcomes.values()) == {"built"}
    assert "verify" in outcomes
    verify = app.nox("-s", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    manifest = json.loads(
        (app.path / ".buildlib" / "artifacts" / f"production-{TRIPLE}.json").read_text()
    )
    paths = {a["path"] for a in manifest["artifacts"]}
    assert f"target/{TRIPLE}/release/tachikoma" in paths
    binary = app.path / "target" / TRIPLE / "release" / "tachikoma"
    info = subprocess.run([str(binary), "info"], capture_output=True, text=True, check=True)
    assert "production" in info.stdout and TRIPLE in info.stdout
    # Each mode writes its own directories, and main is told those of its mode at build time.
    assert (app.path / "web/dist/production/index.html").is_file()
    config = json.loads(
        (app.path / f"electron/dist/{TRIPLE}/production/main/build.json").read_text()
    )
    assert config["mode"] == "production"
    assert config["paths"]["webEntry"] == "../../../../../web/dist/production/index.html"
    assert config["paths"]["nativeModule"].startswith(
        f"../../../../../crates/tachikoma-native/dist/{TRIPLE}/production/tachikoma-native."
    )


def test_nothing_changed_means_nothing_runs(app: App) -> None:
    again = app.nox("-s", PROD)
    assert again.returncode == 0, again.stdout + again.stderr
    # verify is cached too, on the digests of what it checked: a no-op runs no tool.
    assert set(app.outcomes().values()) == {"cached"}, app.outcomes()
    assert "nothing to do: 10 steps up to date" in again.stdout + again.stderr


def test_a_deleted_artifact_fails_verify_naming_it_and_its_step(app: App) -> None:
    index = app.path / "web" / "dist" / "production" / "index.html"
    saved = index.read_bytes()
    index.unlink()
    try:
        verify = app.nox("-s", "verify")
        assert verify.returncode != 0
        text = verify.stdout + verify.stderr
        assert "web/dist/production/index.html" in text and "svelte-build" in text
    finally:
        index.write_bytes(saved)


def test_svelte_error_stops_its_dependents_while_rust_steps_finish(app: App) -> None:
    source = app.path / "web" / "src" / "App.svelte"
    saved = source.read_text()
    planted = saved.replace("const native = bridge()", "const native = bridge((", 1)
    assert planted != saved
    source.write_text(planted)
    try:
        run = app.engine("build", "--mode", "development", "--keep-going", "--plain")
        assert run.returncode == 1
        outcomes = app.outcomes()
        assert outcomes["svelte-check"] == "failed"
        for downstream in ("svelte-build", "electron-build"):
            assert outcomes[downstream] == "skipped", outcomes
        for independent in ("rust-check", "rust-build", "native-module"):
            assert outcomes[independent] in ("built", "cached", "restored"), outcomes
        assert "App.svelte" in run.stdout  # the tool's error is shown
    finally:
        source.write_text(saved)


def test_development_build_and_verify(app: App) -> None:
    build = app.nox("-s", "build-3.12(mode='development')")
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    verify = app.nox("-s", "verify", "--", "--mode", "development")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (app.path / "target" / TRIPLE / "debug" / "tachikoma").exists()
    assert (app.path / f"electron/dist/{TRIPLE}/development/main/build.json").is_file()


def test_switching_modes_back_and_forth_runs_and_restores_nothing(app: App) -> None:
    # Both modes are built (above): each finds its outputs where it left them.
    for session in (PROD, "build-3.12(mode='development')", PROD):
        again = app.nox("-s", session)
        assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-5000:]
        assert set(app.outcomes().values()) == {"cached"}, (session, app.outcomes())
        assert "nothing to do" in again.stdout + again.stderr


def test_verify_rejects_an_artifact_of_another_mode_by_name(app: App) -> None:
    # Development's page, module and CLI copied where production's belong.
    native = f"crates/tachikoma-native/dist/{TRIPLE}/{{}}/tachikoma-native.linux-x64-gnu.node"
    swaps = [
        ("web/dist/{}/index.html", "development", "production"),
        (native, "development", "production"),
        (f"target/{TRIPLE}/{{}}/tachikoma", "debug", "release"),
    ]
    saved: dict[Path, bytes] = {}
    try:
        for pattern, dev, prod in swaps:
            target = app.path / pattern.format(prod)
            saved[target] = target.read_bytes()
            shutil.copy2(app.path / pattern.format(dev), target)
        verify = app.nox("-s", "verify", "--", "--mode", "production")
        assert verify.returncode != 0
        text = verify.stdout + verify.stderr
        assert "was built for mode 'development', expected 'production'" in text  # the page
        assert 'buildInfo().mode is production: got "development"' in text  # the module
        assert "printed 'mode: development', expected it to contain 'mode: production'" in text
        for step in ("svelte-build", "native-module", "rust-build"):
            assert f"run step '{step}'" in text
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
