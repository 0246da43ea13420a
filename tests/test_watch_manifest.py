"""Service steps in the manifest and the plan (issue 16): `service`, `restart_on`,
`restart_on_deps`, what a service may not have, and what a build does with one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import PY_TOML, ROOT

from buildlib.core.errors import ManifestError, UserError
from buildlib.planning.plan import build_plan
from buildlib.workspace.manifest import load_manifest
from buildlib.workspace.targets import get_target, host_triple

HEAD = "version = 2\n[modes.development]\n"
GEN = textwrap.dedent(f"""
    [[step]]
    name = "gen"
    command = [{PY_TOML}, "-c", "import pathlib; pathlib.Path('out').mkdir(exist_ok=True); pathlib.Path('out/x').write_text('x')"]
    inputs = ["src/**"]
    outputs = ["out"]
""")
SERVE = textwrap.dedent(f"""
    [[step]]
    name = "serve"
    service = true
    command = [{PY_TOML}, "-m", "http.server", "0"]
    cwd = "web"
    depends_on = ["gen"]
    restart_on = ["vite.config.ts", "//shared/*.json"]
    restart_on_deps = true
""")


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "web").mkdir(exist_ok=True)
    path = tmp_path / "build.toml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


def error_of(tmp_path: Path, body: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, body))
    return info.value


def plan(path: Path, *requested: str, services: bool = False) -> list[str]:
    manifest = load_manifest(path)
    return list(
        build_plan(
            manifest,
            mode="development",
            target=get_target(host_triple()),
            requested=requested,
            environ=os.environ,
            services=services,
        ).steps
    )


def test_a_service_step_loads_with_its_restart_rules(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, GEN + SERVE))
    serve = manifest.steps["serve"]
    assert serve.service and serve.restart_on_deps
    assert serve.restart_on == ("vite.config.ts", "//shared/*.json")
    assert not manifest.steps["gen"].service
    full = build_plan(
        manifest,
        mode="development",
        target=get_target(host_triple()),
        environ=os.environ,
        services=True,
    )
    # version 2: relative to the step's cwd, `//` from the root
    assert full.steps["serve"].restart_on == ("web/vite.config.ts", "shared/*.json")
    assert full.steps["serve"].service and full.steps["serve"].restart_on_deps


def test_a_build_leaves_services_out_and_refuses_to_start_one(tmp_path: Path) -> None:
    path = write(tmp_path, GEN + SERVE)
    assert plan(path) == ["gen"]
    assert plan(path, services=True) == ["gen", "serve"]
    assert plan(path, "serve", services=True) == ["gen", "serve"]
    with pytest.raises(UserError) as info:
        plan(path, "serve")
    text = info.value.render()
    assert "step 'serve' is a service (service = true)" in text
    assert "buildlib watch serve" in text


def test_buildlib_build_of_a_service_says_to_watch_it(tmp_path: Path) -> None:
    write(tmp_path, GEN + SERVE)
    (tmp_path / "src").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole = subprocess.run(
        [sys.executable, "-m", "buildlib", "build", "--plain"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "serve" not in whole.stdout  # never started by a build
    one = subprocess.run(
        [sys.executable, "-m", "buildlib", "build", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 1
    assert "is a service" in one.stderr and "Traceback" not in one.stderr


@pytest.mark.parametrize(
    ("body", "step", "key", "fix"),
    [
        (
            GEN.replace('outputs = ["out"]', 'outputs = ["out"]\nrestart_on = ["x"]'),
            "gen",
            "restart_on",
            "add service = true",
        ),
        (
            GEN.replace('outputs = ["out"]', 'outputs = ["out"]\nrestart_on_deps = true'),
            "gen",
            "restart_on_deps",
            "add service = true",
        ),
        (SERVE.replace("service = true", 'service = "yes"'), "serve", "service", "service = true"),
        (
            SERVE.replace("restart_on_deps = true", 'inputs = ["src/**"]'),
            "serve",
            "inputs",
            "rename it restart_on",
        ),
        (
            SERVE.replace("restart_on_deps = true", "retries = 2"),
            "serve",
            "retries",
            "remove retries",
        ),
        (
            SERVE.replace("restart_on_deps = true", "cache = false"),
            "serve",
            "cache",
            "remove cache",
        ),
        (
            SERVE.replace(
                'restart_on = ["vite.config.ts", "//shared/*.json"]',
                'restart_on = "vite.config.ts"',
            ),
            "serve",
            "restart_on",
            "restart_on = [",
        ),
        (
            SERVE.replace('"vite.config.ts", ', '"/etc/passwd", '),
            "serve",
            "restart_on",
            "relative to the workspace root",
        ),
        (
            SERVE.replace("restart_on_deps = true", "restart_on_deps = 1"),
            "serve",
            "restart_on_deps",
            "restart_on_deps = true",
        ),
    ],
)
def test_service_keys_are_checked(tmp_path: Path, body: str, step: str, key: str, fix: str) -> None:
    other = GEN if step == "serve" else ""
    error = error_of(tmp_path, other + body)
    assert (error.step, error.key) == (step, key), error.render()
    assert str(tmp_path / "build.toml") in error.render()
    assert fix in error.fix, error.render()


def test_nothing_may_depend_on_a_service(tmp_path: Path) -> None:
    after = textwrap.dedent(f"""
        [[step]]
        name = "after"
        command = [{PY_TOML}, "-c", "pass"]
        depends_on = ["serve"]
    """)
    error = error_of(tmp_path, GEN + SERVE + after)
    assert (error.step, error.key) == ("after", "depends_on")
    assert "depends on service step 'serve'" in error.message
    assert "remove 'serve' from depends_on" in error.fix


def test_an_artifact_cannot_name_a_service(tmp_path: Path) -> None:
    artifact = '\n[[artifact]]\npath = "out/x"\nstep = "serve"\n'
    error = error_of(tmp_path, GEN + SERVE + artifact)
    assert error.key == "artifact.step"
    assert "service step 'serve'" in error.message and "build step" in error.fix
