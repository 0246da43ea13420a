"""Benchmark `overhead`: the engine's per-step cost, 500 `true` steps at -j 2 vs `make -j2`.

`true` does nothing, so the wall time is all bookkeeping: spawning, waiting,
logging, journaling, reporting. The graph is 20 independent chains of 25 steps.
buildlib runs with `--no-cache --plain` and its output to a file, make with the
equivalent Makefile; runs alternate so machine load hits both alike, and the
fastest of each is kept (noise only adds). CPU time (user + system of the tool and
its children) is shown too: on a machine shared with other work it moves far less
than wall time. A one-step graph run by each gives the fixed start-up cost, so
the per-step figure is (500 steps - 1 step) / 499.

Two more rows split the distance to make: `python -c pass` (the interpreter's own
start, which any Python tool pays) and `spawn_floor.py`, the same steps run by two
bare Python threads that spawn, wait and keep a log per step as buildlib does, with
no bookkeeping at all (the floor under any CPython orchestrator here). What buildlib
takes above that floor is the engine's own: start-up, plan, journal, reports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import emit
from benchmarks.dag import Dag, chains
from benchmarks.harness import (
    Context,
    Result,
    Row,
    Timing,
    Verdict,
    buildlib_argv,
    fastest,
    load_average,
    require,
    timed,
)

CHAINS, LENGTH = 20, 25  # 500 steps
QUICK_CHAINS, QUICK_LENGTH = 10, 10  # 100 steps
REPEATS, QUICK_REPEATS = 5, 1
JOBS = 2
TARGET = 2.0


Timer = Callable[[str], Timing]  # log label -> the run's timing
FLOOR = Path(__file__).with_name("spawn_floor.py")


def _setup(dag: Dag, directory: Path, true: str, make: str) -> tuple[Timer, Timer, Timer]:
    """Write the files of buildlib, make and the floor for `dag`; a timer for each."""
    commands = {name: [true] for name in dag.names}
    (directory / "buildlib").mkdir(parents=True)
    (directory / "make").mkdir()
    (directory / "floor").mkdir()
    manifest = emit.write_manifest(dag, commands, directory / "buildlib" / "build.toml")
    makefile = emit.write_makefile(dag, commands, directory / "make" / "Makefile")
    graph = directory / "floor" / "graph.json"
    graph.write_text(
        json.dumps({"names": dag.names, "deps": dag.deps, "commands": commands}),
        encoding="utf-8",
    )

    def buildlib(label: str) -> Timing:
        return timed(
            buildlib_argv(manifest, jobs=JOBS),
            cwd=manifest.parent,
            log=directory / f"buildlib-{label}.log",
        )

    def run_make(label: str) -> Timing:
        return timed(
            [make, "-j", str(JOBS), "-f", str(makefile), "all"],
            cwd=makefile.parent,
            log=directory / f"make-{label}.log",
        )

    def floor(label: str) -> Timing:
        return timed(
            [sys.executable, str(FLOOR), str(graph), str(JOBS), str(directory / "floor" / "logs")],
            cwd=graph.parent,
            log=directory / f"floor-{label}.log",
        )

    return buildlib, run_make, floor


def run(ctx: Context) -> Result:
    true, make = require("true"), require("make")
    count, length = (QUICK_CHAINS, QUICK_LENGTH) if ctx.quick else (CHAINS, LENGTH)
    repeats = QUICK_REPEATS if ctx.quick else REPEATS
    big = chains(count=count, length=length)
    steps = len(big.names)
    load_before = load_average()
    big_buildlib, big_make, big_floor = _setup(big, ctx.workdir / "big", true, make)
    one_buildlib, one_make, _ = _setup(chains(count=1, length=1), ctx.workdir / "one", true, make)

    def interpreter(label: str) -> Timing:
        return timed(
            [sys.executable, "-c", "pass"],
            cwd=ctx.workdir,
            log=ctx.workdir / f"python-{label}.log",
        )

    timers = {
        "buildlib": big_buildlib,
        "make": big_make,
        "floor": big_floor,
        "buildlib1": one_buildlib,
        "make1": one_make,
        "python": interpreter,
    }
    samples: dict[str, list[Timing]] = {name: [] for name in timers}
    for i in range(repeats):
        for name, timer in timers.items():
            samples[name].append(timer(str(i)))
    b, m = fastest(samples["buildlib"]), fastest(samples["make"])
    b1, m1 = fastest(samples["buildlib1"]), fastest(samples["make1"])
    floor, python = fastest(samples["floor"]), fastest(samples["python"])
    per_b = (b.wall - b1.wall) / (steps - 1) * 1000
    per_m = (m.wall - m1.wall) / (steps - 1) * 1000
    ratio = b.wall / m.wall
    rows = (
        Row(
            label=f"buildlib -j2, {steps} steps",
            seconds=b.wall,
            ratio=ratio,
            cpu=b.cpu,
            note=f"{per_b:.2f} ms/step after start-up",
        ),
        Row(
            label=f"make -j2, {steps} steps",
            seconds=m.wall,
            ratio=1.0,
            cpu=m.cpu,
            note=f"{per_m:.2f} ms/step after start-up",
        ),
        Row(
            label="buildlib, 1 step (start-up)", seconds=b1.wall, ratio=b1.wall / m.wall, cpu=b1.cpu
        ),
        Row(label="make, 1 step (start-up)", seconds=m1.wall, ratio=m1.wall / m.wall, cpu=m1.cpu),
        Row(
            label=f"CPython floor, {steps} steps",
            seconds=floor.wall,
            ratio=floor.wall / m.wall,
            cpu=floor.cpu,
            note="2 bare threads: posix_spawn, waitpid, a log per step (spawn_floor.py)",
        ),
        Row(
            label="python -c pass",
            seconds=python.wall,
            ratio=python.wall / m.wall,
            cpu=python.cpu,
            note="the interpreter's start, in every Python tool",
        ),
    )
    return Result(
        name="overhead",
        reference=f"make -j2 on the same {steps} steps = {m.wall:.3f}s",
        target=f"buildlib <= {TARGET:.1f} x make (measured {ratio:.2f}; "
        f"CPU time {b.cpu / m.cpu:.2f} x)",
        verdict=Verdict.MET if ratio <= TARGET else Verdict.MISSED,
        rows=rows,
        figures={
            "steps": float(steps),
            "repeats": float(repeats),
            "buildlib_ms_per_step": per_b,
            "make_ms_per_step": per_m,
            "cpu_ratio": b.cpu / m.cpu,
            "floor_ratio": floor.wall / m.wall,
            "above_floor_ms": (b.wall - floor.wall) * 1000,
            "load_before": load_before,
            "load_after": load_average(),
        },
        notes=(
            f"fastest of {repeats} alternating run(s) each; {count} chains of {length} `true`",
            f"buildlib above the CPython floor: {(b.wall - floor.wall) * 1000:.0f} ms "
            "(engine start-up, plan, journal, watchdog, terminal lines, reports)",
        ),
    )
