"""`--affected` and `--shards` on the command line: narrow a plan to what a change
affects, lay a plan out over CI jobs, and say both for people (text) and for CI (JSON).

Called by `commands.py` (`build --affected`, `plan --affected`, `plan --shards N`) and
by `ci_matrix.py` (`matrix --shards N`). The decisions are `changes/affected.py`'s and
`planning/shards.py`'s; the facts come from `changes/changeset.py`. Nothing here is
imported unless one of these options is given (a no-op build never pays for it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from buildlib.changes.affected import Selection
from buildlib.changes.changeset import AffectedRun, affected_selection
from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.planning.plan import Plan, build_plan
from buildlib.planning.shards import DEFAULT_OVERHEAD, ShardPlan, plan_shards
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target

Planner = Callable[[Sequence[str]], Plan]  # requested steps -> a plan of them and their deps


def note(message: str) -> None:
    """A line for the person or the CI log reading along: stderr, so stdout stays data."""
    print(message, file=sys.stderr, flush=True)


MAX_SHARDS = 1024


def check_options(args: argparse.Namespace) -> None:
    """One clear error for option combinations that mean nothing."""
    affected = getattr(args, "affected", False)
    if (getattr(args, "base", None) or getattr(args, "head", None)) and not affected:
        raise UserError(
            "--base and --head only mean something with --affected",
            fix="add --affected, or drop --base/--head",
        )
    if affected:
        clashing = [
            flag
            for flag, value in (
                ("--only", getattr(args, "only", None)),
                ("--from", getattr(args, "from_step", None)),
                ("--resume", getattr(args, "resume", False)),
            )
            if value
        ]
        if clashing:
            raise UserError(
                f"--affected chooses the steps itself; it cannot be combined with "
                f"{' or '.join(clashing)}",
                fix="drop one of them (name steps after `build` to narrow "
                "--affected to what those steps need)",
            )
    shards = getattr(args, "shards", None)
    if shards is not None and shards < 1:
        raise UserError(
            f"--shards {shards}: at least one job is needed", fix="pass --shards 1 or more"
        )
    if shards is not None and shards > MAX_SHARDS:  # the layout's work grows with it
        raise UserError(
            f"--shards {shards}: more jobs than a CI run has",
            fix=f"pass at most {MAX_SHARDS} (GitHub Actions runs at most 256 of a matrix)",
        )
    waves = getattr(args, "waves", None)
    if waves is not None and (waves < 1 or shards is None):
        raise UserError(
            f"--waves {waves}: "
            + (
                "at least one wave is needed" if waves < 1 else "only means something with --shards"
            ),
            fix="pass --waves 1 or more, with --shards N",
        )
    overhead = getattr(args, "job_overhead", None)
    if overhead is not None and (overhead < 0 or shards is None):
        raise UserError(
            f"--job-overhead {overhead}: "
            + ("negative" if overhead < 0 else "only means something with --shards"),
            fix="pass the seconds a CI job spends before its first step, with --shards N",
        )


# -- affected ---------------------------------------------------------------------------------


def affected(
    plan: Plan, *, base: str | None, head: str | None, environ: Mapping[str, str]
) -> AffectedRun:
    return affected_selection(
        plan,
        base=base,
        head=head,
        environ=environ,
        say=note,
        warn=lambda message: note(f"warning: {message}"),
    )


def summary(run: AffectedRun, plan: Plan, *, limit: int = 50) -> list[str]:
    """What `--affected` chose and why, a line a step (the first `limit` of them)."""
    selection = run.selection
    base = run.base
    where = f"{base.ref}" + (f", merge-base {base.merge_base[:12]}" if base.merge_base else "")
    compared = f"{base.head_ref} ({base.head[:12]})" if base.head_ref else "the work tree"
    count = len(selection.affected)
    lines = [
        f"--affected: {count} of {len(plan.steps)} step{'' if len(plan.steps) == 1 else 's'}"
        f" affected: {compared} against {where} ({base.source}; "
        f"{len(run.changes)} changed path{'' if len(run.changes) == 1 else 's'}"
        + (f"; {_fetched(base.fetched, base.deepened)} to find it" if base.deepened else "")
        + ")"
    ]
    for name, whys in list(selection.affected.items())[:limit]:
        lines.append(
            f"  {name}: "
            + "; ".join(w.text() for w in whys[:3])
            + (f"; and {len(whys) - 3} more" if len(whys) > 3 else "")
        )
    if count > limit:
        lines.append(f"  ... and {count - limit} more (plan --affected --json lists them all)")
    if selection.needed:
        lines.append("  needed by them, from the cache or built: " + ", ".join(selection.needed))
    for name, locks in selection.spared.items():
        lines.append(
            f"  not affected: {name} ({', '.join(locks)} changed, but not what it resolves)"
        )
    return lines


def _fetched(received: int, asked: int) -> str:
    """What deepening cost: the commits received (a history shorter than the depth asked
    for sends fewer)."""
    plural = "" if received == 1 else "s"
    return f"{received} commit{plural} fetched ({asked} asked for)"


def narrow(run: AffectedRun, planner: Planner) -> Plan | None:
    """The plan of the affected steps (their dependencies come along); None: nothing."""
    selected = run.selection.selected
    return planner(selected) if selected else None


def affected_json(run: AffectedRun, plan: Plan) -> dict[str, Any]:
    base = run.base
    selection: Selection = run.selection
    return {
        "base": {
            "ref": base.ref,
            "source": base.source,
            "commit": base.commit,
            "merge_base": base.merge_base,
            "head": base.head,
            "head_ref": base.head_ref,
            "compared": base.head_ref or "work tree",
            "shallow": base.shallow,
            "deepened": base.deepened,
            "fetched": base.fetched,
            "note": base.note,
        },
        "changes": [
            {"path": c.path, "kind": c.kind.value, "old_path": c.old_path, "submodule": c.submodule}
            for c in run.changes
        ],
        "total": len(plan.steps),
        "affected": [
            {"name": name, "reasons": [w.as_json() for w in whys]}
            for name, whys in selection.affected.items()
        ],
        "needed": list(selection.needed),
        "unaffected": list(selection.unaffected),
        "spared": [
            {"name": name, "lockfiles": list(locks)} for name, locks in selection.spared.items()
        ],
    }


# -- shards -----------------------------------------------------------------------------------


def shard_layout(
    plan: Plan, *, shards: int, waves: int | None, overhead: float | None
) -> ShardPlan:
    steps = plan.steps
    return plan_shards(
        list(steps),
        {n: s.depends_on for n, s in steps.items()},
        {n: s.estimate for n, s in steps.items()},
        shards=shards,
        cacheable={n: s.cacheable for n, s in steps.items()},
        overhead=DEFAULT_OVERHEAD if overhead is None else overhead,
        max_waves=waves,
    )


def estimates_note(plan: Plan, estimates: Mapping[str, float]) -> str:
    timed = sum(1 for name in plan.steps if name in estimates)
    if timed == len(plan.steps):
        return "every step's time comes from earlier builds (.buildlib/history.jsonl)"
    return (
        f"{len(plan.steps) - timed} of {len(plan.steps)} steps were never timed here and "
        "count 1 s each: build once (or restore .buildlib/history.jsonl) for a better "
        "layout"
    )


def shards_text(layout: ShardPlan) -> list[str]:
    lines = [
        f"{len(layout.jobs) - 1} job{'' if len(layout.jobs) == 2 else 's'} in "
        f"{layout.waves} wave{'' if layout.waves == 1 else 's'} of at most {layout.shards},"
        f" then '{layout.jobs[-1].id}': planned {layout.makespan:.1f} s of steps "
        f"(lower bound {layout.lower_bound:.1f} s = max(critical path "
        f"{layout.critical_path:.1f} s, work {layout.total:.1f} s / {layout.shards}); "
        f"{layout.makespan_with_overhead:.1f} s with {layout.overhead:g} s to start each "
        "job"
    ]
    for job in layout.jobs:
        needs = (
            f" after {', '.join(job.needs)}"
            if job.needs and not job.final
            else " after every job"
            if job.final
            else ""
        )
        again = f" (runs again: {', '.join(job.reruns)})" if job.reruns else ""
        lines.append(
            f"  {job.id} (wave {job.wave}, {job.estimate:.1f} s){needs}: "
            + (" ".join(job.steps) or "restore, verify")
            + again
        )
    return lines


def plan_with_options(
    args: argparse.Namespace,
    manifest: Manifest,
    *,
    mode: str,
    target: Target,
    estimates: Mapping[str, float],
) -> int:
    """`plan --affected` and/or `--shards N`: text, or JSON with `--json`.

    The JSON holds `mode`, `target`, `steps` (the plan: with --affected, the affected
    steps and what they need), `affected` (base, changes, each affected step's typed
    reasons, needed, unaffected, spared) and `shards` (`ShardPlan.as_json`, with the
    estimates used)."""
    import json

    check_options(args)
    environ = dict(os.environ)

    def planner(steps: Sequence[str]) -> Plan:
        return build_plan(
            manifest,
            mode=mode,
            target=target,
            requested=steps,
            environ=environ,
            estimates=estimates,
        )

    full = planner(args.steps)
    plan: Plan | None = full
    run = None
    if args.affected:
        run = affected(full, base=args.base, head=args.head, environ=environ)
        plan = narrow(run, planner)
    layout = None
    if args.shards is not None and plan is not None:
        layout = shard_layout(
            plan, shards=args.shards, waves=args.waves, overhead=args.job_overhead
        )
    if args.json:
        if run is not None:  # for the log; stdout is the JSON
            for line in summary(run, full):
                note(line)
        data: dict[str, Any] = {
            "mode": mode,
            "target": target.triple,
            "steps": list(plan.steps) if plan is not None else [],
        }
        if run is not None:
            data["affected"] = affected_json(run, full)
        if layout is not None and plan is not None:
            data["shards"] = {
                **layout.as_json(),
                "estimates": {name: round(step.estimate, 3) for name, step in plan.steps.items()},
                "estimates_note": estimates_note(plan, estimates),
            }
        print(json.dumps(data, indent=2))
        return 0
    if run is not None:
        print("\n".join(summary(run, full)))
    if layout is not None and plan is not None:
        print("\n".join(shards_text(layout)))
        print(f"  ({estimates_note(plan, estimates)})")
    elif plan is None:
        print(
            "nothing is affected: no job to lay out"
            if args.shards is not None
            else "--affected: nothing to build"
        )
    return 0


@record
class ShardRequest:
    """What `matrix --shards N` asks for (integrations/ci_matrix.py parses it)."""

    mode: str
    target: str
    shards: int
    waves: int | None
    overhead: float | None
    affected: bool
    base: str | None = None


def shard_request_layout(
    request: ShardRequest, manifest: Manifest, *, target: Target, estimates: Mapping[str, float]
) -> ShardPlan | None:
    """The layout `matrix --shards N` turns into waves of jobs; None: nothing affected."""
    environ = dict(os.environ)

    def planner(steps: Sequence[str]) -> Plan:
        return build_plan(
            manifest,
            mode=request.mode,
            target=target,
            requested=steps,
            environ=environ,
            estimates=estimates,
        )

    plan: Plan | None = planner(())
    if request.affected and plan is not None:
        run = affected(plan, base=request.base, head=None, environ=environ)
        for line in summary(run, plan):
            note(line)
        plan = narrow(run, planner)
    if plan is None:
        return None
    layout = shard_layout(
        plan, shards=request.shards, waves=request.waves, overhead=request.overhead
    )
    for line in shards_text(layout):
        note(line)
    note(f"  ({estimates_note(plan, estimates)})")
    return layout
