"""Plans as text: the dry run, the Mermaid graph and the JSON plan."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from buildlib.planning.plan import Plan


def render_dry_run(plan: Plan, environ: Mapping[str, str]) -> str:
    """Each step in order: its exact command, directory, and environment differences."""
    lines = [f"plan: mode={plan.mode} target={plan.target.triple} "
             f"({len(plan.steps)} steps, nothing will run)"]
    for index, step in enumerate(plan.steps.values(), 1):
        lines.append(f"{index:>3}. {step.name}" + (f"  -- {step.description}"
                                                   if step.description else ""))
        lines.append(f"     cwd:  {_relative(step.cwd, plan.root)}")
        lines.append(f"     run:  {shlex.join(step.argv)}")
        changed = {k: v for k, v in sorted(step.env.items()) if environ.get(k) != v}
        for key, value in changed.items():
            lines.append(f"     env:  {key}={shlex.quote(value)}")
        if step.depends_on:
            lines.append(f"     after: {', '.join(step.depends_on)}")
        if step.outputs:
            lines.append(f"     makes: {', '.join(step.outputs)}")
    return "\n".join(lines)


def render_mermaid(plan: Plan) -> str:
    """The selected graph as a Mermaid flowchart (edges point from dependency to dependent)."""
    ids = {name: f"s{i}" for i, name in enumerate(plan.steps)}
    lines = ["flowchart LR"]
    lines += [f'  {ids[name]}["{name}"]' for name in plan.steps]
    for name, step in plan.steps.items():
        lines += [f"  {ids[dep]} --> {ids[name]}" for dep in step.depends_on]
    return "\n".join(lines)


def render_plan_json(plan: Plan) -> str:
    return json.dumps({
        "mode": plan.mode, "target": plan.target.triple,
        "steps": [{"name": s.name, "description": s.description, "group": s.group,
                   "argv": list(s.argv), "cwd": _relative(s.cwd, plan.root),
                   "env": dict(s.env), "depends_on": list(s.depends_on),
                   "outputs": list(s.outputs), "priority": s.priority}
                  for s in plan.steps.values()],
    }, indent=2)


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root` (strings: this runs once per step of a 10,000-step plan)."""
    text, base = os.fspath(path), os.fspath(root).rstrip(os.sep)
    if text == base:
        return "."
    return text[len(base) + 1:] if text.startswith(base + os.sep) else text


