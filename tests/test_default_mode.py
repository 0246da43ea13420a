"""One default mode everywhere (issue 13 item 2): a build without --mode builds the
manifest's default mode; `verify` and `metrics` without --mode look at the mode and
target built last (recorded in .buildlib/last_build.json), and say so."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from helpers import PY_TOML, run_buildlib, write_manifest

from buildlib.workspace.targets import host_triple

HOST = host_triple()

STEPS = textwrap.dedent(f"""
    [[step]]
    name = "make"
    command = [{PY_TOML}, "-c", "import os, pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); (p / (os.environ['NODE_ENV'] + '.txt')).write_text('x')"]
    outputs = ["out/{{mode}}.txt"]

    [[artifact]]
    path = "out/{{mode}}.txt"
    step = "make"
    kind = "exists"
""")


def test_verify_and_metrics_follow_the_last_build(tmp_path: Path) -> None:
    write_manifest(tmp_path, STEPS, extra='[workspace]\ndefault_mode = "development"\n')
    built = run_buildlib(tmp_path, "build", "--plain", "--mode", "production")
    assert built.returncode == 0, built.stdout + built.stderr
    assert (
        json.loads((tmp_path / ".buildlib" / "last_build.json").read_text())["mode"] == "production"
    )
    verify = run_buildlib(tmp_path, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"verify production {HOST}" in verify.stdout
    assert verify.stderr == (
        f"verify (production, {HOST}: the last build's; --mode M --target T for another)\n"
    )
    metrics = run_buildlib(tmp_path, "metrics")
    assert metrics.returncode == 0
    assert f"step timings (production {HOST})" in metrics.stdout
    assert "make" in metrics.stdout

    # The bare build builds the default mode, and from then on that is what they look at.
    assert run_buildlib(tmp_path, "build", "--plain").returncode == 0
    verify = run_buildlib(tmp_path, "verify")
    assert f"verify development {HOST}" in verify.stdout, verify.stdout + verify.stderr
    # Asked for, another mode it is; $BUILDLIB_MODE counts as asking.
    assert (
        f"verify production {HOST}"
        in run_buildlib(tmp_path, "verify", "--mode", "production").stdout
    )
    assert (
        f"verify production {HOST}"
        in run_buildlib(tmp_path, "verify", BUILDLIB_MODE="production").stdout
    )
    assert run_buildlib(tmp_path, "verify", "--mode", "production").stderr == ""


def test_before_any_build_they_take_the_default_mode_and_say_what_is_missing(
    tmp_path: Path,
) -> None:
    write_manifest(tmp_path, STEPS, extra='[workspace]\ndefault_mode = "test"\n')
    metrics = run_buildlib(tmp_path, "metrics")
    assert metrics.returncode == 0
    assert metrics.stdout.startswith(f"no build of test {HOST} is recorded in ")
    verify = run_buildlib(tmp_path, "verify")
    assert verify.returncode == 1
    assert "out/test.txt" in verify.stdout and "make" in verify.stdout
