"""The build as one self-contained HTML page: a Gantt timeline plus a table of every step.

Everything is inline (CSS, a little JS, the data as rendered elements): the file
opens from disk or a CI artifact with no network. Bars are placed by percentages
of the wall time, so the page reads the same at any width and without JS; the JS
only adds dependency highlighting and records the laid-out bar widths in
`<pre id="layout">` (tests read it from headless Chromium). Every piece of text
from the build goes through `html.escape`. A failed build's page starts with each
failure (its first error in full and the end of its log, `failures.py`), says why each
skipped step never started, links every log (relative to the page), and marks the
critical path through the steps that ran. Called by `report.write_build_reports`.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from buildlib.core.fmt import format_duration
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.report.failures import display_path, explain_failure
from buildlib.report.summary import ran_critical_path
from buildlib.run.results import BuildRecord, Outcome, StepRecord

_STATUS_LABEL = {
    Outcome.BUILT: "built",
    Outcome.CACHED: "cached",
    Outcome.RESTORED: "restored",
    Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped",
    Outcome.INTERRUPTED: "interrupted",
}
_TARGET_TICKS = 8


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def tick_label(seconds: float) -> str:
    """Axis labels: '0', '2.5 s', '40 s', '1 m 30 s' (ticks are round numbers, so no padding)."""
    seconds = round(seconds, 6)  # i * step accumulates float noise such as 0.30000000000000004
    if seconds == 0:
        return "0"
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes:g} m {rest:g} s" if rest else f"{minutes:g} m"


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def tick_step(wall: float) -> float:
    """A 1/2/5 x 10^k interval giving about `_TARGET_TICKS` gridlines over `wall` seconds."""
    if wall <= 0:
        return 1.0
    raw = wall / _TARGET_TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns by factor 10


def skip_reasons(record: BuildRecord, deps: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Why each skipped step never started: the failure upstream of it, or the stop."""
    outcome = {s.name: s.outcome for s in record.steps}
    reasons: dict[str, str] = {}

    def cause(name: str, seen: set[str]) -> str | None:
        """The failed (or interrupted) step upstream of `name`, nearest first."""
        for dep in deps.get(name, ()):
            if outcome.get(dep) in (Outcome.FAILED, Outcome.INTERRUPTED):
                return dep
        for dep in deps.get(name, ()):
            if outcome.get(dep) is Outcome.SKIPPED and dep not in seen:
                seen.add(dep)
                found = cause(dep, seen)
                if found is not None:
                    return found
        return None

    for step in record.steps:
        if step.outcome is not Outcome.SKIPPED:
            continue
        failed = cause(step.name, set())
        if failed is not None:
            verb = "was interrupted" if outcome[failed] is Outcome.INTERRUPTED else "failed"
            reasons[step.name] = f"not started: it needs {failed}, which {verb}"
        elif record.exit_code > 128:
            reasons[step.name] = "not started: the build was interrupted"
        else:
            reasons[step.name] = (
                "not started: the build stopped at the first failure "
                "(--keep-going builds what does not depend on it)"
            )
    return reasons


def render_html(
    record: BuildRecord, deps: Mapping[str, Sequence[str]], build_dir: BuildDir | None = None
) -> str:
    """The whole page for `record`; `deps` (step -> dependencies) feeds hover highlighting
    and the reasons steps were skipped; `build_dir` (where the page goes) makes log paths
    links relative to the page and lets failures show their logs' first error."""
    # The timeline spans the wall time, or the last step end if a record is slightly off.
    span = max([record.wall, *(s.end for s in record.steps)])
    critical = set(ran_critical_path(record))
    skipped = skip_reasons(record, deps)
    steps = [_StepText.of(s, s.name in critical) for s in record.steps]
    order = sorted(
        range(len(record.steps)),
        key=lambda i: (record.steps[i].worker < 0, record.steps[i].start, i),
    )
    rows = "\n".join(
        _row(steps[i], span, deps.get(steps[i].step.name, ()), skipped.get(steps[i].step.name))
        for i in order
    )
    step = tick_step(span)
    grid = _percent(step, span) if span > 0 else 100.0
    return _PAGE.format(
        title=_e(f"build {record.build_id} · {record.mode} · {record.target}"),
        build_id=_e(record.build_id),
        css=_CSS,
        grid=f"{grid:.4f}",
        verdict=_verdict(record),
        stats=_stats(record),
        warnings=_warnings(record.warnings),
        failures=_failures(record, build_dir),
        legend=_legend(),
        axis=_axis(span, step),
        rows=rows,
        table=_table(steps, skipped, _Place.of(build_dir)),
        js=_JS,
    )


@record
class _StepText:
    """What the timeline row and the table both show of a step, worked out once: its
    name escaped, its duration formatted (each appears two to four times on the page)."""

    step: StepRecord
    name: str  # escaped
    ran: bool
    duration: float
    shown: str  # the formatted duration, or "-" for a step that never ran
    critical: bool

    @classmethod
    def of(cls, step: StepRecord, critical: bool) -> _StepText:
        ran = step.worker >= 0
        duration = step.duration
        return cls(
            step=step,
            name=_e(step.name),
            ran=ran,
            duration=duration,
            shown=format_duration(duration) if ran else "-",
            critical=critical,
        )


@functools.cache
def _relative_dir(directory: str, start: str) -> str:
    """`os.path.relpath`, once per log directory (a mode and target's) rather than once
    per step: it makes both paths absolute each time it is called."""
    return os.path.relpath(directory, start)


@record
class _Place:
    """Where the page goes, as text, taken once per page: a Path per step cost more than
    the rest of the step's row."""

    reports: str | None  # the page's directory; None: log paths are shown, not linked
    root: str | None  # the workspace root: log paths are shown relative to it

    @classmethod
    def of(cls, build_dir: BuildDir | None) -> _Place:
        if build_dir is None:
            return cls(reports=None, root=None)
        return cls(reports=os.fspath(build_dir.reports), root=os.fspath(build_dir.root))


def _log_link(log_path: str | None, place: _Place) -> str:
    """A link to a step's log, relative to the page (so an archived `.buildlib` keeps
    working), its text relative to the workspace root."""
    if not log_path:
        return ""
    shown = display_path(log_path, place.root)
    if place.reports is None:
        return _e(shown)
    directory, name = os.path.split(log_path)
    href = f"{_relative_dir(directory, place.reports)}/{name}".replace(os.sep, "/")
    return f'<a class="log" href="{_e(quote(href))}">{_e(shown)}</a>'


def _failures(record: BuildRecord, build_dir: BuildDir | None) -> str:
    """Each failed or interrupted step: its first error in full and the end of its log."""
    root = build_dir.root if build_dir is not None else None
    failed = [s for s in record.steps if s.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)]
    if not failed:
        return ""
    parts = ['<section class="failures"><h2>Failures</h2>']
    for step in failed:
        failure = explain_failure(step, root=root)
        parts.append(
            f'<div class="failure" data-failure="{_e(step.name)}"><h3>{_e(failure.headline)}</h3>'
        )
        if failure.first is not None:
            where = failure.first.location
            column = f":{where.col}" if where.col is not None else ""
            parts.append(
                f"<p>first error, at <code>{_e(where.file)}:{where.line}{column}</code>"
                f'</p><pre class="first-error">{_e(chr(10).join(failure.first.lines))}'
                "</pre>"
            )
        if failure.tail:
            label = "… the end of its log" if failure.first is not None else "the end of its log"
            parts.append(
                f'<p>{_e(label)}</p><pre class="tail">{_e(chr(10).join(failure.tail))}</pre>'
            )
        if failure.message:
            parts.append(f'<pre class="tail">{_e(chr(10).join(failure.message))}</pre>')
        if step.log_path:
            parts.append(f"<p>log: {_log_link(step.log_path, _Place.of(build_dir))}</p>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _verdict(record: BuildRecord) -> str:
    if record.ok:
        return '<span class="verdict ok">succeeded</span>'
    if record.exit_code > 128:  # 128 + signal number, as the executor reports an interrupt
        return f'<span class="verdict interrupted">interrupted (exit {record.exit_code})</span>'
    return f'<span class="verdict failed">failed (exit {record.exit_code})</span>'


def _stats(record: BuildRecord) -> str:
    counts = {o: sum(1 for s in record.steps if s.outcome is o) for o in Outcome}
    summary = ", ".join(f"{n} {_STATUS_LABEL[o]}" for o, n in counts.items() if n)
    items = [
        ("mode", record.mode),
        ("target", record.target),
        ("wall", format_duration(record.wall)),
        ("parallelism", f"{record.parallelism:.2f} of {record.jobs} jobs"),
        ("cache hit rate", f"{record.cache_hit_rate:.0%}"),
        ("busy time", format_duration(record.busy_time)),
        ("critical path", _critical_length(record)),
        ("steps", summary or "none"),
        ("started", record.started_at),
        ("host", record.host or "-"),
    ]
    return "\n".join(
        f'<div class="stat"><dt>{_e(k)}</dt><dd data-stat="{_e(k)}">{_e(v)}</dd></div>'
        for k, v in items
    )


def _critical_length(record: BuildRecord) -> str:
    by_name = {s.name: s for s in record.steps}
    return format_duration(sum(by_name[n].duration for n in ran_critical_path(record)))


def _warnings(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<section class="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'


def _legend() -> str:
    items = [
        f'<span class="key"><i class="swatch {o.value}"></i>{_e(_STATUS_LABEL[o])}</span>'
        for o in Outcome
    ]
    items.append('<span class="key"><i class="swatch built critical"></i>critical path</span>')
    return "".join(items)


def _axis(span: float, step: float) -> str:
    ticks = []
    count = int(span / step + 1e-9) if step > 0 else 0
    for i in range(count + 1):
        t = i * step
        ticks.append(
            f'<span class="tick" style="left:{_percent(t, span):.4f}%">{_e(tick_label(t))}</span>'
        )
    return "".join(ticks)


def _tooltip(text: _StepText, depends_on: Sequence[str], skip_reason: str | None = None) -> str:
    step = text.step
    status = _STATUS_LABEL[step.outcome]
    if step.cache_source:
        status += f" ({step.cache_source} cache)"
    lines = [step.name, f"status: {status}"]
    if text.ran:
        lines += [
            f"start: {format_duration(step.start)}",
            f"duration: {text.shown}",
            f"worker: {step.worker + 1}",
            f"attempts: {step.attempts}",
        ]
    else:
        lines.append(skip_reason or "never started")
    if step.exit_code is not None:
        lines.append(f"exit code: {step.exit_code}")
    if text.critical:
        lines.append("on the critical path")
    if step.reasons:
        lines.append("why: " + "; ".join(step.reasons))
    if depends_on:
        lines.append("after: " + ", ".join(depends_on))
    return "\n".join(lines)


def _row(
    text: _StepText, span: float, depends_on: Sequence[str], skip_reason: str | None = None
) -> str:
    step, name, ran = text.step, text.name, text.ran
    critical = " critical" if text.critical else ""
    left = _percent(step.start, span) if ran else 0.0
    width = _percent(text.duration, span) if ran else 0.0
    marker = '<b class="crit-mark" title="on the critical path">◆</b>' if text.critical else ""
    lane = f'<span class="lane">w{step.worker + 1}</span>' if ran else ""
    note = (
        ""
        if ran
        else (
            f'<span class="note">{_e(_STATUS_LABEL[step.outcome])}'
            + (f": {_e(skip_reason.removeprefix('not started: '))}" if skip_reason else "")
            + "</span>"
        )
    )
    return (
        f'<div class="row" data-row="{name}" '
        f'data-deps="{_e(json.dumps(list(depends_on)))}">'
        f'<div class="label" title="{name}">{marker}<span class="name">{name}'
        f'</span>{lane}<span class="dur">{text.shown}</span></div>'
        f'<div class="track">{note}<div class="bar {step.outcome.value}{critical}" '
        f'data-step="{name}" '
        f'data-duration="{text.duration:.6f}" data-start="{step.start:.6f}" '
        f'style="left:{left:.4f}%;width:{width:.4f}%" '
        f'title="{_e(_tooltip(text, depends_on, skip_reason))}"></div>'
        "</div></div>"
    )


def _table(steps: Sequence[_StepText], skipped: Mapping[str, str], place: _Place) -> str:
    head = (
        "<tr><th>step</th><th>status</th><th>start</th><th>duration</th><th>worker</th>"
        "<th>attempts</th><th>exit</th><th>why it ran / cache</th><th>log</th></tr>"
    )
    body = []
    for text in steps:
        s = text.step
        ran = text.ran
        why = (
            "; ".join(s.reasons)
            or skipped.get(s.name)
            or (f"{s.cache_source} cache" if s.cache_source else "")
        )
        cells = [
            ("◆ " if text.critical else "") + text.name,
            _STATUS_LABEL[s.outcome],
            format_duration(s.start) if ran else "-",
            text.shown,
            str(s.worker + 1) if ran else "-",
            str(s.attempts),
            "-" if s.exit_code is None else str(s.exit_code),
            _e(why),
        ]
        tds = "<td>" + "</td><td>".join(cells) + "</td>"
        tds += f"<td>{_log_link(s.log_path, place)}</td>"
        body.append(f'<tr class="{s.outcome.value}" data-row-step="{text.name}">{tds}</tr>')
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
:root {
  --bg: #ffffff; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --panel: #f6f8fa;
  --built: #4c78a8; --cached: #59a14f; --restored: #76b7b2; --failed: #e15759;
  --skipped: #bab0ac; --interrupted: #f28e2b; --crit: #1f2328; --hl: #fff3b0;
  --label: 18rem;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d; --panel: #161b22;
          --crit: #f0f6fc; --hl: #3b3520; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem 2rem; background: var(--bg); color: var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.35rem; margin: 0 0 .75rem; font-weight: 600; }
h1 .id { color: var(--muted); font-weight: 400; font-size: 1rem; margin-left: .5rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.verdict { padding: .1rem .55rem; border-radius: 1rem; color: #fff; font-size: .95rem; }
.verdict.ok { background: var(--cached); } .verdict.failed { background: var(--failed); }
.verdict.interrupted { background: var(--interrupted); }
dl.stats { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 1rem; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
        padding: .35rem .7rem; }
.stat dt { font-size: .72rem; text-transform: uppercase; letter-spacing: .04em;
           color: var(--muted); }
.stat dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; }
.warnings { border-left: 4px solid var(--interrupted); background: var(--panel);
            padding: .25rem 1rem; margin-bottom: 1rem; }
.warnings h2 { margin-top: .5rem; }
.legend { display: flex; flex-wrap: wrap; gap: 1rem; margin: .5rem 0 .75rem;
          color: var(--muted); }
.key { display: inline-flex; align-items: center; gap: .35rem; }
.swatch { display: inline-block; width: 1.6rem; height: .8rem; border-radius: 2px; }
.gantt { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 2rem .5rem .75rem; }
.axis { display: flex; height: 1.4rem; }
.axis .spacer { flex: 0 0 var(--label); }
.axis .ticks { position: relative; flex: 1 1 auto; border-bottom: 1px solid var(--line); }
.tick { position: absolute; bottom: .15rem; transform: translateX(-50%); font-size: .72rem;
        color: var(--muted); white-space: nowrap; }
.tick:first-child { transform: none; }
.row { display: flex; align-items: center; height: 1.6rem; border-radius: 3px; }
.row:hover, .row.hl { background: var(--hl); }
.row.dim { opacity: .45; }
.label { flex: 0 0 var(--label); display: flex; align-items: center; gap: .35rem;
         padding-right: .75rem; overflow: hidden; white-space: nowrap; }
.label .name { overflow: hidden; text-overflow: ellipsis; font-family: ui-monospace,
               SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
.label .lane { font-size: .7rem; color: var(--muted); border: 1px solid var(--line);
               border-radius: 3px; padding: 0 .25rem; }
.label .dur { margin-left: auto; color: var(--muted); font-variant-numeric: tabular-nums;
              font-size: .8rem; }
.crit-mark { color: var(--crit); font-size: .75rem; }
.track { position: relative; flex: 1 1 auto; height: 100%;
         background-image: linear-gradient(to right, var(--line) 1px, transparent 1px);
         background-size: var(--grid) 100%; }
.bar { position: absolute; top: .3rem; bottom: .3rem; min-width: 2px; border-radius: 2px;
       cursor: default; }
.bar.critical { outline: 2px solid var(--crit); outline-offset: 1px; }
/* Status colors apply to bars and legend swatches only (table rows carry the same classes). */
:is(.bar, .swatch).built { background: var(--built); }
:is(.bar, .swatch).cached { background: var(--cached); }
:is(.bar, .swatch).restored { background: var(--restored); }
:is(.bar, .swatch).failed { background: var(--failed); }
:is(.bar, .swatch).interrupted { background: var(--interrupted); }
:is(.bar, .swatch).skipped { background: repeating-linear-gradient(45deg, var(--skipped) 0 3px,
                              transparent 3px 6px); }
.bar.skipped { min-width: 0; }
.swatch.critical { outline: 2px solid var(--crit); outline-offset: 1px; }
.note { position: absolute; left: .25rem; top: .2rem; font-size: .75rem; color: var(--muted);
        font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
tbody tr td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
                          white-space: nowrap; }
tbody tr { background: none; }
tbody tr.failed td:nth-child(2) { color: var(--failed); font-weight: 600; }
tbody tr.interrupted td:nth-child(2) { color: var(--interrupted); font-weight: 600; }
td:nth-child(8), td:nth-child(9) { color: var(--muted); word-break: break-all; }
#layout { display: none; }
.failures { border-left: 4px solid var(--failed); background: var(--panel);
            padding: .25rem 1rem; margin-bottom: 1rem; }
.failures h3 { font-size: .95rem; margin: .75rem 0 .25rem; color: var(--failed); }
.failures pre { margin: .25rem 0 .5rem; padding: .5rem .75rem; overflow-x: auto;
                background: var(--bg); border: 1px solid var(--line); border-radius: 4px;
                font: .8rem/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.failures p { margin: .25rem 0; }
a.log { color: inherit; }
"""

# Highlights a step's dependencies on hover, then records the laid-out widths (tests read them).
_JS = """
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll(".row[data-row]"));
  var byName = {};
  rows.forEach(function (row) { byName[row.dataset.row] = row; });
  rows.forEach(function (row) {
    var deps = JSON.parse(row.dataset.deps || "[]");
    row.addEventListener("mouseenter", function () {
      rows.forEach(function (r) { r.classList.add("dim"); });
      row.classList.remove("dim");
      deps.forEach(function (d) {
        var dep = byName[d];
        if (dep) { dep.classList.remove("dim"); dep.classList.add("hl"); }
      });
    });
    row.addEventListener("mouseleave", function () {
      rows.forEach(function (r) { r.classList.remove("dim", "hl"); });
    });
  });
  var layout = { track: 0, bars: {} };
  var track = document.querySelector(".track");
  if (track) { layout.track = track.getBoundingClientRect().width; }
  document.querySelectorAll(".bar[data-step]").forEach(function (bar) {
    var box = bar.getBoundingClientRect();
    layout.bars[bar.dataset.step] = { width: box.width, left: box.left - bar.parentElement
      .getBoundingClientRect().left };
  });
  document.getElementById("layout").textContent = JSON.stringify(layout);
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body style="--grid: {grid}%">
<header>
<h1>Build {verdict}<span class="id">{build_id}</span></h1>
<dl class="stats">
{stats}
</dl>
</header>
{warnings}
{failures}
<h2>Timeline</h2>
<div class="legend">{legend}</div>
<section class="gantt">
<div class="axis"><div class="spacer"></div><div class="ticks">{axis}</div></div>
{rows}
</section>
<h2>Steps</h2>
{table}
<pre id="layout"></pre>
<script>{js}</script>
</body>
</html>
"""
