"""Plans as text: the dry run (with what the cache would do), the Mermaid graph and the
JSON plan.

A dry run can say, per step, what a build would do with it (`Forecast`: up to date,
restored from the local or remote cache, or run, and why), as turbo's `--dry=json`
says HIT or MISS. The forecasts come from the caching gate (`CachingGate.predict`, fed
in plan order by `commands.py`); this module only renders them, so planning never
imports the run machinery.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Protocol

from buildlib.planning.plan import Plan


class Forecast(Protocol):
    """What a build would do with one step (`run.caching_gate.Prediction` is one)."""

    @property
    def verdict(self) -> str: ...  # "up to date", "restore (local)", "restore (remote)", "run"

    @property
    def fingerprint(self) -> str: ...  # "" when it cannot be known before a dependency runs

    @property
    def reasons(self) -> Sequence[str]: ...


TAKEN_AS_DONE = "taken as done"  # --from / --only: a step outside the selection


def _cache_status(verdict: str) -> tuple[str, str | None]:
    """turbo's vocabulary: (HIT or MISS, LOCAL or REMOTE)."""
    if verdict == "up to date":
        return "HIT", "LOCAL"
    if verdict.startswith("restore"):
        return "HIT", "REMOTE" if "remote" in verdict else "LOCAL"
    return "MISS", None


def _tally(plan: Plan, forecasts: Mapping[str, Forecast]) -> str:
    counts: dict[str, int] = {}
    for name in plan.steps:
        forecast = forecasts.get(name)
        verdict = forecast.verdict if forecast is not None else "run"
        key = (
            "restored"
            if verdict.startswith("restore")
            else {"up to date": "up to date", "run": "would run"}.get(verdict, verdict)
        )
        counts[key] = counts.get(key, 0) + 1
    order = ["up to date", "restored", "would run"]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


# C0 and C1 controls, and the marks that reorder text (U+202E shows `rm` as `mr`).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with control characters shown as escapes (`\\r`, `\\x1b`): a carriage
    return or a cursor movement in a command must not hide part of it from the person
    reviewing what a dry run would run."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def render_dry_run(
    plan: Plan,
    environ: Mapping[str, str],
    forecasts: Mapping[str, Forecast] | None = None,
    *,
    explain: bool = False,
    cache_note: str = "",
) -> str:
    """Each step in order: what a build would do with it (when `forecasts` are given; with
    `explain` every reason, else the first), its exact command, directory, and
    environment differences. `cache_note` says why there are no forecasts."""
    count = len(plan.steps)
    what = f"{count} step{'' if count == 1 else 's'}"
    if forecasts is not None:
        what += f": {_tally(plan, forecasts)}"
    elif cache_note:
        what += f"; {cache_note}"
    lines = [f"plan: mode={plan.mode} target={plan.target.triple} ({what}; nothing will run)"]
    for index, step in enumerate(plan.steps.values(), 1):
        lines.append(
            f"{index:>3}. {step.name}"
            + (f"  -- {visible(step.description)}" if step.description else "")
        )
        forecast = forecasts.get(step.name) if forecasts is not None else None
        if forecast is not None:
            reasons = list(forecast.reasons)
            shown = reasons if explain else reasons[:1]
            more = (
                f" (and {len(reasons) - 1} more; --explain lists them)"
                if not explain and len(reasons) > 1
                else ""
            )
            status = _cache_status(forecast.verdict)[0]
            head = f"     would: {forecast.verdict} [{status}]"
            if len(shown) == 1:
                lines.append(f"{head}: {shown[0]}{more}")
            else:
                lines.append(head)
                lines += [f"            - {reason}" for reason in shown]
        lines.append(f"     cwd:  {visible(step.cwd_relative)}")
        lines.append(f"     run:  {visible(shlex.join(step.argv))}")
        changed = {k: v for k, v in sorted(step.env.items()) if environ.get(k) != v}
        for key, value in changed.items():
            lines.append(f"     env:  {visible(f'{key}={shlex.quote(value)}')}")
        if step.depends_on:
            lines.append(f"     after: {', '.join(step.depends_on)}")
        if step.outputs:
            lines.append(f"     makes: {visible(', '.join(step.outputs))}")
    return "\n".join(lines)


def render_dry_run_json(
    plan: Plan, environ: Mapping[str, str], forecasts: Mapping[str, Forecast] | None = None
) -> str:
    """The dry run as JSON: the plan's steps, each with `cache` = {status: HIT|MISS,
    source: LOCAL|REMOTE|null, verdict, fingerprint, reasons} (null without forecasts)."""
    steps = []
    for step in plan.steps.values():
        forecast = forecasts.get(step.name) if forecasts is not None else None
        cache: dict[str, object] | None = None
        if forecast is not None:
            status, source = _cache_status(forecast.verdict)
            cache = {
                "status": status,
                "source": source,
                "verdict": forecast.verdict,
                "fingerprint": forecast.fingerprint or None,
                "reasons": list(forecast.reasons),
            }
        steps.append(
            {
                "name": step.name,
                "description": step.description,
                "group": step.group,
                "argv": list(step.argv),
                "cwd": step.cwd_relative,
                "env": {k: v for k, v in sorted(step.env.items()) if environ.get(k) != v},
                "depends_on": list(step.depends_on),
                "outputs": list(step.outputs),
                "cache": cache,
            }
        )
    summary: dict[str, int] = {}
    for entry in steps:
        cache_entry = entry["cache"]
        verdict = cache_entry["verdict"] if isinstance(cache_entry, dict) else "run"
        summary[str(verdict)] = summary.get(str(verdict), 0) + 1
    return _json_step_per_line(
        {"mode": plan.mode, "target": plan.target.triple, "steps": steps, "summary": summary}
    )


def render_mermaid(plan: Plan) -> str:
    """The selected graph as a Mermaid flowchart (edges point from dependency to dependent)."""
    ids = {name: f"s{i}" for i, name in enumerate(plan.steps)}
    lines = ["flowchart LR"]
    lines += [f'  {ids[name]}["{name}"]' for name in plan.steps]
    for name, step in plan.steps.items():
        lines += [f"  {ids[dep]} --> {ids[name]}" for dep in step.depends_on]
    return "\n".join(lines)


def render_plan_json(plan: Plan) -> str:
    return _json_step_per_line(
        {
            "mode": plan.mode,
            "target": plan.target.triple,
            "steps": [
                {
                    "name": s.name,
                    "description": s.description,
                    "group": s.group,
                    "argv": list(s.argv),
                    "cwd": s.cwd_relative,
                    "env": dict(s.env),
                    "depends_on": list(s.depends_on),
                    "outputs": list(s.outputs),
                    "priority": s.priority,
                }
                for s in plan.steps.values()
            ],
        }
    )


def _json_step_per_line(document: Mapping[str, object]) -> str:
    """`document` as JSON, one key per line and each of its `steps` on a line of its own:
    as easy to read and grep as an indented dump, and written by json's C encoder
    (`indent` selects the pure-Python one: 0.5 s for a 10,000-step plan, issue 17)."""
    lines = []
    for key, value in document.items():
        if key == "steps" and isinstance(value, list) and value:
            rows = ",\n".join(f"    {json.dumps(step)}" for step in value)
            text = f"[\n{rows}\n  ]"
        else:
            text = json.dumps(value)
        lines.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}"
