"""The scheduling policy, with no processes: which step may start next.

A list scheduler: a step becomes ready the moment its own dependencies have
succeeded (never a whole "level"), and among ready steps the one with the longest
remaining critical path goes first. Fail-fast stops new starts after a failure;
keep-going only blocks what depends on it. The executor asks; this decides.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping, Sequence

from buildlib.core import graph


class State(enum.Enum):
    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"  # a dependency failed, or the build stopped before it started


class Scheduler:
    """Tracks each step's state; `next_step` picks by priority, then declaration order."""

    def __init__(
        self,
        deps: Mapping[str, Sequence[str]],
        priority: Mapping[str, float],
        *,
        keep_going: bool = False,
    ) -> None:
        self._deps = {
            name: tuple(d for d in requires if d in deps) for name, requires in deps.items()
        }
        self._dependents = graph.dependents(self._deps)
        self._waiting_on = {name: len(requires) for name, requires in self._deps.items()}
        self._rank = {name: (-priority.get(name, 0.0), index) for index, name in enumerate(deps)}
        self._keep_going = keep_going
        self.state: dict[str, State] = {
            name: State.READY if count == 0 else State.WAITING
            for name, count in self._waiting_on.items()
        }
        # Ready steps as a heap of (rank, name): picking the next one costs log n, so a
        # 500-step build does not sort every step on every pass.
        self._ready: list[tuple[tuple[float, int], str]] = [
            (self._rank[n], n) for n, s in self.state.items() if s is State.READY
        ]
        heapq.heapify(self._ready)
        self._running = 0
        self.stopping = False

    def ready(self) -> list[str]:
        """Ready steps, best first."""
        if self.stopping:
            return []
        return [name for _, name in sorted(self._ready)]

    def next_step(self) -> str | None:
        if self.stopping or not self._ready:
            return None
        return self._ready[0][1]

    def start(self, name: str) -> None:
        if self.state[name] is not State.READY:
            raise ValueError(f"step {name} is {self.state[name].value}, not ready")
        self.state[name] = State.RUNNING
        self._running += 1
        entry = (self._rank[name], name)
        if self._ready[0] == entry:
            heapq.heappop(self._ready)
        else:  # started out of priority order (tests, or a caller's own choice)
            self._ready.remove(entry)
            heapq.heapify(self._ready)

    def finish(self, name: str, *, ok: bool) -> list[str]:
        """Record a running step's end; returns the steps that just became ready."""
        if self.state[name] is not State.RUNNING:
            raise ValueError(f"step {name} is {self.state[name].value}, not running")
        self._running -= 1
        if not ok:
            self.state[name] = State.FAILED
            for node in graph.downstream(self._deps, [name]) - {name}:
                if self.state[node] in (State.WAITING, State.READY):
                    if self.state[node] is State.READY:
                        self._ready.remove((self._rank[node], node))
                        heapq.heapify(self._ready)
                    self.state[node] = State.BLOCKED
            if not self._keep_going:
                self.stop()
            return []
        self.state[name] = State.SUCCEEDED
        freed = []
        for child in self._dependents.get(name, ()):
            self._waiting_on[child] -= 1
            if self._waiting_on[child] == 0 and self.state[child] is State.WAITING:
                self.state[child] = State.READY
                heapq.heappush(self._ready, (self._rank[child], child))
                freed.append(child)
        return freed

    def stop(self) -> None:
        """No new step starts; whatever has not started is blocked."""
        self.stopping = True
        for node, state in self.state.items():
            if state in (State.WAITING, State.READY):
                self.state[node] = State.BLOCKED
        self._ready.clear()

    @property
    def running(self) -> list[str]:
        return [n for n, s in self.state.items() if s is State.RUNNING]

    @property
    def finished(self) -> bool:
        """True when nothing runs and nothing can start any more (in a DAG, nothing then waits)."""
        return self._running == 0 and (self.stopping or not self._ready)
