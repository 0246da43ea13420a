"""`buildlib audit`: run the selected steps under the tracer, one at a time, and judge them.

The order of things, and why:

1. strace is looked for first, so its absence costs nothing but one message;
2. the selection is planned with its dependencies; the dependencies that are not
   audited themselves are built by a normal `python -m buildlib build` (cache and all),
   so every audited step finds what it needs, as in a real build;
3. under the workspace lock, each audited step runs forced, in dependency order, alone
   (a trace of two steps at once could not say which one did what), with the
   environment the executor gives it (the caller's, minus the cache's credentials, plus
   the step's own); the engine's records are not touched: the audit observes;
4. with `--clean`, the step's outputs and `clean` paths are removed first, so tools with
   incremental state of their own (cargo's target/) do all their work under the tracer;
   without it a step runs as a forced build runs it, and cargo may skip a link (and the
   linker) or a build script that a cold build would run;
5. each trace is compared with the declarations (`findings`, `programs`), and turned
   into proposed manifest lines (`fixes`); with `--twice` the step runs a second time
   from clean outputs and the two runs' outputs are compared (`determinism`).

A step that fails is reported with its log, and the steps that depend on it are not
run. Logs and traces go to `.buildlib/audit/<mode>-<target>/<step>/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from buildlib.audit import determinism
from buildlib.audit.declared import Declarations, Ignores, StepInputs
from buildlib.audit.findings import StepFindings, classify
from buildlib.audit.fixes import StepFix, propose, render_toml
from buildlib.audit.programs import ToolFinding, ToolMap, undeclared_tools
from buildlib.audit.trace_result import DEFAULT_IGNORES, TraceResult, normalize, under
from buildlib.audit.tracer import NO_IO_URING_ENV, find_strace, trace_command
from buildlib.core.errors import InterruptedBuild, UserError
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.planning.plan import Plan, PlannedStep, build_plan
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target, check_buildable


@record
class AuditOptions:
    steps: tuple[str, ...] = ()  # empty: every cached step of the mode
    twice: bool = False
    clean: bool = False  # remove each step's outputs and `clean` paths before tracing it
    ignore: tuple[str, ...] = ()  # --ignore: workspace globs, or absolute/~ prefixes
    keep_traces: bool = False


@record
class StepAudit:
    """What the audit found for one step."""

    name: str
    status: str  # "audited" | "failed" | "skipped"
    duration: float = 0.0
    exit_code: int | None = None
    log: str | None = None
    note: str = ""
    findings: StepFindings | None = None
    tools: tuple[ToolFinding, ...] = ()
    nondeterministic: tuple[determinism.Difference, ...] = ()
    fix: StepFix | None = None
    outside_reads: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def problems(self) -> int:
        """Findings that make a cached result wrong (hints are not counted)."""
        found = len(self.tools) + len(self.nondeterministic)
        if self.findings is not None:
            found += len(self.findings.undeclared_inputs) + len(self.findings.undeclared_outputs)
        return found


@record
class AuditReport:
    manifest: str
    mode: str
    target: str
    twice: bool
    clean: bool
    steps: tuple[StepAudit, ...]
    not_audited: tuple[tuple[str, str], ...]  # (step, why)
    toml: str
    duration: float

    @property
    def ok(self) -> bool:
        return all(s.status == "audited" and s.problems == 0 for s in self.steps)


def run_audit(
    manifest: Manifest,
    *,
    mode: str,
    target: Target,
    host: Target,
    options: AuditOptions,
    environ: Mapping[str, str],
    say: Callable[[str], None],
) -> AuditReport:
    """Build what the selection needs, trace each selected step, and judge it. `say`
    gets one line per stage (the CLI prints them on stderr)."""
    from buildlib.cache.config import engine_secrets

    started = time.monotonic()
    find_strace(environ.get("PATH", os.defpath))
    ignores = Ignores(options.ignore)
    plan = build_plan(manifest, mode=mode, target=target, requested=options.steps, environ=environ)
    full = build_plan(manifest, mode=mode, target=target, environ=environ)
    decl = Declarations(manifest, full, environ)
    audited, not_audited = _selection(plan, options.steps)
    check_buildable(target, host, {t for s in plan.steps.values() for t in s.tools})
    needed = {d for name in audited for d in decl.upstream(name)}
    before = [name for name in plan.steps if name in needed and name not in audited]
    if before:
        _build_first(manifest, plan, before, say)
    secrets = engine_secrets(manifest, environ)
    step_environ = {k: v for k, v in environ.items() if k not in secrets}
    audit_dir = BuildDir(manifest.root).audit(mode, target.triple)
    from buildlib.run.lock import workspace_lock

    results: list[StepAudit] = []
    with (
        workspace_lock(BuildDir(manifest.root), wait=True, on_wait=say),
        _sigterm_interrupts(),
    ):
        failed: set[str] = set()
        for index, name in enumerate(audited, 1):
            step = plan.steps[name]
            blocked = [d for d in decl.upstream(name) if d in failed]
            if blocked:
                failed.add(name)
                results.append(
                    StepAudit(
                        name=name, status="skipped", note=f"not run: step '{blocked[0]}' failed"
                    )
                )
                continue
            say(f"audit: [{index}/{len(audited)}] {name}: {' '.join(step.argv)}")
            audit = _audit_step(
                step,
                decl=decl,
                ignores=ignores,
                options=options,
                environ={**step_environ, **step.env},
                log_dir=audit_dir / name,
            )
            say(f"audit: [{index}/{len(audited)}] {name}: {_summary(audit)}")
            if audit.status != "audited":
                failed.add(name)
            results.append(audit)
    fixes = [s.fix for s in results if s.fix is not None]
    return AuditReport(
        manifest=str(manifest.path),
        mode=mode,
        target=target.triple,
        twice=options.twice,
        clean=options.clean,
        steps=tuple(results),
        not_audited=tuple(not_audited),
        toml=render_toml(fixes, decl),
        duration=time.monotonic() - started,
    )


def _selection(plan: Plan, requested: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(steps to audit in dependency order, steps left out and why). Without a request,
    steps with `cache = false` are left out: they always run, so their declarations
    cannot make a cached result wrong; naming one audits it."""
    if requested:
        return [n for n in plan.steps if n in requested], []
    audited = [n for n, s in plan.steps.items() if s.cacheable]
    left = [
        (
            n,
            "cache = false: it always runs, so its declarations cannot make a cached "
            "result wrong (name it to audit it anyway)",
        )
        for n, s in plan.steps.items()
        if not s.cacheable
    ]
    return audited, left


def _build_first(
    manifest: Manifest, plan: Plan, steps: Sequence[str], say: Callable[[str], None]
) -> None:
    """A normal build of the dependencies that are not audited; its output goes to stderr."""
    argv = [
        sys.executable,
        "-m",
        "buildlib",
        "build",
        "--manifest",
        str(manifest.path),
        "--mode",
        plan.mode,
        "--target",
        plan.target.triple,
        "--plain",
        *steps,
    ]
    say(f"audit: building the dependencies first: {' '.join(steps)}")
    sys.stderr.flush()
    done = subprocess.run(
        argv, cwd=manifest.root, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), check=False
    )
    if done.returncode != 0:
        raise UserError(
            f"the build of the audited steps' dependencies failed (exit "
            f"{done.returncode}); nothing was audited",
            fix=f"fix the build first: python -m buildlib build --mode "
            f"{plan.mode} {' '.join(steps)}",
        )


def _audit_step(
    step: PlannedStep,
    *,
    decl: Declarations,
    ignores: Ignores,
    options: AuditOptions,
    environ: Mapping[str, str],
    log_dir: Path,
) -> StepAudit:
    from buildlib.run.process import resolve_program

    root = decl.root
    if log_dir.exists():
        shutil.rmtree(log_dir)
    inputs = StepInputs(root, step)  # what the fingerprint would hash, before the run
    argv = resolve_program(step.argv, cwd=step.cwd, path=environ.get("PATH"), step=step.name)
    if options.clean:
        determinism.remove_outputs(root, (*step.outputs, *decl.clean_patterns[step.name]))
    elif options.twice:
        determinism.remove_outputs(root, step.outputs)
    started = time.monotonic()
    trace = trace_command(argv, cwd=step.cwd, env=environ, log_dir=log_dir)
    duration = time.monotonic() - started
    log = str(trace.output_file) if trace.output_file else None
    if not options.keep_traces and trace.trace_file is not None:
        trace.trace_file.unlink(missing_ok=True)
    if trace.exit_code != 0:
        return StepAudit(
            name=step.name,
            status="failed",
            duration=duration,
            exit_code=trace.exit_code,
            log=log,
            note=f"the step failed (exit {trace.exit_code}); see {log}",
        )
    scoped = trace.scoped(root, ignore=(*DEFAULT_IGNORES, *ignores.outside))
    findings = classify(scoped, name=step.name, decl=decl, inputs=inputs, ignored=ignores)
    tools = ToolMap(
        decl.manifest.tools, path=environ.get("PATH", os.defpath), cwd=step.cwd, environ=environ
    )
    inside = _inside(root, ignores)
    tool_findings = undeclared_tools(trace, tools=tools, declared=step.tools, inside=inside)
    differences: list[determinism.Difference] = []
    note = ""
    if options.twice:
        differences, note = _second_run(step, argv, environ, root, log_dir)
    fix = propose(step.name, findings, tool_findings, decl=decl, inputs=inputs)
    # A second run that fails makes the step flaky: not a clean audit.
    return StepAudit(
        name=step.name,
        status="failed" if note else "audited",
        duration=duration,
        exit_code=0,
        log=log,
        note=note,
        findings=findings,
        tools=tuple(tool_findings),
        nondeterministic=tuple(differences),
        fix=fix,
        outside_reads=_outside_reads(trace, root, ignores),
        warnings=trace.warnings,
    )


def _second_run(
    step: PlannedStep, argv: Sequence[str], environ: Mapping[str, str], root: Path, log_dir: Path
) -> tuple[list[determinism.Difference], str]:
    """Move the first run's outputs aside, run again (untraced), compare."""
    holding = log_dir / "first-run"
    determinism.set_aside(root, step.outputs, holding)
    code = _run_plain(
        argv, cwd=step.cwd, env={**environ, **NO_IO_URING_ENV}, log=log_dir / "second-run.log"
    )
    try:
        if code != 0:
            return [], (
                f"--twice: the second run failed (exit {code}); see {log_dir / 'second-run.log'}"
            )
        return determinism.compare(holding, root, step.outputs), ""
    finally:
        shutil.rmtree(holding, ignore_errors=True)


def _run_plain(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> int:
    """Run a step without the tracer, in a session of its own killed on any exception."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def _inside(root: Path, ignores: Ignores) -> Callable[[str], bool]:
    """Whether an absolute path is a workspace file the input check answers for."""
    roots = {normalize(str(root)), os.path.realpath(root)}

    def inside(path: str) -> bool:
        for r in roots:
            if under(path, r):
                rel = path[len(r) :].lstrip("/") or "."
                return not ignores(rel)
        return False

    return inside


def _outside_reads(trace: TraceResult, root: Path, ignores: Ignores) -> tuple[str, ...]:
    """Files read outside the workspace and outside the ignored system and toolchain
    places (this interpreter's included), programs aside: no declaration can cover them."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    kept = trace.scoped(
        root, ignore=(*DEFAULT_IGNORES, *ignores.outside, *prefixes), keep_outside=True
    )
    return tuple(
        sorted(p for p in kept.inputs - kept.executed if p.startswith("/") and not Path(p).is_dir())
    )


def _summary(audit: StepAudit) -> str:
    if audit.status != "audited":
        return audit.note
    problems = audit.problems
    return (
        f"{problems} problem{'s' if problems != 1 else ''}" if problems else "clean"
    ) + f" ({audit.duration:.1f}s)"


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the audit as Ctrl-C does: the running step's tree is killed
    (`trace_command` kills it on any exception) and the CLI exits 143."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise InterruptedBuild(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
