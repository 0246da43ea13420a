"""The watch loop's decisions, without processes or files: what a rebuild covers, which
services restart and why, and how long a crashed service waits before it starts again.

`loop.WatchLoop` asks; `services.Supervisor` and `builds.Builder` do. Tested with plain
values (tests/test_watch_policy.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from buildlib.core import graph
from buildlib.core.records import record
from buildlib.run.results import Outcome

RESTART_BASE_DELAY = 0.5  # seconds before the first restart of a service that exited
RESTART_MAX_DELAY = 30.0  # the delay doubles up to this
MAX_RESTARTS = 5  # restarts after quick exits in a row (each run under STABLE_AFTER); the
# next quick exit (the sixth) gives up
STABLE_AFTER = 30.0  # a service that ran this long before exiting starts a fresh count


def rebuild_selection(
    deps: Mapping[str, Sequence[str]], changed: Iterable[str], unfinished: Iterable[str]
) -> list[str]:
    """The steps a rebuild runs, in `deps` order: those whose inputs changed and everything
    downstream of them (early cutoff may still skip a dependent whose dependency came out
    the same), plus the steps that did not end well last time (failed, skipped after a
    failure, interrupted, never built), which would otherwise stay stale until their own
    inputs change."""
    picked = graph.downstream(deps, [c for c in changed if c in deps])
    picked |= {u for u in unfinished if u in deps}
    return [name for name in deps if name in picked]


@record
class StepResult:
    """What the last build that included a step made of it."""

    outcome: Outcome
    digest: str | None  # its outputs' digest (None: unknown, e.g. --no-cache)


def dependency_restarts(
    services: Mapping[str, Sequence[str]],
    restart_on_deps: Iterable[str],
    before: Mapping[str, StepResult],
    after: Mapping[str, StepResult],
) -> dict[str, str]:
    """Services to restart because a dependency's outputs changed in the last build:
    `{service: reason}`. Only services that opted in (`restart_on_deps`); a dependency
    counts when it succeeded and its outputs' digest differs from the one before (a
    dependency rebuilt with identical outputs restarts nothing; an unknown digest after
    a run counts as changed)."""
    opted = set(restart_on_deps)
    reasons: dict[str, str] = {}
    for service, deps in services.items():
        if service not in opted:
            continue
        changed = []
        for dep in deps:
            now = after.get(dep)
            if now is None or not now.outcome.ok or now.outcome is Outcome.CACHED:
                continue
            old = before.get(dep)
            if now.digest is None or old is None or old.digest != now.digest:
                changed.append(dep)
        if changed:
            reasons[service] = "outputs of " + ", ".join(changed) + " changed"
    return reasons


def ready_services(
    services: Mapping[str, Sequence[str]], results: Mapping[str, StepResult]
) -> list[str]:
    """Services whose every dependency has been built (or found up to date)."""
    return [
        name
        for name, deps in services.items()
        if all(d in results and results[d].outcome.ok for d in deps)
    ]


@record(frozen=False)
class Backoff:
    """A service's restart delays after it exits on its own: 0.5 s, 1 s, 2 s ... up to 30 s,
    for `MAX_RESTARTS` restarts; the exit after those (the sixth in a row) gets none: the
    service waits for a deliberate start (its `restart_on` files changed, with
    `restart_on_deps` a dependency's outputs changed, or build.toml changed its
    definition), which calls `reset`. An exit after `STABLE_AFTER` seconds of running
    starts the count again."""

    exits: int = 0

    def after_exit(self, uptime: float) -> float | None:
        """The delay before the next start, or None to give up for now."""
        if uptime >= STABLE_AFTER:
            self.exits = 0
        self.exits += 1
        if self.exits > MAX_RESTARTS:
            return None
        return min(RESTART_BASE_DELAY * 2.0 ** (self.exits - 1), RESTART_MAX_DELAY)

    def reset(self) -> None:
        """A deliberate (re)start: a change was made, so the count starts again."""
        self.exits = 0
