"""What a person (or CI) sees while a build runs, and the summary at its end.

Three implementations of `events.Reporter`, chosen by `make_reporter`:

- `PlainReporter`: one ASCII line per event for pipes, logs and dumb terminals. It
  never writes an escape byte: everything passes through `strip_ansi` on the way out.
- `RichReporter` (in `live.py`, so only a terminal imports rich): a live
  status area on a terminal (running steps, counts, elapsed time, ETA) with
  finished steps scrolling above it. Events only change state under a lock; one ticker
  thread redraws at most `REFRESH_HZ` times a second, so a chatty step cannot slow the
  build with redraws.
- `GitHubReporter`: plain lines plus GitHub Actions workflow commands: a collapsible
  group per step, `::error` annotations on the failing file and line (`annotations.py`),
  and a markdown summary appended to `$GITHUB_STEP_SUMMARY`.

Quiet when there is nothing to say: a step found up to date prints no line (unless
`--verbose`), and neither does the header until a step does something, so a no-op
build is one line (`nothing to do: 10 steps up to date, 0.1s`). All three end with the
same summary (the steps that did something, wall time, parallelism, cache hit rate,
critical path, where the HTML report is), then each failure explained
(`failures.py`: its first error in full, the end of its log), the last thing on
screen.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from buildlib.core.fmt import format_duration
from buildlib.report.ansi import strip_ansi
from buildlib.report.failures import Failure, display_path, explain_failure, failure_lines
from buildlib.report.summary import (
    render_summary_markdown,
    render_summary_text,
    status_text,
)
from buildlib.run.reporter import BuildStart, Reporter
from buildlib.run.results import BuildRecord, Outcome, StepRecord

MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
MAX_GROUP_BYTES = 1 << 20  # the end of a step's log printed inside its GitHub group


def make_reporter(
    *,
    stream: TextIO,
    environ: Mapping[str, str],
    verbose: bool,
    force_plain: bool = False,
    root: Path | None = None,
    step_dirs: Mapping[str, Path] | None = None,
    deps: Mapping[str, Sequence[str]] | None = None,
) -> Reporter:
    """The reporter for where `stream` goes.

    GitHub Actions (`GITHUB_ACTIONS=true`) gets workflow commands; a terminal gets the
    live display unless `--plain`, `NO_COLOR` or `TERM=dumb` says otherwise; anything
    else (a pipe, a file) gets plain lines. `root` and `step_dirs` (each step's working
    directory) let error locations name files relative to the repository; `deps` (each
    step's dependencies) lets the live ETA follow chains of dependent steps.
    """
    if environ.get("GITHUB_ACTIONS") == "true":
        workspace = root or Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())
        return GitHubReporter(
            stream, environ=environ, verbose=verbose, root=workspace, step_dirs=step_dirs
        )
    plain = force_plain or bool(environ.get("NO_COLOR")) or environ.get("TERM") == "dumb"
    if plain or not _isatty(stream):
        return PlainReporter(stream, verbose=verbose, root=root, step_dirs=step_dirs)
    # rich costs ~40 ms to import: only a live terminal pays for it.
    from rich.console import Console

    from buildlib.report.live import RichReporter

    return RichReporter(
        Console(file=stream, force_terminal=True),
        verbose=verbose,
        root=root,
        step_dirs=step_dirs,
        deps=deps,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream is no terminal
        return False


def header_line(start: BuildStart, root: Path | None) -> str:
    """`build development for x86_64-unknown-linux-gnu: 9 steps, 2 jobs; logs in ...`."""
    count = len(start.steps)
    return (
        f"build {start.mode} for {start.target}: {count} step{'' if count == 1 else 's'}, "
        f"{start.jobs} job{'' if start.jobs == 1 else 's'}; logs in "
        f"{display_path(start.log_dir, root)}"
    )


def report_line(record: BuildRecord, root: Path | None) -> str | None:
    """`report: .buildlib/reports/<id>.html`, for a build that did something."""
    if root is None:
        return None
    from buildlib.core.layout import BuildDir
    from buildlib.report.writers import html_report_path

    path = html_report_path(record, BuildDir(root))
    return None if path is None else f"report: {display_path(path, root)}"


class FailureNotes:
    """The failures of a build, kept as they happen, explained at its end."""

    def __init__(self, root: Path | None, step_dirs: Mapping[str, Path] | None) -> None:
        self.root = root
        self.step_dirs = dict(step_dirs or {})
        self._tails: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def keep(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        if record.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            with self._lock:
                self._tails[record.name] = list(log_tail)

    def explained(self, record: BuildRecord) -> list[Failure]:
        with self._lock:
            tails = dict(self._tails)
        return [
            explain_failure(
                step, tails.get(step.name, ()), root=self.root, cwd=self.step_dirs.get(step.name)
            )
            for step in record.steps
            if step.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)
        ]


# -- plain lines ------------------------------------------------------------------------------


class PlainReporter:
    """ASCII lines, one per event; safe to call from any thread.

    Every write is one whole text under one lock, so lines from concurrent
    `step_output` calls never interleave within a line.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        verbose: bool,
        root: Path | None = None,
        step_dirs: Mapping[str, Path] | None = None,
    ) -> None:
        self.stream = stream
        self.verbose = verbose
        self.root = root
        self._lock = threading.Lock()
        self._width = 0  # the longest step name, for aligned columns
        self._start: BuildStart | None = None
        self._header_due = False  # printed before the first line about a step that acts
        self.failures = FailureNotes(root, step_dirs)

    def _emit(self, text: str) -> None:
        """Write `text` and a newline as is, in one call."""
        with self._lock:
            if self._header_due and self._start is not None:
                self._header_due = False
                text = strip_ansi(header_line(self._start, self.root)) + "\n" + text
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the reader went away; keep building
                pass

    def _write(self, text: str) -> None:
        self._emit(strip_ansi(text))

    def build_started(self, start: BuildStart) -> None:
        self._width = max((len(name) for name in start.steps), default=0)
        self._start = start
        if self.verbose:
            self._write(header_line(start, self.root))
        else:
            self._header_due = True  # written with the first line about a step

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._write(f"start {name}{again}")

    def step_output(self, name: str, line: str) -> None:
        if self.verbose:
            self._write(f"{name:<{self._width}} | {line}")

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        self.failures.keep(record, log_tail)
        if record.outcome is Outcome.CACHED and not self.verbose:
            return
        self._write(self._headline(record))

    def _headline(self, record: StepRecord) -> str:
        name = f"{record.name:<{self._width}}"
        took = format_duration(record.duration)
        match record.outcome:
            case Outcome.FAILED:
                code = "no exit code" if record.exit_code is None else f"exit {record.exit_code}"
                return f"FAIL  {name}  ({code}, {took}; explained at the end)"
            case Outcome.INTERRUPTED:
                return f"INTR  {name}  (interrupted after {took})"
            case Outcome.SKIPPED:
                return f"skip  {name}  (not started: a dependency failed or the build stopped)"
            case _:
                tries = f" after {record.attempts} attempts" if record.attempts > 1 else ""
                return f"done  {name}  {status_text(record)}  {took}{tries}"

    def warning(self, message: str) -> None:
        self._write(f"warning: {message}")

    def build_finished(self, record: BuildRecord) -> None:
        with self._lock:
            self._header_due = False  # a no-op's one line needs no header
        extra = [line] if (line := report_line(record, self.root)) else []
        lines = [render_summary_text(record, every_step=self.verbose, extra=extra)]
        for failure in self.failures.explained(record):
            lines += ["", *failure_lines(failure)]
        self._write("\n".join(lines))


# -- GitHub Actions ---------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the runner expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (file=, title=), escaped as the runner expects."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubReporter(PlainReporter):
    """Plain lines plus workflow commands for GitHub Actions.

    A step's log is printed between `::stop-commands::` markers, so a line in it that
    looks like a workflow command (`::endgroup::`, `::add-mask::`) is shown, not obeyed.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        environ: Mapping[str, str],
        verbose: bool,
        root: Path,
        step_dirs: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(stream, verbose=verbose, root=root, step_dirs=step_dirs)
        self.root = root
        self.step_dirs = dict(step_dirs or {})
        self.summary_path = environ.get("GITHUB_STEP_SUMMARY") or None

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        quiet = record.outcome is Outcome.CACHED and not self.verbose
        log = "" if quiet else _read_log_end(record.log_path)
        if log:
            token = os.urandom(16).hex()  # unguessable: the log cannot end the stop
            self._emit(
                f"::group::{record.name} ({status_text(record)}, "
                f"{format_duration(record.duration)})"
            )
            body = log.rstrip("\n")
            self._emit(f"::stop-commands::{token}\n{body}\n::{token}::")
            self._emit("::endgroup::")
        super().step_finished(record, log_tail)
        if record.outcome is Outcome.FAILED:
            self._annotate(record, log or "\n".join(log_tail), log_tail)

    def _annotate(self, record: StepRecord, log: str, log_tail: Sequence[str]) -> None:
        from buildlib.report.annotations import find_locations

        title = f"{record.name} failed"
        locations = find_locations(log, self.root, cwd=self.step_dirs.get(record.name))
        for loc in locations[:MAX_ANNOTATIONS]:
            props = [f"file={escape_property(loc.file)}", f"line={loc.line}"]
            if loc.col is not None:
                props.append(f"col={loc.col}")
            props.append(f"title={escape_property(title)}")
            self._emit(f"::error {','.join(props)}::{escape_data(loc.title)}")
        if not locations:
            code = "no exit code" if record.exit_code is None else f"exit code {record.exit_code}"
            summary = f"{record.name} failed with {code} after {format_duration(record.duration)}"
            if hint := _error_hint(log_tail):
                summary += f"\n{hint}"
            if record.log_path:
                summary += f"\nfull log: {display_path(record.log_path, self.root)}"
            self._emit(f"::error title={escape_property(title)}::{escape_data(summary)}")

    def warning(self, message: str) -> None:
        self._emit(f"::warning::{escape_data(strip_ansi(message))}")

    def build_finished(self, record: BuildRecord) -> None:
        super().build_finished(record)
        if self.summary_path is None:
            return
        # Appending is the runner's protocol for this file (several tools share it); one
        # write call keeps our section whole.
        try:
            summary = Path(self.summary_path)
            with summary.open("a", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(render_summary_markdown(record))
        except OSError as exc:
            self._emit(f"::warning::{escape_data(f'could not write the job summary: {exc}')}")


def _read_log_end(log_path: str | None) -> str:
    """The last `MAX_GROUP_BYTES` of a step's log, with a note when the start is cut."""
    if not log_path:
        return ""
    try:
        with Path(log_path).open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - MAX_GROUP_BYTES))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    if size > MAX_GROUP_BYTES:
        text = (
            f"[... {size - MAX_GROUP_BYTES} earlier bytes are in {log_path}]\n"
            + text.split("\n", 1)[-1]
        )
    return text


def _error_hint(log_tail: Sequence[str]) -> str:
    """The line of the tail most likely to say what went wrong."""
    lines = [strip_ansi(line).strip() for line in log_tail]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "error" in line.lower()]
    return errors[0] if errors else (lines[-1] if lines else "")
