"""The end-of-build summary and the ETA, shared by every reporter (plain, live, GitHub).

Rendered from the `BuildRecord` alone: a table of steps (status, duration), the
figures under it (wall time, parallelism, cache hit rate, cache problems, critical
path, failures) and the verdict; as aligned text or as GitHub markdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def summary_figures(record: BuildRecord) -> list[str]:
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


def verdict(record: BuildRecord) -> str:
    """`build succeeded`, `build FAILED (exit 1)`, `build interrupted (exit 130)`."""
    if record.ok:
        return "build succeeded"
    if record.exit_code > 128:
        return f"build interrupted (exit {record.exit_code})"
    return f"build FAILED (exit {record.exit_code})"


def render_summary_text(record: BuildRecord) -> str:
    """The end-of-build summary as aligned plain text (no escape codes)."""
    rows = [("step", "status", "duration")]
    rows += [(s.name, status_text(s), duration_text(s)) for s in record.steps]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>8}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(["", *lines, "", *summary_figures(record), verdict(record)])


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_summary_markdown(record: BuildRecord) -> str:
    """The summary as GitHub-flavoured markdown, for `$GITHUB_STEP_SUMMARY`."""
    icon = "✅" if record.ok else "❌"
    lines = [
        f"### {icon} buildlib {_md_cell(record.mode)} {_md_cell(record.target)}: "
        f"{verdict(record)}",
        "",
        "| step | status | duration |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {_md_cell(s.name)} | {_md_cell(status_text(s))} | {duration_text(s)} |"
              for s in record.steps]
    lines.append("")
    lines += [f"- {_md_cell(line)}" for line in summary_figures(record)]
    return "\n".join(lines) + "\n\n"


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
