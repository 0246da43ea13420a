"""Verification: check every declared artifact after a build and record what was produced.

Called by the `verify` session after the build (pipeline: ... -> execute -> verify ->
report). Every artifact is checked and every problem collected, never just the first,
so one run lists all that is wrong; each problem names the artifact, what is wrong and
the step that makes it. Checking reads the workspace and runs the artifacts' `run`
commands; its one write is the artifact manifest (`write_manifest`), a JSON record of
each artifact's size and sha256 under `.buildlib/artifacts/`.

What each kind checks is documented in docs/verify.md.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import html.parser
import json
import os
import shlex
import signal
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from buildlib.core.atomicfile import write_text_atomic
from buildlib.core.bounded import run_bounded
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.verify.binfmt import NotExecutable, describe_mismatch, read_binary_info
from buildlib.workspace.artifacts import Artifact, ArtifactKind
from buildlib.workspace.targets import Target

SCHEMA_VERSION = 1
RUN_TIMEOUT = 30.0  # seconds a `run` command may take; a `--version` that hangs is a failure
_POSIX = os.name == "posix"

StepHint = Callable[[str], str]
"""Turns a step name into the advice that ends a problem ("run step 'x' (nox -s ...)")."""


def default_step_hint(step: str) -> str:
    return f"run step '{step}'"


def nox_step_hint(mode: str, triple: str) -> StepHint:
    """A hint naming the nox session that runs the step for this mode and target."""

    def hint(step: str) -> str:
        session = f"{step}(mode={mode!r}, target={triple!r})"
        # Double quotes, as nox's docs write parametrized sessions; escape what a POSIX
        # shell would expand inside them.
        quoted = "".join("\\" + c if c in '\\"$`' else c for c in session)
        return f"run step '{step}' (nox -s \"{quoted}\")"

    return hint


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing could be checked here (a `command` of a cross target)


@record
class ArtifactCheck:
    """One artifact's verdict. `problems` are full messages (artifact, what, step hint);
    `notes` say what was checked or skipped."""

    artifact: Artifact
    status: Status
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    size: int | None  # bytes, files only
    sha256: str | None  # files only


@record
class VerifyReport:
    mode: str
    target: str
    host: str
    created_at: str  # ISO 8601, UTC
    checks: tuple[ArtifactCheck, ...]
    manifest_path: Path | None = None  # set once the artifact manifest is written

    @property
    def ok(self) -> bool:
        return all(check.status is not Status.FAILED for check in self.checks)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(p for check in self.checks for p in check.problems)


@record
class _Context:
    root: Path
    target: Target
    host: Target
    timeout: float

    @property
    def on_host(self) -> bool:
        return self.target.triple == self.host.triple


class _Collector:
    """Gathers one artifact's problems and notes; checks add to it and carry on."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.skipped = False

    def problem(self, what: str) -> None:
        self.problems.append(what)

    def note(self, text: str) -> None:
        self.notes.append(text)


def verify_artifacts(
    artifacts: Iterable[Artifact],
    *,
    root: Path,
    target: Target,
    host: Target,
    mode: str,
    step_hint: StepHint = default_step_hint,
    timeout: float = RUN_TIMEOUT,
) -> VerifyReport:
    """Check every artifact, then write the artifact manifest; see `check_artifacts`."""
    report = check_artifacts(
        artifacts,
        root=root,
        target=target,
        host=host,
        mode=mode,
        step_hint=step_hint,
        timeout=timeout,
    )
    return write_manifest(report, root=root)


def check_artifacts(
    artifacts: Iterable[Artifact],
    *,
    root: Path,
    target: Target,
    host: Target,
    mode: str,
    step_hint: StepHint = default_step_hint,
    timeout: float = RUN_TIMEOUT,
) -> VerifyReport:
    """Check every artifact and collect every problem; writes nothing.

    `run` commands run only when `target` is `host`; a command that does not finish
    within `timeout` seconds is killed (with its process group) and reported.
    """
    context = _Context(root=root, target=target, host=host, timeout=timeout)
    created_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    checks = tuple(_check_one(artifact, context, step_hint) for artifact in artifacts)
    return VerifyReport(
        mode=mode, target=target.triple, host=host.triple, created_at=created_at, checks=checks
    )


def _check_one(artifact: Artifact, context: _Context, step_hint: StepHint) -> ArtifactCheck:
    collector = _Collector()
    try:
        _CHECKERS[artifact.kind](artifact, context, collector)
        size, digest = _measure(artifact.path)
    except OSError as exc:  # unreadable file, permission denied: a problem, not a crash
        collector.problem(f"cannot be checked: {exc}")
        size, digest = None, None
    problems = tuple(
        f"{artifact.rel}: {what} — {step_hint(artifact.step)}" for what in collector.problems
    )
    status = Status.FAILED if problems else Status.SKIPPED if collector.skipped else Status.OK
    return ArtifactCheck(
        artifact=artifact,
        status=status,
        problems=problems,
        notes=tuple(collector.notes),
        size=size,
        sha256=digest,
    )


def _measure(path: Path) -> tuple[int | None, str | None]:
    if not path.is_file():
        return None, None
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return path.stat().st_size, digest


def _check_exists(artifact: Artifact, _context: _Context, out: _Collector) -> bool:
    # A dangling symlink is missing: nothing usable is there.
    if not artifact.path.exists():
        out.problem("missing")
        return False
    return True


def _check_executable(artifact: Artifact, context: _Context, out: _Collector) -> None:
    if not _check_exists(artifact, context, out):
        return
    if not artifact.path.is_file():
        out.problem("is a directory, not an executable file")
        return
    healthy = True
    # Windows has no exec bit, so a PE file's mode says nothing.
    if _POSIX and context.target.binary_format != "pe":
        mode = artifact.path.stat().st_mode
        if not mode & 0o111:
            out.problem(f"is not executable (mode {mode & 0o777:o}, no exec bit)")
            healthy = False
    info = read_binary_info(artifact.path)
    if isinstance(info, NotExecutable):
        out.problem(info.reason)
        healthy = False
    else:
        mismatch = describe_mismatch(info, context.target)
        if mismatch is not None:
            out.problem(mismatch)
            healthy = False
        else:
            out.note(info.describe())
    if not artifact.run:
        return
    if not context.on_host:
        out.note("run skipped: cross target")
    elif healthy:  # running a file already known to be wrong only repeats the problem
        _check_run(artifact, context, out)


def _check_html(artifact: Artifact, context: _Context, out: _Collector) -> None:
    if not _check_exists(artifact, context, out):
        return
    if not artifact.path.is_file():
        out.problem("is a directory, not an HTML file")
        return
    parser = _AssetCollector()
    parser.feed(artifact.path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    base = artifact.path.parent
    for tag, reference in parser.references:
        if not reference.strip():
            out.problem(f"has an empty reference ({tag})")
            continue
        asset = _local_asset(base, reference)
        if asset is not None and not asset.is_file():
            out.problem(f"references missing {_display(asset, context.root)} ({tag})")
    out.note(f"{len(parser.references)} script/stylesheet references checked")


def _check_command(artifact: Artifact, context: _Context, out: _Collector) -> None:
    if not context.on_host:
        out.note("skipped: cross target")
        out.skipped = True
        return
    if not _check_exists(artifact, context, out):
        return
    if not artifact.run:
        out.problem("kind 'command' declares no `run` command")
        return
    _check_run(artifact, context, out)


_CHECKERS: dict[ArtifactKind, Callable[[Artifact, _Context, _Collector], object]] = {
    ArtifactKind.EXISTS: _check_exists,
    ArtifactKind.EXECUTABLE: _check_executable,
    ArtifactKind.HTML: _check_html,
    ArtifactKind.COMMAND: _check_command,
}


class _AssetCollector(html.parser.HTMLParser):
    """The `src` of every <script> and the `href` of every stylesheet/modulepreload <link>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[tuple[str, str]] = []  # (tag as written, reference)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" in values:
            self.references.append((f'<script src="{values["src"]}">', values["src"]))
        elif tag == "link" and "href" in values:
            rels = values.get("rel", "").lower().split()
            for rel in ("stylesheet", "modulepreload"):
                if rel in rels:
                    self.references.append(
                        (f'<link rel="{rel}" href="{values["href"]}">', values["href"])
                    )
                    break


def _local_asset(base: Path, reference: str) -> Path | None:
    """The file `reference` names, relative to the HTML file's directory, or None when it
    is not a local file (has a scheme such as http: or data:, or is protocol-relative //).

    A leading "/" is also taken relative to the HTML file's directory: a bundler's
    output directory is served as the site root (Vite's `base: "/"`).
    """
    parts = urllib.parse.urlsplit(reference.strip())
    if parts.scheme or parts.netloc or reference.strip().startswith("//"):
        return None
    path = urllib.parse.unquote(parts.path).lstrip("/")
    return Path(os.path.normpath(base / path))


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _command_text(artifact: Artifact) -> str:
    # The absolute artifact path reads better as the path the manifest declared.
    absolute = str(artifact.path)
    return shlex.join(artifact.rel if arg == absolute else arg for arg in artifact.run)


def _check_run(artifact: Artifact, context: _Context, out: _Collector) -> None:
    command = _command_text(artifact)
    result = _run(artifact.run, cwd=context.root, timeout=context.timeout)
    if isinstance(result, str):
        out.problem(f"`{command}` {result}")
        return
    code, stdout, stderr = result
    if code != 0:
        out.problem(f"`{command}` {_describe_exit(code)}{_last_line(stderr or stdout)}")
    elif artifact.expect and artifact.expect not in stdout:
        lines = [line.strip() for line in stdout.strip().splitlines()]
        near = _nearest_line(lines, artifact.expect)
        if near is not None:  # "mode: test" where "mode: production" was expected
            shown, more = repr(_shorten(near, 120)), ""
        else:
            shown = repr(_shorten(lines[0], 120)) if lines else "nothing"
            more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
        out.problem(
            f"`{command}` printed {shown}{more}, expected it to contain {artifact.expect!r}"
        )
    else:
        out.note(f"ran `{command}`")


def _nearest_line(lines: Sequence[str], expect: str) -> str | None:
    """The output line that says what `expect` is about, with another value: the line that
    starts with the expectation's first word ("mode:" of "mode: production"), so the
    problem names what the artifact is (another mode, another version) rather than line 1."""
    words = expect.split()
    if len(words) < 2:
        return None
    return next((line for line in lines if line.split()[:1] == words[:1]), None)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f": {_shorten(lines[-1])}" if lines else ""


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run(argv: Sequence[str], *, cwd: Path, timeout: float) -> tuple[int, str, str] | str:
    """(exit code, stdout, stderr) of `argv`, or what went wrong starting or waiting for it
    (`process.run_bounded`: a timeout kills anything it started too)."""
    try:
        done = run_bounded(argv, cwd=cwd, timeout=timeout)
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    if done.returncode is None:
        return f"did not finish within {timeout:g} s (killed)"
    return done.returncode, done.stdout, done.stderr


def manifest_path(root: Path, mode: str, triple: str) -> Path:
    """Where the artifact manifest of `mode` and `triple` is written."""
    return BuildDir(root).artifacts(mode, triple)


def manifest_data(report: VerifyReport) -> dict[str, object]:
    """The artifact manifest as JSON-ready data (format in docs/verify.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": report.mode,
        "target": report.target,
        "host": report.host,
        "created_at": report.created_at,
        "ok": report.ok,
        "artifacts": [
            {
                "path": check.artifact.rel,
                "size": check.size,
                "sha256": check.sha256,
                "step": check.artifact.step,
                "kind": check.artifact.kind.value,
                "ok": not check.problems,
                "status": check.status.value,
                "problems": list(check.problems),
                "notes": list(check.notes),
            }
            for check in report.checks
        ],
    }


def write_manifest(report: VerifyReport, *, root: Path) -> VerifyReport:
    """Write the artifact manifest atomically; returns the report with `manifest_path` set."""
    BuildDir(root).own()  # verify runs without the workspace lock
    path = manifest_path(root, report.mode, report.target)
    text = json.dumps(manifest_data(report), indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(path, text, durable=True)
    return VerifyReport(
        mode=report.mode,
        target=report.target,
        host=report.host,
        created_at=report.created_at,
        checks=report.checks,
        manifest_path=path,
    )


_STATUS_LABELS = {Status.OK: "OK  ", Status.FAILED: "FAIL", Status.SKIPPED: "SKIP"}


def render_report(report: VerifyReport) -> str:
    """Human text: one line per artifact, then every problem, then the manifest path."""
    failed = sum(1 for check in report.checks if check.status is Status.FAILED)
    lines = [
        f"verify {report.mode} {report.target}: {len(report.checks)} artifacts, {failed} failed"
    ]
    for check in report.checks:
        notes = f"  ({'; '.join(check.notes)})" if check.notes else ""
        lines.append(
            f"  {_STATUS_LABELS[check.status]} {check.artifact.rel} "
            f"[{check.artifact.kind.value}]{notes}"
        )
    if report.problems:
        count = len(report.problems)
        lines.append(f"{count} problem{'' if count == 1 else 's'}:")
        lines.extend(f"  - {problem}" for problem in report.problems)
    if report.manifest_path is not None:
        lines.append(f"artifact manifest: {report.manifest_path}")
    return "\n".join(lines)
