"""Sessions for this workspace: the app's, generated from build.toml by buildlib, and this
repository's own (tests, lint, bench, audit).

    nox -s build           # the default mode, every step (nox -s build-3.12: every mode)
    nox -s verify          # check what the last build made
    nox -s rust-build      # one step and what it needs (-- --mode M --target T)
    nox -t variants -l     # every step x mode x target: "rust-build(mode=..., target=...)"
    nox -s tests           # the whole test suite (installs the tools it drives first)
    nox -s dev             # rebuild on change, Vite dev server running (-- STEP... --poll)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # buildlib is imported from the source tree to define sessions

from buildlib.core.errors import UserError  # noqa: E402
from buildlib.integrations.nox_sessions import (  # noqa: E402
    python_environment,
    register,
    run_engine,
    session_error,
)

nox.options.default_venv_backend = "none"

register(nox, ROOT / "build.toml")
nox.options.sessions = ["build"]

ALLOW_MISSING_TOOLS = "--allow-missing-tools"


def _environment(session: nox.Session, name: str, extras: str) -> Path | None:
    """`.nox/<name>` on Python 3.12 with buildlib[extras]; None after a clear session error."""
    try:
        return python_environment(ROOT, name, extras=extras)
    except UserError as exc:
        session_error(session, exc)
        return None


def _provision(session: nox.Session, python: Path) -> dict[str, str]:
    """Install the tools the tests drive (ci/install-tools.sh); the environment for pytest.

    What cannot be installed ends the session, naming the command that installs it,
    unless `-- --allow-missing-tools` was given (then those tests are skipped)."""
    env = {"PYTHON": str(python)}
    done = subprocess.run(
        ["bash", str(ROOT / "ci" / "install-tools.sh")],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    extra = {"BAZEL_REMOTE": found["BAZEL_REMOTE"]} if found.get("BAZEL_REMOTE") else {}
    if done.returncode != 0:
        if ALLOW_MISSING_TOOLS in session.posargs:
            session.warn(
                "some tools are missing (listed above): their tests are skipped "
                f"({ALLOW_MISSING_TOOLS})"
            )
        else:
            session.error(
                "the tools listed above are missing, so some tests could not run: "
                "install them with the commands shown, or run "
                f"`nox -s tests -- {ALLOW_MISSING_TOOLS}` to skip those tests"
            )
    return extra


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole test suite (pytest -n auto); installs the tools it drives first."""
    python = _environment(session, "tests", "test")
    if python is None:
        return
    env = _provision(session, python)
    # A skip fails the run (tests/no_skips.py) unless --allow-missing-tools.
    session.run(
        str(python),
        "-m",
        "pytest",
        "-p",
        "tests.no_skips",
        "-n",
        "auto",
        "--dist",
        "loadgroup",
        *session.posargs,
        external=True,
        env=env,
    )


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy --strict on buildlib and the tests."""
    python = _environment(session, "lint", "test,lint")
    if python is None:
        return
    tools = python.parent
    paths = ["buildlib", "tests", "benchmarks", "noxfile.py", "setup.py"]
    session.run(str(tools / "ruff"), "check", *paths, external=True)
    session.run(str(tools / "ruff"), "format", "--check", *paths, external=True)
    session.run(str(tools / "mypy"), "--strict", "buildlib", "tests", external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against make, nox -j, turbo, git, sha256sum, cp, bazel-remote."""
    python = _environment(session, "bench", "test")
    if python is None:
        return
    session.run(str(python), "benchmarks/run.py", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def dev(session: nox.Session) -> None:
    """Development loop: rebuild on change, Vite dev server kept running (docs/watch.md)."""
    # Ctrl-C reaches watch from the terminal: it stops every step and service, exits 130.
    run_engine(session, ROOT, "watch", "--mode", "development")


@nox.session(venv_backend="none")
def audit(session: nox.Session) -> None:
    """Run steps under strace: undeclared inputs, outputs, tools (-- STEP... --twice --json)."""
    run_engine(session, ROOT, "audit")
