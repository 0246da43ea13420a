"""One build inside `watch`: the same pipeline as `buildlib build`, for some steps.

plan (the requested steps and what they need) -> workspace lock -> executor with the
caching gate (skip, restore or run; early cutoff) -> reports (`.buildlib/reports`,
history, journal) -> each step's outcome and outputs digest, which the loop keeps to
decide what runs next time and which services restart. Always `--keep-going`: while
developing, one broken step must not keep the rest of the app (and the services that
need it) stale. The lock is held for the build only, so a `buildlib build` in another
terminal waits for a rebuild, not for the whole `watch`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildlib.core.errors import LockBusyError
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.planning.plan import Plan, PlannedStep, build_plan
from buildlib.run.executor import ExecOptions, Executor
from buildlib.run.gate import AlwaysRun, Decision, Gate, Recorded
from buildlib.run.journal import Journal
from buildlib.run.lock import workspace_lock
from buildlib.run.reporter import BuildStart, Reporter
from buildlib.run.results import BuildRecord, StepRecord
from buildlib.watch.policy import StepResult
from buildlib.watch.view import WatchView
from buildlib.workspace.manifest import Manifest
from buildlib.workspace.targets import Target


@record
class BuildOptions:
    jobs: int
    verbose: bool = False
    no_cache: bool = False
    cache_dir: Path | None = None
    remote_cache: str | None = None
    remote_read_only: bool = False
    no_wait: bool = False


@record
class BuildResult:
    record: BuildRecord
    results: dict[str, StepResult]  # every step of the build, by name

    @property
    def interrupted(self) -> bool:
        return self.record.exit_code >= 128


class DigestGate:
    """A gate that passes every call on and remembers what dependents see of each step:
    the digest of its outputs (the restart-on-dependency rule compares them)."""

    def __init__(self, inner: Gate[Any]) -> None:
        self.inner = inner
        self.digests: dict[str, str | None] = {}

    def check(
        self, step: PlannedStep, dep_fingerprints: Mapping[str, str], *, resumed: bool = False
    ) -> Decision[Any]:
        decision = self.inner.check(step, dep_fingerprints, resumed=resumed)
        if decision.outcome is not None:
            self.digests[step.name] = decision.outputs_digest
        return decision

    def record_success(
        self, step: PlannedStep, decision: Decision[Any], log_path: Path
    ) -> Recorded:
        recorded = self.inner.record_success(step, decision, log_path)
        self.digests[step.name] = recorded.outputs_digest
        return recorded

    def record_failure(self, step: PlannedStep, decision: Decision[Any]) -> None:
        self.inner.record_failure(step, decision)

    def interrupt(self) -> None:
        self.inner.interrupt()

    def problems(self) -> Mapping[str, int]:
        return self.inner.problems()

    def stored_log(self, step: PlannedStep) -> str:
        return self.inner.stored_log(step)

    def current_outputs_digest(self, step: PlannedStep) -> str | None:
        return self.inner.current_outputs_digest(step)

    def close(self) -> None:
        self.inner.close()


class Builder:
    """Runs builds of one manifest, mode and target (the loop replaces `manifest` when the
    file changes), one at a time, on the loop's build thread."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        mode: str,
        target: Target,
        options: BuildOptions,
        view: WatchView,
        environ: Mapping[str, str],
        step_environ: Mapping[str, str],
    ) -> None:
        self.manifest = manifest
        self.mode = mode
        self.target = target
        self.options = options
        self.view = view
        self.environ = dict(environ)  # configures the cache
        self.step_environ = dict(step_environ)  # what the steps see (no cache secrets)
        self.build_dir = BuildDir(manifest.root)
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._stopped: int | None = None  # the signal that stopped the current build

    def interrupt(self, signum: int) -> None:
        """Stop the build under way (from the loop's thread): its running steps' groups
        get SIGTERM, then SIGKILL; it returns with exit code 128 + `signum`."""
        with self._lock:
            self._stopped = signum
            executor = self._executor
        if executor is not None:
            executor.interrupt(signum)

    def build(
        self, steps: Sequence[str], *, on_step: Callable[[str, StepResult], None] | None = None
    ) -> BuildResult | None:
        """Build `steps` (and what they need, from the cache or fingerprints when up to
        date). `on_step` hears of each step as it ends (the loop starts a service as soon
        as its dependencies are built). None: interrupted before any step started."""
        from buildlib.report.history import planning_estimates

        with self._lock:
            self._stopped = None
        manifest, mode, triple = self.manifest, self.mode, self.target.triple
        estimates = planning_estimates(self.build_dir.history, mode, triple, steps=steps)
        plan = build_plan(
            manifest,
            mode=mode,
            target=self.target,
            requested=list(steps),
            environ=self.environ,
            estimates=estimates,
        )
        with self._workspace_lock() as held:
            if not held:
                return None
            journal = Journal(self.build_dir.journal(mode, triple))
            gate = DigestGate(self._gate(plan))
            reporter = _Announcing(
                self.view.build_reporter(verbose=self.options.verbose), gate, on_step
            )
            options = ExecOptions(
                jobs=self.options.jobs,
                keep_going=True,
                verbose=self.options.verbose,
                log_dir=self.build_dir.logs(mode, triple),
            )
            executor = Executor(
                plan,
                reporter=reporter,
                options=options,
                gate=gate,
                environ=self.step_environ,
                estimates=estimates,
                journal=journal,
            )
            stopped = self._take_executor(executor)
            if stopped is not None:
                executor.interrupt(stopped)
            try:
                result = executor.run()
            finally:
                with self._lock:
                    self._executor = None
            self._write_reports(result, {n: s.depends_on for n, s in plan.steps.items()})
        return BuildResult(
            record=result,
            results={
                s.name: StepResult(outcome=s.outcome, digest=gate.digests.get(s.name))
                for s in result.steps
            },
        )

    def _take_executor(self, executor: Executor) -> int | None:
        """Make `executor` the one `interrupt` reaches; the signal that came first, if any."""
        with self._lock:
            self._executor = executor
            return self._stopped

    @contextlib.contextmanager
    def _workspace_lock(self) -> Iterator[bool]:
        """The workspace lock, waited for (unless --no-wait) in steps of 0.1 s so that an
        interrupt ends the wait: yields False when interrupted first."""
        with contextlib.ExitStack() as stack:
            told = False
            while True:
                try:
                    stack.enter_context(
                        workspace_lock(self.build_dir, wait=False, on_wait=self.view.say)
                    )
                    break
                except LockBusyError as exc:
                    if self.options.no_wait:
                        raise
                    if not told:
                        self.view.say(f"{exc.message}; waiting for it (Ctrl-C stops)")
                        told = True
                for _ in range(10):
                    with self._lock:
                        if self._stopped is not None:
                            yield False
                            return
                    time.sleep(0.01)
            yield True

    def _gate(self, plan: Plan) -> Gate[Any]:
        if self.options.no_cache:
            return AlwaysRun(plan.root)
        from buildlib.cache.config import cache_config
        from buildlib.run.caching_gate import CachingGate

        config = cache_config(
            self.manifest,
            self.environ,
            cache_dir=self.options.cache_dir,
            remote_url=self.options.remote_cache,
            read_only=self.options.remote_read_only,
        )
        return CachingGate(
            plan,
            state_dir=self.build_dir.state(plan.mode, plan.target.triple),
            cache=config,
            forced=set(),
            environ=self.step_environ,
            warn=lambda message: self.view.write(f"  warning: {message}"),
        )

    def _write_reports(self, result: BuildRecord, deps: Mapping[str, Sequence[str]]) -> None:
        from buildlib.report.writers import write_build_reports

        try:
            write_build_reports(result, deps, self.build_dir)
        except OSError as exc:
            self.view.write(f"  warning: could not write the build report: {exc}")


class _Announcing:
    """The view's reporter, plus `on_step` for each step that ends (job threads call it)."""

    def __init__(
        self, inner: Reporter, gate: DigestGate, on_step: Callable[[str, StepResult], None] | None
    ) -> None:
        self.inner = inner
        self.gate = gate
        self.on_step = on_step

    def build_started(self, start: BuildStart) -> None:
        self.inner.build_started(start)

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        self.inner.step_started(name, worker, attempt)

    def step_output(self, name: str, line: str) -> None:
        self.inner.step_output(name, line)

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        self.inner.step_finished(record, log_tail)
        if self.on_step is not None:
            self.on_step(
                record.name,
                StepResult(outcome=record.outcome, digest=self.gate.digests.get(record.name)),
            )

    def warning(self, message: str) -> None:
        self.inner.warning(message)

    def build_finished(self, record: BuildRecord) -> None:
        self.inner.build_finished(record)
