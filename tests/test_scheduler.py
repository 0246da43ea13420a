"""The scheduling policy alone: no processes, a simulated clock."""

from __future__ import annotations

import heapq
import random

from buildlib.core import graph
from buildlib.planning.scheduler import Scheduler, State


def simulate(deps: dict[str, list[str]], durations: dict[str, float], jobs: int) -> float:
    """Makespan of the scheduler's choices with exact durations, on `jobs` workers."""
    sched = Scheduler(deps, graph.remaining_critical_path(deps, durations))
    clock = 0.0
    running: list[tuple[float, str]] = []  # heap of (end, name)
    while not sched.finished:
        while len(running) < jobs and (name := sched.next_step()) is not None:
            sched.start(name)
            heapq.heappush(running, (clock + durations[name], name))
        clock, name = heapq.heappop(running)
        sched.finish(name, ok=True)
    return clock


def random_dag(seed: int, n: int = 40) -> tuple[dict[str, list[str]], dict[str, float]]:
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(n)]
    deps = {
        name: sorted(set(rng.sample(names[:i], k=min(i, rng.randint(0, 3)))))
        for i, name in enumerate(names)
    }
    durations = {name: rng.paretovariate(1.5) for name in names}
    return deps, durations


def test_ready_order_is_priority_then_declaration() -> None:
    sched = Scheduler({"a": [], "b": [], "c": []}, {"a": 1, "b": 3, "c": 3})
    assert sched.ready() == ["b", "c", "a"]


def test_a_step_becomes_ready_when_its_own_dependencies_succeed() -> None:
    sched = Scheduler({"a": [], "slow": [], "b": ["a"]}, {})
    sched.start("a")
    sched.start("slow")
    assert sched.finish("a", ok=True) == ["b"]
    assert sched.state["slow"] is State.RUNNING


def test_fail_fast_blocks_everything_not_started() -> None:
    sched = Scheduler({"a": [], "b": [], "c": ["a"]}, {})
    sched.start("a")
    sched.finish("a", ok=False)
    assert sched.ready() == []
    assert sched.state == {"a": State.FAILED, "b": State.BLOCKED, "c": State.BLOCKED}
    assert sched.finished


def test_keep_going_blocks_only_dependents() -> None:
    sched = Scheduler({"a": [], "b": [], "c": ["a"], "d": ["c"]}, {}, keep_going=True)
    sched.start("a")
    sched.finish("a", ok=False)
    assert sched.ready() == ["b"]
    assert sched.state["c"] is State.BLOCKED and sched.state["d"] is State.BLOCKED


def test_critical_path_first_reaches_the_lower_bound_on_random_dags() -> None:
    ratios = []
    for seed in range(20):
        deps, durations = random_dag(seed)
        lower = max(graph.remaining_critical_path(deps, durations).values()) if deps else 0
        lower = max(lower, sum(durations.values()) / 2)
        ratios.append(simulate(deps, durations, 2) / lower)
    assert max(ratios) < 1.15
    assert sum(ratios) / len(ratios) < 1.05
