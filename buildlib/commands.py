"""The CLI's commands: each a short pipeline over the engine's packages, and the one table
(`COMMANDS`) that names them, their options and whether they read the manifest.

`cli.py` builds its parser from the table and dispatches through it; nothing else
lists the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildlib.core import graph
from buildlib.core.errors import UserError
from buildlib.core.fmt import some_names
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.planning.plan import Plan, build_plan, resolve_artifacts
from buildlib.run.executor import ExecOptions, Executor
from buildlib.run.gate import AlwaysRun, Gate
from buildlib.run.journal import Journal
from buildlib.run.lock import workspace_lock
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target, check_buildable

if TYPE_CHECKING:
    from buildlib.planning.render import Forecast
    from buildlib.run.results import BuildRecord


@record
class Context:
    """What a command that reads the manifest gets besides its arguments."""

    manifest: Manifest
    mode: str
    target: Target
    host: Target

    @property
    def build_dir(self) -> BuildDir:
        return BuildDir(self.manifest.root)


@record
class Command:
    """One command: its help line, its options, and what it runs.

    `run` takes the context when `manifest` is true, else None.
    """

    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Any], int]
    manifest: bool = True
    common: bool = True  # --manifest, --mode, --target
    passthrough: bool = False  # unknown options go on to the command, in `args.rest`


MAX_JOBS = 4096  # a worker lane each: a bound on memory, not a guess at the machine


def default_jobs(requested: int | None, environ: Mapping[str, str]) -> int:
    if requested is not None:
        jobs = requested
    elif environ.get("BUILDLIB_JOBS"):
        try:
            jobs = int(environ["BUILDLIB_JOBS"])
        except ValueError:
            raise UserError(
                f"BUILDLIB_JOBS={environ['BUILDLIB_JOBS']!r} is not a number",
                fix="set BUILDLIB_JOBS to a positive integer",
            ) from None
    else:
        jobs = os.cpu_count() or 1
    given = f"-j {jobs}" if requested is not None else f"BUILDLIB_JOBS={jobs}"
    if jobs < 1:
        raise UserError(f"{given}: at least one job is needed", fix="ask for 1 or more")
    if jobs > MAX_JOBS:
        raise UserError(
            f"{given}: more steps at once than any machine runs",
            fix=f"ask for at most {MAX_JOBS} (the default is the number of CPUs)",
        )
    return jobs


def _estimates(context: Context) -> dict[str, float]:
    from buildlib.report.history import planning_estimates

    mode = context.mode
    # Reading stops once these have a full window; a step of other modes never would.
    steps = [
        name for name, s in context.manifest.steps.items() if s.modes is None or mode in s.modes
    ]
    return planning_estimates(context.build_dir.history, mode, context.target.triple, steps=steps)


# -- build -----------------------------------------------------------------------------------


def build_options(parser: argparse.ArgumentParser) -> None:
    from buildlib.cache.config import cache_location_options

    parser.add_argument(
        "steps",
        nargs="*",
        help="steps to build with their dependencies (default: every step of the mode)",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        help="steps at once (default: $BUILDLIB_JOBS or the number of CPUs)",
    )
    parser.add_argument(
        "-k",
        "--keep-going",
        action="store_true",
        help="on a failure, build everything that does not depend on it",
    )
    parser.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="print the plan (commands, directories, environment) and what "
        "a build would do with each step (up to date, restore from the "
        "cache, run, and why; --explain: every reason); run nothing",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: print it as JSON (each step's cache status "
        "HIT/MISS, source, fingerprint and reasons)",
    )
    parser.add_argument("--graph", action="store_true", help="print the selected graph as Mermaid")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream every step's output, prefixed with its name",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument("--explain", action="store_true", help="say why each step ran")
    parser.add_argument(
        "--force", action="store_true", help="re-run every step, ignoring the cache"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="neither skip nor store anything (every step runs)"
    )
    cache_location_options(parser)
    parser.add_argument(
        "--remote-read-only", action="store_true", help="fetch from the remote cache, never upload"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="re-run what failed or was interrupted in the last build of "
        "this mode and target, its dependents, and what went stale since",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STEP",
        default=[],
        help="run these steps; their dependencies come from the cache or are built",
    )
    parser.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="run this step and everything downstream of it",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="fail at once if another build holds the workspace"
    )
    _affected_options(parser)


def _affected_options(parser: argparse.ArgumentParser) -> None:
    """--affected, --base, --head (build and plan; docs/ci.md)."""
    parser.add_argument(
        "--affected",
        action="store_true",
        help="only the steps whose inputs, definition or tools differ from "
        "the base (committed, staged, unstaged and untracked changes) and "
        "what depends on them",
    )
    parser.add_argument(
        "--base",
        metavar="REF",
        help="with --affected: compare with the "
        "merge-base of REF and the head (HEAD, or --head) (default: "
        "$BUILDLIB_BASE, else $GITHUB_BASE_REF on a pull request, else the "
        "default branch); a shallow clone is deepened to find it",
    )
    parser.add_argument(
        "--head",
        metavar="REF",
        help="with --affected: compare this commit "
        "instead of the work tree (default: $BUILDLIB_HEAD)",
    )


def build_command(args: argparse.Namespace, context: Context) -> int:
    """Plan, then (unless --dry-run/--graph) lock the workspace, execute and report."""
    from buildlib.cache.config import engine_secrets

    manifest, mode, target = context.manifest, context.mode, context.target
    environ = dict(os.environ)
    secrets = engine_secrets(manifest, environ)
    # The steps' environment: the cache's credentials are the engine's alone.
    step_environ = {name: value for name, value in environ.items() if name not in secrets}
    estimates = _estimates(context)
    requested = [*args.steps, *args.only]
    if args.from_step and args.from_step not in manifest.steps:
        raise UserError(
            f"--from: unknown step '{args.from_step}'", fix="steps: " + some_names(manifest.steps)
        )
    plan = build_plan(
        manifest,
        mode=mode,
        target=target,
        requested=requested,
        environ=environ,
        estimates=estimates,
    )
    if args.from_step and args.from_step not in plan.steps:
        # Else every step would be taken as done and the build would say "nothing to do".
        which = " of the steps asked for" if requested else ""
        raise UserError(
            f"--from: step '{args.from_step}' is not part of this build{which} "
            f"(mode {mode}, target {target.triple})",
            fix=f"its `modes` or `when` keys leave it out of mode {mode}, or the steps "
            "asked for do not depend on it; `buildlib plan` lists this build's steps",
        )
    if args.affected or args.base or args.head:
        from buildlib.integrations import ci_plans

        ci_plans.check_options(args)
        run = ci_plans.affected(plan, base=args.base, head=args.head, environ=environ)
        for line in ci_plans.summary(run, plan):
            ci_plans.note(line)
        narrowed = ci_plans.narrow(
            run,
            lambda steps: build_plan(
                manifest,
                mode=mode,
                target=target,
                requested=steps,
                environ=environ,
                estimates=estimates,
            ),
        )
        if narrowed is None:
            ci_plans.note("--affected: nothing to build")
            return 0
        plan = narrowed
    if args.graph:
        from buildlib.planning.render import render_mermaid

        print(render_mermaid(plan))
        return 0
    if args.dry_run:
        from buildlib.planning.render import render_dry_run, render_dry_run_json

        forecasts = (
            None if args.no_cache else _forecasts(args, context, plan, environ, step_environ)
        )
        if args.json:
            print(render_dry_run_json(plan, environ, forecasts))
        else:
            print(
                render_dry_run(
                    plan,
                    environ,
                    forecasts,
                    explain=args.explain,
                    cache_note="--no-cache: every step would run",
                )
            )
        return 0
    if args.json:
        raise UserError(
            "--json goes with --dry-run",
            fix="add --dry-run, or drop --json "
            "(a build's JSON report is .buildlib/reports/latest.json)",
        )
    check_buildable(target, context.host, {t for s in plan.steps.values() for t in s.tools})
    jobs = default_jobs(args.jobs, environ)
    from buildlib.report.terminal import make_reporter

    reporter = make_reporter(
        stream=sys.stdout,
        environ=environ,
        verbose=args.verbose,
        force_plain=args.plain,
        root=plan.root,
        step_dirs={name: s.cwd for name, s in plan.steps.items()},
        deps={name: s.depends_on for name, s in plan.steps.items()},
    )
    build_dir = context.build_dir
    with workspace_lock(build_dir, wait=not args.no_wait, on_wait=reporter.warning):
        journal = Journal(build_dir.journal(mode, target.triple))
        done, resumed, forced = _selection(args, plan, journal)
        gate = _make_gate(
            args,
            context,
            plan,
            forced=forced,
            environ=environ,
            step_environ=step_environ,
            warn=reporter.warning,
        )
        options = ExecOptions(
            jobs=jobs,
            keep_going=args.keep_going,
            verbose=args.verbose,
            log_dir=build_dir.logs(mode, target.triple),
            done=frozenset(done),
            resumed=frozenset(resumed),
        )
        executor = Executor(
            plan,
            reporter=reporter,
            options=options,
            gate=gate,
            environ=step_environ,
            estimates=estimates,
            journal=journal,
        )
        record = executor.run()
        _write_reports(build_dir, plan, record, reporter.warning)
    if args.explain:
        print(render_explain(record))
    return record.exit_code


def _forecasts(
    args: argparse.Namespace,
    context: Context,
    plan: Plan,
    environ: Mapping[str, str],
    step_environ: Mapping[str, str],
) -> dict[str, Forecast]:
    """What a build with these options would do with each step (`--dry-run`), in plan
    order, each step's prediction fed with its dependencies' predicted outputs. Reads the
    workspace's state and the cache; writes nothing and restores nothing."""
    from buildlib.planning.render import TAKEN_AS_DONE
    from buildlib.run.caching_gate import CachingGate, Prediction, Verdict

    journal = Journal(context.build_dir.journal(plan.mode, plan.target.triple))
    done, _, forced = _selection(args, plan, journal)
    gate = _make_gate(
        args,
        context,
        plan,
        forced=forced,
        environ=environ,
        step_environ=step_environ,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    assert isinstance(gate, CachingGate)  # --no-cache makes no forecasts
    forecasts: dict[str, Forecast] = {}
    digests: dict[str, str | None] = {}
    for name, step in plan.steps.items():
        if name in done:
            digest = gate.current_outputs_digest(step)
            forecasts[name] = Prediction(
                verdict=Verdict.UP_TO_DATE,
                fingerprint="",
                reasons=(TAKEN_AS_DONE + " (--from or --only)",),
                outputs_digest=digest,
            )
            digests[name] = digest
            continue
        prediction = gate.predict(step, {d: digests.get(d) for d in step.depends_on})
        forecasts[name] = prediction
        digests[name] = prediction.outputs_digest
    return forecasts


def _selection(
    args: argparse.Namespace, plan: Plan, journal: Journal
) -> tuple[set[str], set[str], set[str] | None]:
    """(steps taken as done without running, steps done in the build --resume continues
    (run again only if stale), steps forced to run; None = every step)."""
    deps = {name: s.depends_on for name, s in plan.steps.items()}
    forced: set[str] | None = None if args.force else set()
    done: set[str] = set()
    if args.from_step:
        downstream = graph.downstream(deps, [args.from_step])
        done = set(plan.steps) - downstream
        if forced is not None:
            forced |= downstream
    if args.only and forced is not None:
        forced |= set(args.only)
    if args.only and args.no_cache:
        last = journal.last_success()
        done |= {s for s in plan.steps if s not in args.only and s in last}
    if args.resume:
        last_build = journal.last_build()
        if last_build is None:
            raise UserError(
                "--resume: no earlier build of this mode and target to resume",
                fix="run the build once without --resume",
            )
        rerun = graph.downstream(deps, last_build.unfinished & set(plan.steps))
        rerun |= set(plan.steps) - set(last_build.selected)
        return done, set(plan.steps) - rerun - done, forced
    return done, set(), forced


def _make_gate(
    args: argparse.Namespace,
    context: Context,
    plan: Plan,
    *,
    forced: set[str] | None,
    environ: Mapping[str, str],
    step_environ: Mapping[str, str],
    warn: Callable[[str], None],
) -> Gate[Any]:
    """`environ` configures the cache; `step_environ` (without its secrets) is what the
    steps see, so it is what their fingerprints read."""
    if args.no_cache:
        return AlwaysRun(plan.root)
    from buildlib.cache.config import cache_config
    from buildlib.run.caching_gate import CachingGate

    config = cache_config(
        context.manifest,
        environ,
        cache_dir=args.cache_dir,
        remote_url=args.remote_cache,
        read_only=args.remote_read_only,
    )
    return CachingGate(
        plan,
        state_dir=context.build_dir.state(plan.mode, plan.target.triple),
        cache=config,
        forced=forced,
        environ=step_environ,
        warn=warn,
    )


def _write_reports(
    build_dir: BuildDir, plan: Plan, record: BuildRecord, warn: Callable[[str], None]
) -> None:
    from buildlib.report.writers import write_build_reports

    deps = {name: s.depends_on for name, s in plan.steps.items()}
    try:
        write_build_reports(record, deps, build_dir)
    except OSError as exc:
        warn(f"could not write the build report: {exc}")
    except UserError as exc:  # a directory where a report file goes: the build stands
        warn(f"could not write the build report: {exc.render()}")


def render_explain(record: BuildRecord) -> str:
    from buildlib.run.results import Outcome

    lines = ["why steps ran:"]
    for step in record.steps:
        if step.outcome in (Outcome.BUILT, Outcome.FAILED, Outcome.INTERRUPTED):
            lines.append(f"  {step.name}: " + ("; ".join(step.reasons) or "no reason recorded"))
        elif step.outcome.from_cache:
            why = f": {'; '.join(step.reasons)}" if step.reasons else ""
            lines.append(f"  {step.name}: up to date ({step.outcome.value}){why}")
    return "\n".join(lines)


# -- the other commands ------------------------------------------------------------------


def _plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("steps", nargs="*")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON (what the plain plan "
        "always prints; --affected and --shards print text without it)",
    )
    _affected_options(parser)
    parser.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="lay the build out over CI "
        "jobs, at most N at once, exchanging results through the remote "
        "cache; timings from earlier builds (docs/ci.md)",
    )
    parser.add_argument(
        "--waves",
        type=int,
        metavar="W",
        help="with --shards: at most W "
        "waves of jobs, each waiting for the one before (default: no limit)",
    )
    parser.add_argument(
        "--job-overhead",
        type=float,
        metavar="SECONDS",
        help="with --shards: what a CI job costs before its first step (default 30)",
    )


def plan_command(args: argparse.Namespace, context: Context) -> int:
    from buildlib.planning.render import render_plan_json

    if not (
        args.affected
        or args.base
        or args.head
        or args.shards is not None
        or args.waves is not None
        or args.job_overhead is not None
    ):
        plan = build_plan(
            context.manifest,
            mode=context.mode,
            target=context.target,
            requested=args.steps,
            environ=os.environ,
        )
        print(render_plan_json(plan))
        return 0
    from buildlib.integrations.ci_plans import plan_with_options

    return plan_with_options(
        args,
        context.manifest,
        mode=context.mode,
        target=context.target,
        estimates=_estimates(context),
    )


def _no_options(parser: argparse.ArgumentParser) -> None:
    del parser  # the command takes only the common options


def last_built(args: argparse.Namespace, context: Context) -> tuple[str, Target, str]:
    """The mode and target a command about a build looks at: those given (--mode,
    $BUILDLIB_MODE, --target), else the last build's, else the default mode and this
    machine; and a note saying which it took, for the output."""
    from buildlib.report.writers import read_last_build
    from buildlib.workspace.targets import get_target

    if args.mode or os.environ.get("BUILDLIB_MODE"):
        return context.mode, context.target, ""
    last = read_last_build(context.build_dir)
    if last is None or last.mode not in context.manifest.modes:
        return context.mode, context.target, ""
    target = context.target
    if not args.target:
        try:
            target = get_target(last.target)
        except UserError:
            target = context.target
    return (
        last.mode,
        target,
        (f"({last.mode}, {target.triple}: the last build's; --mode M --target T for another)"),
    )


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--built-only",
        action="store_true",
        help="only the artifacts of the steps the last build of this mode "
        "and target selected (after build --affected or a partial build)",
    )


def verify_command(args: argparse.Namespace, context: Context) -> int:
    from buildlib.verify.checks import nox_step_hint, render_report, verify_artifacts

    manifest = context.manifest
    mode, target, note = last_built(args, context)
    if note:
        print(f"verify {note}", file=sys.stderr)
    plan = build_plan(manifest, mode=mode, target=target, environ=os.environ)
    artifacts = resolve_artifacts(manifest, plan, os.environ)
    if getattr(args, "built_only", False):
        last = Journal(context.build_dir.journal(mode, target.triple)).last_build()
        built = set(last.selected) if last is not None else set()
        artifacts = [a for a in artifacts if a.step in built]
        if not artifacts:
            print(
                f"verify --built-only: the last {mode} build for {target.triple} selected "
                "no step that makes an artifact; nothing to check"
            )
            return 0
    if not artifacts:
        raise UserError(
            f"no artifacts declared for mode '{mode}'",
            fix=f"declare [[artifact]] tables in {manifest.path}",
        )
    report = verify_artifacts(
        artifacts,
        root=manifest.root,
        target=target,
        host=context.host,
        mode=mode,
        step_hint=nox_step_hint(mode, target.triple),
    )
    print(render_report(report))
    return 0 if report.ok else 1


def _clean_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("groups", nargs="*", help="only these subsystems (step groups) or steps")
    parser.add_argument("--cache", action="store_true", help="also empty the cache")
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="list what would be removed, with sizes"
    )
    parser.add_argument("--cache-dir", type=Path)


def clean_command(args: argparse.Namespace, context: Context) -> int:
    from buildlib.integrations.clean import clean

    return clean(
        context.manifest,
        target=context.target,
        selection=args.groups,
        dry_run=args.dry_run,
        cache=args.cache,
        cache_dir=args.cache_dir,
    )


def _metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=20)


def metrics_command(args: argparse.Namespace, context: Context) -> int:
    from buildlib.report.metrics import metrics_table, render_metrics

    mode, target, note = last_built(args, context)
    if note:
        print(f"metrics {note}", file=sys.stderr)
    result = metrics_table(
        context.build_dir.history, last=args.last, mode=mode, target=target.triple
    )
    print(render_metrics(result))
    return 0


def _prune_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-size", required=True, help="e.g. 500M, 2G")
    parser.add_argument("--cache-dir", type=Path)


def prune_command(args: argparse.Namespace, context: None) -> int:
    from buildlib.cache.admin import prune_cache
    from buildlib.core.fmt import human_size

    root, result = prune_cache(args.max_size, cache_dir=args.cache_dir, environ=os.environ)
    print(
        f"cache {root}: {human_size(result.before)} -> {human_size(result.after)} "
        f"(limit {human_size(result.limit)}); removed {result.removed_entries} entries and "
        f"{result.removed_blobs} blobs"
    )
    return 0


def keygen_command(args: argparse.Namespace, context: None) -> int:
    """Print a new Ed25519 key pair for signing cache entries (docs/cache.md)."""
    from buildlib.cache.signing import generate

    private, public = generate()
    print("# The private key: a secret of the CI jobs that may fill the shared cache, as")
    print("# BUILDLIB_CACHE_SIGNING_KEY. Never commit it.")
    print(private)
    print("# The public key: commit it in build.toml, so every build trusts what CI signed:")
    print(f'#   [cache]\n#   trusted_keys = ["{public}"]')
    print(public)
    return 0


def matrix_command(args: argparse.Namespace, context: Context) -> int:
    from buildlib.integrations.ci_matrix import matrix_main

    rest = [a for a in args.rest if a != "--"]
    return matrix_main(
        rest,
        manifest_modes=list(context.manifest.modes),
        shard_planner=lambda request: _shard_matrix(context, request),
    )


def _shard_matrix(context: Context, request: Any) -> Any:
    """`matrix --shards N`: the layout of one mode and target (integrations/ci_plans.py)."""
    from buildlib.integrations.ci_plans import shard_request_layout
    from buildlib.workspace.targets import get_target

    target = get_target(request.target)
    estimates_context = Context(
        manifest=context.manifest, mode=request.mode, target=target, host=context.host
    )
    return shard_request_layout(
        request, context.manifest, target=target, estimates=_estimates(estimates_context)
    )


COMMANDS: dict[str, Command] = {
    "build": Command(
        help="run the step graph (the default command)", options=build_options, run=build_command
    ),
    "plan": Command(
        help="print the plan as JSON (used by nox and CI); --affected: what a "
        "change affects and why; --shards N: a layout over N CI jobs",
        options=_plan_options,
        run=plan_command,
    ),
    "verify": Command(
        help="check the declared artifacts of a mode and target",
        options=_verify_options,
        run=verify_command,
    ),
    "clean": Command(
        help="remove declared outputs (and optionally the cache)",
        options=_clean_options,
        run=clean_command,
    ),
    "prune": Command(
        help="shrink the local cache, least recently used first",
        options=_prune_options,
        run=prune_command,
        manifest=False,
        common=False,
    ),
    "metrics": Command(
        help="per-step timings over recent builds", options=_metrics_options, run=metrics_command
    ),
    "matrix": Command(
        help="print the CI matrix (mode x target; --modes, --targets, --native-only, --shards)",
        options=_no_options,
        run=matrix_command,
        passthrough=True,
    ),
    "keygen": Command(
        help="print a new key pair for signing cache entries",
        options=_no_options,
        run=keygen_command,
        manifest=False,
        common=False,
    ),
}


# -- audit (issue 18; docs/audit.md) --------------------------------------------------------


def _audit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "steps",
        nargs="*",
        help="steps to audit (default: every step of the "
        "mode with the cache on); dependencies not audited are built first",
    )
    parser.add_argument(
        "--twice",
        action="store_true",
        help="run each step twice from clean outputs and list the outputs "
        "that differ, with the first differing byte",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove each step's outputs and `clean` paths before tracing it, "
        "so tools with their own incremental state (cargo) do all their work",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATH",
        help="never report this workspace glob, or absolute/~ prefix (repeatable)",
    )
    parser.add_argument(
        "--keep-traces",
        action="store_true",
        help="keep strace's logs in .buildlib/audit/<mode>-<target>/<step>/",
    )


def audit_command(args: argparse.Namespace, context: Context) -> int:
    """Run the selected steps under strace and report what their declarations miss, with
    the manifest lines that fix it; exit 1 when anything would make the cache wrong."""
    import json

    from buildlib.audit.report import render_text, to_json
    from buildlib.audit.runner import AuditOptions, run_audit
    from buildlib.core.errors import InterruptedBuild

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    options = AuditOptions(
        steps=tuple(args.steps),
        twice=args.twice,
        clean=args.clean,
        ignore=tuple(args.ignore),
        keep_traces=args.keep_traces,
    )
    try:
        report = run_audit(
            context.manifest,
            mode=context.mode,
            target=context.target,
            host=context.host,
            options=options,
            environ=os.environ,
            say=say,
        )
    except InterruptedBuild as exc:
        say("interrupted")
        return exc.exit_code
    print(json.dumps(to_json(report), indent=2) if args.json else render_text(report))
    return 0 if report.ok else 1


COMMANDS["audit"] = Command(
    help="run steps under strace: undeclared inputs, outputs and "
    "tools, nondeterministic outputs (--twice), the manifest fix",
    options=_audit_options,
    run=audit_command,
)


# -- check (issue 12) ------------------------------------------------------------------------


def _check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when there is any finding (for CI)"
    )


def check_command(args: argparse.Namespace, context: Context) -> int:
    """List the files git knows that no step reads and the input patterns that match
    nothing; with --strict, exit 1 when there are any, so CI can hold a manifest to it."""
    import json

    from buildlib.audit.coverage import check_coverage, coverage_json, render_coverage

    plan = build_plan(
        context.manifest, mode=context.mode, target=context.target, requested=(), environ=os.environ
    )
    coverage = check_coverage(plan)
    if args.json:
        print(json.dumps(coverage_json(coverage), indent=2))
    else:
        print("\n".join(render_coverage(coverage)))
    return 1 if args.strict and coverage.problems else 0


COMMANDS["check"] = Command(
    help="list files no step takes as an input and input patterns "
    "that match nothing (static; `audit` traces what steps read)",
    options=_check_options,
    run=check_command,
)


# -- init (issue 12; docs/adopting.md) ------------------------------------------------------


def _init_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the repository's root (default: the current directory)",
    )
    parser.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="print the manifest (and, on stderr, why) instead of writing "
        "build.toml and noxfile.py",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing build.toml and noxfile.py"
    )


def init_command(args: argparse.Namespace, context: None) -> int:
    """Infer a starter manifest from the repository's own files; needs no manifest."""
    from buildlib.integrations.init import run_init

    return run_init(args.root or Path.cwd(), dry_run=args.dry_run, force=args.force)


COMMANDS["init"] = Command(
    help="write a starter build.toml and noxfile.py for this "
    "repository, saying what it inferred and why",
    options=_init_options,
    run=init_command,
    manifest=False,
    common=False,
)


# -- watch (issue 16; docs/watch.md) ---------------------------------------------------------


def _watch_options(parser: argparse.ArgumentParser) -> None:
    from buildlib.watch.command import watch_options

    watch_options(parser)


def watch_command(args: argparse.Namespace, context: Context) -> int:
    """Build, then rebuild what each change affects and keep the service steps running."""
    from buildlib.watch.command import run_watch

    return run_watch(args, context)


COMMANDS["watch"] = Command(
    help="build, then rebuild on every change to the steps' inputs, "
    "with the service steps (dev servers) kept running",
    options=_watch_options,
    run=watch_command,
)


# -- explain-miss, diff (issue 14 part 2; docs/explain-miss.md) ------------------------------


def _explain_miss_options(parser: argparse.ArgumentParser) -> None:
    from buildlib.run.miss import explain_miss_options

    explain_miss_options(parser)


def explain_miss_command(args: argparse.Namespace, context: Context) -> int:
    """Name what differs between the step's fingerprint here and the cache's newest entry."""
    from buildlib.run.miss import explain_miss

    return explain_miss(args, context)


def _diff_options(parser: argparse.ArgumentParser) -> None:
    from buildlib.report.diff import diff_options

    diff_options(parser)


def diff_command(args: argparse.Namespace, context: None) -> int:
    """Per step, which fingerprint components differ between two builds' reports."""
    from buildlib.report.diff import diff_command as run_diff

    return run_diff(args, context)


COMMANDS["explain-miss"] = Command(
    help="why the cache misses for STEP: what differs from the "
    "newest entry it holds for the step (tools, env names, "
    "argv, files, dependencies)",
    options=_explain_miss_options,
    run=explain_miss_command,
)
COMMANDS["diff"] = Command(
    help="per step, which fingerprint components differ between two "
    "builds' JSON reports (e.g. yours and CI's)",
    options=_diff_options,
    run=diff_command,
    manifest=False,
    common=False,
)
