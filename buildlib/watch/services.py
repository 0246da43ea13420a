"""Service steps (`service = true`): started, watched over, restarted and stopped.

`Supervisor` owns every service process of one `watch`. It spawns through the engine's
one spawning place, `run.process.ProcessTable` (a process group per service, stdin
from /dev/null, the watchdog that kills the groups if `watch` itself dies, SIGTERM to
the group then SIGKILL after the grace period), and never decides anything itself:
the loop (`loop.py`, with `policy.py`) says when to start, restart or stop.

For each running service two threads: one reads its output (stdout and stderr
together), appends it to `.buildlib/logs/<mode>-<target>/<service>.log`, shows each
line prefixed with the service's name and picks out the first http(s) URL (else a
"port N") it prints; the other waits for it to exit and posts a `ServiceExited`
event to the loop. An exit the supervisor caused (a restart, the end of `watch`) is
marked expected, so the loop tells it from a crash.
"""

from __future__ import annotations

import enum
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from buildlib.core.atomicfile import open_own
from buildlib.core.errors import UserError
from buildlib.core.layout import BuildDir
from buildlib.core.records import field, record
from buildlib.planning.plan import PlannedStep
from buildlib.run.process import Process, ProcessTable, encode_env, resolve_program
from buildlib.watch.policy import STABLE_AFTER, Backoff
from buildlib.watch.view import ServiceStatus, WatchView

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
URL = re.compile(r"\bhttps?://[^\s'\"<>)\]]+")
PORT = re.compile(r"\bport\s*[:=]?\s*(\d{2,5})\b", re.IGNORECASE)
TAIL = 20  # lines of a service's output kept for the message when it exits


class State(enum.Enum):
    WAITING = "waiting"  # for its dependencies to be built
    RUNNING = "running"
    RESTARTING = "restarting"
    BACKOFF = "backoff"  # exited on its own; starts again after a delay
    CRASHED = "crashed"  # exited too often in a row; waits for a change
    STOPPED = "stopped"


@record
class ServiceExited:
    """Posted to the loop's queue when a service's process has exited."""

    name: str
    generation: int  # which start of the service this was (a late event of an old one is stale)
    code: int
    expected: bool  # the supervisor stopped it
    uptime: float
    tail: tuple[str, ...]  # its last lines of output


@record(frozen=False)
class _Service:
    step: PlannedStep
    state: State = State.WAITING
    proc: Process | None = None
    generation: int = 0
    started: float = 0.0
    url: str | None = None
    port: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    detail: str = "waiting for its dependencies"
    expected_exit: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))
    reader: threading.Thread | None = None


class Supervisor:
    """The services of one `watch`; see the module docstring. Methods other than the
    threads' are called from the loop's thread only. `on_change(notable)` is called (from
    any thread) after every change of a service's state or address; `notable` is true for
    what a developer waits to see: an address printed, an exit on its own, a start that
    failed."""

    def __init__(
        self,
        steps: Mapping[str, PlannedStep],
        *,
        environ: Mapping[str, str],
        view: WatchView,
        events: queue.SimpleQueue[object],
        build_dir: BuildDir,
        log_dir: Path,
        grace: float = 5.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.view = view
        self.events = events
        self.build_dir = build_dir
        self.log_dir = log_dir
        self.environ = dict(environ)
        self.table = ProcessTable(grace=grace)
        self.on_change = on_change or (lambda notable: None)
        self._lock = threading.Lock()  # guards the url/port/tail fields the readers write
        self.services: dict[str, _Service] = {
            name: _Service(step=step) for name, step in steps.items()
        }

    # -- what the loop asks -------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.services)

    def state(self, name: str) -> State:
        return self.services[name].state

    def running(self, name: str) -> bool:
        return self.services[name].proc is not None

    def start(self, name: str, *, reason: str = "") -> None:
        """Start the service (it must not be running)."""
        service = self.services[name]
        assert service.proc is None, f"{name} is already running"
        step = service.step
        env = {**self.environ, **step.env}
        try:
            argv = resolve_program(step.argv, cwd=step.cwd, path=env.get("PATH"), step=name)
        except UserError as exc:
            self._crashed(service, exc.message, exc.render())
            return
        except OSError as exc:  # an unreadable directory on the way to the program
            self._crashed(service, f"cannot start: {exc}", f"service {name}: cannot start: {exc}")
            return
        try:
            log = self._open_log(name, argv)
        except UserError as exc:  # a .buildlib that is not the engine's own
            self._crashed(service, exc.message, exc.render())
            return
        except OSError as exc:  # a directory at the log's place, a full disk...
            shown = f"service {name}: cannot open its log: {exc}"
            self._crashed(service, f"cannot open its log: {exc}", shown)
            return
        try:
            proc = self.table.spawn(argv, cwd=step.cwd, env=encode_env(env), stdout=subprocess.PIPE)
        except OSError as exc:
            log.close()
            service.state, service.detail = State.CRASHED, f"cannot start: {exc}"
            self.view.error(f"service {name}: cannot start {argv[0]}: {exc}")
            self.on_change(True)
            return
        assert isinstance(proc, subprocess.Popen)  # a pipe is always Popen's
        service.generation += 1
        service.proc = proc
        service.started = time.monotonic()
        service.expected_exit = False
        service.state = State.RUNNING
        service.detail = ""
        with self._lock:
            service.url = service.port = None
            service.tail.clear()
        why = f" ({reason})" if reason else ""
        self.view.say(f"service {name} started{why}: pid {proc.pid}, {' '.join(step.argv)}")
        service.reader = threading.Thread(
            target=self._read, args=(service, proc, log), name=f"service-{name}-output", daemon=True
        )
        service.reader.start()
        threading.Thread(
            target=self._wait,
            args=(service, proc, service.generation),
            name=f"service-{name}-wait",
            daemon=True,
        ).start()
        self.on_change(False)

    def restart(self, name: str, reason: str, *, force: threading.Event | None = None) -> None:
        """Stop the service if it runs (SIGTERM to its group, SIGKILL after the grace
        period) and start it again; a deliberate restart resets its crash count."""
        service = self.services[name]
        service.backoff.reset()
        if service.proc is not None:
            service.state = State.RESTARTING
            self.view.say(f"service {name} restarting: {reason}")
            self.on_change(False)
            self._stop(service, force=force)
            service.restarts += 1
        self.start(name, reason=reason)

    def exited(self, event: ServiceExited) -> float | None:
        """A service's process ended: forget it; if it was not stopped on purpose, report
        it and return the delay before starting it again (None: give up until a change)."""
        service = self.services.get(event.name)
        if service is None or event.generation != service.generation:
            return None  # an old start's late news
        proc = service.proc
        if proc is not None:
            self.table.stop(proc)  # whatever is left of its group goes with it
            if service.reader is not None:
                service.reader.join(timeout=5)
            service.proc = None
        service.last_exit = event.code
        if event.expected:
            return None
        delay = service.backoff.after_exit(event.uptime)
        last = "".join(f"\n  {name_line}" for name_line in event.tail[-5:])
        ran = f"after {event.uptime:.1f}s"
        if delay is None:
            service.state = State.CRASHED
            service.detail = (
                f"exited {service.backoff.exits} times in a row, each within "
                f"{STABLE_AFTER:g}s of its start; gave up: starts again when "
                f"{_what_wakes(service.step)}"
            )
            self.view.error(
                f"service {event.name} exited with code {event.code} {ran}; {service.detail}{last}"
            )
        else:
            service.state = State.BACKOFF
            service.detail = f"exited with code {event.code}; restarting in {delay:g}s"
            self.view.error(
                f"service {event.name} exited with code {event.code} {ran}; "
                f"restarting in {delay:g}s{last}"
            )
        self.on_change(True)
        return delay

    def retry(self, name: str) -> None:
        """The backoff delay is over: start the service again (if nothing else did)."""
        service = self.services[name]
        if service.state is State.BACKOFF and service.proc is None:
            service.restarts += 1
            self.start(name, reason="after it exited")

    def wake(self, name: str, reason: str) -> None:
        """A change concerns a service that is not running (crashed, gave up): start it."""
        service = self.services[name]
        if service.proc is None and service.state in (State.CRASHED, State.BACKOFF):
            service.backoff.reset()
            self.start(name, reason=reason)

    def stop_all(self, *, force: threading.Event | None = None) -> None:
        """Stop every running service, all at once (each group: SIGTERM, then SIGKILL
        after the grace period, or at once once `force` is set), and the watchdog."""
        running = [s for s in self.services.values() if s.proc is not None]
        stoppers = []
        for service in running:
            service.state = State.STOPPED
            stopper = threading.Thread(
                target=self._stop,
                args=(service,),
                kwargs={"force": force},
                daemon=True,
                name=f"service-{service.step.name}-stop",
            )
            stopper.start()
            stoppers.append(stopper)
        for stopper in stoppers:
            stopper.join()
        self.table.close()

    def replace_step(self, name: str, step: PlannedStep) -> None:
        """The manifest changed this service's definition (the caller restarts it)."""
        self.services[name].step = step

    def add(self, name: str, step: PlannedStep) -> None:
        self.services[name] = _Service(step=step)

    def remove(self, name: str, *, force: threading.Event | None = None) -> None:
        service = self.services.pop(name)
        if service.proc is not None:
            service.expected_exit = True
            self._stop(service, force=force)
            self.view.say(f"service {name} stopped: no longer in the manifest")

    def statuses(self) -> tuple[ServiceStatus, ...]:
        with self._lock:
            return tuple(
                ServiceStatus(
                    name=name,
                    state=s.state.value,
                    pid=s.proc.pid if s.proc is not None else None,
                    url=s.url,
                    port=s.port,
                    restarts=s.restarts,
                    last_exit=s.last_exit,
                    detail=s.detail,
                )
                for name, s in self.services.items()
            )

    # -- doing -----------------------------------------------------------------------------

    def _stop(self, service: _Service, *, force: threading.Event | None) -> None:
        proc = service.proc
        if proc is None:
            return
        service.expected_exit = True
        code = self.table.stop(proc, force=force)
        if service.reader is not None:
            service.reader.join(timeout=5)
        service.proc = None
        service.last_exit = code

    def _crashed(self, service: _Service, detail: str, shown: str) -> None:
        """`service` could not be started: CRASHED with `detail`, `shown` to the user."""
        service.state, service.detail = State.CRASHED, detail
        self.view.error(shown)
        self.on_change(True)

    def _open_log(self, name: str, argv: list[str]) -> IO[bytes]:
        # A service (re)starts without a build (its `restart_on` changed, a retry), so
        # without the workspace lock's check: whatever a checkout since then put at
        # the logs' places is cleared first, as a build would.
        self.build_dir.own_parents(self.log_dir / f"{name}.log")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab", opener=open_own)  # noqa: SIM115
        try:
            log.write(
                f"--- buildlib watch: {time.strftime('%H:%M:%S')} started "
                f"{' '.join(argv)} ---\n".encode()
            )
            log.flush()
        except OSError:
            log.close()
            raise
        return log

    def _read(self, service: _Service, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        name = service.step.name
        assert proc.stdout is not None
        with log, proc.stdout as output:
            for raw in output:
                log.write(raw)
                log.flush()
                line = ANSI.sub("", raw.decode(errors="replace")).rstrip("\r\n")
                self.view.service_output(name, line)
                found = self._address(service, line)
                if found:
                    self.view.say(f"service {name} is serving {found}")
                    self.on_change(True)

    def _address(self, service: _Service, line: str) -> str | None:
        """The service's URL (or port) if this line is the first to tell it."""
        with self._lock:
            service.tail.append(line)
            if service.url is not None:
                return None
            url = URL.search(line)
            if url is not None:
                service.url = url.group(0).rstrip(".,;")
                return service.url
            port = PORT.search(line)
            if port is not None and service.port is None:
                service.port = int(port.group(1))
                return f"port {service.port}"
        return None

    def _wait(self, service: _Service, proc: Process, generation: int) -> None:
        code = proc.wait()
        if service.reader is not None:
            service.reader.join(timeout=2)  # its last lines belong to the message
        with self._lock:
            tail = tuple(service.tail)
        self.events.put(
            ServiceExited(
                name=service.step.name,
                generation=generation,
                code=code,
                expected=service.expected_exit,
                uptime=time.monotonic() - service.started,
                tail=tail,
            )
        )


def _what_wakes(step: PlannedStep) -> str:
    """What starts a service that gave up again, as the loop decides it (`_services_after`
    wakes it for its `restart_on` files, for its dependencies' outputs only with
    `restart_on_deps`, and for a changed definition in the manifest)."""
    wakes = []
    if step.restart_on:
        wakes.append(f"a file of its restart_on ({', '.join(step.restart_on)}) changes")
    if step.restart_on_deps and step.depends_on:
        wakes.append(f"the outputs of {', '.join(step.depends_on)} change")
    wakes.append("build.toml changes its definition")
    return " or ".join(wakes) if len(wakes) < 3 else f"{wakes[0]}, {wakes[1]} or {wakes[2]}"
