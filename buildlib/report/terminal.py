"""What a person (or CI) sees while a build runs, and the summary at its end.

Three implementations of `events.Reporter`, chosen by `make_reporter`:

- `PlainReporter`: one ASCII line per event for pipes, logs and dumb terminals. It
  never writes an escape byte: everything passes through `strip_ansi` on the way out.
- `RichReporter` (in `progress_live.py`, so only a terminal imports rich): a live
  status area on a terminal (running steps, counts, ETA) with
  finished steps scrolling above it. Events only change state under a lock; one ticker
  thread redraws at most `REFRESH_HZ` times a second, so a chatty step cannot slow the
  build with redraws.
- `GitHubReporter`: plain lines plus GitHub Actions workflow commands: a collapsible
  group per step, `::error` annotations on the failing file and line (`annotations.py`),
  and a markdown summary appended to `$GITHUB_STEP_SUMMARY`.

All three end with the same summary (steps, status, duration, wall time, parallelism,
cache hit rate, critical path, failures), rendered from the `BuildRecord` alone.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from buildlib.core.records import record
from buildlib.report.annotations import find_locations, strip_ansi
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
) -> Reporter:
    """The reporter for where `stream` goes.

    GitHub Actions (`GITHUB_ACTIONS=true`) gets workflow commands; a terminal gets the
    live display unless `--plain`, `NO_COLOR` or `TERM=dumb` says otherwise; anything
    else (a pipe, a file) gets plain lines. `root` and `step_dirs` (each step's working
    directory) let GitHub annotations name files relative to the repository.
    """
    if environ.get("GITHUB_ACTIONS") == "true":
        workspace = root or Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())
        return GitHubReporter(stream, environ=environ, verbose=verbose, root=workspace,
                              step_dirs=step_dirs)
    plain = force_plain or bool(environ.get("NO_COLOR")) or environ.get("TERM") == "dumb"
    if plain or not _isatty(stream):
        return PlainReporter(stream, verbose=verbose)
    # rich costs ~40 ms to import: only a live terminal pays for it.
    from rich.console import Console

    from buildlib.report.live import RichReporter

    return RichReporter(Console(file=stream, force_terminal=True), verbose=verbose)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream is no terminal
        return False


# -- formatting shared by every reporter ------------------------------------------------------


def format_duration(seconds: float) -> str:
    """`12.3s`, `2m05s`, `1h02m`: short, and wide enough to compare at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _status(step: StepRecord) -> str:
    if step.outcome.from_cache and step.cache_source:
        return f"{step.outcome.value} ({step.cache_source})"
    return step.outcome.value


def _duration(step: StepRecord) -> str:
    return "-" if step.outcome is Outcome.SKIPPED else format_duration(step.duration)


def _figures(record: BuildRecord) -> list[str]:
    """The summary's lines under the table, shared by the text and rich renderings."""
    considered = [s for s in record.steps if s.outcome.ok]
    hits = sum(1 for s in considered if s.outcome.from_cache)
    lines = [
        f"wall {format_duration(record.wall)}, step time {format_duration(record.busy_time)}, "
        f"parallelism {record.parallelism:.2f}x on {record.jobs} jobs, "
        f"cache hit rate {record.cache_hit_rate:.0%} ({hits} of {len(considered)})",
    ]
    problems = record.extra.get("cache_problems")
    if isinstance(problems, dict) and problems:
        counted = ", ".join(f"{count} {kind}" for kind, count in sorted(problems.items()))
        total = sum(problems.values())
        lines.append(f"cache: {total} {'entry' if total == 1 else 'entries'} not used or not "
                     f"stored ({counted}); each is named in a warning above")
    if record.critical_path:
        lines.append(f"critical path {format_duration(record.critical_path_length)}: "
                     + " -> ".join(record.critical_path))
    for outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
        for step in (s for s in record.steps if s.outcome is outcome):
            where = f" (log: {step.log_path})" if step.log_path else ""
            lines.append(f"{outcome.value}: {step.name}{where}")
    return lines


def _verdict(record: BuildRecord) -> str:
    if record.ok:
        return "build succeeded"
    if record.exit_code > 128:
        return f"build interrupted (exit {record.exit_code})"
    return f"build FAILED (exit {record.exit_code})"


def render_summary_text(record: BuildRecord) -> str:
    """The end-of-build summary as aligned plain text (no escape codes)."""
    rows = [("step", "status", "duration")]
    rows += [(s.name, _status(s), _duration(s)) for s in record.steps]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>8}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(["", *lines, "", *_figures(record), _verdict(record)])


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_summary_markdown(record: BuildRecord) -> str:
    """The summary as GitHub-flavoured markdown, for `$GITHUB_STEP_SUMMARY`."""
    icon = "✅" if record.ok else "❌"
    lines = [
        f"### {icon} buildlib {_md_cell(record.mode)} {_md_cell(record.target)}: "
        f"{_verdict(record)}",
        "",
        "| step | status | duration |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {_md_cell(s.name)} | {_md_cell(_status(s))} | {_duration(s)} |"
              for s in record.steps]
    lines.append("")
    lines += [f"- {_md_cell(line)}" for line in _figures(record)]
    return "\n".join(lines) + "\n\n"


# -- ETA ------------------------------------------------------------------------------------


@record
class Eta:
    """Seconds of work left; `partial` when some remaining steps have no estimate."""

    seconds: float
    partial: bool


def estimate_eta(*, waiting: Iterable[str], running: Mapping[str, float],
                 estimates: Mapping[str, float], jobs: int) -> Eta | None:
    """Time left: max(remaining work / jobs, the longest single remaining piece).

    `running` maps each running step to its elapsed time. `BuildStart` carries no
    dependency edges, so the remaining critical path cannot be computed here; this is
    the list-scheduling lower bound instead, which is exact for independent steps that
    pack well and too low when a chain of dependent steps remains. None when no
    remaining step has an estimate.
    """
    pieces: list[float] = []
    unknown = 0
    for name in waiting:
        if name in estimates:
            pieces.append(estimates[name])
        else:
            unknown += 1
    for name, elapsed in running.items():
        if name in estimates:
            pieces.append(max(0.0, estimates[name] - elapsed))
        else:
            unknown += 1
    if not pieces:
        return Eta(seconds=0.0, partial=False) if unknown == 0 else None
    seconds = max(sum(pieces) / max(1, jobs), *pieces)
    return Eta(seconds=seconds, partial=unknown > 0)


# -- plain lines ------------------------------------------------------------------------------


class PlainReporter:
    """ASCII lines, one per event; safe to call from any thread.

    Every write is one whole text under one lock, so lines from concurrent
    `step_output` calls never interleave within a line.
    """

    def __init__(self, stream: TextIO, *, verbose: bool) -> None:
        self.stream = stream
        self.verbose = verbose
        self._lock = threading.Lock()
        self._width = 0  # the longest step name, for aligned columns

    def _emit(self, text: str) -> None:
        """Write `text` and a newline as is, in one call."""
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the reader went away; keep building
                pass

    def _write(self, text: str) -> None:
        self._emit(strip_ansi(text))

    def build_started(self, start: BuildStart) -> None:
        self._width = max((len(name) for name in start.steps), default=0)
        self._write(f"build {start.mode} for {start.target}: {len(start.steps)} steps, "
                    f"{start.jobs} jobs; logs in {start.log_dir}")

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._write(f"start {name}{again}")

    def step_output(self, name: str, line: str) -> None:
        if self.verbose:
            self._write(f"{name:<{self._width}} | {line}")

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        self._write(self._headline(record))
        if record.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            self._write_tail(record, log_tail)

    def _headline(self, record: StepRecord) -> str:
        name = f"{record.name:<{self._width}}"
        took = format_duration(record.duration)
        match record.outcome:
            case Outcome.FAILED:
                code = "no exit code" if record.exit_code is None else f"exit {record.exit_code}"
                return f"FAIL  {name}  ({code}, {took})"
            case Outcome.INTERRUPTED:
                return f"INTR  {name}  (interrupted after {took})"
            case Outcome.SKIPPED:
                return f"skip  {name}  (not started: a dependency failed or the build stopped)"
            case _:
                tries = f" after {record.attempts} attempts" if record.attempts > 1 else ""
                return f"done  {name}  {_status(record)}  {took}{tries}"

    def _write_tail(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        lines = [f"    {line}" for line in log_tail]
        if record.log_path:
            lines.append(f"    full log: {record.log_path}")
        if lines:
            self._write("\n".join(lines))

    def warning(self, message: str) -> None:
        self._write(f"warning: {message}")

    def build_finished(self, record: BuildRecord) -> None:
        self._write(render_summary_text(record))


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

    def __init__(self, stream: TextIO, *, environ: Mapping[str, str], verbose: bool,
                 root: Path, step_dirs: Mapping[str, Path] | None = None) -> None:
        super().__init__(stream, verbose=verbose)
        self.root = root
        self.step_dirs = dict(step_dirs or {})
        self.summary_path = environ.get("GITHUB_STEP_SUMMARY") or None

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        log = _read_log_end(record.log_path)
        if log:
            token = uuid.uuid4().hex
            self._emit(f"::group::{record.name} ({_status(record)}, "
                       f"{format_duration(record.duration)})")
            body = log.rstrip("\n")
            self._emit(f"::stop-commands::{token}\n{body}\n::{token}::")
            self._emit("::endgroup::")
        super().step_finished(record, log_tail)
        if record.outcome is Outcome.FAILED:
            self._annotate(record, log or "\n".join(log_tail), log_tail)

    def _annotate(self, record: StepRecord, log: str, log_tail: Sequence[str]) -> None:
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
                summary += f"\nfull log: {record.log_path}"
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
            with Path(self.summary_path).open("a", encoding="utf-8") as handle:
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
        text = f"[... {size - MAX_GROUP_BYTES} earlier bytes are in {log_path}]\n" \
               + text.split("\n", 1)[-1]
    return text


def _error_hint(log_tail: Sequence[str]) -> str:
    """The line of the tail most likely to say what went wrong."""
    lines = [strip_ansi(line).strip() for line in log_tail]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "error" in line.lower()]
    return errors[0] if errors else (lines[-1] if lines else "")
