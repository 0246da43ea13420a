"""Sessions for this workspace: the app's, generated from build.toml by buildlib, and this
repository's own (tests, lint, bench), defined here because they belong to buildlib's
development, not to every workspace buildlib drives.

    nox -l                                    # every session, one line each
    nox -s "build-3.12(mode='production')"    # the whole graph, in parallel
    nox -s verify                             # check the artifacts
    nox -s tests                              # the test suite
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # buildlib is imported from the source tree to define sessions

from buildlib.integrations.nox_sessions import ENGINE_PYTHON, register  # noqa: E402

nox.options.default_venv_backend = "none"

register(nox, ROOT / "build.toml")
nox.options.sessions = ["build-3.12(mode='development')"]


@nox.session(python=ENGINE_PYTHON, venv_backend="virtualenv", reuse_venv=True)
def tests(session: nox.Session) -> None:
    """Run the test suite in parallel (pytest -n auto)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", "--dist", "loadgroup", *session.posargs)


@nox.session(python=ENGINE_PYTHON, venv_backend="virtualenv", reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy --strict on buildlib and the tests."""
    session.install("-e", ".[test,lint]")
    paths = ["buildlib", "tests", "benchmarks", "noxfile.py", "setup.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy", "--strict", "buildlib", "tests")


@nox.session(python=ENGINE_PYTHON, venv_backend="virtualenv", reuse_venv=True)
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against make, nox -j, turbo, git, sha256sum, cp, bazel-remote."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(venv_backend="none")
def audit(session: nox.Session) -> None:
    """Run steps under strace: undeclared inputs, outputs, tools (-- STEP... --twice --json)."""
    from buildlib.integrations.nox_sessions import (
        INTERRUPT_TIMEOUT,
        TERMINATE_TIMEOUT,
        engine_python,
    )

    session.run(str(engine_python(ROOT)), "-m", "buildlib", "audit", *session.posargs,
                external=True, interrupt_timeout=INTERRUPT_TIMEOUT,
                terminate_timeout=TERMINATE_TIMEOUT)
