"""What `buildlib watch` shows: plain lines, and a status file for anything richer.

One lock serialises every write to the stream, so a service's output line, a
rebuild's step line and a status line never interleave within a line; any thread may
call. Lines (ASCII, no cursor movement, so they read the same in a terminal, a pipe,
nox's output and CI):

    watch: <what the loop does>                  (watching, a rebuild starting, reloads)
      built svelte-check  1.2s                   (a rebuild's steps: built, failed + the
      FAILED svelte-check  exit 1  0.8s            log's tail, restored, skipped; up-to-date
        | src/App.svelte:3:1 error ...             steps are not listed)
    web-dev | VITE ready in 300 ms               (a service's output, prefixed by its name)
    status: web-dev running http://127.0.0.1:5173/ (pid 812) | last rebuild #2: ...

The status line (services with their state and the URL or port they printed, and the
last rebuild: what changed, which steps ran, how long) is printed after every build,
after a change that restarts services only, and when a service prints its address,
exits on its own (backing off or giving up) or cannot start; a service starting,
stopping or restarting on purpose has its own `watch:` line and updates the file only.
The same facts, kept current on every change, go as JSON to
`.buildlib/watch/<mode>-<target>.json` (written atomically), for an editor, a script or
a richer live view to read: `WatchStatus.to_json` documents the fields.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from buildlib.core.atomicfile import write_text_atomic
from buildlib.core.errors import UserError
from buildlib.core.fmt import format_duration
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.run.reporter import BuildStart
from buildlib.run.results import BuildRecord, Outcome, StepRecord

TAIL_LINES = 15  # of a failed step's log, shown under its line
MAX_PATHS_SHOWN = 3


@record
class ServiceStatus:
    name: str
    state: str  # services.State: waiting, running, restarting, backoff, crashed, stopped
    pid: int | None = None
    url: str | None = None  # the first http(s) URL it printed
    port: int | None = None  # or the port it said it listens on
    restarts: int = 0
    last_exit: int | None = None
    detail: str = ""  # why it waits, when it restarts, why it gave up


@record
class RebuildStatus:
    number: int  # 0: the first build
    changed: tuple[str, ...]  # the paths that triggered it
    ran: tuple[str, ...]  # steps that ran (built or failed)
    failed: tuple[str, ...]
    up_to_date: int  # steps checked and found up to date (or restored)
    seconds: float
    exit_code: int
    finished_at: str  # ISO 8601, local time

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@record
class WatchStatus:
    mode: str
    target: str
    pid: int
    state: str  # building, watching, stopping, stopped
    watching: tuple[str, ...]  # the watched directories (dir/** recursive, dir/* flat)
    watches: int | None  # inotify watches held (None: polling, or unknown)
    services: tuple[ServiceStatus, ...]
    last_rebuild: RebuildStatus | None
    queued: tuple[str, ...] = ()  # changed paths waiting for the build under way to end

    def to_json(self) -> dict[str, object]:
        """`{mode, target, pid, state, watching, watches, queued, services: [{name, state,
        pid, url, port, restarts, last_exit, detail}], last_rebuild: {number, changed, ran,
        failed, up_to_date, seconds, exit_code, ok, finished_at} | null}`."""
        last = self.last_rebuild
        return {
            "mode": self.mode,
            "target": self.target,
            "pid": self.pid,
            "state": self.state,
            "watching": list(self.watching),
            "watches": self.watches,
            "queued": list(self.queued),
            "services": [
                {
                    "name": s.name,
                    "state": s.state,
                    "pid": s.pid,
                    "url": s.url,
                    "port": s.port,
                    "restarts": s.restarts,
                    "last_exit": s.last_exit,
                    "detail": s.detail,
                }
                for s in self.services
            ],
            "last_rebuild": None
            if last is None
            else {
                "number": last.number,
                "changed": list(last.changed),
                "ran": list(last.ran),
                "failed": list(last.failed),
                "up_to_date": last.up_to_date,
                "seconds": round(last.seconds, 3),
                "exit_code": last.exit_code,
                "ok": last.ok,
                "finished_at": last.finished_at,
            },
        }


def rebuild_status(number: int, changed: Sequence[str], record: BuildRecord) -> RebuildStatus:
    ran = tuple(
        s.name
        for s in record.steps
        if s.outcome in (Outcome.BUILT, Outcome.FAILED, Outcome.INTERRUPTED)
    )
    failed = tuple(
        s.name for s in record.steps if s.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)
    )
    return RebuildStatus(
        number=number,
        changed=tuple(changed),
        ran=ran,
        failed=failed,
        up_to_date=sum(s.outcome.from_cache for s in record.steps),
        seconds=record.wall,
        exit_code=record.exit_code,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def describe_paths(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:MAX_PATHS_SHOWN])
    more = len(paths) - MAX_PATHS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def service_phrase(service: ServiceStatus) -> str:
    where = service.url or (f"port {service.port}" if service.port else "")
    parts = [service.name, service.state]
    if where and service.state == "running":
        parts.append(where)
    extra = [f"pid {service.pid}"] if service.pid and service.state == "running" else []
    if service.restarts:
        extra.append(f"{service.restarts} restart{'s' * (service.restarts > 1)}")
    if service.detail and service.state != "running":
        extra.append(service.detail)
    return " ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


def status_line(status: WatchStatus) -> str:
    parts = [service_phrase(s) for s in status.services]
    last = status.last_rebuild
    if last is not None:
        label = "first build" if last.number == 0 else f"last rebuild #{last.number}"
        what = f" ({describe_paths(last.changed)})" if last.changed else ""
        ran = ", ".join(last.ran) if last.ran else "nothing (all up to date)"
        verdict = (
            "ok"
            if last.ok
            else (f"failed: {', '.join(last.failed)}" if last.failed else f"exit {last.exit_code}")
        )
        parts.append(f"{label}{what}: ran {ran} in {format_duration(last.seconds)}, {verdict}")
    return "status: " + (" | ".join(parts) if parts else status.state)


class WatchView:
    """The lines and the status file of one `watch` (see the module docstring)."""

    def __init__(
        self, stream: TextIO, *, status_path: Path | None, build_dir: BuildDir | None = None
    ) -> None:
        self.stream = stream
        self.status_path = status_path
        self.build_dir = build_dir  # whose places are cleared before each write
        self._lock = threading.Lock()
        self._width = 0  # service names are padded to this, so their output lines align

    def write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the reader went away; keep watching
                pass

    def say(self, text: str) -> None:
        self.write(f"watch: {text}")

    def error(self, text: str) -> None:
        self.write(f"watch: error: {text}")

    def align(self, names: Sequence[str]) -> None:
        self._width = max((len(n) for n in names), default=0)

    def service_output(self, name: str, line: str) -> None:
        self.write(f"{name:<{self._width}} | {line}")

    def status(self, status: WatchStatus, *, line: bool = True) -> None:
        """Write, unless `line` is false, the status line, then the status file (so a
        reader of the file finds the line already printed)."""
        if line:
            self.write(status_line(status))
        if self.status_path is not None:
            try:
                if self.build_dir is not None:  # a checkout may have shipped a link since
                    self.build_dir.own_parents(self.status_path)
                write_text_atomic(self.status_path, json.dumps(status.to_json(), indent=2) + "\n")
            except (OSError, UserError) as exc:
                self.write(f"watch: warning: cannot write {self.status_path}: {exc}")
                self.status_path = None

    def build_reporter(self, *, verbose: bool) -> StepLines:
        return StepLines(self, verbose=verbose)


class StepLines:
    """The executor's reporter during a rebuild: one line per step that did something."""

    def __init__(self, view: WatchView, *, verbose: bool) -> None:
        self.view = view
        self.verbose = verbose
        self._width = 0

    def build_started(self, start: BuildStart) -> None:
        self._width = max((len(name) for name in start.steps), default=0)

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.view.write(f"  start {name}{again}")

    def step_output(self, name: str, line: str) -> None:
        if self.verbose:
            self.view.write(f"  {name:<{self._width}} | {line}")

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        name = f"{record.name:<{self._width}}"
        took = format_duration(record.duration)
        match record.outcome:
            case Outcome.CACHED:
                return
            case Outcome.BUILT:
                self.view.write(f"  built {name}  {took}")
            case Outcome.RESTORED:
                self.view.write(f"  restored {name}  from the {record.cache_source or ''} cache")
            case Outcome.SKIPPED:
                self.view.write(f"  skipped {name}  (a dependency failed)")
            case Outcome.FAILED | Outcome.INTERRUPTED:
                what = "FAILED" if record.outcome is Outcome.FAILED else "INTERRUPTED"
                code = "" if record.exit_code is None else f"  exit {record.exit_code}"
                lines = [f"  {what} {name}{code}  {took}"]
                lines += [f"    | {line}" for line in log_tail[-TAIL_LINES:]]
                if record.log_path:
                    lines.append(f"    log: {record.log_path}")
                self.view.write("\n".join(lines))

    def warning(self, message: str) -> None:
        self.view.write(f"  warning: {message}")

    def build_finished(self, record: BuildRecord) -> None:
        for step in record.steps:  # never started: the executor reports these only here
            if step.outcome is Outcome.SKIPPED:
                self.step_finished(step, ())
