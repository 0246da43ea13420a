"""Seeded random step graphs and the schedules they allow, computed without processes.

The scheduling benchmark runs one of these graphs for real with several tools;
the functions here give the yardsticks: the lower bound no scheduler can beat
with N workers, and the makespans that simple policies would reach with exact
durations and zero overhead (so a measured figure can be split into policy and
overhead).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Dag:
    """Steps in a topological declaration order, each with its dependencies and duration."""

    names: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]
    durations: Mapping[str, float]  # seconds

    @property
    def total_work(self) -> float:
        return sum(self.durations.values())


def random_dag(
    *,
    seed: int,
    steps: int,
    total_work: float,
    sigma: float = 1.2,
    max_parents: int = 3,
    window: int = 8,
    min_duration: float = 0.05,
) -> Dag:
    """A reproducible DAG with log-normal (heavy-tailed) durations summing to ~`total_work`.

    Each step depends on up to `max_parents` of the `window` steps declared just
    before it, which gives long chains rather than a flat fan-out; durations are
    rounded to 10 ms so every tool is handed exactly the same numbers.
    """
    rng = random.Random(seed)
    names = tuple(f"step-{i:02d}" for i in range(steps))
    deps: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        earlier = names[max(0, i - window) : i]
        count = rng.randint(0, min(max_parents, len(earlier)))
        deps[name] = tuple(sorted(rng.sample(earlier, count)))
    raw = [rng.lognormvariate(0.0, sigma) for _ in names]
    scale = total_work / sum(raw)
    durations = {
        name: max(min_duration, round(r * scale, 2)) for name, r in zip(names, raw, strict=True)
    }
    return Dag(names=names, deps=deps, durations=durations)


def chains(*, count: int, length: int, duration: float = 0.0) -> Dag:
    """`count` independent chains of `length` steps each, declared chain by chain."""
    names: list[str] = []
    deps: dict[str, tuple[str, ...]] = {}
    width = len(str(count * length - 1))
    for c in range(count):
        previous: str | None = None
        for k in range(length):
            name = f"s{c * length + k:0{width}d}"
            names.append(name)
            deps[name] = (previous,) if previous else ()
            previous = name
    return Dag(names=tuple(names), deps=deps, durations=dict.fromkeys(names, duration))


def remaining_path(dag: Dag, durations: Mapping[str, float] | None = None) -> dict[str, float]:
    """Each step's duration plus the longest chain of dependents after it."""
    durations = dag.durations if durations is None else durations
    after: dict[str, list[str]] = {name: [] for name in dag.names}
    for name in dag.names:
        for dep in dag.deps[name]:
            after[dep].append(name)
    result: dict[str, float] = {}
    for name in reversed(dag.names):  # declaration order is topological
        tail = [result[child] for child in after[name]]
        result[name] = durations[name] + (max(tail) if tail else 0.0)
    return result


def critical_path(dag: Dag) -> float:
    return max(remaining_path(dag).values(), default=0.0)


def lower_bound(dag: Dag, workers: int) -> float:
    """No schedule on `workers` workers finishes sooner: max(critical path, work / workers)."""
    return max(critical_path(dag), dag.total_work / workers)


def levels(dag: Dag) -> list[list[str]]:
    """Steps grouped by depth (longest dependency chain above them), in declaration order."""
    depth: dict[str, int] = {}
    for name in dag.names:
        depth[name] = 1 + max((depth[d] for d in dag.deps[name]), default=-1)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in dag.names:
        grouped[depth[name]].append(name)
    return grouped


def simulate_levels(dag: Dag, workers: int | None) -> float:
    """Makespan of running whole levels one after another (a barrier between levels).

    `workers=None` is the seed design: every step of a level at once, so a level
    lasts as long as its longest step. With N workers each level is list-scheduled
    longest-first, still waiting for the whole level before the next starts.
    """
    total = 0.0
    for level in levels(dag):
        durations = sorted((dag.durations[n] for n in level), reverse=True)
        if workers is None:
            total += durations[0]
            continue
        free = [0.0] * workers
        for d in durations:
            heapq.heapreplace(free, free[0] + d)
        total += max(free)
    return total


def simulate_list(dag: Dag, workers: int, priority: Mapping[str, float] | None) -> float:
    """Makespan of list scheduling with exact durations and no overhead.

    A step is ready as soon as its own dependencies are done; a free worker takes
    the ready step with the highest `priority` (ties, and `priority=None`, go to
    declaration order, which is what a FIFO scheduler such as nox's does).
    """
    index = {name: i for i, name in enumerate(dag.names)}

    def key(name: str) -> tuple[float, int]:
        return (-(priority or {}).get(name, 0.0), index[name])

    waiting = {name: len(dag.deps[name]) for name in dag.names}
    after: dict[str, list[str]] = {name: [] for name in dag.names}
    for name in dag.names:
        for dep in dag.deps[name]:
            after[dep].append(name)
    ready = [(key(n), n) for n in dag.names if waiting[n] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (end, declaration index, name)
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + dag.durations[name], index[name], name))
        now, _, done = heapq.heappop(running)
        for child in after[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (key(child), child))
    return now
