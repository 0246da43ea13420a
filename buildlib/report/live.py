"""The live terminal display: rich draws it; `terminal.make_reporter` picks it for a TTY.

Kept apart from `terminal.py` so plain and GitHub output never import rich.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.spinner import Spinner
from rich.style import Style
from rich.table import Table
from rich.text import Text

from buildlib.core.fmt import format_duration
from buildlib.core.records import record
from buildlib.report.ansi import strip_ansi
from buildlib.report.failures import Failure, failure_lines
from buildlib.report.summary import (
    duration_text,
    estimate_eta,
    is_noop,
    left_out_lines,
    noop_line,
    shown_steps,
    status_text,
    summary_figures,
    verdict,
)
from buildlib.report.terminal import FailureNotes, header_line, report_line
from buildlib.run.reporter import BuildStart
from buildlib.run.results import BuildRecord, Outcome, StepRecord

REFRESH_HZ = 8.0  # live-area redraws per second at most
QUIET_START = 0.3  # seconds: a build that only finds steps up to date shows no live area

_STATUS_STYLE = {
    Outcome.BUILT: "green",
    Outcome.CACHED: "cyan",
    Outcome.RESTORED: "cyan",
    Outcome.FAILED: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.INTERRUPTED: "magenta",
}


def render_summary_rich(
    record: BuildRecord,
    *,
    every_step: bool = False,
    extra: Sequence[str] = (),
    failures: Sequence[Failure] = (),
) -> RenderableType:
    """The end-of-build summary with coloured statuses: the one no-op line, or the steps
    that did something, the figures, `extra` lines, the verdict, then each failure."""
    if is_noop(record) and not every_step:
        return Text(noop_line(record), style="green")
    parts: list[RenderableType] = [Text("")]
    shown = shown_steps(record, every_step=every_step)
    if shown:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column("step")
        table.add_column("status")
        table.add_column("duration", justify="right")
        for step in shown:
            table.add_row(
                step.name,
                Text(status_text(step), style=_STATUS_STYLE[step.outcome]),
                duration_text(step),
            )
        parts.append(table)
    parts += [Text(more, style="dim") for more in left_out_lines(record, shown)]
    style = "bold green" if record.ok else "bold red"
    parts += [
        Text(""),
        *(Text(line) for line in summary_figures(record)),
        *(Text(line, style="dim") for line in extra),
        Text(verdict(record), style=style),
    ]
    for failure in failures:
        head, *rest = failure_lines(failure)
        parts += [Text(""), Text(head, style="bold red")]
        parts += [Text(line, style="dim" if line.startswith("  log:") else "") for line in rest]
    return Group(*parts)


# -- the live terminal display ----------------------------------------------------------------


class _OutputLines:
    """A run of `--verbose` output lines, drawn as raw segments.

    Rich's text layout costs ~50us a line; chatty steps print tens of thousands, so these
    lines skip it (no wrapping, no markup): ~4us a line. `strip_ansi(keep_colours=True)`
    has already removed every escape except colours.
    """

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []  # (step, line)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        prefix_style = Style(dim=True)
        newline = Segment.line()
        for name, line in self.lines:
            yield Segment(f"{name} | ", prefix_style)
            yield Segment(line)
            yield newline


@record
class _Running:
    started: float
    spinner: Spinner


class _Lines:
    """Pre-rendered lines, drawn as they are (the status area, measured once)."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for index, line in enumerate(self.lines):
            if index:
                yield newline
            yield from line


class _StatusArea:
    """The status area at the bottom of the terminal, drawn and erased by hand.

    Each line is cropped to the terminal's width when drawn, so nothing wraps then. A
    terminal made narrower afterwards re-wraps the lines already drawn (tmux, VTE,
    iTerm2, Windows Terminal... all reflow), so the area now takes more rows than it
    had lines: erasing it moves up by the rows each drawn line takes at the current
    width, not by its line count, and no stale line is left (rich's `Live` counts lines
    and left one behind).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._widths: list[int] = []  # each drawn line's width in cells
        self._cursor_hidden = False

    def erase(self) -> None:
        """Remove the area; the cursor ends where its first row began."""
        if not self._widths:
            return
        width = max(1, self.console.size.width)
        rows = sum(max(1, -(-line // width)) for line in self._widths)
        self.console.file.write("\r" + "\x1b[1A" * (rows - 1) + "\x1b[J")
        self._widths = []

    def draw(self, renderable: RenderableType) -> None:
        """Draw the area (after `erase` and any lines printed above it)."""
        width = max(1, self.console.size.width)
        options = self.console.options.update(width=width, no_wrap=True, overflow="ellipsis")
        lines = [
            Segment.adjust_line_length(line, width, pad=False)
            for line in self.console.render_lines(renderable, options, pad=False)
        ]
        while lines and not Segment.get_line_length(lines[-1]):
            lines.pop()
        if not lines:
            return
        if not self._cursor_hidden:
            self._cursor_hidden = self.console.show_cursor(False) or True
        self.console.print(_Lines(lines), end="", crop=False, soft_wrap=True)
        self._widths = [Segment.get_line_length(line) for line in lines]

    def close(self) -> None:
        self.erase()
        if self._cursor_hidden:
            self.console.show_cursor(True)
            self._cursor_hidden = False
        self.console.file.flush()


class RichReporter:
    """A live status area on a terminal with finished steps scrolling above it.

    Event methods only record state and queue lines under `_lock`; `refresh` (called by
    the ticker thread `REFRESH_HZ` times a second, and once more at the end) redraws the
    status area and prints the queued lines above it in one go, so output volume never
    multiplies redraws. Tests call `refresh` directly.

    Quiet until there is something to say: the header (mode, target, log directory) and
    the status area appear when a step starts, or a step is restored or fails, or after
    `QUIET_START` seconds; steps found up to date print no line of their own (unless
    `verbose`). So a no-op build shows only its one summary line.
    """

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool,
        clock: Callable[[], float] = time.monotonic,
        refresh_per_second: float = REFRESH_HZ,
        root: Path | None = None,
        step_dirs: Mapping[str, Path] | None = None,
        deps: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.root = root
        self.deps = deps
        self.interval = 1 / min(refresh_per_second, REFRESH_HZ)
        self._lock = threading.Lock()  # guards the state below
        self._refresh_lock = threading.Lock()  # one redraw at a time, queued lines in order
        self._start: BuildStart | None = None
        self._started_at = 0.0
        self._running: dict[str, _Running] = {}
        self._finished: dict[str, Outcome] = {}
        self._queued: list[RenderableType] = []
        self._active = False  # something happened worth showing: header and status area
        self._area: _StatusArea | None = None  # None before the build and after it
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.failures = FailureNotes(root, step_dirs)

    # events (scheduling thread, and reader threads for step_output)

    def build_started(self, start: BuildStart) -> None:
        with self._lock:
            self._start = start
            self._started_at = self.clock()
        self._area = _StatusArea(self.console)
        if self.verbose:
            self._activate()
        atexit.register(self._close)  # put the cursor back if the build dies mid-way
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress-ticker")
        self._ticker.start()

    def _activate(self) -> None:
        """From now on the build shows itself: the header first (call under no lock)."""
        with self._lock:
            if self._active or self._start is None:
                return
            self._active = True
            self._queued.insert(0, Text(header_line(self._start, self.root), style="bold"))

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        with self._lock:
            self._running[name] = _Running(started=self.clock(), spinner=Spinner("dots"))
        self._activate()

    def step_output(self, name: str, line: str) -> None:
        if not self.verbose:
            return
        line = strip_ansi(line, keep_colours=True)
        with self._lock:
            if self._area is not None:
                if not self._queued or not isinstance(self._queued[-1], _OutputLines):
                    self._queued.append(_OutputLines())
                run = self._queued[-1]
                assert isinstance(run, _OutputLines)
                run.lines.append((name, line))
                return
        self.console.print(Text.assemble((f"{name} | ", "dim"), Text.from_ansi(line)))

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        self.failures.keep(record, log_tail)
        quiet = record.outcome is Outcome.CACHED and not self.verbose
        if not quiet:
            self._activate()
        with self._lock:
            self._running.pop(record.name, None)
            self._finished[record.name] = record.outcome
            if not quiet:
                self._queued.append(self._headline(record))

    def warning(self, message: str) -> None:
        self._activate()
        self._queue(Text(f"warning: {strip_ansi(message)}", style="yellow"))

    def build_finished(self, record: BuildRecord) -> None:
        self._close()
        atexit.unregister(self._close)
        extra = [line] if (line := report_line(record, self.root)) else []
        self.console.print(
            render_summary_rich(
                record,
                every_step=self.verbose,
                extra=extra,
                failures=self.failures.explained(record),
            )
        )

    # drawing

    def _queue(self, renderable: RenderableType) -> None:
        if self._area is None:  # before or after the live area: print straight away
            self.console.print(renderable)
            return
        with self._lock:
            self._queued.append(renderable)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        """Redraw the status area, with any queued lines printed above it."""
        with self._refresh_lock:
            with self._lock:
                show = self._active or self.clock() - self._started_at >= QUIET_START
                queued = self._queued if show else []
                if show:
                    self._queued = []
            area = self._area
            if area is None or not show:
                return
            area.erase()
            if queued:
                self.console.print(Group(*queued))
            area.draw(self.status())
            self.console.file.flush()

    def _close(self) -> None:
        """Stop the ticker, flush queued lines and remove the status area. Idempotent."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._refresh_lock:
            with self._lock:
                queued, self._queued = (self._queued, []) if self._active else ([], [])
            if self._area is not None:
                self._area.close()
                self._area = None
            if queued:
                self.console.print(Group(*queued))

    def _headline(self, record: StepRecord) -> Text:
        style = _STATUS_STYLE[record.outcome]
        took = format_duration(record.duration)
        mark = "✓" if record.outcome.ok else ("-" if record.outcome is Outcome.SKIPPED else "✗")
        detail = f"{status_text(record)}  {took}"
        if record.outcome is Outcome.FAILED:
            code = "no exit code" if record.exit_code is None else f"exit {record.exit_code}"
            detail = f"failed ({code}, {took}; explained at the end)"
        elif record.outcome is Outcome.SKIPPED:
            detail = "skipped: a dependency failed or the build stopped"
        return Text.assemble((f"{mark} ", style), (record.name, "bold"), "  ", (detail, style))

    def status(self) -> RenderableType:
        """The live area: one row per running step, then counts, elapsed time and the ETA."""
        now = self.clock()
        with self._lock:
            start = self._start
            running = dict(self._running)
            finished = dict(self._finished)
            started_at = self._started_at
        estimates = start.estimates if start else {}
        grid = Table.grid(padding=(0, 1))
        for name, run in running.items():
            elapsed = now - run.started
            expected = f" / ~{format_duration(estimates[name])}" if name in estimates else ""
            grid.add_row(
                run.spinner.render(now),
                Text(name, style="bold"),
                Text(f"{format_duration(elapsed)}{expected}", style="dim"),
            )
        steps = list(start.steps) if start else []
        waiting = [s for s in steps if s not in finished and s not in running]
        done = list(finished.values())
        # Time first: it is what a narrow terminal must not crop away.
        parts = [f"{format_duration(now - started_at)} elapsed"]
        elapsed_by_step = {n: now - r.started for n, r in running.items()}
        eta = estimate_eta(
            waiting=waiting,
            running=elapsed_by_step,
            estimates=estimates,
            jobs=start.jobs if start else 1,
            deps=self.deps,
        )
        if eta is not None:
            parts.append(eta.text())
        parts += [
            f"{done.count(Outcome.BUILT)} built",
            f"{done.count(Outcome.CACHED) + done.count(Outcome.RESTORED)} cached",
            f"{done.count(Outcome.FAILED) + done.count(Outcome.INTERRUPTED)} failed",
        ]
        if skipped := done.count(Outcome.SKIPPED):
            parts.append(f"{skipped} skipped")
        parts += [f"{len(running)} running", f"{len(waiting)} waiting"]
        line = Text(" · ".join(parts), style="bold", no_wrap=True, overflow="ellipsis")
        return Group(grid, line)
