"""Generate the nox sessions from the manifest, so the noxfile stays a few lines.

Every engine session runs `python -m buildlib` in one shared Python 3.12
environment (`.nox/_engine-py3.12`), created once and refreshed only when what the
install builds changes (`INSTALL_INPUTS`): sessions that only drive external tools
create no virtualenv of their own (`venv_backend="none"`). Options after `--` reach
the engine.

What `nox -l` lists fits one screen: `build` (the default mode), `build-3.12(mode=M)`
for each mode, the utility sessions, and one session per step (`nox -s rust-build`:
that step and its dependencies, host target, default mode; `-- --mode M --target T`
picks others). The step sessions parametrized by mode and target,
`rust-build(mode='production', target='aarch64-apple-darwin')` (9 steps x 3 modes x 6
targets here), are defined only when asked for: when a session named on nox's command
line (`-s`, `--session(s)`, `-e`, `$NOXSESSION`) starts with `<step>(`, or when
sessions are selected by a variant tag or by keyword (`nox -t variants -l` lists them
all, `-t host` those for this machine, `-t cross` the others). Step sessions carry the
tag `step` (`nox -t step -l`). They then take the step's
name (nox keeps one session per name), so `nox -s rust-build` means the plain session
unless the same command line also names a variant of it. Defining all of them for
every `nox` call would list 162 sessions and make `nox -s rust-build` run all 18 of
its variants.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.workspace.manifest import Manifest, load_manifest
from buildlib.workspace.targets import TARGETS, host_triple

ENGINE_PYTHON = "3.12"
# What the editable install of the engine environment depends on: a change reinstalls.
INSTALL_INPUTS = ("pyproject.toml", "setup.py", "buildlib/incremental/_speedups.c")
MODES_FALLBACK = ("development", "production", "test")
# nox sends SIGINT to the engine on Ctrl-C; give it time to stop its steps' process groups.
INTERRUPT_TIMEOUT = 30.0
TERMINATE_TIMEOUT = 10.0
VARIANT_TAGS = ("variants", "host", "cross")

# Sessions that only run the engine: (name, engine arguments, one-line description).
ENGINE_SESSIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "verify",
        ("verify",),
        "Check the artifacts of the last build's mode and target (-- --mode M --target T).",
    ),
    (
        "clean",
        ("clean",),
        "Remove declared build outputs of every mode (-- GROUP..., --cache, --dry-run).",
    ),
    (
        "prune",
        ("prune",),
        "Shrink the local cache to -- --max-size SIZE (least recently used first).",
    ),
    (
        "metrics",
        ("metrics",),
        "Per-step last/median/slowest times of the last build's mode (-- --mode M --last N).",
    ),
    ("matrix", ("matrix",), "Print the CI matrix (mode x target) as JSON for GitHub Actions."),
)


def run_engine(session: Any, root: Path, *args: str) -> None:
    """`python -m buildlib ARGS -- POSARGS` in the shared engine environment, with the time
    a Ctrl-C needs to stop the steps' process groups; a clear session error (no traceback)
    when the environment cannot be made."""
    try:
        python = engine_python(root)
    except UserError as exc:
        session_error(session, exc)
        return
    session.run(
        str(python),
        "-m",
        "buildlib",
        *args,
        *session.posargs,
        external=True,
        interrupt_timeout=INTERRUPT_TIMEOUT,
        terminate_timeout=TERMINATE_TIMEOUT,
    )


def _engine_session(engine: Callable[..., None], args: tuple[str, ...]) -> Callable[[Any], None]:
    def session_func(session: Any) -> None:
        engine(session, *args)

    return session_func


def find_python(version: str = ENGINE_PYTHON) -> list[str]:
    """The argv prefix that starts Python `version`, or a UserError saying how to get it."""
    found = shutil.which(f"python{version}")
    if found is not None and _runs(found):
        return [found]
    launcher = shutil.which("py")  # Windows' launcher picks the version itself
    if launcher is not None and _runs(launcher, f"-{version}"):
        return [launcher, f"-{version}"]
    if shutil.which("pyenv"):
        fix = f"pyenv install {version} (this repository's .python-version then finds it)"
    elif shutil.which("apt-get"):
        fix = f"apt-get install python{version} python{version}-venv"
    elif shutil.which("brew"):
        fix = f"brew install python@{version}"
    else:
        fix = f"install Python {version} from https://www.python.org/downloads/"
    raise UserError(f"Python {version} is not on PATH: buildlib's sessions run on it", fix=fix)


def _runs(*argv: str) -> bool:
    """pyenv's shim for a version that is not installed exists but fails: try it."""
    try:
        return (
            subprocess.run(
                [*argv, "-c", ""], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


SOURCE = Path(__file__).resolve().parents[2]  # the buildlib checkout these sessions come from


def python_environment(
    root: Path, name: str, *, extras: str = "", version: str = ENGINE_PYTHON, source: Path = SOURCE
) -> Path:
    """`root/.nox/<name>`'s interpreter, created with Python `version` and buildlib
    (`source`, editable, with `extras`) installed in it, refreshed only when
    `INSTALL_INPUTS` change. Raises UserError (never a traceback) when Python `version`
    is missing or the install fails.

    Two sessions starting at once (two terminals, parallel CI steps, pytest-xdist) take
    turns under a lock beside the environment; an environment left half made (a `venv`
    interrupted before pip was in it) is made again rather than failing forever."""
    venv = root / ".nox" / name
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    stamp = venv / "buildlib.stamp"
    digest = hashlib.sha256(f"[{extras}]\0".encode() if extras else b"")
    for input_name in INSTALL_INPUTS:  # an editable install still compiles the C module once
        path = source / input_name
        digest.update(input_name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-"))
    wanted = digest.hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    with _turn(venv.with_name(f"{name}.lock")):
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return python  # another session made it while this one waited
        _make_environment(venv, python, version=version, extras=extras, source=source)
        stamp.write_text(wanted)
    return python


@contextlib.contextmanager
def _turn(lock: Path) -> Iterator[None]:
    """Hold `lock` (an flock: released by the kernel if this process dies)."""
    if sys.platform == "win32":  # no flock; sessions there are not serialised
        yield
        return
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _has_pip(python: Path) -> bool:
    done = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False)
    return done.returncode == 0


def _make_environment(venv: Path, python: Path, *, version: str, extras: str, source: Path) -> None:
    if python.exists() and not _has_pip(python):
        shutil.rmtree(venv)  # half made: made again below
    if not python.exists():
        _check(
            [*find_python(version), "-m", "venv", str(venv)],
            f"creating the environment {venv}",
            fix=f"remove {venv} and run again; on "
            f"Debian/Ubuntu the venv module is a package: apt-get install "
            f"python{version}-venv",
        )
    target = f"{source}[{extras}]" if extras else str(source)
    _check(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            target,
        ],
        f"installing buildlib into {venv}",
        fix="check the network (pip reaches PyPI) and the messages above; remove "
        f"{venv} to start over",
    )
    # The engine's bytecode, written now: with PYTHONDONTWRITEBYTECODE set (as on many
    # machines and images) every build would otherwise compile buildlib anew (~50 ms).
    _check(
        [str(python), "-m", "compileall", "-q", str(source / "buildlib")],
        "compiling buildlib",
        fix=f"remove {venv} and run again",
    )


def engine_python(
    root: Path, version: str = ENGINE_PYTHON, environ: Mapping[str, str] | None = None
) -> Path:
    """The shared engine environment's interpreter, created or refreshed when needed;
    `$BUILDLIB_ENGINE_PYTHON`, when set, is used as it is (an interpreter that already
    has buildlib installed)."""
    given = (os.environ if environ is None else environ).get("BUILDLIB_ENGINE_PYTHON")
    if given:
        if not os.access(given, os.X_OK):
            raise UserError(
                f"BUILDLIB_ENGINE_PYTHON={given} is not an executable file",
                fix="point it at a Python that has buildlib installed, or unset "
                "it to use .nox/_engine-py3.12",
            )
        return Path(given)
    return python_environment(root, f"_engine-py{version}", version=version)


def _check(argv: Sequence[str], doing: str, *, fix: str) -> None:
    try:
        code = subprocess.run(list(argv), check=False).returncode
    except OSError as exc:
        raise UserError(f"{doing} failed: {exc}", fix=fix) from None
    if code != 0:
        raise UserError(f"{doing} failed (exit {code}): {' '.join(argv)}", fix=fix)


def session_error(session: Any, error: UserError) -> None:
    """End `session` with the error's one message: nox prints it, no traceback, exit 1."""
    session.error(error.render())


# -- which sessions the command line asks for -------------------------------------------------

_FLAGS = {
    "-s": "sessions",
    "-e": "sessions",
    "--session": "sessions",
    "--sessions": "sessions",
    "-t": "tags",
    "--tags": "tags",
    "-k": "keywords",
    "--keywords": "keywords",
}


@record
class Requested:
    """What nox's command line selects sessions by: names, tags, a keyword expression."""

    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    keywords: bool = False

    def wants_variants_of(self, step: str) -> bool:
        """Whether `step(mode=..., target=...)` must exist for this run: named, or selected
        by a variant tag, or by keywords (which must see every session to choose)."""
        return (
            self.keywords
            or any(t in VARIANT_TAGS for t in self.tags)
            or any(n.startswith(f"{step}(") for n in self.names)
        )


def requested_sessions(argv: Sequence[str], environ: Mapping[str, str]) -> Requested:
    """Read nox's own command line (`sys.argv`): `-s NAME...`, `--session=NAME`, `-sNAME`,
    `-e`, `$NOXSESSION` (comma-separated), `-t TAG...`, `-k EXPR`. Everything after `--`
    belongs to the sessions, not to nox."""
    found: dict[str, list[str]] = {"sessions": [], "tags": [], "keywords": []}
    current: str | None = None
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in _FLAGS:
            current = _FLAGS[arg]
            continue
        if arg.startswith("-"):
            current = None
            flag, equals, value = arg.partition("=")
            if equals and flag in _FLAGS:
                found[_FLAGS[flag]].append(value)
            elif not arg.startswith("--") and arg[:2] in _FLAGS and len(arg) > 2:
                found[_FLAGS[arg[:2]]].append(arg[2:])
            continue
        if current is not None:
            found[current].append(arg)
            if current == "keywords":  # -k takes one expression
                current = None
    names = found["sessions"]
    if not names and environ.get("NOXSESSION"):
        names = [n.strip() for n in environ["NOXSESSION"].split(",") if n.strip()]
    return Requested(
        names=tuple(names), tags=tuple(found["tags"]), keywords=bool(found["keywords"])
    )


# -- nox's own noise --------------------------------------------------------------------------


class _NoUvProbeLine(logging.Filter):
    """nox probes for uv before every session, whatever its backend, and logs
    "uv binary not found." when there is none. No session here uses uv, so the line
    says nothing: it is dropped (only that exact line)."""

    def filter(self, rec: logging.LogRecord) -> bool:
        return rec.getMessage() != "uv binary not found."


def quiet_nox() -> None:
    """Drop nox's log lines that are not a problem for these sessions (idempotent)."""
    logger = logging.getLogger("nox")
    if not any(isinstance(f, _NoUvProbeLine) for f in logger.filters):
        logger.addFilter(_NoUvProbeLine())


# -- the sessions ----------------------------------------------------------------------------


def register(
    nox: Any,
    manifest_path: Path,
    *,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Define the sessions on the `nox` module, from the manifest at `manifest_path`.

    `argv` and `environ` (default: nox's command line and environment) decide which
    mode x target step variants exist for this run (see the module's docstring).
    """
    root = manifest_path.parent
    environ = os.environ if environ is None else environ
    wanted = requested_sessions(sys.argv if argv is None else argv, environ)
    quiet_nox()
    try:
        manifest: Manifest | None = load_manifest(manifest_path)
    except UserError as exc:
        manifest, error = None, exc.render()
        print(
            f"nox: the manifest is invalid, only utility sessions are defined:\n{error}",
            file=sys.stderr,
        )
    modes = tuple(manifest.modes) if manifest else MODES_FALLBACK
    default_mode = environ.get("BUILDLIB_MODE") or (
        manifest.default_mode if manifest else MODES_FALLBACK[0]
    )
    host = host_triple()
    targets = (host, *[t for t in TARGETS if t != host])

    def engine(session: Any, *args: str) -> None:
        run_engine(session, root, *args)

    def define(name: str, func: Callable[..., None], doc: str, **kwargs: Any) -> None:
        func.__doc__ = doc
        func.__name__ = name.replace("-", "_")
        nox.session(name=name, venv_backend=kwargs.pop("venv_backend", "none"), **kwargs)(func)

    def build_default(session: Any) -> None:
        engine(session, "build")

    define(
        "build",
        build_default,
        f"Build every step of the default mode ({default_mode}) "
        "for this machine (-- --mode M -j N --explain ...).",
    )

    def build(session: Any, mode: str) -> None:
        engine(session, "build", "--mode", mode)

    # Named for the engine's Python: the engine runs on 3.12 in the shared environment.
    define(
        f"build-{ENGINE_PYTHON}",
        nox.parametrize("mode", modes)(build),
        f"Build one mode; `nox -s build-{ENGINE_PYTHON}` builds all {len(modes)}, one "
        "after another.",
        default=False,
    )

    for name, args, doc in ENGINE_SESSIONS:
        define(name, _engine_session(engine, args), doc, default=False)

    if manifest is None:
        return
    utility = {"build", *(name for name, _, _ in ENGINE_SESSIONS)}
    for step in manifest.steps.values():
        if step.name in utility:  # e.g. a graph step named "verify": `nox -s verify` checks
            continue
        if step.service:  # a build never starts one: `buildlib watch` does (noxfile's `dev`)
            continue
        _define_step(
            nox,
            define,
            engine,
            name=step.name,
            description=step.description,
            modes=modes,
            targets=targets,
            host=host,
            variants=wanted.wants_variants_of(step.name),
        )


def _define_step(
    nox: Any,
    define: Callable[..., None],
    engine: Callable[..., None],
    *,
    name: str,
    description: str,
    modes: Sequence[str],
    targets: Sequence[str],
    host: str,
    variants: bool,
) -> None:
    """`name` alone (the default mode, this machine), or, when `variants` (nox keeps one
    session per name), `name(mode=..., target=...)` for every mode and target."""
    summary = (description or f"Run step {name}").rstrip(".")
    if not variants:

        def run_default(session: Any) -> None:
            engine(session, "build", name)

        define(name, run_default, f"{summary}.", default=False, tags=["step"])
        return

    def run_step(session: Any, mode: str, target: str) -> None:
        engine(session, "build", "--mode", mode, "--target", target, name)

    cases = [(mode, target) for target in targets for mode in modes]
    ids = [f"mode='{mode}', target='{target}'" for mode, target in cases]
    tags = [["step", "variants", "host" if target == host else "cross"] for _, target in cases]
    params = [
        nox.param(mode, target, id=case_id, tags=case_tags)
        for (mode, target), case_id, case_tags in zip(cases, ids, tags, strict=True)
    ]
    define(
        name,
        nox.parametrize(("mode", "target"), params)(run_step),
        f"{summary} for one mode and target (and what it needs).",
        default=False,
    )
