"""Per-step timings over recent builds, read from the history, with slowdowns flagged.

Only BUILT outcomes are timed: a cache hit measures the cache, not the step.
A step is flagged when its latest BUILT duration exceeds
`max(SLOW_FACTOR * median, median + SLOW_MARGIN)` over the considered builds and it
has at least `MIN_SAMPLES` samples. The factor catches relative slowdowns of long
steps; the absolute margin keeps second-long steps from being flagged for jitter.
Called by the CLI's `metrics` command.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from buildlib.core.errors import UserError
from buildlib.core.fmt import format_duration
from buildlib.core.records import record
from buildlib.report.history import read_history
from buildlib.run.results import Outcome

SLOW_FACTOR = 1.5
SLOW_MARGIN = 2.0  # seconds
MIN_SAMPLES = 3  # with fewer, the median is mostly the latest run itself


@record
class StepMetrics:
    """One step's BUILT durations over the considered builds, oldest first."""

    name: str
    durations: tuple[float, ...]
    last: float
    median: float
    slowest: float
    slow: bool  # the latest run is a slowdown by the rule above


@record
class MetricsResult:
    path: Path
    mode: str | None
    target: str | None
    builds: int  # how many builds were considered (at most `last`)
    skipped_lines: int  # unreadable history lines
    steps: tuple[StepMetrics, ...]  # in the order of the latest build that has them
    elsewhere: tuple[tuple[str, str, int], ...] = ()  # (mode, target, builds) of the others

    @property
    def slow_steps(self) -> tuple[StepMetrics, ...]:
        return tuple(s for s in self.steps if s.slow)


def is_slowdown(last: float, median: float, samples: int) -> bool:
    """The flagging rule: last > max(1.5 x median, median + 2 s), given enough samples."""
    return samples >= MIN_SAMPLES and last > max(SLOW_FACTOR * median, median + SLOW_MARGIN)


def metrics_table(
    history_path: Path, *, last: int = 20, mode: str | None = None, target: str | None = None
) -> MetricsResult:
    """Each step's last `last` runs that built (cache hits say nothing about its speed),
    over the history of `mode`/`target` (None: any)."""
    if last < 1:
        raise UserError(
            f"--last {last}: need at least one build", fix="pass --last 1 or more (default 20)"
        )
    history = read_history(history_path)
    builds = history.matching(mode=mode, target=target)
    samples: dict[str, list[float]] = {}
    for entry in reversed(builds):  # newest first, so the dict order is the latest build's
        for step in entry.steps:
            if step.outcome is Outcome.BUILT and len(samples.get(step.name, ())) < last:
                samples.setdefault(step.name, []).append(step.duration)
    steps = []
    for name, newest_first in samples.items():
        durations = tuple(reversed(newest_first))
        median = statistics.median(durations)
        steps.append(
            StepMetrics(
                name=name,
                durations=durations,
                last=durations[-1],
                median=median,
                slowest=max(durations),
                slow=is_slowdown(durations[-1], median, len(durations)),
            )
        )
    elsewhere: dict[tuple[str, str], int] = {}
    if not steps:  # say where the builds are instead
        for entry in history.entries:
            key = (entry.mode, entry.target)
            if key != (mode, target):
                elsewhere[key] = elsewhere.get(key, 0) + 1
    return MetricsResult(
        path=history_path,
        mode=mode,
        target=target,
        builds=len(builds),
        skipped_lines=history.skipped,
        steps=tuple(steps),
        elsewhere=tuple((m, t, n) for (m, t), n in elsewhere.items()),
    )


def render_metrics(result: MetricsResult) -> str:
    """A plain-text table, one row per step, and a footer naming the flagging rule."""
    scope = " ".join(x for x in (result.mode, result.target) if x) or "all modes and targets"
    if not result.steps:
        if result.builds:
            text = (
                f"no step has built in the {result.builds} builds of {scope} recorded in "
                f"{result.path} (every step was up to date or restored)"
            )
        else:
            text = f"no build of {scope} is recorded in {result.path} yet"
        if result.elsewhere:
            mode, target, count = max(result.elsewhere, key=lambda e: e[2])
            text += (
                f"; {count} build{'' if count == 1 else 's'} of {mode} {target} "
                f"{'is' if count == 1 else 'are'}: metrics --mode {mode}"
                + (f" --target {target}" if target != result.target else "")
            )
        return text
    header = ("step", "runs", "last", "median", "slowest", "")
    rows = [header] + [
        (
            s.name,
            str(len(s.durations)),
            format_duration(s.last),
            format_duration(s.median),
            format_duration(s.slowest),
            "SLOWER" if s.slow else "",
        )
        for s in result.steps
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"step timings ({scope}), each step's last runs that built (of {result.builds} builds):"
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:5], widths[1:5], strict=True)
        ]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    lines.append(
        f"SLOWER: last > max({SLOW_FACTOR:g} x median, median + {SLOW_MARGIN:g} s), "
        f"with at least {MIN_SAMPLES} runs"
    )
    if result.skipped_lines:
        lines.append(f"({result.skipped_lines} unreadable history line(s) skipped)")
    return "\n".join(lines)
