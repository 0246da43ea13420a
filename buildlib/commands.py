"""The CLI's commands, each a short pipeline over the engine's modules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from buildlib.core.errors import UserError
from buildlib.planning import graph
from buildlib.planning.plan import Plan, build_plan, resolve_artifacts
from buildlib.planning.render import render_dry_run, render_mermaid, render_plan_json
from buildlib.run.executor import AlwaysRun, ExecOptions, Executor, Gate
from buildlib.run.journal import Journal
from buildlib.run.lock import workspace_lock
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target, check_buildable

BUILD_DIR = ".buildlib"


def default_jobs(requested: int | None, environ: Mapping[str, str]) -> int:
    if requested is not None:
        jobs = requested
    elif environ.get("BUILDLIB_JOBS"):
        try:
            jobs = int(environ["BUILDLIB_JOBS"])
        except ValueError:
            raise UserError(f"BUILDLIB_JOBS={environ['BUILDLIB_JOBS']!r} is not a number",
                            fix="set BUILDLIB_JOBS to a positive integer") from None
    else:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise UserError(f"-j {jobs}: at least one job is needed", fix="pass -j 1 or more")
    return jobs


def build_dir(manifest: Manifest) -> Path:
    return manifest.root / BUILD_DIR


def _estimates(manifest: Manifest, mode: str, target: Target) -> dict[str, float]:
    from buildlib.report.history import planning_estimates

    # Reading stops once these have a full window; a step of other modes never would.
    steps = [name for name, s in manifest.steps.items() if s.modes is None or mode in s.modes]
    return planning_estimates(build_dir(manifest) / "history.jsonl", mode, target.triple,
                              steps=steps)


def build_command(args: argparse.Namespace, manifest: Manifest, *, mode: str, target: Target,
                  host: Target) -> int:
    """Plan, then (unless --dry-run/--graph) lock the workspace, execute and report."""
    from buildlib.cache.config import engine_secrets

    environ = dict(os.environ)
    secrets = engine_secrets(manifest, environ)
    # The steps' environment: the cache's credentials are the engine's alone.
    step_environ = {name: value for name, value in environ.items() if name not in secrets}
    estimates = _estimates(manifest, mode, target)
    requested = [*args.steps, *args.only]
    if args.from_step and args.from_step not in manifest.steps:
        raise UserError(f"--from: unknown step '{args.from_step}'",
                        fix="steps: " + ", ".join(manifest.steps))
    plan = build_plan(manifest, mode=mode, target=target, requested=requested, environ=environ,
                      estimates=estimates)
    if args.graph:
        print(render_mermaid(plan))
        return 0
    if args.dry_run:
        print(render_dry_run(plan, environ))
        return 0
    check_buildable(target, host, {t for s in plan.steps.values() for t in s.tools})
    jobs = default_jobs(args.jobs, environ)
    from buildlib.report.terminal import make_reporter

    reporter = make_reporter(stream=sys.stdout, environ=environ, verbose=args.verbose,
                             force_plain=args.plain, root=plan.root,
                             step_dirs={name: s.cwd for name, s in plan.steps.items()})
    tag = f"{mode}-{target.triple}"
    with workspace_lock(build_dir(manifest) / "lock", wait=not args.no_wait,
                        on_wait=reporter.warning):
        journal = Journal(build_dir(manifest) / "journal" / f"{tag}.jsonl")
        done, resumed, forced = _selection(args, plan, journal)
        gate = _make_gate(args, manifest, plan, forced=forced, environ=environ,
                          step_environ=step_environ, warn=reporter.warning)
        options = ExecOptions(jobs=jobs, keep_going=args.keep_going, verbose=args.verbose,
                              log_dir=build_dir(manifest) / "logs" / tag, done=frozenset(done),
                              resumed=frozenset(resumed))
        executor = Executor(plan, reporter=reporter, options=options, gate=gate,
                            environ=step_environ, estimates=estimates, journal=journal)
        record = executor.run()
        _write_reports(manifest, plan, record, reporter.warning)
    if args.explain:
        print(render_explain(record))
    return record.exit_code


def _selection(args: argparse.Namespace, plan: Plan, journal: Journal
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
            raise UserError("--resume: no earlier build of this mode and target to resume",
                            fix="run the build once without --resume")
        rerun = graph.downstream(deps, last_build.unfinished & set(plan.steps))
        rerun |= set(plan.steps) - set(last_build.selected)
        return done, set(plan.steps) - rerun - done, forced
    return done, set(), forced


def _make_gate(args: argparse.Namespace, manifest: Manifest, plan: Plan, *,
               forced: set[str] | None, environ: Mapping[str, str],
               step_environ: Mapping[str, str], warn: object) -> Gate:
    """`environ` configures the cache; `step_environ` (without its secrets) is what the
    steps see, so it is what their fingerprints read."""
    if args.no_cache:
        return AlwaysRun(plan.root)
    from buildlib.cache.config import cache_config
    from buildlib.run.gate import UpToDate

    config = cache_config(manifest, environ, cache_dir=args.cache_dir,
                          remote_url=args.remote_cache, read_only=args.remote_read_only)
    return UpToDate(plan, state_dir=build_dir(manifest) / "state" /
                    f"{plan.mode}-{plan.target.triple}", cache=config, forced=forced,
                    environ=step_environ, warn=warn)  # type: ignore[arg-type]


def _write_reports(manifest: Manifest, plan: Plan, record: object, warn: object) -> None:
    from buildlib.report.writers import write_build_reports

    deps = {name: s.depends_on for name, s in plan.steps.items()}
    try:
        write_build_reports(record, deps, build_dir(manifest))  # type: ignore[arg-type]
    except OSError as exc:
        warn(f"could not write the build report: {exc}")  # type: ignore[operator]


def render_explain(record: object) -> str:
    from buildlib.run.results import BuildRecord, Outcome

    assert isinstance(record, BuildRecord)
    lines = ["why steps ran:"]
    for step in record.steps:
        if step.outcome in (Outcome.BUILT, Outcome.FAILED, Outcome.INTERRUPTED):
            lines.append(f"  {step.name}: " + ("; ".join(step.reasons) or "no reason recorded"))
        elif step.outcome.from_cache:
            lines.append(f"  {step.name}: up to date ({step.outcome.value})")
    return "\n".join(lines)


def plan_command(args: argparse.Namespace, manifest: Manifest, *, mode: str, target: Target,
                 host: Target) -> int:
    plan = build_plan(manifest, mode=mode, target=target, requested=args.steps,
                      environ=os.environ)
    print(render_plan_json(plan))
    return 0


def verify_command(args: argparse.Namespace, manifest: Manifest, *, mode: str, target: Target,
                   host: Target) -> int:
    from buildlib.verify.checks import nox_step_hint, render_report, verify_artifacts

    plan = build_plan(manifest, mode=mode, target=target, environ=os.environ)
    artifacts = resolve_artifacts(manifest, plan, os.environ)
    if not artifacts:
        raise UserError(f"no artifacts declared for mode '{mode}'",
                        fix=f"declare [[artifact]] tables in {manifest.path}")
    report = verify_artifacts(artifacts, root=manifest.root, target=target, host=host, mode=mode,
                              step_hint=nox_step_hint(mode, target.triple))
    print(render_report(report))
    return 0 if report.ok else 1


def clean_command(args: argparse.Namespace, manifest: Manifest, *, mode: str,
                  target: Target, host: Target) -> int:
    from buildlib.integrations.clean import clean

    return clean(manifest, target=target, selection=args.groups, dry_run=args.dry_run,
                 cache=args.cache, cache_dir=args.cache_dir)


def metrics_command(args: argparse.Namespace, manifest: Manifest, *, mode: str,
                    target: Target, host: Target) -> int:
    from buildlib.report.metrics import metrics_table, render_metrics

    result = metrics_table(build_dir(manifest) / "history.jsonl", last=args.last, mode=mode,
                           target=target.triple)
    print(render_metrics(result))
    return 0


def keygen_command(args: argparse.Namespace) -> int:
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


def prune_command(args: argparse.Namespace) -> int:
    from buildlib.run.gate import prune_cache

    return prune_cache(args.max_size, cache_dir=args.cache_dir, environ=os.environ)


class Command(Protocol):
    def __call__(self, args: argparse.Namespace, manifest: Manifest, *, mode: str,
                 target: Target, host: Target) -> int: ...


COMMANDS: dict[str, Command] = {
    "build": build_command,
    "plan": plan_command,
    "verify": verify_command,
    "clean": clean_command,
    "metrics": metrics_command,
}
