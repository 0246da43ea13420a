"""The end-of-build summary and the ETA, shared by every reporter (plain, live, GitHub).

Rendered from the `BuildRecord` alone: a table of the steps that did something (built,
restored, failed, skipped, interrupted; past 20 of them, every failure and the longest,
the others counted in one line; the steps up to date are counted in one line; all
listed with `--verbose`), the figures under it (wall time, parallelism, cache
hit rate, cache problems, the critical path of what ran, failures) and the verdict;
as aligned text or as GitHub markdown. A build where every step was up to date is one
line (`noop_line`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from buildlib.core.fmt import format_duration
from buildlib.core.records import record
from buildlib.run.results import BuildRecord, Outcome, StepRecord


def status_text(step: StepRecord) -> str:
    """`built`, `cached`, `restored (remote)`..."""
    if step.outcome.from_cache and step.cache_source:
        return f"{step.outcome.value} ({step.cache_source})"
    return step.outcome.value


def duration_text(step: StepRecord) -> str:
    """The step's duration, `-` for a step that never started."""
    return "-" if step.outcome is Outcome.SKIPPED else format_duration(step.duration)


def is_noop(record: BuildRecord) -> bool:
    """Every selected step was up to date: nothing ran, nothing was restored."""
    return (
        record.ok and bool(record.steps) and all(s.outcome is Outcome.CACHED for s in record.steps)
    )


def noop_line(record: BuildRecord) -> str:
    """`nothing to do: 10 steps up to date, 0.1s (development, x86_64-unknown-linux-gnu)`."""
    count = len(record.steps)
    return (
        f"nothing to do: {count} step{'' if count == 1 else 's'} up to date, "
        f"{format_duration(record.wall)} ({record.mode}, {record.target})"
    )


TABLE_ROWS = 20  # past this many steps that did something, the table keeps the telling ones


def shown_steps(record: BuildRecord, *, every_step: bool = False) -> list[StepRecord]:
    """The summary table's rows, in build order: the steps that did something, or all of
    them. Past TABLE_ROWS, every failed or interrupted step and the longest of the rest:
    a 1,000-step build's table would repeat its 1,000 `done` lines."""
    if every_step:
        return list(record.steps)
    acted = [s for s in record.steps if s.outcome is not Outcome.CACHED]
    if len(acted) <= TABLE_ROWS:
        return acted
    failed = {s.name for s in acted if s.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)}
    rest = sorted((s for s in acted if s.name not in failed), key=lambda s: -s.duration)
    kept = failed | {s.name for s in rest[: max(0, TABLE_ROWS - len(failed))]}
    return [s for s in acted if s.name in kept]


def left_out_lines(record: BuildRecord, shown: Sequence[StepRecord]) -> list[str]:
    """What the table left out: `480 more steps: 470 built, 10 skipped (...)` when it
    kept only some of those that did something, and `6 other steps were up to date`."""
    lines = []
    shown_names = {s.name for s in shown}
    left = [s for s in record.steps if s.name not in shown_names]
    acted = [s for s in left if s.outcome is not Outcome.CACHED]
    if acted:
        counts = dict.fromkeys(Outcome, 0)
        for step in acted:
            counts[step.outcome] += 1
        told = ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
        lines.append(
            f"{len(acted)} more step{'s' * (len(acted) != 1)}: {told} (the table keeps "
            "every failure and the longest; --verbose lists them all)"
        )
    up_to_date = len(left) - len(acted)
    if up_to_date:
        steps = "step was" if up_to_date == 1 else "steps were"
        other = "other " if shown else ""
        lines.append(f"{up_to_date} {other}{steps} up to date (--verbose lists them)")
    return lines


def ran_critical_path(record: BuildRecord) -> tuple[str, ...]:
    """The critical path through the steps that ran: a failed build's path never runs on
    through the steps it skipped (they took no time; they are a suffix of the path)."""
    ran = {s.name for s in record.steps if s.outcome is not Outcome.SKIPPED}
    return tuple(name for name in record.critical_path if name in ran)


def summary_figures(record: BuildRecord) -> list[str]:
    """The summary's lines under the table, shared by the text and rich renderings."""
    considered = [s for s in record.steps if s.outcome.ok]
    hits = sum(1 for s in considered if s.outcome.from_cache)
    lines = [
        f"wall {format_duration(record.wall)}, step time {format_duration(record.busy_time)}, "
        f"parallelism {record.parallelism:.2f}x on {record.jobs} job{'s' * (record.jobs != 1)}, "
        f"cache hit rate {record.cache_hit_rate:.0%} ({hits} of {len(considered)})",
    ]
    problems = record.extra.get("cache_problems")
    if isinstance(problems, dict) and problems:
        counted = ", ".join(f"{count} {kind}" for kind, count in sorted(problems.items()))
        total = sum(problems.values())
        lines.append(
            f"cache: {total} {'entry' if total == 1 else 'entries'} not used or not "
            f"stored ({counted}); each is named in a warning above"
        )
    path = ran_critical_path(record)
    if path:
        by_name = {s.name: s for s in record.steps}
        length = sum(by_name[name].duration for name in path)
        lines.append(f"critical path {format_duration(length)}: " + " -> ".join(path))
    for outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
        names = [s.name for s in record.steps if s.outcome is outcome]
        if names:
            lines.append(f"{outcome.value}: {', '.join(names)}")
    return lines


def verdict(record: BuildRecord) -> str:
    """`build succeeded`, `build FAILED (exit 1)`, `build interrupted (exit 130)`."""
    if record.ok:
        return "build succeeded"
    if record.exit_code > 128:
        return f"build interrupted (exit {record.exit_code})"
    return f"build FAILED (exit {record.exit_code})"


def render_summary_text(
    record: BuildRecord, *, every_step: bool = False, extra: Sequence[str] = ()
) -> str:
    """The end-of-build summary as aligned plain text (no escape codes): the one no-op
    line, or the table of what did something, the figures, `extra` lines, the verdict."""
    if is_noop(record) and not every_step:
        return noop_line(record)
    shown = shown_steps(record, every_step=every_step)
    lines: list[str] = []
    if shown:
        rows = [("step", "status", "duration")]
        rows += [(s.name, status_text(s), duration_text(s)) for s in shown]
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>8}".rstrip() for a, b, c in rows]
        lines.insert(1, "-" * len(lines[0]))
    lines += left_out_lines(record, shown)
    return "\n".join(["", *lines, "", *summary_figures(record), *extra, verdict(record)])


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_summary_markdown(record: BuildRecord) -> str:
    """The summary as GitHub-flavoured markdown, for `$GITHUB_STEP_SUMMARY`."""
    icon = "✅" if record.ok else "❌"
    lines = [
        f"### {icon} buildlib {_md_cell(record.mode)} {_md_cell(record.target)}: {verdict(record)}",
        "",
        "| step | status | duration |",
        "| --- | --- | ---: |",
    ]
    shown = shown_steps(record)
    lines += [
        f"| {_md_cell(s.name)} | {_md_cell(status_text(s))} | {duration_text(s)} |" for s in shown
    ]
    if not shown:
        lines = lines[:2]
    lines.append("")
    for more in left_out_lines(record, shown):
        lines += [f"_{_md_cell(more)}_", ""]
    lines += [f"- {_md_cell(line)}" for line in summary_figures(record)]
    return "\n".join(lines) + "\n\n"


@record
class Eta:
    """Seconds of work left, or None when it cannot be known (`why` says what is missing)."""

    seconds: float | None
    why: str = ""

    def text(self) -> str:
        if self.seconds is None:
            return f"ETA unknown ({self.why})" if self.why else "ETA unknown"
        return f"ETA ~{format_duration(self.seconds)}"


OVERDUE = 1.5  # a running step past this many times its estimate makes the ETA unknown


def estimate_eta(
    *,
    waiting: Iterable[str],
    running: Mapping[str, float],
    estimates: Mapping[str, float],
    jobs: int,
    deps: Mapping[str, Sequence[str]] | None = None,
) -> Eta | None:
    """Time left, from each remaining step's estimate (its earlier builds, or the other
    modes' when this one has none). None when nothing remains.

    With `deps`, it is the longest of the remaining critical path (a chain of steps that
    must run one after another) and the remaining work spread over `jobs`; without, the
    longest single piece stands in for the path, which is too low when a chain of
    dependent steps remains. A running step's remaining time is its estimate minus its
    elapsed time. When a remaining step has no estimate, or a running step has taken
    `OVERDUE` times its estimate, no number would be right: the ETA is unknown, and says
    which step makes it so.
    """
    waiting = list(waiting)
    if not waiting and not running:
        return None
    left: dict[str, float] = {}
    for name in waiting:
        if name not in estimates:
            return Eta(seconds=None, why=f"no earlier timing of {name}")
        left[name] = estimates[name]
    for name, elapsed in running.items():
        if name not in estimates:
            return Eta(seconds=None, why=f"no earlier timing of {name}")
        if elapsed > OVERDUE * estimates[name] and elapsed - estimates[name] > 1.0:
            return Eta(
                seconds=None,
                why=f"{name} is taking longer than its usual {format_duration(estimates[name])}",
            )
        left[name] = max(0.0, estimates[name] - elapsed)
    spread = sum(left.values()) / max(1, jobs)
    if deps is None:
        return Eta(seconds=max(spread, *left.values()))
    return Eta(seconds=max(spread, _longest_chain(left, deps)))


def _longest_chain(left: Mapping[str, float], deps: Mapping[str, Sequence[str]]) -> float:
    """The longest chain of remaining steps by remaining time (steps done count 0)."""
    finish: dict[str, float] = {}
    for name in left:  # depth first without recursion: a 10,000-step chain is fine
        stack = [name]
        while stack:
            current = stack[-1]
            if current in finish:
                stack.pop()
                continue
            pending = [d for d in deps.get(current, ()) if d in left and d not in finish]
            if pending:
                stack.extend(pending)
                continue
            before = [finish[d] for d in deps.get(current, ()) if d in left]
            finish[current] = left[current] + max(before, default=0.0)
            stack.pop()
    return max(finish.values(), default=0.0)
