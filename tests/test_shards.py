"""One build over several CI jobs (`plan --shards N`), locally and without GitHub.

The layout itself (`planning/shards.py`) is checked on graphs whose best makespan is known
and on random 200-step graphs with heavy-tailed durations: every layout is valid (each
step once, its dependencies built by an earlier wave or earlier in its own job, `needs`
naming those jobs) and close to the lower bound, max(critical path, work / N), where the
graph allows.

The replay is real: a generated git workspace, its reference build on one machine (which
also times the steps, so the plan has real estimates), then three clones with their own
local caches sharing one bazel-remote on loopback. The jobs of lane k run in clone k, the
jobs of a wave at the same time, waves in the order `plan --shards 2 --json` gives; the
final `verify` job runs in the third clone. Its build must be all hits, `verify` must
pass, and its artifacts must be byte-identical to the reference build's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from helpers import MODES, PY_TOML, ROOT
from repos import git_init

from buildlib.planning.shards import FINAL_JOB, ShardPlan, plan_shards

# -- the layout ------------------------------------------------------------------------------


def check_valid(
    plan: ShardPlan,
    order: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    cacheable: Mapping[str, bool] | None = None,
) -> None:
    """Everything a CI run relies on: each step in one job, built after its dependencies
    (an earlier wave, or earlier in the same job), `needs` naming the jobs that built
    them, at most `shards` jobs a wave, the final job last."""
    cacheable = cacheable or {}
    owner: dict[str, tuple[int, str]] = {}
    per_wave: dict[int, int] = {}
    *jobs, final = plan.jobs
    assert (final.id, final.final, final.wave) == (FINAL_JOB, True, plan.waves + 1)
    for job in jobs:
        per_wave[job.wave] = per_wave.get(job.wave, 0) + 1
        inside: set[str] = set()
        needs: set[str] = set()
        for step in job.steps:
            assert step not in owner, f"{step} is in two jobs"
            for dep in deps.get(step, ()):
                if dep in inside:
                    continue
                wave, dep_job = owner[dep]  # KeyError: built by no earlier wave
                assert wave < job.wave, f"{step} in wave {job.wave} needs {dep} of wave {wave}"
                if cacheable.get(dep, True):
                    needs.add(dep_job)
            inside.add(step)
        for step in job.steps:
            owner[step] = (job.wave, job.id)
        assert set(job.needs) == needs, job.id
    assert set(per_wave) == set(range(1, plan.waves + 1))
    assert max(per_wave.values()) <= plan.shards
    assert sorted([*owner, *final.steps]) == sorted(order)
    assert all(not cacheable.get(s, True) for s in final.steps)
    assert plan.makespan >= plan.lower_bound - 1e-9


def test_independent_equal_steps_split_evenly_over_the_jobs() -> None:
    order = [f"s{i}" for i in range(8)]

    plan = plan_shards(order, {}, dict.fromkeys(order, 1.0), shards=2, overhead=0)

    check_valid(plan, order, {})
    assert (plan.lower_bound, plan.makespan) == (4.0, 4.0)
    assert [len(j.steps) for j in plan.jobs[:-1]] == [4, 4]


def test_a_chain_is_one_job_when_starting_a_job_costs_something() -> None:
    order = ["a", "b", "c", "d"]
    deps = {"b": ["a"], "c": ["b"], "d": ["c"]}

    plan = plan_shards(order, deps, dict.fromkeys(order, 2.0), shards=4, overhead=30)

    check_valid(plan, order, deps)
    assert [j.steps for j in plan.jobs] == [("a", "b", "c", "d"), ()]
    assert plan.makespan == plan.lower_bound == plan.critical_path == 8.0


def test_one_heavy_step_among_many_light_ones_bounds_the_makespan_alone() -> None:
    order = ["heavy", *(f"light{i}" for i in range(60))]
    durations = {"heavy": 100.0, **{f"light{i}": 1.0 for i in range(60)}}

    plan = plan_shards(order, {}, durations, shards=4, overhead=0)

    check_valid(plan, order, {})
    assert plan.lower_bound == 100.0
    assert plan.makespan == 100.0
    heavy_job = next(j for j in plan.jobs if "heavy" in j.steps)
    assert heavy_job.steps == ("heavy",), "the light steps go to the other jobs"


def test_a_step_that_cannot_be_cached_and_ends_the_graph_runs_in_the_final_job() -> None:
    order = ["compile", "package", "smoke"]
    deps = {"package": ["compile"], "smoke": ["package"]}
    cacheable = {"smoke": False}

    plan = plan_shards(
        order,
        deps,
        {"compile": 3, "package": 1, "smoke": 0.5},
        shards=2,
        overhead=0,
        cacheable=cacheable,
    )

    check_valid(plan, order, deps, cacheable)
    assert plan.jobs[-1].steps == ("smoke",)


def test_the_wave_bound_is_kept() -> None:
    order, deps, durations = random_dag(7, steps=60)

    for waves in (1, 2, 3):
        plan = plan_shards(order, deps, durations, shards=4, overhead=0, max_waves=waves)
        check_valid(plan, order, deps)
        assert plan.waves <= waves


def random_dag(
    seed: int, *, steps: int = 200, alpha: float = 1.2
) -> tuple[list[str], dict[str, list[str]], dict[str, float]]:
    """`steps` steps, each depending on up to 3 of the 30 before it; Pareto(alpha)
    durations (a few steps take most of the time, as in real builds), capped at 200 s."""
    rng = random.Random(seed)
    order = [f"s{i:03}" for i in range(steps)]
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(order):
        window = range(max(0, i - 30), i)
        count = min(len(window), rng.choice((0, 0, 1, 1, 2, 3)))
        deps[name] = sorted(order[j] for j in rng.sample(window, count))
    durations = {name: min(rng.paretovariate(alpha), 200.0) for name in order}
    return order, deps, durations


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_heavy_tailed_random_graphs_are_laid_out_close_to_the_lower_bound(seed: int) -> None:
    order, deps, durations = random_dag(seed)
    ratios = {}
    makespans = {}

    for shards in (1, 2, 4, 8):
        plan = plan_shards(order, deps, durations, shards=shards, overhead=0)
        check_valid(plan, order, deps)
        ratios[shards] = plan.makespan / plan.lower_bound
        makespans[shards] = plan.makespan

    # A layout for fewer jobs is one for more jobs too: more jobs never plan a later end.
    assert makespans[1] >= makespans[2] >= makespans[4] >= makespans[8], makespans

    assert ratios[1] == pytest.approx(1.0)
    # Two jobs: the work dominates the critical path here, and the layout nearly meets it.
    assert ratios[2] < 1.05, ratios
    # More jobs: waves cost some parallelism, but never more than list scheduling's
    # worst case without them (2 - 1/N) allows.
    assert all(ratios[n] <= 2 - 1 / n for n in (4, 8)), ratios


# -- the replay: three clones, one remote ----------------------------------------------------

JOB_PY = textwrap.dedent("""
    import hashlib, pathlib, sys, time
    name, seconds, out, inputs = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    time.sleep(seconds)
    digest = hashlib.sha256(name.encode())
    for path in inputs:
        digest.update(pathlib.Path(path).read_bytes())
    if out != "-":
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(name + " " + digest.hexdigest() + "\\n")
    with open("runs.log", "a") as log:
        log.write(name + "\\n")
""")

# (name, seconds, output, inputs it reads, dependencies); `smoke` cannot be cached.
GRAPH: tuple[tuple[str, float, str, list[str], list[str]], ...] = (
    ("fetch", 0.6, "out/fetch.txt", ["src/deps.txt"], []),
    ("compile-a", 1.2, "out/a.bin", ["src/a.txt", "out/fetch.txt"], ["fetch"]),
    ("compile-b", 0.9, "out/b.bin", ["src/b.txt", "out/fetch.txt"], ["fetch"]),
    ("test-a", 0.6, "out/test-a.txt", ["out/a.bin"], ["compile-a"]),
    ("lint", 0.3, "out/lint.txt", ["src/a.txt", "src/b.txt"], []),
    ("package", 0.3, "out/app.pkg", ["out/a.bin", "out/b.bin"], ["compile-a", "compile-b"]),
    ("smoke", 0.1, "-", ["out/app.pkg"], ["package"]),
)
ARTIFACTS = ("out/app.pkg", "out/a.bin", "out/b.bin", "out/test-a.txt", "out/lint.txt")


def manifest() -> str:
    steps = []
    for name, seconds, out, reads, deps in GRAPH:
        sources = [r for r in reads if r.startswith("src/")]
        steps.append(
            textwrap.dedent(f"""
            [[step]]
            name = "{name}"
            command = [{PY_TOML}, "job.py", "{name}", "{seconds}", "{out}", {
                ", ".join(json.dumps(r) for r in reads)
            }]
            depends_on = {json.dumps(deps)}
            inputs = {json.dumps(["job.py", *sources])}
            outputs = {json.dumps([] if out == "-" else [out])}
            """)
        )
        if name == "smoke":
            steps.append("cache = false\n")
    made_by = {out: name for name, _, out, _, _ in GRAPH}
    artifacts = "".join(
        f'\n[[artifact]]\npath = "{path}"\nstep = "{made_by[path]}"\nkind = "exists"\n'
        for path in ARTIFACTS
    )
    return MODES + "".join(steps) + artifacts


def make_upstream(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "job.py").write_text(JOB_PY)
    (root / "build.toml").write_text(manifest())
    (root / "src").mkdir()
    for name in ("deps", "a", "b"):
        (root / "src" / f"{name}.txt").write_text(f"{name}\n")
    (root / ".gitignore").write_text("out/\n.buildlib/\nruns.log\n")
    git_init(root)
    return root


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "BUILDLIB_", "GITHUB_"))
    }
    env.update({"PYTHONPATH": str(ROOT), "BUILDLIB_CACHE_DIR": str(cache), **extra})
    return env


def clone(upstream: Path, dest: Path) -> Path:
    done = subprocess.run(
        ["git", "clone", "-q", f"file://{upstream}", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dest


def engine(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=root,
        env=_env(root.parent / f"{root.name}-cache", **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def start(root: Path, steps: Sequence[str], remote: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "buildlib", "build", "--plain", *steps],
        cwd=root,
        env=_env(root.parent / f"{root.name}-cache", BUILDLIB_REMOTE_CACHE=remote),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def outcomes(root: Path) -> dict[str, str]:
    report = json.loads((root / ".buildlib/reports/latest.json").read_text())
    return {s["name"]: s["outcome"] for s in report["steps"]}


def sha256s(root: Path) -> dict[str, str]:
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in ARTIFACTS}


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[str]:
    from bazel_remote_server import running_bazel_remote

    with running_bazel_remote(tmp_path / "bazel-remote") as server:
        yield server.url


@pytest.mark.timeout(600)
def test_three_clones_sharing_one_remote_replay_the_plan_and_end_with_the_same_artifacts(
    tmp_path: Path, remote: str
) -> None:
    upstream = make_upstream(tmp_path / "upstream")
    single = clone(upstream, tmp_path / "single")
    done = engine(single, "build", "--plain")  # the reference, and the steps' timings
    assert done.returncode == 0, done.stdout + done.stderr
    reference = sha256s(single)

    planned = engine(single, "plan", "--shards", "2", "--job-overhead", "0", "--json")
    assert planned.returncode == 0, planned.stderr
    layout = json.loads(planned.stdout)["shards"]
    assert "every step's time comes from earlier builds" in layout["estimates_note"]
    *waves_jobs, final = layout["jobs"]
    assert final["id"] == "verify" and final["steps"] == ["smoke"]
    assert layout["waves"] >= 2, "nothing would travel between the jobs"
    assert any(
        set(job["needs"]) - {j["id"] for j in waves_jobs if j["lane"] == job["lane"]}
        for job in waves_jobs
    ), "no job needs another machine's result"
    clones = {lane: clone(upstream, tmp_path / f"lane-{lane}") for lane in (1, 2)}
    last = clone(upstream, tmp_path / "final")
    built_by: dict[str, str] = {}

    for wave in range(1, layout["waves"] + 1):
        jobs = [j for j in waves_jobs if j["wave"] == wave]
        running = [(job, start(clones[job["lane"]], job["steps"], remote)) for job in jobs]
        for job, process in running:
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, f"{job['id']}: {output}"
            seen = outcomes(clones[job["lane"]])
            # A job builds its own steps (and reruns what cannot be cached); what an
            # earlier job built comes from the cache: the remote when another lane built it.
            assert {s for s, o in seen.items() if o == "built"} == {
                *job["steps"],
                *job["reruns"],
            }, job["id"]
            for step, outcome in seen.items():
                if step in built_by and step not in job["reruns"]:
                    assert outcome in ("restored", "cached"), (job["id"], step, outcome)
            built_by.update(dict.fromkeys(job["steps"], job["id"]))

    final_build = start(last, [], remote)
    output, _ = final_build.communicate(timeout=300)
    assert final_build.returncode == 0, output
    seen = outcomes(last)
    assert seen == {**dict.fromkeys(built_by, "restored"), "smoke": "built"}, output
    assert (last / "runs.log").read_text().split() == ["smoke"]
    checked = engine(last, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sha256s(last) == reference
