"""The live terminal display: rich draws it; `progress.make_reporter` picks it for a TTY.

Kept apart from `terminal.py` so plain and GitHub output never import rich.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.spinner import Spinner
from rich.style import Style
from rich.table import Table
from rich.text import Text

from buildlib.core.fmt import format_duration
from buildlib.core.records import record
from buildlib.report.annotations import strip_ansi
from buildlib.report.summary import (
    duration_text,
    estimate_eta,
    status_text,
    summary_figures,
    verdict,
)
from buildlib.run.reporter import BuildStart
from buildlib.run.results import BuildRecord, Outcome, StepRecord

REFRESH_HZ = 8.0  # live-area redraws per second at most

_STATUS_STYLE = {
    Outcome.BUILT: "green",
    Outcome.CACHED: "cyan",
    Outcome.RESTORED: "cyan",
    Outcome.FAILED: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.INTERRUPTED: "magenta",
}

def render_summary_rich(record: BuildRecord) -> RenderableType:
    """The end-of-build summary as a rich table with coloured statuses."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("step")
    table.add_column("status")
    table.add_column("duration", justify="right")
    for step in record.steps:
        table.add_row(step.name, Text(status_text(step), style=_STATUS_STYLE[step.outcome]),
                      duration_text(step))
    style = "bold green" if record.ok else "bold red"
    return Group(Text(""), table, Text(""), *(Text(line) for line in summary_figures(record)),
                 Text(verdict(record), style=style))



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


class RichReporter:
    """A live status area on a terminal with finished steps scrolling above it.

    Event methods only record state and queue lines under `_lock`; `refresh` (called by
    the ticker thread `REFRESH_HZ` times a second, and once more at the end) redraws the
    status area and prints the queued lines above it in one go, so output volume never
    multiplies redraws. Tests call `refresh` directly.
    """

    def __init__(self, console: Console, *, verbose: bool,
                 clock: Callable[[], float] = time.monotonic,
                 refresh_per_second: float = REFRESH_HZ) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.interval = 1 / min(refresh_per_second, REFRESH_HZ)
        self._lock = threading.Lock()  # guards the state below
        self._refresh_lock = threading.Lock()  # one redraw at a time, queued lines in order
        self._start: BuildStart | None = None
        self._running: dict[str, _Running] = {}
        self._finished: dict[str, Outcome] = {}
        self._queued: list[RenderableType] = []
        self._live: Live | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # events (scheduling thread, and reader threads for step_output)

    def build_started(self, start: BuildStart) -> None:
        with self._lock:
            self._start = start
        self._live = Live(console=self.console, get_renderable=self.status, transient=True,
                          auto_refresh=False)
        self._live.start()
        atexit.register(self._close)  # put the cursor back if the build dies mid-way
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress-ticker")
        self._ticker.start()

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        with self._lock:
            self._running[name] = _Running(started=self.clock(), spinner=Spinner("dots"))

    def step_output(self, name: str, line: str) -> None:
        if not self.verbose:
            return
        line = strip_ansi(line, keep_colours=True)
        with self._lock:
            if self._live is not None:
                if not self._queued or not isinstance(self._queued[-1], _OutputLines):
                    self._queued.append(_OutputLines())
                run = self._queued[-1]
                assert isinstance(run, _OutputLines)
                run.lines.append((name, line))
                return
        self.console.print(Text.assemble((f"{name} | ", "dim"), Text.from_ansi(line)))

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        lines: list[RenderableType] = [self._headline(record)]
        if record.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            lines += [Text.assemble("    ", Text.from_ansi(line)) for line in log_tail]
            if record.log_path:
                lines.append(Text(f"    full log: {record.log_path}", style="dim"))
        with self._lock:
            self._running.pop(record.name, None)
            self._finished[record.name] = record.outcome
            self._queued.extend(lines)

    def warning(self, message: str) -> None:
        self._queue(Text(f"warning: {strip_ansi(message)}", style="yellow"))

    def build_finished(self, record: BuildRecord) -> None:
        self._close()
        atexit.unregister(self._close)
        self.console.print(render_summary_rich(record))

    # drawing

    def _queue(self, renderable: RenderableType) -> None:
        if self._live is None:  # before or after the live area: print straight away
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
                queued, self._queued = self._queued, []
            if self._live is not None:
                # Live only re-reads `status()` in refresh(); a print alone would redraw the
                # previous status under the new lines.
                self._live.refresh()
            if queued:
                self.console.print(Group(*queued))

    def _close(self) -> None:
        """Stop the ticker, flush queued lines and remove the status area. Idempotent."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self.refresh()
        if self._live is not None:
            self._live.stop()
            self._live = None
            self.refresh()  # anything queued while the area was being removed

    def _headline(self, record: StepRecord) -> Text:
        style = _STATUS_STYLE[record.outcome]
        took = format_duration(record.duration)
        mark = "✓" if record.outcome.ok else ("-" if record.outcome is Outcome.SKIPPED else "✗")
        detail = f"{status_text(record)}  {took}"
        if record.outcome is Outcome.FAILED and record.exit_code is not None:
            detail = f"failed (exit {record.exit_code}, {took})"
        elif record.outcome is Outcome.SKIPPED:
            detail = "skipped: a dependency failed or the build stopped"
        return Text.assemble((f"{mark} ", style), (record.name, "bold"), "  ", (detail, style))

    def status(self) -> RenderableType:
        """The live area: one row per running step, then counts and the ETA."""
        now = self.clock()
        with self._lock:
            start = self._start
            running = dict(self._running)
            finished = dict(self._finished)
        estimates = start.estimates if start else {}
        grid = Table.grid(padding=(0, 1))
        for name, run in running.items():
            elapsed = now - run.started
            expected = f" / ~{format_duration(estimates[name])}" if name in estimates else ""
            grid.add_row(run.spinner.render(now), Text(name, style="bold"),
                         Text(f"{format_duration(elapsed)}{expected}", style="dim"))
        steps = list(start.steps) if start else []
        waiting = [s for s in steps if s not in finished and s not in running]
        done = list(finished.values())
        parts = [f"{done.count(Outcome.BUILT)} built",
                 f"{done.count(Outcome.CACHED) + done.count(Outcome.RESTORED)} cached",
                 f"{done.count(Outcome.FAILED) + done.count(Outcome.INTERRUPTED)} failed"]
        if skipped := done.count(Outcome.SKIPPED):
            parts.append(f"{skipped} skipped")
        parts += [f"{len(running)} running", f"{len(waiting)} waiting"]
        elapsed_by_step = {n: now - r.started for n, r in running.items()}
        eta = estimate_eta(waiting=waiting, running=elapsed_by_step, estimates=estimates,
                           jobs=start.jobs if start else 1)
        if eta is not None:
            parts.append(f"ETA {'≥' if eta.partial else '~'}{format_duration(eta.seconds)}")
        return Group(grid, Text(" · ".join(parts), style="bold"))

