"""A failed step, explained: its first error in full, the end of its log, where the log is.

The executor hands reporters the last lines of a failing step's log; those often hold
only follow-on errors (a Svelte type error's root cause scrolls out of the last 30
lines). `explain_failure` reads the log itself: the first error the annotation
parsers recognise (rustc, tsc, svelte-check, gcc...), shown whole, then the lines
after it up to `TAIL_LINES` of the end, with every error location's path relative
to the workspace root so a terminal can open it. Every reporter prints these blocks
after its summary, as the last thing on screen; the HTML page shows them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from buildlib.core.fmt import format_duration
from buildlib.core.records import record
from buildlib.report.ansi import strip_ansi
from buildlib.run.results import Outcome, StepRecord

if TYPE_CHECKING:
    from buildlib.report.annotations import ErrorBlock

TAIL_LINES = 12  # lines from the end of the log shown after the first error
MAX_LOG_BYTES = 8 << 20  # a log is read up to this much (its start holds the first error)


@record
class Failure:
    """What a reader needs about one failed or interrupted step."""

    step: StepRecord
    first: ErrorBlock | None  # the first error, whole, when a parser recognised one
    tail: tuple[str, ...]  # the log's last lines after the first error (or just its last)
    message: tuple[str, ...]  # why the engine failed it, when that is not in its log
    log: str | None  # the log's path, relative to the root when inside it

    @property
    def headline(self) -> str:
        took = format_duration(self.step.duration)
        if self.step.outcome is Outcome.INTERRUPTED:
            return f"INTERRUPTED {self.step.name} (after {took})"
        code = self.step.exit_code
        status = "no exit code" if code is None else f"exit {code}"
        return f"FAILED {self.step.name} ({status}, {took})"


def display_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    """`path` relative to `root` when it is inside it, else as it is."""
    text = os.fspath(path)
    if root is None:
        return text
    base = os.fspath(root).rstrip(os.sep)
    return text[len(base) + 1 :] if text.startswith(base + os.sep) else text


def _read_log(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_LOG_BYTES)
    except OSError:
        return None
    return strip_ansi(data.decode(errors="replace")).splitlines()


def explain_failure(
    step: StepRecord, tail: Sequence[str] = (), *, root: Path | None, cwd: Path | None = None
) -> Failure:
    """`step`'s failure from its log. `tail` is what the executor gave the reporter: the
    log's last lines, or a message of its own (a declared output missing, a program not
    found), which is kept when the log does not end with it."""
    # The error parsers' patterns are compiled only when a step has failed.
    from buildlib.report.annotations import first_error, relative_paths, starts_diagnostic

    log_lines = _read_log(step.log_path)
    given = [strip_ansi(line) for line in tail]
    message: tuple[str, ...] = ()
    if given and (log_lines is None or log_lines[-len(given) :] != given):
        message = tuple(given)
    lines = log_lines or []
    first = None
    if step.outcome is Outcome.FAILED and lines:
        first = first_error("\n".join(lines), root, cwd=cwd)
    after = first.start + len(first.lines) if first is not None else 0
    start = max(after, len(lines) - TAIL_LINES)
    if start > after:  # begin at a diagnostic of its own rather than in the middle of one
        start = next(
            (
                i
                for i in range(start, len(lines) - 3)
                if not lines[i].strip() or starts_diagnostic(lines, i)
            ),
            start,
        )
    shown_tail = [line.rstrip() for line in lines[start:]]
    while shown_tail and not shown_tail[0].strip():
        shown_tail.pop(0)
    if step.outcome is Outcome.INTERRUPTED:
        shown_tail = []
    return Failure(
        step=step,
        first=first,
        tail=tuple(relative_paths(shown_tail, root, cwd=cwd)),
        message=message,
        log=display_path(step.log_path, root) if step.log_path else None,
    )


def failure_lines(failure: Failure) -> list[str]:
    """The failure as plain lines: headline, first error, the log's end, the log's path."""
    lines = [failure.headline]
    if failure.first is not None:
        where = failure.first.location
        column = f":{where.col}" if where.col is not None else ""
        lines.append(f"  first error, at {where.file}:{where.line}{column}:")
        lines += [f"    {line}".rstrip() for line in failure.first.lines]
        if failure.tail:
            lines.append("  ... the end of its log:")
    elif failure.tail:
        lines.append("  the end of its log:")
    lines += [f"    {line}".rstrip() for line in failure.tail]
    lines += [f"    {line}".rstrip() for line in failure.message]
    if failure.log:
        lines.append(f"  log: {failure.log}")
    return lines
