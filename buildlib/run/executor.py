"""The executor: runs a plan's steps as real processes, at most `jobs` at once.

A job thread asks the gate whether its step is up to date (cache hit, restore) and
otherwise runs it, with retries; then, under the run's lock, it settles the step
(scheduler, journal, reporter), asks `Scheduler` what may start, and takes the best
ready step itself. Handing every step back to a central thread and out again cost
two thread wake-ups a step (~0.1 ms each here). The caller's thread starts the
first steps, then only waits for the end and turns SIGINT/SIGTERM into a stop.
Step failures become records; only bugs raise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from buildlib.core import graph
from buildlib.core.atomicfile import open_own, write_all, write_text_atomic
from buildlib.core.errors import UserError
from buildlib.core.records import field, record, replace
from buildlib.planning.plan import Plan, PlannedStep
from buildlib.planning.scheduler import Scheduler, State
from buildlib.run.gate import Decision, Gate
from buildlib.run.journal import Journal
from buildlib.run.process import ProcessTable, encode_env, resolve_program
from buildlib.run.reporter import BuildStart, Reporter
from buildlib.run.results import BuildRecord, Outcome, StepRecord

LOG_TAIL_LINES = 30
MAX_RETRY_DELAY = 10.0


@record
class ExecOptions:
    jobs: int
    keep_going: bool = False
    verbose: bool = False
    log_dir: Path
    retry_base_delay: float = 0.5  # first retry waits this long, doubling each attempt
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL when stopping steps
    done: frozenset[str] = frozenset()  # taken as done (--from, --only): fingerprinted, not run
    resumed: frozenset[str] = frozenset()  # done in the build --resume continues: run if stale


@record(frozen=False)
class _RunState:
    """The scheduling thread's mutable state for one run."""

    scheduler: Scheduler
    free_workers: list[int]
    running: dict[str, _Job] = field(default_factory=dict)
    records: dict[str, StepRecord] = field(default_factory=dict)
    interrupted: int | None = None


@record(frozen=False)
class _Job:
    name: str
    worker: int
    start: float
    record: StepRecord | None = None
    fingerprint: str | None = None
    tail: list[str] = field(default_factory=list)
    trusted: bool = False  # --from/--only: taken as done; fingerprinted, never run
    resumed: bool = False  # --resume: done in the build it continues; runs only if stale


class Executor:
    """Runs one plan once. Not reusable: make a new one per build."""

    def __init__(
        self,
        plan: Plan,
        *,
        reporter: Reporter,
        options: ExecOptions,
        gate: Gate[Any],
        environ: Mapping[str, str],
        estimates: Mapping[str, float] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.plan = plan
        self.reporter = reporter
        self.options = options
        self.gate = gate
        self.environ = dict(environ)
        self.estimates = dict(estimates or {})
        self.journal = journal
        self.processes = ProcessTable(grace=options.grace)
        # Signal numbers; None when the last step settled; an exception a job thread hit
        # while settling (a bug), re-raised by the caller's thread. SimpleQueue.put is
        # reentrant, so the signal handler may call it while a put is under way.
        self._events: queue.SimpleQueue[int | BaseException | None] = queue.SimpleQueue()
        self._state_lock = threading.Lock()  # guards the _RunState and the scheduler
        self._state: _RunState | None = None
        self._stop = threading.Event()
        # What each finished step's dependents see of it: the digest of its outputs (early
        # cutoff: a step that ran again with byte-identical outputs changes nothing).
        self._outputs: dict[str, str] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._fp_lock = threading.Lock()
        # A pool of `jobs` worker threads, started once: a thread per step would cost
        # ~0.1 ms each, a tenth of a trivial step's whole overhead.
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._envs: dict[frozenset[tuple[str, str]], tuple[dict[str, str], dict[bytes, bytes]]] = {}
        self._programs: dict[tuple[str, str | None, Path], str] = {}
        self._t0 = 0.0
        self._logs_present: frozenset[str] = frozenset()
        self._log_dir = os.fspath(options.log_dir)
        # Six random hex digits tell apart builds started in the same second.
        self.build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()

    # -- the scheduling thread -------------------------------------------------------------

    def run(self) -> BuildRecord:
        """Execute the plan; returns the record (exit code 0, 1, or 128+signal)."""
        plan, options = self.plan, self.options
        deps = {name: step.depends_on for name, step in plan.steps.items()}
        priority = {name: step.priority for name, step in plan.steps.items()}
        state = _RunState(
            scheduler=Scheduler(deps, priority, keep_going=options.keep_going),
            free_workers=list(range(options.jobs)),
        )
        options.log_dir.mkdir(parents=True, exist_ok=True)
        # The logs there now: one listing, where asking each up-to-date step whether its
        # log is still there cost a stat per step (10,000 on a 10,000-step no-op).
        with os.scandir(options.log_dir) as listing:  # names only: no Path per log
            self._logs_present = frozenset(
                entry.name for entry in listing if entry.is_file(follow_symlinks=False)
            )
        self._t0 = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.reporter.build_started(
            BuildStart(
                mode=plan.mode,
                target=plan.target.triple,
                jobs=options.jobs,
                steps=list(plan.steps),
                estimates=self.estimates,
                log_dir=str(options.log_dir),
            )
        )
        if self.journal is not None:
            self.journal.open(self.build_id, list(plan.steps))
        self._state = state
        with self._signals():
            try:
                self._wait_for_end(state)
            except BaseException:
                self._stop.set()
                self.processes.stop_all()  # no step outlives a build that crashed
                for _ in self._workers:
                    self._work.put(None)
                for worker in self._workers:  # each reaps the child it waits on, even one
                    worker.join(timeout=self.options.grace + 5.0)  # spawned while stopping
                raise
            finally:
                for _ in self._workers:
                    self._work.put(None)
                self.processes.close()
                self.gate.close()
                if self.journal is not None:
                    self.journal.close()
        return self._build_record(state, deps, started_at)

    def interrupt(self, signum: int) -> None:
        """Stop the build as if `signum` had arrived: from another thread, when the build
        runs off the main thread (where no signal handler can be installed), as `watch`
        runs its rebuilds. Safe before `run` starts (it stops at once) and after it ends."""
        self._events.put(signum)

    def _wait_for_end(self, state: _RunState) -> None:
        """Start the first steps, then handle signals until the job threads finish."""
        with self._state_lock:
            self._launch_ready(state)
            finished = state.scheduler.finished
        while not finished:
            event = self._events.get()
            if isinstance(event, BaseException):
                raise event
            with self._state_lock:
                if event is not None:
                    self._on_signal(state, event)
                finished = state.scheduler.finished

    def _launch_ready(self, state: _RunState, *, keep: bool = False) -> _Job | None:
        """Start ready steps, best first, while a worker lane is free (under the lock).

        With `keep`, the first one is returned for the calling job thread to run itself
        instead of being queued for another.
        """
        scheduler = state.scheduler
        kept: _Job | None = None
        while state.free_workers and (name := scheduler.next_step()) is not None:
            scheduler.start(name)
            job = _Job(
                name=name,
                worker=state.free_workers.pop(0),
                start=self._now(),
                trusted=name in self.options.done,
                resumed=name in self.options.resumed,
            )
            state.running[name] = job
            if keep and kept is None:
                kept = job
                continue
            if len(self._workers) < self.options.jobs:
                worker = threading.Thread(
                    target=self._worker, daemon=True, name=f"worker-{len(self._workers) + 1}"
                )
                self._workers.append(worker)
                worker.start()
            self._work.put(job)
        return kept

    def _on_signal(self, state: _RunState, signum: int) -> None:
        if state.interrupted is None:
            state.interrupted = signum
            state.scheduler.stop()
            self.reporter.warning(
                f"{signal.Signals(signum).name} received: stopping "
                f"{', '.join(state.running) or 'nothing'}; no new step starts"
            )
            self._stop_running()
            self.gate.interrupt()  # a cache request in flight must not hold the build

    def _on_job_done(self, state: _RunState, job: _Job) -> None:
        assert job.record is not None
        del state.running[job.name]
        state.free_workers.append(job.worker)
        state.free_workers.sort()
        record = job.record
        if state.interrupted is not None and not record.outcome.ok:
            record = replace(record, outcome=Outcome.INTERRUPTED)
        self._settle(state, record, job.tail)
        if (
            not record.outcome.ok
            and not self.options.keep_going
            and state.running
            and state.interrupted is None
        ):
            self._stop_running()  # fail fast: the steps still running are stopped

    def _settle(self, state: _RunState, record: StepRecord, tail: list[str]) -> None:
        """A step's end: scheduler, journal and reporter, in that order."""
        ok = record.outcome.ok
        state.records[record.name] = record
        state.scheduler.finish(record.name, ok=ok)
        if self.journal is not None and not record.outcome.from_cache:
            # Only what ran: a step up to date is found up to date again by --resume's
            # check, and a no-op build of 10,000 steps writes no line at all.
            self.journal.record(record.name, "succeeded" if ok else record.outcome.value)
        self.reporter.step_finished(record, tail)

    def _build_record(
        self, state: _RunState, deps: Mapping[str, Sequence[str]], started_at: str
    ) -> BuildRecord:
        records = state.records
        for name, step_state in state.scheduler.state.items():
            if name not in records and step_state is State.BLOCKED:
                records[name] = StepRecord(
                    name=name, outcome=Outcome.SKIPPED, command=self.plan.steps[name].argv
                )
        ordered = tuple(records[name] for name in self.plan.steps if name in records)
        failed = any(r.outcome in (Outcome.FAILED, Outcome.INTERRUPTED) for r in ordered)
        exit_code = 1 if failed else 0
        if state.interrupted is not None:
            exit_code = 128 + state.interrupted
        durations = {r.name: r.duration for r in ordered}
        record = BuildRecord(
            build_id=self.build_id,
            started_at=started_at,
            workspace=str(self.plan.root),
            mode=self.plan.mode,
            target=self.plan.target.triple,
            host=self.environ.get("HOSTNAME", ""),
            jobs=self.options.jobs,
            wall=self._now(),
            exit_code=exit_code,
            steps=ordered,
            critical_path=tuple(graph.critical_path(deps, durations)),
            extra={"cache_problems": dict(self.gate.problems())},
        )
        self.reporter.build_finished(record)
        return record

    def _stop_running(self) -> None:
        """Stop every running step (fail-fast or a signal); their job threads then report."""
        self._stop.set()
        threading.Thread(target=self.processes.stop_all, daemon=True, name="stopper").start()

    def _now(self) -> float:
        return time.monotonic() - self._t0

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM become queue events, so the loop stops children and reports."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self._events.put(signum)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    # -- job threads -----------------------------------------------------------------------

    def _worker(self) -> None:
        job = self._work.get()
        while job is not None:
            self._run_job(job)
            state = self._state
            assert state is not None
            try:
                with self._state_lock:
                    self._on_job_done(state, job)
                    follow = self._launch_ready(state, keep=True)
                    if state.scheduler.finished:
                        self._events.put(None)
            except BaseException as exc:  # a bug while settling: never a silent hang
                self._events.put(exc)
                return
            job = follow if follow is not None else self._work.get()

    def _run_job(self, job: _Job) -> None:
        try:
            self._run_step(job)
        except UserError as exc:
            self._fail(job, exc.render())
        except Exception as exc:  # a bug in a job thread must still end the build
            self._fail(job, f"internal error in step {job.name}: {exc!r}")

    def _fail(self, job: _Job, message: str) -> None:
        """Record `job` as failed before its command could run, `message` as its tail."""
        job.tail = [message]
        job.record = StepRecord(
            name=job.name,
            outcome=Outcome.FAILED,
            start=job.start,
            end=self._now(),
            worker=job.worker,
            attempts=0,
            command=self.plan.steps[job.name].argv,
        )

    def _run_step(self, job: _Job) -> None:
        step = self.plan.steps[job.name]
        # A string: a Path per step cost ~15 us of parsing in a no-op (made only to write).
        log_path = f"{self._log_dir}/{step.name}.log"
        with self._fp_lock:
            dep_digests = {d: self._outputs[d] for d in step.depends_on if d in self._outputs}
        decision = self.gate.check(step, dep_digests, resumed=job.resumed)
        if job.trusted:
            # Its outputs still feed its dependents' fingerprints, so they match a normal
            # build's.
            self._publish(
                step.name,
                Outcome.CACHED,
                decision.outputs_digest or self.gate.current_outputs_digest(step),
            )
            job.record = StepRecord(
                name=step.name,
                outcome=Outcome.CACHED,
                start=job.start,
                end=self._now(),
                worker=job.worker,
                fingerprint=decision.fingerprint,
                reasons=("taken as done (--from or --only)",),
                command=step.argv,
            )
            return
        if decision.outcome is not None:
            self._publish(step.name, decision.outcome, decision.outputs_digest)
            self._skip(job, step, decision, log_path)
        else:
            self._execute(job, step, decision, log_path)

    def _publish(self, name: str, outcome: Outcome, digest: str | None) -> None:
        with self._fp_lock:
            self._outcomes[name] = outcome
            if digest is not None:
                self._outputs[name] = digest

    def _why(self, step: PlannedStep, reasons: tuple[str, ...], *, ran: bool) -> tuple[str, ...]:
        """The gate's reasons, told with what this build did to the dependencies: a
        step that runs because a dependency's outputs changed says whether that
        dependency was rebuilt or restored; an up-to-date step whose dependency ran says
        the outputs came out unchanged (early cutoff)."""
        with self._fp_lock:
            did = {d: self._outcomes.get(d) for d in step.depends_on}
        verbs = {Outcome.BUILT: "rebuilt", Outcome.RESTORED: "restored from the cache"}
        if not ran:
            return tuple(
                f"dependency {d} {verbs[o]}, outputs unchanged"
                for d, o in did.items()
                if o in verbs
            )
        told = []
        for reason in reasons:
            name = reason.removeprefix("outputs of dependency ").removesuffix(" changed")
            outcome = did.get(name) if name != reason else None
            told.append(
                f"dependency {name} {verbs[outcome]}, its outputs changed"
                if outcome in verbs
                else reason
            )
        return tuple(told)

    def _skip(self, job: _Job, step: PlannedStep, decision: Decision[Any], log_path: str) -> None:
        """A step the gate found up to date or restored: its log, and its record."""
        assert decision.outcome is not None
        # A step up to date has its log from the run that made it; a restored one gets
        # the stored log. A no-op build writes no file per step.
        if decision.outcome is not Outcome.CACHED:
            write_text_atomic(Path(log_path), decision.replay_log)
        elif f"{step.name}.log" not in self._logs_present:
            write_text_atomic(Path(log_path), self.gate.stored_log(step))
        job.record = StepRecord(
            name=step.name,
            outcome=decision.outcome,
            start=job.start,
            end=self._now(),
            worker=job.worker,
            fingerprint=decision.fingerprint,
            cache_source=decision.cache_source,
            log_path=log_path,
            command=step.argv,
            reasons=self._why(step, decision.reasons, ran=False),
        )

    def _execute(
        self, job: _Job, step: PlannedStep, decision: Decision[Any], log_name: str
    ) -> None:
        """Run the step's command, with its retries, and record how it ended."""
        log_path = Path(log_name)
        env, encoded_env = self._env_for(step)
        argv = self._resolve(step, env)
        attempts = 0
        returncode: int | None = None
        # A bare descriptor: a file object around it cost ~13 us a step, for the retry
        # notes only. open_own: never through a planted symlink.
        log = open_own(log_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                attempts += 1
                if attempts > 1:
                    delay = min(
                        self.options.retry_base_delay * 2 ** (attempts - 2), MAX_RETRY_DELAY
                    )
                    write_all(
                        log,
                        f"\n--- buildlib: attempt {attempts - 1} failed with exit code "
                        f"{returncode}; retrying in {delay:.1f}s (attempt {attempts} of "
                        f"{step.retries + 1}) ---\n".encode(),
                    )
                    self.reporter.warning(
                        f"{step.name}: attempt {attempts - 1} failed "
                        f"(exit {returncode}); retrying in {delay:.1f}s"
                    )
                    if self._stop.wait(delay):
                        break
                if self._stop.is_set():
                    break
                self.reporter.step_started(step.name, job.worker, attempts)
                returncode = self._attempt(step, argv, encoded_env, log)
                if returncode == 0 or attempts > step.retries or self._stop.is_set():
                    break
        finally:
            os.close(log)
        ok = returncode == 0
        if ok:
            recorded = self.gate.record_success(step, decision, log_path)
            self._publish(step.name, Outcome.BUILT, recorded.outputs_digest)
            if recorded.failure is not None:
                ok = False
                self.gate.record_failure(step, decision)
                job.tail = recorded.failure.splitlines()
        else:
            self.gate.record_failure(step, decision)
            job.tail = _tail(log_path, LOG_TAIL_LINES)
        outcome = (
            Outcome.BUILT
            if ok
            else (Outcome.INTERRUPTED if self._stop.is_set() else Outcome.FAILED)
        )
        job.record = StepRecord(
            name=step.name,
            outcome=outcome,
            start=job.start,
            end=self._now(),
            worker=job.worker,
            attempts=attempts,
            exit_code=returncode,
            reasons=self._why(step, decision.reasons, ran=True),
            log_path=log_name,
            fingerprint=decision.fingerprint,
            command=step.argv,
        )

    def _env_for(self, step: PlannedStep) -> tuple[dict[str, str], dict[bytes, bytes]]:
        """The inherited environment plus the step's own, as text and encoded for spawning;
        built once per distinct step environment."""
        key = frozenset(step.env.items())
        found = self._envs.get(key)
        if found is None:
            env = {**self.environ, **step.env}
            found = self._envs[key] = (env, encode_env(env))
        return found

    def _resolve(self, step: PlannedStep, env: Mapping[str, str]) -> list[str]:
        """argv with its program resolved on PATH, each program looked up once per build."""
        key = (step.argv[0], env.get("PATH"), step.cwd)
        program = self._programs.get(key)
        if program is None:
            program = resolve_program(step.argv[:1], cwd=step.cwd, path=key[1], step=step.name)[0]
            self._programs[key] = program
        return [program, *step.argv[1:]]

    def _attempt(
        self, step: PlannedStep, argv: Sequence[str], env: Mapping[bytes, bytes], log: int
    ) -> int:
        """One run of the step's command, its output to the descriptor `log`."""
        if not self.options.verbose:
            proc = self.processes.spawn(argv, cwd=step.cwd, env=env, stdout=log)
            try:
                return proc.wait()
            finally:
                self.processes.release(proc)
        piped = self.processes.spawn(argv, cwd=step.cwd, env=env, stdout=subprocess.PIPE)
        assert isinstance(piped, subprocess.Popen)  # a pipe is always Popen's
        output = piped.stdout
        assert output is not None
        try:
            with output:
                for raw in output:
                    write_all(log, raw)
                    self.reporter.step_output(
                        step.name, raw.decode(errors="replace").rstrip("\r\n")
                    )
            return piped.wait()
        finally:
            self.processes.release(piped)


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return list(deque(data.decode(errors="replace").splitlines(), maxlen=lines))
