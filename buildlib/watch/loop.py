"""The development loop of `buildlib watch`: build, watch, rebuild what changed, keep the
services running, and stop everything on Ctrl-C.

One thread (the caller's) does everything that decides or builds; it waits on one
queue for what the others report:

* `Changes` -- a debounced batch from the watcher's forwarding thread. The watcher is
  started *before* the first build, so an edit made while it runs is not lost (the
  build may have hashed the file before the edit: the edit then triggers a rebuild).
  Batches that arrive during a rebuild wait in the queue and are merged into the next
  one, so a rebuild never starts beside another and nothing is dropped.
* `ServiceExited` -- a service's process ended (services.py);
* `Signalled` -- SIGINT, SIGTERM or SIGHUP arrived between builds (during a build the
  executor handles SIGINT and SIGTERM itself: it stops the steps' groups and returns
  130/143, and the loop then ends the same way).

A batch goes through `WatchSelection.affected` (watchset.py): the steps whose inputs
changed and everything downstream of them are rebuilt (`policy.rebuild_selection`:
with the steps that failed or never finished last time), with the caching gate, so
early cutoff still skips a dependent whose dependency came out the same. Then the
services: started once their dependencies are built, restarted when their own
`restart_on` files changed, or (with `restart_on_deps`) when a dependency's outputs
did. A change to `build.toml` reloads it (an invalid one is reported and the previous
one kept). A directory that appears where the watcher only watches entries is
watched from then on, before the rebuild it triggers.

A step that keeps rewriting its own inputs (an undeclared output inside its input
tree) would rebuild forever: when three rebuilds in a row are triggered only by the
same paths changing during the previous rebuild of the steps that read them, those
paths are ignored from then on, with a message naming them and the fix.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from buildlib.core.atomicfile import open_own
from buildlib.core.errors import UserError
from buildlib.core.fmt import format_duration
from buildlib.core.layout import BuildDir
from buildlib.core.records import field, record
from buildlib.planning.plan import Plan, PlannedStep, build_plan
from buildlib.run.results import Outcome
from buildlib.watch import policy
from buildlib.watch.builds import Builder, BuildResult
from buildlib.watch.inotify import WatchError
from buildlib.watch.services import ServiceExited, Supervisor
from buildlib.watch.view import (
    RebuildStatus,
    WatchStatus,
    WatchView,
    describe_paths,
    rebuild_status,
)
from buildlib.watch.watcher import DEFAULT_DEBOUNCE, DEFAULT_MAX_WATCHES, ChangeWatcher
from buildlib.watch.watchset import WatchSelection, WatchSet
from buildlib.workspace.manifest import Manifest, load_manifest
from buildlib.workspace.targets import Target

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ECHO_LIMIT = 3  # self-triggered rebuilds in a row before their paths are ignored
ECHO_SLACK = 1.0  # seconds after a build's end in which a batch still counts as its echo


@record
class Changes:
    paths: frozenset[str]
    received: float  # time.monotonic() when the forwarder got the batch


@record
class WatchFailed:
    error: BaseException


@record
class Signalled:
    signum: int


@record
class StepDone:
    """A step of the build under way ended (posted from a job thread)."""

    build: int
    name: str
    result: policy.StepResult


@record
class BuildDone:
    build: int
    result: BuildResult | None  # None: stopped before it started, or `error`
    error: BaseException | None = None


@record
class LoopOptions:
    requested: tuple[str, ...] = ()  # steps and services named on the command line
    services: bool = True
    debounce: float = DEFAULT_DEBOUNCE
    max_watches: int | None = DEFAULT_MAX_WATCHES
    poll: float | None = None  # seconds between polls instead of inotify
    grace: float = 5.0  # SIGTERM -> SIGKILL for services


@record(frozen=False)
class _Running:
    """The build under way."""

    number: int
    steps: tuple[str, ...]
    changed: tuple[str, ...]
    restart: frozenset[str]  # services to restart once it is done
    before: dict[str, policy.StepResult]  # every step's result when it started
    start: float
    started: set[str] = field(default_factory=set)  # services started during it


class WatchLoop:
    """One `buildlib watch` run: `run()` returns its exit code."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        mode: str,
        target: Target,
        builder: Builder,
        view: WatchView,
        options: LoopOptions,
        environ: Mapping[str, str],
        step_environ: Mapping[str, str],
    ) -> None:
        self.manifest = manifest
        self.mode = mode
        self.target = target
        self.builder = builder
        self.view = view
        self.options = options
        self.environ = dict(environ)
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.plan = self._plan(manifest)
        self.selection = self._selection()
        self.watch_set: WatchSet | None = None
        self.watcher: ChangeWatcher | None = None
        self.state = "starting"
        self.last: RebuildStatus | None = None
        self._status_lock = threading.Lock()
        self.supervisor = Supervisor(
            self._services(self.plan),
            environ=step_environ,
            view=view,
            events=self.events,
            build_dir=(build_dir := BuildDir(manifest.root)),
            log_dir=build_dir.logs(mode, target.triple),
            grace=options.grace,
            on_change=self._service_changed,
        )
        view.align(self.supervisor.names())
        self.results: dict[str, policy.StepResult] = {}
        self.unfinished: set[str] = set(self._build_steps(self.plan))
        self.builds = 0  # started so far; the first is number 0
        self._running: _Running | None = None
        self._queued: list[Changes] = []  # arrived during a build: the next one's
        self._exit: int | None = None  # set once the loop must end (after the build stops)
        self._timers: dict[str, float] = {}  # service -> when its backoff ends
        self._last_window = (0.0, 0.0)  # the last build's start and end (monotonic)
        self._last_ran: frozenset[str] = frozenset()
        self._echo: tuple[frozenset[str], int] = (frozenset(), 0)
        self._suppressed: set[str] = set()

    # -- the plan ----------------------------------------------------------------------------

    def _plan(self, manifest: Manifest) -> Plan:
        return build_plan(
            manifest,
            mode=self.mode,
            target=self.target,
            requested=list(self.options.requested),
            environ=self.environ,
            services=True,
        )

    def _selection(self) -> WatchSelection:
        return WatchSelection(
            self.plan, manifest_path=self.manifest.path, workspace_exclude=self.manifest.exclude
        )

    def _services(self, plan: Plan) -> dict[str, PlannedStep]:
        if not self.options.services:
            return {}
        return {name: step for name, step in plan.steps.items() if step.service}

    @staticmethod
    def _build_steps(plan: Plan) -> list[str]:
        return [name for name, step in plan.steps.items() if not step.service]

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> int:
        with self._signals():
            try:
                return self._run()
            finally:
                self._shutdown()

    def _run(self) -> int:
        self._swap_watcher(first=True)  # before the first build: no edit is missed
        assert self.watch_set is not None
        services = self.supervisor.names()
        count = len(self._build_steps(self.plan))
        self.view.say(
            f"{self.mode}, {self.target.triple}: building {count} "
            f"step{'s' * (count != 1)}, then rebuilding what "
            "changes"
            + (f"; services: {', '.join(services)}" if services else "")
            + "; Ctrl-C stops everything"
        )
        self.view.say(f"watching {self.watch_set.describe()} ({self._watches()})")
        self._start_build(self._build_steps(self.plan), changed=())
        while True:
            if self._exit is not None and self._running is None:
                return self._exit
            for event in self._next_events():
                self._handle(event)
            if self._exit is not None:
                continue
            self._due_timers()
            if self._running is None and self._queued:
                batches, self._queued = self._queued, []
                self._on_changes(batches)

    def _handle(self, event: object) -> None:
        if isinstance(event, Changes):
            self._queued.append(event)
            if self._running is not None:
                self._publish()  # shows what waits for the build under way
        elif isinstance(event, StepDone):
            self._on_step(event)
        elif isinstance(event, BuildDone):
            self._on_build_done(event)
        elif isinstance(event, ServiceExited):
            delay = self.supervisor.exited(event)
            if delay is not None:
                self._timers[event.name] = time.monotonic() + delay
        elif isinstance(event, Signalled):
            self._stop(128 + event.signum, event.signum)
        elif isinstance(event, WatchFailed):
            self.view.error(str(event.error))
            self._stop(1, signal.SIGTERM)

    def _stop(self, code: int, signum: int) -> None:
        """End the loop with `code`, once the build under way (if any) has stopped."""
        if self._exit is None:
            self._exit = code
        if self._running is not None:
            self.builder.interrupt(signum)

    def _next_events(self) -> list[object]:
        """Block for the next event (or the next timer), then take all that are queued."""
        timeout = None
        if self._timers and self._exit is None:
            timeout = max(0.0, min(self._timers.values()) - time.monotonic())
        if self._running is None and self._exit is None:
            self.state = "watching"
            self._publish()
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        events = [first]
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self.events.get_nowait())
        return events

    def _due_timers(self) -> None:
        now = time.monotonic()
        for name, due in list(self._timers.items()):
            if due <= now:
                del self._timers[name]
                if name in self.supervisor.services:
                    self.supervisor.retry(name)

    # -- a batch of changes --------------------------------------------------------------------

    def _on_changes(self, batches: Sequence[Changes]) -> None:
        paths = set().union(*(b.paths for b in batches)) - self._suppressed
        if not paths:
            return
        self._watch_new_directories(paths)
        affected = self.selection.affected(paths)
        if affected.manifest:
            self._reload(affected.paths)
            return
        if affected.empty or self._echoes(batches, affected.steps, affected.paths):
            return
        steps = policy.rebuild_selection(
            {n: s.depends_on for n, s in self.plan.steps.items() if not s.service},
            affected.steps,
            self.unfinished if affected.steps else (),
        )
        if steps:
            self._start_build(steps, changed=affected.paths, restart=affected.services)
        else:
            self._services_after(
                self.results,
                restart=set(affected.services),
                why="its restart inputs changed: " + describe_paths(affected.paths),
            )
            self._publish(line=True)

    def _echoes(
        self, batches: Sequence[Changes], steps: frozenset[str], paths: Sequence[str]
    ) -> bool:
        """Whether this batch is the third in a row that only the last build's own steps
        made (see the module docstring); then its paths are ignored from now on."""
        start, end = self._last_window
        during = all(
            start <= b.received <= end + self.options.debounce + ECHO_SLACK for b in batches
        )
        if not (during and steps and steps <= self._last_ran):
            self._echo = (frozenset(), 0)
            return False
        key = frozenset(paths)
        count = self._echo[1] + 1 if self._echo[0] == key else 1
        self._echo = (key, count)
        if count < ECHO_LIMIT:
            return False
        self._suppressed |= key
        self._echo = (frozenset(), 0)
        self.view.error(
            f"{', '.join(sorted(steps))} changed {describe_paths(sorted(key))} while running, "
            f"{ECHO_LIMIT} rebuilds in a row: a rebuild loop. These paths are ignored from now "
            "on (until build.toml changes); fix: declare them among the outputs of the step "
            "that writes them, or in its `exclude`"
        )
        return True

    def _watch_new_directories(self, paths: set[str]) -> None:
        """A directory that appeared where only entries are watched: watch it (and what
        the globs need below it) before the rebuild, so nothing written in it is missed."""
        current = self.watch_set
        if current is None:
            return
        root = self.plan.root
        for rel in paths:
            if any(d in (".", rel) or rel.startswith(d + "/") for d in current.recursive):
                continue
            if not self.selection.ignored(rel) and (root / rel).is_dir():
                self._swap_watcher()
                return

    # -- builds --------------------------------------------------------------------------------

    def _start_build(
        self, steps: Sequence[str], *, changed: Sequence[str], restart: frozenset[str] = frozenset()
    ) -> None:
        number = self.builds
        self.builds += 1
        if number:
            what = describe_paths(list(changed)) if changed else "the manifest"
            self.view.say(f"rebuild #{number}: {what} changed: {', '.join(steps)}")
        self._running = _Running(
            number=number,
            steps=tuple(steps),
            changed=tuple(changed),
            restart=restart,
            before=dict(self.results),
            start=time.monotonic(),
        )
        self.state = "building"
        self._publish()
        threading.Thread(
            target=self._build,
            args=(number, list(steps)),
            daemon=True,
            name=f"watch-build-{number}",
        ).start()

    def _build(self, number: int, steps: list[str]) -> None:
        """The build thread: one build, then one `BuildDone` (whatever happens)."""

        def on_step(name: str, result: policy.StepResult) -> None:
            self.events.put(StepDone(build=number, name=name, result=result))

        try:
            result = self.builder.build(steps, on_step=on_step)
        except BaseException as exc:  # a user error is reported; a bug re-raised by the loop
            self.events.put(BuildDone(build=number, result=None, error=exc))
        else:
            self.events.put(BuildDone(build=number, result=result))

    def _on_step(self, event: StepDone) -> None:
        """A step ended: a service waiting for it may start now, mid-build."""
        running = self._running
        if running is None or event.build != running.number:
            return
        self.results[event.name] = event.result
        services = {n: self.plan.steps[n].depends_on for n in self.supervisor.names()}
        for name in policy.ready_services(services, self.results):
            if self.supervisor.state(name).value == "waiting":
                self.supervisor.start(name)
                running.started.add(name)  # with its dependencies as they are now

    def _on_build_done(self, event: BuildDone) -> None:
        running, self._running = self._running, None
        assert running is not None and running.number == event.build
        self._last_window = (running.start, time.monotonic())
        if event.error is not None:
            if not isinstance(event.error, UserError):
                raise event.error  # a bug: the CLI prints it as an internal error
            self.view.error(event.error.render())
            self.unfinished |= set(running.steps)
            return
        result = event.result
        if result is None or result.interrupted:
            return
        self.results.update(result.results)
        for name in running.steps:
            outcome = result.results.get(name)
            if outcome is not None and outcome.outcome.ok:
                self.unfinished.discard(name)
            else:
                self.unfinished.add(name)
        self._last_ran = frozenset(
            s.name for s in result.record.steps if s.outcome is Outcome.BUILT
        )
        self.last = rebuild_status(running.number, running.changed, result.record)
        label = "first build" if running.number == 0 else f"rebuild #{running.number}"
        ran = ", ".join(self.last.ran) if self.last.ran else "nothing (all up to date)"
        failed = f"; FAILED: {', '.join(self.last.failed)}" if self.last.failed else ""
        self.view.say(f"{label} done in {format_duration(self.last.seconds)}: ran {ran}{failed}")
        self._swap_watcher()  # the build may have made or removed directories
        self._services_after(
            running.before, restart=set(running.restart), why="", fresh=running.started
        )
        self._publish(line=True)

    def _services_after(
        self,
        before: Mapping[str, policy.StepResult],
        *,
        restart: set[str],
        why: str,
        fresh: set[str] | None = None,
    ) -> None:
        """Start the services whose dependencies are now built; restart those whose own
        restart inputs changed, or (opted in) whose dependencies' outputs changed: once
        each, after the build, however many of their dependencies ran (`fresh`: started
        during the build, after their dependencies: not restarted for them)."""
        services = {n: self.plan.steps[n].depends_on for n in self.supervisor.names()}
        opted = [
            n for n in services if self.plan.steps[n].restart_on_deps and n not in (fresh or ())
        ]
        reasons = policy.dependency_restarts(services, opted, before, self.results)
        for name in restart:
            if name in services:
                reasons.setdefault(name, why or "its restart inputs changed")
        ready = set(policy.ready_services(services, self.results))
        for name in services:
            if self.supervisor.running(name):
                if name in reasons:
                    self.supervisor.restart(name, reasons[name])
            elif name in ready:
                if self.supervisor.state(name).value == "waiting":
                    self.supervisor.start(name)
                elif name in reasons:
                    self._timers.pop(name, None)
                    self.supervisor.wake(name, reasons[name])

    # -- the manifest --------------------------------------------------------------------------

    def _reload(self, changed: Sequence[str]) -> None:
        old_manifest = self.manifest
        try:
            self.manifest = load_manifest(old_manifest.path)
            plan = self._plan(self.manifest)
        except UserError as exc:
            self.manifest = old_manifest
            self.view.error(
                f"{exc.render()}\n  (the manifest as it was is kept: fix it and save again)"
            )
            return
        self.view.say(f"{self.manifest.path.name} changed: reloaded")
        old_plan, self.plan = self.plan, plan
        self.builder.manifest = self.manifest
        self.selection = self._selection()
        self._suppressed.clear()
        self._swap_watcher()
        old_services, new_services = self._services(old_plan), self._services(plan)
        for name in old_services.keys() - new_services.keys():
            self.supervisor.remove(name)
        redefined: set[str] = set()
        for name, step in new_services.items():
            if name not in old_services:
                self.supervisor.add(name, step)
            else:
                self.supervisor.replace_step(name, step)
                if _service_definition(old_services[name]) != _service_definition(step):
                    redefined.add(name)
        self.view.align(self.supervisor.names())
        build_steps = self._build_steps(plan)
        self.unfinished = set(build_steps)  # every step is checked again (most are cached)
        self._start_build(build_steps, changed=changed, restart=frozenset(redefined))

    # -- watching ------------------------------------------------------------------------------

    def _swap_watcher(self, *, first: bool = False) -> None:
        """Watch the selection's directories as they are now; a new watcher is running
        before the old one closes, and what the old one held is handed over."""
        wanted = self.selection.watch_set()
        if not first and wanted == self.watch_set and self.watcher is not None:
            return
        try:
            new = ChangeWatcher(
                self.plan.root,
                wanted.recursive,
                self.selection.ignored,
                flat_dirs=wanted.flat,
                debounce=self.options.debounce,
                max_watches=self.options.max_watches,
                force_polling=self.options.poll is not None,
                poll_delay=self.options.poll or 0.3,
            )
        except WatchError as exc:
            if first:
                raise UserError(str(exc)) from None
            self.events.put(WatchFailed(error=exc))
            return
        old, self.watcher, self.watch_set = self.watcher, new, wanted
        threading.Thread(
            target=self._forward, args=(new,), name="watch-forward", daemon=True
        ).start()
        if old is not None:
            old.close()
            new.add_changes(old.drain())

    def _forward(self, watcher: ChangeWatcher) -> None:
        try:
            while True:
                batch = watcher.next_batch()
                if batch is None:
                    return
                self.events.put(Changes(paths=frozenset(batch), received=time.monotonic()))
        except Exception as exc:  # the watcher can no longer see every change: stop
            self.events.put(WatchFailed(error=exc))

    def _watches(self) -> str:
        if self.options.poll is not None:
            return f"polling every {self.options.poll:g}s"
        count = self.watcher.watch_count() if self.watcher is not None else None
        return "inotify" if count is None else f"{count} inotify watches"

    # -- status ----------------------------------------------------------------------------------

    def _service_changed(self, notable: bool) -> None:
        """The supervisor's news (any thread): the status file always; the status line too
        when it is news a developer waits for (a service printed its address, exited on
        its own and backs off, or gave up)."""
        self._publish(line=notable)

    def _publish(self, *, line: bool = False) -> None:
        """The status file (and, with `line`, the status line); any thread."""
        with self._status_lock:
            watching = tuple(self.watch_set.describe().split(", ")) if self.watch_set else ()
            watcher = self.watcher
            status = WatchStatus(
                mode=self.mode,
                target=self.target.triple,
                pid=os.getpid(),
                state=self.state,
                watching=watching,
                watches=watcher.watch_count() if watcher else None,
                services=self.supervisor.statuses(),
                last_rebuild=self.last,
                queued=tuple(sorted(set().union(*(c.paths for c in self._queued)))),
            )
            self.view.status(status, line=line)

    # -- signals and the end -----------------------------------------------------------------

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT, SIGTERM, SIGHUP become events (the loop stops the build, then itself)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.events.put(Signalled(signum=signum))

        previous = {s: signal.signal(s, handler) for s in SIGNALS}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def _shutdown(self) -> None:
        """Stop every service's group (a second signal: SIGKILL at once) and the watcher."""
        self.state = "stopping"
        force = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, lambda *_: force.set()) for s in SIGNALS}
        try:
            running = [n for n in self.supervisor.names() if self.supervisor.running(n)]
            if running:
                self.view.say(f"stopping {', '.join(running)} (Ctrl-C again: kill at once)")
            self.supervisor.stop_all(force=force)
            if self.watcher is not None:
                self.watcher.close()
            self.state = "stopped"
            with contextlib.suppress(Exception):
                self._publish()
            if self._exit is not None and self._exit > 128:
                self.view.say(f"stopped ({signal.Signals(self._exit - 128).name})")
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)


def _service_definition(step: PlannedStep) -> tuple[object, ...]:
    """What a running service was started with: a change restarts it."""
    return (step.argv, step.cwd, tuple(sorted(step.env.items())), step.env_inputs)


def watch_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """Held by the one `watch` of a mode and target (flock: freed if the holder dies);
    a second one fails at once naming the first."""
    return _watch_lock(path)


@contextlib.contextmanager
def _watch_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_own(path, os.O_RDWR | os.O_CREAT)  # never through a shipped symlink
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"another `buildlib watch` is watching this workspace for this "
                f"mode and target ({holder})",
                fix="stop it (Ctrl-C in its terminal), or watch another mode with --mode",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
