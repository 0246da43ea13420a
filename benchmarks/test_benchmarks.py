"""Tests of the benchmark yardsticks and generated files: `python -m pytest benchmarks`.

The figures themselves are not tested (they are a report); what is tested is that
the simulated rows compute what their labels say and that every tool accepts the
files generated for it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import emit, noop, run
from benchmarks.dag import (
    Dag,
    chains,
    critical_path,
    levels,
    lower_bound,
    random_dag,
    remaining_path,
    simulate_levels,
    simulate_list,
)
from benchmarks.harness import REPO, BenchmarkError, Result, Row, Verdict, tool_env
from buildlib.planning.scheduler import Scheduler


def _dag(durations: dict[str, float], deps: dict[str, tuple[str, ...]]) -> Dag:
    return Dag(
        names=tuple(durations), deps={n: deps.get(n, ()) for n in durations}, durations=durations
    )


# a(1) -> c(4); b(3); d(1) -> e(1). Two workers.
SMALL = _dag({"a": 1.0, "b": 3.0, "d": 1.0, "c": 4.0, "e": 1.0}, {"c": ("a",), "e": ("d",)})


def test_bounds_of_a_small_graph() -> None:
    assert critical_path(SMALL) == 5.0
    assert lower_bound(SMALL, 2) == 5.0  # work 10 / 2 = 5, critical path a -> c = 5
    assert remaining_path(SMALL) == {"a": 5.0, "b": 3.0, "d": 2.0, "c": 4.0, "e": 1.0}


def test_list_schedules_by_priority_and_by_declaration_order() -> None:
    # Critical path first: a, b at 0 | c at 1 (before d) | d at 3 | e at 4 -> done at 5.
    assert simulate_list(SMALL, 2, remaining_path(SMALL)) == 5.0
    # Declaration order: a, b at 0 | d at 1 (declared before c) | c at 2 -> done at 6.
    assert simulate_list(SMALL, 2, None) == 6.0


def test_level_by_level_waits_for_the_whole_level() -> None:
    assert levels(SMALL) == [["a", "b", "d"], ["c", "e"]]
    assert simulate_levels(SMALL, None) == 3.0 + 4.0
    # Two workers: level 0 packs {b} {a, d} -> 3; level 1 {c} {e} -> 4.
    assert simulate_levels(SMALL, 2) == 7.0


def test_random_dag_is_reproducible_and_acyclic() -> None:
    one = random_dag(seed=6, steps=40, total_work=26.0)
    assert one == random_dag(seed=6, steps=40, total_work=26.0)
    assert one != random_dag(seed=7, steps=40, total_work=26.0)
    assert abs(one.total_work - 26.0) < 0.5
    seen: set[str] = set()
    for name in one.names:  # every dependency is declared earlier
        assert set(one.deps[name]) <= seen
        seen.add(name)


def test_chains_shape() -> None:
    dag = chains(count=3, length=4)
    assert len(dag.names) == 12
    assert critical_path(chains(count=3, length=4, duration=1.0)) == 4.0
    assert sum(1 for n in dag.names if not dag.deps[n]) == 3


@pytest.mark.parametrize("seed", [1, 6, 9])
def test_simulated_policy_matches_buildlibs_scheduler(seed: int) -> None:
    """The 'buildlib policy' row must be what buildlib's own Scheduler would do."""
    dag = random_dag(seed=seed, steps=40, total_work=26.0)
    priority = remaining_path(dag)
    scheduler = Scheduler(dag.deps, priority)
    running: list[tuple[float, str]] = []
    now = 0.0
    while not scheduler.finished:
        while len(running) < 2 and (name := scheduler.next_step()) is not None:
            scheduler.start(name)
            running.append((now + dag.durations[name], name))
        running.sort()
        now, done = running.pop(0)
        scheduler.finish(done, ok=True)
    assert simulate_list(dag, 2, priority) == pytest.approx(now)


def _commands(dag: Dag) -> dict[str, list[str]]:
    true = shutil.which("true")
    assert true is not None
    return {name: [true] for name in dag.names}


def test_generated_makefile_runs_every_step_after_its_dependencies(tmp_path: Path) -> None:
    dag = random_dag(seed=6, steps=12, total_work=1.0)
    emit.write_makefile(dag, {n: ["echo", n] for n in dag.names}, tmp_path / "Makefile")
    out = subprocess.run(
        ["make", "-s", "-j2", "all"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(out) == sorted(dag.names)
    for name in dag.names:
        assert all(out.index(dep) < out.index(name) for dep in dag.deps[name])


def _floor(tmp_path: Path, dag: Dag, commands: dict[str, list[str]]) -> int:
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"names": dag.names, "deps": dag.deps, "commands": commands}))
    floor = REPO / "benchmarks" / "spawn_floor.py"
    argv = [sys.executable, str(floor), str(graph), "2", str(tmp_path / "logs")]
    return subprocess.run(argv, check=False).returncode


def test_spawn_floor_runs_every_step_after_its_dependencies(tmp_path: Path) -> None:
    # Each step appends its name to one file (O_APPEND: whole lines) and logs it; the
    # earlier a step, the longer it sleeps first, so a dependent started too soon would
    # append before its dependency.
    dag = random_dag(seed=7, steps=12, total_work=1.0)
    order = tmp_path / "order"
    sh = shutil.which("sh")
    assert sh is not None
    commands = {
        n: [sh, "-c", f"sleep 0.{12 - i:02d}; echo {n} >> {order}; echo logged {n}"]
        for i, n in enumerate(dag.names)
    }
    assert _floor(tmp_path, dag, commands) == 0
    ran = order.read_text().split()
    assert sorted(ran) == sorted(dag.names)
    for name in dag.names:
        assert all(ran.index(dep) < ran.index(name) for dep in dag.deps[name])
        assert (tmp_path / "logs" / f"{name}.log").read_text() == f"logged {name}\n"


def test_spawn_floor_stops_at_a_failing_step(tmp_path: Path) -> None:
    dag = chains(count=1, length=3)
    false, true = shutil.which("false"), shutil.which("true")
    assert false is not None and true is not None
    commands = {n: [false if i == 1 else true] for i, n in enumerate(dag.names)}
    assert _floor(tmp_path, dag, commands) == 1
    assert not (tmp_path / "logs" / f"{dag.names[2]}.log").exists()


def test_generated_noxfile_lists_every_session(tmp_path: Path) -> None:
    dag = random_dag(seed=6, steps=5, total_work=1.0)
    noxfile = emit.write_noxfile(dag, _commands(dag), tmp_path / "noxfile.py")
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(noxfile), "-l", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(s["session"] for s in json.loads(listed)) == sorted(dag.names)


def test_generated_manifest_builds(tmp_path: Path) -> None:
    dag = random_dag(seed=6, steps=6, total_work=1.0)
    manifest = emit.write_manifest(dag, _commands(dag), tmp_path / "build.toml")
    plan = subprocess.run(
        [sys.executable, "-m", "buildlib", "plan", "--manifest", str(manifest)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=tool_env(),
    ).stdout
    for name in dag.names:
        assert name in plan


def test_render_and_json_of_a_result(tmp_path: Path) -> None:
    result = Result(
        name="demo",
        reference="x = 2.00s",
        target="demo <= 1.1",
        verdict=Verdict.MET,
        rows=(
            Row(label="tool", seconds=2.0, ratio=1.0, cpu=0.5),
            Row(label="model", seconds=1.0, ratio=0.5, simulated=True),
        ),
        figures={"load": float("nan")},
    )
    text = run.render(result, 3.0)
    assert "model (simulated)" in text
    assert "-> MET" in text
    out = tmp_path / "r.json"
    run.write_json(out, run._finite({"results": [run._jsonable(result)]}))
    data = json.loads(out.read_text())
    assert data["results"][0]["verdict"] == "met"
    assert data["results"][0]["figures"]["load"] is None


def test_unknown_benchmark_name_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown benchmark nope" in proc.stderr


def test_turbo_files_translate_the_apps_development_plan() -> None:
    """turbo gets buildlib's graph: every step a script and a task with its deps, I/O, env."""
    plan = noop.development_plan(REPO, tool_env())
    package, turbo = noop.turbo_files(plan, "11.0.0")
    assert package["packageManager"] == "npm@11.0.0"
    assert list(package["scripts"]) == list(turbo["tasks"]) == list(plan.steps)
    for name, step in plan.steps.items():
        task, script = turbo["tasks"][name], package["scripts"][name]
        assert task["dependsOn"] == list(step.depends_on)
        assert task["env"] == list(step.env_inputs)
        assert task["cache"] == step.cacheable
        assert [i for i in task["inputs"] if not i.startswith("!")] == list(step.inputs)
        assert {"!**/node_modules/**", *(f"!{e}" for e in step.exclude)} <= set(task["inputs"])
        for output in step.outputs:  # a directory output brings what is under it
            assert {output, f"{output}/**"} <= set(task["outputs"])
        assert script.endswith(shlex.join(step.argv))
    assert package["scripts"]["web-install"].startswith("cd web && env ")
    assert "ELECTRON_SKIP_BINARY_DOWNLOAD=1" in package["scripts"]["electron-install"]


def test_turbo_script_runs_the_step_in_its_directory_with_its_env(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "build.toml").write_text(
        '[workspace]\nname = "t"\ndefault_mode = "development"\n\n'
        '[modes.development]\nenv = { GREETING = "it\'s {mode}" }\n\n'
        '[[step]]\nname = "write"\ncwd = "sub dir"\n'
        'command = ["sh", "-c", "printf \'%s\' \\"$GREETING\\" > out.txt"]\n'
    )
    plan = noop.development_plan(tmp_path, tool_env())
    package, _ = noop.turbo_files(plan, "11.0.0")
    subprocess.run(["sh", "-c", package["scripts"]["write"]], cwd=tmp_path, check=True)
    assert (tmp_path / "sub dir" / "out.txt").read_text() == "it's development"


def test_noop_checks_reject_a_build_that_did_work() -> None:
    cached = {
        "exit_code": 0,
        "steps": [{"name": "a", "outcome": "cached"}, {"name": "b", "outcome": "cached"}],
    }
    noop.check_all_cached(cached, expected=2)
    with pytest.raises(BenchmarkError, match="b: built"):
        noop.check_all_cached(
            {**cached, "steps": [cached["steps"][0], {"name": "b", "outcome": "built"}]}, expected=2
        )
    with pytest.raises(BenchmarkError, match="1 of 2 steps"):
        noop.check_all_cached({**cached, "steps": cached["steps"][:1]}, expected=2)
    summary = "\x1b[1m Tasks:\x1b[0m 9 successful, 9 total\nCached:    {} cached, 9 total\n"
    noop.check_turbo_cached(summary.format(9), expected=9)
    with pytest.raises(BenchmarkError, match="8 cached, 9 total"):
        noop.check_turbo_cached(summary.format(8), expected=9)
    with pytest.raises(BenchmarkError, match="no `Cached:` line"):
        noop.check_turbo_cached("turbo crashed", expected=9)
