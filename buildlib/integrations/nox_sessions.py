"""Generate the nox sessions from the manifest, so the noxfile stays a few lines.

Every engine session runs `python -m buildlib` in one shared Python 3.12
environment (`.nox/_engine-py3.12`), created once and refreshed only when what the
install builds changes (`INSTALL_INPUTS`): sessions that only drive external tools
create no virtualenv of their own (`venv_backend="none"`). Options after `--` reach
the engine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from buildlib.core.errors import UserError
from buildlib.workspace.manifest import Manifest, load_manifest
from buildlib.workspace.targets import TARGETS, host_triple

ENGINE_PYTHON = "3.12"
# What the editable install of the engine environment depends on: a change reinstalls.
INSTALL_INPUTS = ("pyproject.toml", "setup.py", "buildlib/incremental/_speedups.c")
MODES_FALLBACK = ("development", "production", "test")
# nox sends SIGINT to the engine on Ctrl-C; give it time to stop its steps' process groups.
INTERRUPT_TIMEOUT = 30.0
TERMINATE_TIMEOUT = 10.0


# Sessions that only run the engine: (name, engine arguments, one-line description).
ENGINE_SESSIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("verify", ("verify", "--mode", "production"),
     "Check the artifacts of a build (default production, host; -- --mode M --target T)."),
    ("clean", ("clean",), "Remove declared build outputs (-- GROUP..., --cache, --dry-run)."),
    ("prune", ("prune",), "Shrink the local cache to -- --max-size SIZE (least recently used "
     "first)."),
    ("metrics", ("metrics",), "Per-step last/median/slowest times of recent builds."),
    ("matrix", ("matrix",), "Print the CI matrix (mode x target) as JSON for GitHub Actions."),
)


def _engine_session(engine: Callable[..., None], args: tuple[str, ...]
                    ) -> Callable[[Any], None]:
    def session_func(session: Any) -> None:
        engine(session, *args)

    return session_func


def engine_python(root: Path, version: str = ENGINE_PYTHON) -> Path:
    """The shared engine environment's interpreter, created or refreshed when needed."""
    venv = root / ".nox" / f"_engine-py{version}"
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    stamp = venv / "buildlib.stamp"
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:  # an editable install still compiles the C module once
        path = root / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-"))
    wanted = digest.hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    base = shutil.which(f"python{version}") or shutil.which("py")
    if base is None:
        raise UserError(f"Python {version} not found on PATH",
                        fix=f"install Python {version} (with pyenv: pyenv install {version})")
    args = [base, f"-{version}"] if base.endswith(("py", "py.exe")) else [base]
    if not python.exists():
        subprocess.run([*args, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-e", str(root)], check=True)
    # The engine's bytecode, written now: with PYTHONDONTWRITEBYTECODE set (as on many
    # machines and images) every build would otherwise compile buildlib anew (~50 ms).
    subprocess.run([str(python), "-m", "compileall", "-q", str(root / "buildlib")],
                   check=True)
    stamp.write_text(wanted)
    return python


def register(nox: Any, manifest_path: Path) -> None:
    """Define every session on the `nox` module, from the manifest at `manifest_path`."""
    root = manifest_path.parent
    try:
        manifest: Manifest | None = load_manifest(manifest_path)
    except UserError as exc:
        manifest, error = None, exc.render()
        print(f"nox: the manifest is invalid, only utility sessions are defined:\n{error}",
              file=sys.stderr)
    modes = tuple(manifest.modes) if manifest else MODES_FALLBACK
    host = host_triple()
    targets = (host, *[t for t in TARGETS if t != host])

    def engine(session: Any, *args: str) -> None:
        python = engine_python(root)
        session.run(str(python), "-m", "buildlib", *args, *session.posargs, external=True,
                    interrupt_timeout=INTERRUPT_TIMEOUT, terminate_timeout=TERMINATE_TIMEOUT)

    def define(name: str, func: Callable[..., None], doc: str, **kwargs: Any) -> None:
        func.__doc__ = doc
        func.__name__ = name.replace("-", "_")
        nox.session(name=name, venv_backend=kwargs.pop("venv_backend", "none"), **kwargs)(func)

    def build(session: Any, mode: str) -> None:
        engine(session, "build", "--mode", mode)

    # Named for the engine's Python: the engine runs on 3.12 in the shared environment.
    define(f"build-{ENGINE_PYTHON}", nox.parametrize("mode", modes)(build),
           "Build the whole step graph for a mode (host target; -- -j N --target T ...).")

    for name, args, doc in ENGINE_SESSIONS:
        define(name, _engine_session(engine, args), doc)

    if manifest is None:
        return
    utility = {"build", *(name for name, _, _ in ENGINE_SESSIONS)}
    for step in manifest.steps.values():
        if step.name in utility:  # e.g. a graph step named "verify": `nox -s verify` checks
            continue
        _define_step(nox, define, engine, name=step.name, description=step.description,
                     modes=modes, targets=targets)


def _define_step(nox: Any, define: Callable[..., None], engine: Callable[..., None], *,
                 name: str,
                 description: str, modes: Sequence[str], targets: Sequence[str]) -> None:
    def run_step(session: Any, mode: str, target: str) -> None:
        engine(session, "build", "--mode", mode, "--target", target, name)

    run_step = nox.parametrize("mode", modes)(run_step)
    run_step = nox.parametrize("target", targets)(run_step)
    define(name, run_step, (description or f"Run step {name}") +
           " (after its dependencies).", default=False)
