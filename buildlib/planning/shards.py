"""One build spread over several CI jobs: which job runs which steps, and which jobs wait
for which. Pure: no processes, no files.

CI jobs share results only through the remote cache, and a job can only start once the
jobs it needs have *finished*. GitHub Actions adds one more constraint: `needs:` is
fixed when the workflow is written, so a layout computed at run time can only be fed
to a fixed set of jobs, each a matrix: wave 1, wave 2, ..., each wave waiting for the
whole previous one. `plan_shards` therefore lays the graph out in waves of at most `n`
jobs. In a wave, each job runs a chain of steps whose dependencies were built by an
earlier wave or earlier in the same job; a job of a later wave restores what it needs
from the remote cache (its build selects the dependencies, finds them there). The
final job (`verify`) restores everything, runs the steps that cannot be cached and
nothing else depends on (the app's `verify` step), and verifies the artifacts.

The layout minimises the makespan in that model, with each job's start-up (checkout,
toolchains) counted as `overhead` seconds, by list scheduling inside each wave (the
step with the longest remaining critical path first, as the local scheduler does) and
choosing how long each wave may run by looking ahead: for each candidate horizon, the
rest of the build is laid out greedily and the candidate with the earliest end wins.
Each job is modelled as one machine running its steps one after another (the
estimates are wall times from earlier builds, so a step that uses every core counts
once). The result says how far it is from the lower bound, max(critical path,
work / n).

A step that cannot be cached (`cache = false`) cannot travel between jobs: a job that
needs one built by another job runs it again (`reruns`), and its time is counted.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from buildlib.core import graph
from buildlib.core.records import record

FINAL_JOB = "verify"
DEFAULT_OVERHEAD = 30.0  # seconds a CI job spends before its first step (checkout, setup)
MAX_CANDIDATES = 12  # wave horizons tried per wave (fewer on very large graphs)


@record
class ShardJob:
    """One CI job: its steps in the order they run, the jobs it waits for, when it is
    expected to start and end (seconds from the start of the first wave, start-up
    overhead included) and what it costs."""

    id: str
    wave: int  # 1-based; the final job's wave is the last + 1
    lane: int  # 1..n: which of the n parallel machines runs it (for local replays)
    steps: tuple[str, ...]
    needs: tuple[str, ...]  # jobs holding results its steps depend on (earlier waves)
    reruns: tuple[str, ...]  # non-cacheable dependencies built elsewhere, run again here
    estimate: float  # seconds of work (its steps and reruns)
    start: float
    end: float
    final: bool = False


@record
class ShardPlan:
    shards: int
    overhead: float
    jobs: tuple[ShardJob, ...]  # wave by wave; the final job last
    waves: int  # waves of build jobs (the final job not counted)
    total: float  # seconds of work in all steps
    critical_path: float
    lower_bound: float  # max(critical_path, total / shards): no layout can beat it
    makespan: float  # the layout's end, start-up overhead not counted
    makespan_with_overhead: float  # ... counted once per wave (jobs of a wave start together)
    makespan_dag: float  # the end when each job starts as soon as its own needs end

    def as_json(self) -> dict[str, object]:
        return {
            "shards": self.shards,
            "job_overhead": self.overhead,
            "waves": self.waves,
            "total": round(self.total, 3),
            "critical_path": round(self.critical_path, 3),
            "lower_bound": round(self.lower_bound, 3),
            "makespan": round(self.makespan, 3),
            "makespan_with_overhead": round(self.makespan_with_overhead, 3),
            "makespan_if_jobs_start_on_their_needs": round(self.makespan_dag, 3),
            "jobs": [
                {
                    "id": j.id,
                    "wave": j.wave,
                    "lane": j.lane,
                    "final": j.final,
                    "steps": list(j.steps),
                    "needs": list(j.needs),
                    "reruns": list(j.reruns),
                    "estimate": round(j.estimate, 3),
                    "start": round(j.start, 3),
                    "end": round(j.end, 3),
                }
                for j in self.jobs
            ],
        }


class _Graph:
    """The graph with everything the packing needs computed once."""

    def __init__(
        self,
        order: Sequence[str],
        deps: Mapping[str, Sequence[str]],
        durations: Mapping[str, float],
        cacheable: Mapping[str, bool],
    ) -> None:
        self.order = list(order)
        self.index = {name: i for i, name in enumerate(self.order)}
        self.deps = {n: tuple(d for d in deps.get(n, ()) if d in self.index) for n in self.order}
        self.dependents = graph.dependents(self.deps)
        self.duration = {n: max(0.0, float(durations.get(n, 0.0))) for n in self.order}
        self.cacheable = {n: cacheable.get(n, True) for n in self.order}
        self.priority = graph.remaining_critical_path(self.deps, self.duration)

    def reruns(self, step: str, inside: set[str]) -> list[str]:
        """The non-cacheable dependencies `step` would run again in a job holding
        `inside` (transitively through non-cacheable steps), in plan order."""
        found: set[str] = set()
        todo = [d for d in self.deps[step] if not self.cacheable[d] and d not in inside]
        while todo:
            dep = todo.pop()
            if dep in found:
                continue
            found.add(dep)
            todo += [d for d in self.deps[dep] if not self.cacheable[d] and d not in inside]
        return sorted(found, key=self.index.__getitem__)


@record
class _Limits:
    n: int  # jobs per wave
    overhead: float
    max_waves: int | None
    candidates: int  # horizons tried per wave


@record(frozen=False)
class _Lane:
    steps: list[str]
    time: float
    members: set[str]


def plan_shards(
    order: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, float],
    *,
    shards: int,
    cacheable: Mapping[str, bool] | None = None,
    overhead: float = DEFAULT_OVERHEAD,
    max_waves: int | None = None,
) -> ShardPlan:
    """Lay out the steps `order` (topological) over waves of at most `shards` jobs.

    `durations` are the estimates (seconds); `cacheable[step]` False for a step whose
    results cannot be restored. `max_waves` bounds the waves of build jobs (a workflow
    has that many wave jobs); None leaves it free. Raises ValueError for shards < 1 or
    max_waves < 1."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if max_waves is not None and max_waves < 1:
        raise ValueError("max_waves must be at least 1")
    g = _Graph(order, deps, durations, cacheable or {})
    # Cannot travel between jobs and nothing needs them: the final job runs them.
    final_steps = [n for n in g.order if not g.cacheable[n] and not g.dependents.get(n)]
    sharded = [n for n in g.order if n not in set(final_steps)]
    # The greedy look-ahead does not always see that fewer waves, or fewer jobs a wave,
    # end sooner (wide waves can scatter a chain over jobs that must wait for each
    # other): try each bound on the waves up to the one given (or up to the waves the
    # free layout takes), at N, N/2, N/4... jobs a wave, so that more jobs never plan a
    # later end than fewer. Ties go to fewer waves, then fewer jobs.
    best: ShardPlan | None = None
    for width in sorted({shards >> k for k in range(shards.bit_length())}, reverse=True):
        free = _result(
            g, _layout(g, sharded, width, overhead, max_waves), final_steps, shards, overhead
        )
        tries = (max_waves - 1 if max_waves else free.waves) if len(sharded) <= 2000 else 0
        for other in [
            free,
            *(
                _result(
                    g, _layout(g, sharded, width, overhead, bound), final_steps, shards, overhead
                )
                for bound in range(1, tries + 1)
            ),
        ]:
            if best is None or _rank(other) < _rank(best):
                best = other
    assert best is not None
    return best


def _rank(plan: ShardPlan) -> tuple[float, int, int]:
    return round(plan.makespan_with_overhead, 6), plan.waves, len(plan.jobs)


# -- laying out waves ---------------------------------------------------------------------


def _layout(
    g: _Graph, steps: Sequence[str], n: int, overhead: float, max_waves: int | None
) -> list[list[_Lane]]:
    remaining = set(steps)
    done: set[str] = set(g.order) - remaining  # outside the layout: never waited for
    waves: list[list[_Lane]] = []
    limits = _Limits(
        n=n,
        overhead=overhead,
        max_waves=max_waves,
        candidates=MAX_CANDIDATES if len(steps) <= 2000 else 4,
    )
    while remaining:
        if max_waves is not None and len(waves) == max_waves - 1:
            wave = _everything(g, remaining, n)
        else:
            wave = _best_wave(g, remaining, done, limits, len(waves))
        waves.append(wave)
        for lane in wave:
            done |= lane.members
            remaining -= lane.members
    return waves


def _best_wave(
    g: _Graph, remaining: set[str], done: set[str], limits: _Limits, waves_so_far: int
) -> list[_Lane]:
    """The wave whose horizon gives the earliest end of the whole build, each candidate
    judged by laying out the rest greedily (the longest possible waves)."""
    unbounded = _pack(g, remaining, done, limits.n, float("inf"))
    ends = sorted({round(t, 9) for lane in unbounded for t in _lane_ends(g, lane)})
    shortest = max(g.duration[s] for lane in unbounded for s in lane.steps[:1])
    horizons = [h for h in ends if h >= shortest] or [ends[-1]]
    if len(horizons) > limits.candidates:  # evenly spread, the longest kept
        step = (len(horizons) - 1) / (limits.candidates - 1)
        horizons = sorted({horizons[round(i * step)] for i in range(limits.candidates)})
    best: tuple[float, int, list[_Lane]] | None = None
    for rank, horizon in enumerate(reversed(horizons)):
        wave = unbounded if rank == 0 else _pack(g, remaining, done, limits.n, horizon)
        if not any(lane.steps for lane in wave):
            continue
        length = max(lane.time for lane in wave) + limits.overhead
        placed = set().union(*(lane.members for lane in wave))
        rest = _rollout(g, remaining - placed, done | placed, limits, waves_so_far + 1)
        score = (round(length + rest, 6), rank)
        if best is None or score < best[:2]:
            best = (score[0], score[1], wave)
    assert best is not None
    return best[2]


def _rollout(
    g: _Graph, remaining: set[str], done: set[str], limits: _Limits, waves_so_far: int
) -> float:
    """The time the rest takes when every wave runs as long as it needs to."""
    total = 0.0
    remaining, done = set(remaining), set(done)
    while remaining:
        if limits.max_waves is not None and waves_so_far >= limits.max_waves - 1:
            wave = _everything(g, remaining, limits.n)
        else:
            wave = _pack(g, remaining, done, limits.n, float("inf"))
        total += max(lane.time for lane in wave) + limits.overhead
        for lane in wave:
            done |= lane.members
            remaining -= lane.members
        waves_so_far += 1
    return total


def _lane_ends(g: _Graph, lane: _Lane) -> list[float]:
    ends, t = [], 0.0
    for step in lane.steps:
        t += g.duration[step] + sum(g.duration[r] for r in g.reruns(step, lane.members))
        ends.append(t)
    return ends


def _pack(g: _Graph, remaining: set[str], done: set[str], n: int, horizon: float) -> list[_Lane]:
    """One wave by list scheduling on `n` lanes: the free lane takes the ready step with
    the longest remaining critical path that ends by `horizon` (a lane's first step
    always fits). A step is ready for a lane when each dependency is done (an earlier
    wave) or already in that lane; one whose dependencies sit in two lanes waits for
    the next wave."""
    lanes = [_Lane(steps=[], time=0.0, members=set()) for _ in range(n)]
    where: dict[str, int] = {}  # step -> lane, this wave
    waiting = {s: sum(1 for d in g.deps[s] if d not in done) for s in remaining}
    shared: list[tuple[float, int, str]] = []  # ready for any lane
    own: list[list[tuple[float, int, str]]] = [[] for _ in range(n)]
    for s, count in waiting.items():
        if count == 0:
            heapq.heappush(shared, (-g.priority[s], g.index[s], s))
    open_lanes = set(range(n))
    while open_lanes:
        lane_no = min(open_lanes, key=lambda i: (lanes[i].time, i))
        lane = lanes[lane_no]
        pick = _take(g, shared, own[lane_no], lane, horizon)
        if pick is None:
            open_lanes.discard(lane_no)
            continue
        cost = g.duration[pick] + sum(g.duration[r] for r in g.reruns(pick, lane.members))
        lane.steps.append(pick)
        lane.members.add(pick)
        lane.time += cost
        where[pick] = lane_no
        for child in g.dependents.get(pick, ()):
            if child not in waiting:
                continue
            waiting[child] -= 1
            if waiting[child] == 0:
                homes = {where[d] for d in g.deps[child] if d in where}
                if len(homes) == 1:
                    heapq.heappush(own[homes.pop()], (-g.priority[child], g.index[child], child))
    return [lane for lane in lanes if lane.steps]


def _take(
    g: _Graph,
    shared: list[tuple[float, int, str]],
    own: list[tuple[float, int, str]],
    lane: _Lane,
    horizon: float,
) -> str | None:
    """Pop the best step for `lane` that fits before `horizon`, from its own ready steps
    or the shared ones; steps passed over stay where they were."""
    skipped: list[tuple[list[tuple[float, int, str]], tuple[float, int, str]]] = []
    chosen: str | None = None
    while shared or own:
        source = own if own and (not shared or own[0] < shared[0]) else shared
        entry = heapq.heappop(source)
        cost = g.duration[entry[2]] + sum(g.duration[r] for r in g.reruns(entry[2], lane.members))
        if not lane.steps or lane.time + cost <= horizon + 1e-9:
            chosen = entry[2]
            break
        skipped.append((source, entry))
        if len(skipped) >= 8:  # the rest are lower priority; not worth scanning them all
            break
    for source, entry in skipped:
        heapq.heappush(source, entry)
    return chosen


def _everything(g: _Graph, remaining: set[str], n: int) -> list[_Lane]:
    """The last wave allowed: every remaining step, each group of steps connected by a
    dependency in one job, the groups spread over `n` jobs longest first."""
    parent = {s: s for s in remaining}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for s in remaining:
        for d in g.deps[s]:
            if d in remaining:
                parent[root(s)] = root(d)
    groups: dict[str, list[str]] = {}
    for s in sorted(remaining, key=g.index.__getitem__):
        groups.setdefault(root(s), []).append(s)
    lanes = [_Lane(steps=[], time=0.0, members=set()) for _ in range(n)]
    by_size = sorted(
        groups.values(), key=lambda grp: (-sum(g.duration[s] for s in grp), g.index[grp[0]])
    )
    for group in by_size:
        lane = min(lanes, key=lambda x: x.time)
        for step in group:
            lane.steps.append(step)
            lane.members.add(step)
            lane.time += g.duration[step] + sum(g.duration[r] for r in g.reruns(step, lane.members))
    return [lane for lane in lanes if lane.steps]


# -- the result ------------------------------------------------------------------------------


def _result(
    g: _Graph, waves: list[list[_Lane]], final_steps: list[str], n: int, overhead: float
) -> ShardPlan:
    jobs: list[ShardJob] = []
    owner: dict[str, str] = {}
    dag_ends: dict[str, float] = {}
    clock = 0.0
    clock_with = 0.0
    for wave_no, wave in enumerate(waves, 1):
        lengths = []
        for lane_no, lane in enumerate(wave, 1):
            job_id = f"shard-{len(jobs) + 1}"
            reruns = sorted(
                {r for s in lane.steps for r in g.reruns(s, lane.members)}, key=g.index.__getitem__
            )
            needs = sorted(
                {
                    owner[d]
                    for s in lane.steps
                    for d in g.deps[s]
                    if d in owner and g.cacheable[d] and d not in lane.members
                },
                key=lambda j: int(j.split("-")[1]),
            )
            estimate = sum(g.duration[s] for s in lane.steps) + sum(g.duration[r] for r in reruns)
            dag_start = max((dag_ends[j] for j in needs), default=0.0)
            dag_ends[job_id] = dag_start + overhead + estimate
            jobs.append(
                ShardJob(
                    id=job_id,
                    wave=wave_no,
                    lane=lane_no,
                    steps=tuple(lane.steps),
                    needs=tuple(needs),
                    reruns=tuple(reruns),
                    estimate=estimate,
                    start=clock_with,
                    end=clock_with + overhead + estimate,
                )
            )
            for s in lane.steps:
                owner[s] = job_id
            lengths.append(estimate)
        clock += max(lengths)
        clock_with += max(lengths) + overhead
    final_estimate = sum(g.duration[s] for s in final_steps)
    final_reruns: list[str] = []
    all_needs = tuple(j.id for j in jobs)
    dag_final = max(dag_ends.values(), default=0.0) + overhead + final_estimate
    jobs.append(
        ShardJob(
            id=FINAL_JOB,
            wave=len(waves) + 1,
            lane=1,
            steps=tuple(final_steps),
            needs=all_needs,
            reruns=tuple(final_reruns),
            estimate=final_estimate,
            start=clock_with,
            end=clock_with + overhead + final_estimate,
            final=True,
        )
    )
    total = sum(g.duration.values())
    critical = max(g.priority.values(), default=0.0)
    return ShardPlan(
        shards=n,
        overhead=overhead,
        jobs=tuple(jobs),
        waves=len(waves),
        total=total,
        critical_path=critical,
        lower_bound=max(critical, total / n),
        makespan=clock + final_estimate,
        makespan_with_overhead=clock_with + overhead + final_estimate,
        makespan_dag=dag_final,
    )
