"""Benchmark `noop`: a no-op build of the real app, everything cached, vs turbo and nox's floor.

In a `git clone` of this repository (its committed state, in the work directory)
the app is built once cold with `nox -s "build-3.12(mode='development')"`, which
creates the engine's environment and runs cargo, npm ci, vite, tsc... Then the
same clone gets a turbo setup written from buildlib's own plan of that build (the
same steps, dependencies, commands, environment, inputs and outputs; see
`turbo_files`), and turbo builds it cold once too. After one untimed warm-up run
of each, every repetition times, in turn:

- `nox -s "build-3.12(mode='development')"`: what a developer types;
- the engine alone: `.nox/_engine-py3.12/bin/python -m buildlib build --mode
  development --plain`;
- `turbo run <every task>` with a full cache hit (`--output-logs=none`);
- `nox -l`: starting Python, importing nox and loading the noxfile (which reads
  build.toml), the floor under anything run through nox.

Every timed buildlib run must report every step `cached` (from
`.buildlib/reports/latest.json`) and every turbo run must say all its tasks were
cached, or the benchmark stops: a no-op that did work is not a no-op. The fastest
of each is kept (noise only adds). Timed commands see the caller's environment
without BUILDLIB_*, NOX*, TURBO_* and PYTHONPATH (the clone's own buildlib runs),
and without PYTHONDONTWRITEBYTECODE: a developer's Python caches bytecode.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    BenchmarkError,
    Context,
    Result,
    Row,
    Timing,
    Verdict,
    fastest,
    load_average,
    require,
    timed,
)
from buildlib.ecosystems.defaults import DEFAULT_EXCLUDES
from buildlib.planning.plan import Plan, build_plan
from buildlib.workspace.manifest import load_manifest
from buildlib.workspace.targets import get_target, host_triple

MODE = "development"
SESSION = f"build-3.12(mode='{MODE}')"
ENGINE = Path(".nox/_engine-py3.12/bin/python")
TURBO = "turbo@2"
REPEATS, QUICK_REPEATS = 10, 1
# The two targets, read together: buildlib's no-op is faster than turbo's (the
# engine, what buildlib itself does), and going through nox adds at most 150 ms to nox's
# own floor. Through nox, "faster than turbo" cannot be the reading: `nox -l` alone is
# ~80% of turbo's whole no-op here, so it would leave the engine ~30 ms, and the second
# target would say nothing. The via-nox / turbo ratio is printed all the same.
TARGET_RATIO = 1.0  # buildlib engine / turbo
TARGET_ABOVE_FLOOR_MS = 150.0  # buildlib (via nox) - nox -l
DROPPED_PREFIXES = ("BUILDLIB_", "NOX", "TURBO_")
DROPPED = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TURBO_CACHED = re.compile(r"Cached:\s+(\d+) cached, (\d+) total")


def bench_env(workdir: Path) -> dict[str, str]:
    """The environment of every command this benchmark runs (see the module docstring)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(DROPPED_PREFIXES) and k not in DROPPED
    }
    env.update(
        {
            "BUILDLIB_CACHE_DIR": str(workdir / "buildlib-cache"),  # a private, empty cache
            "ELECTRON_SKIP_BINARY_DOWNLOAD": "1",
            "TURBO_TELEMETRY_DISABLED": "1",
            "DO_NOT_TRACK": "1",
            "TURBO_NO_UPDATE_NOTIFIER": "1",
        }
    )
    return env


def resolve_nox() -> str:
    """nox's own executable, as pip or pipx installs it, even when `nox` on PATH is a pyenv shim.

    A shim is a shell script that runs `pyenv exec`, ~0.25 s before nox even starts
    on the development machine: it would be timed as buildlib's cost.
    """
    nox = require("nox")
    if f"{os.sep}shims{os.sep}" not in nox:
        return nox
    real = subprocess.run(
        ["pyenv", "which", "nox"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not real or not Path(real).is_file():
        raise BenchmarkError(f"{nox} is a pyenv shim and `pyenv which nox` did not resolve it")
    return real


def development_plan(root: Path, env: Mapping[str, str]) -> Plan:
    """buildlib's plan of the whole development build of the clone at `root`, host target."""
    manifest = load_manifest(root / "build.toml")
    return build_plan(manifest, mode=MODE, target=get_target(host_triple()), environ=env)


def _script(plan: Plan, name: str) -> str:
    step = plan.steps[name]
    command = shlex.join(["env", *(f"{k}={v}" for k, v in step.env.items()), *step.argv])
    cwd = step.cwd.relative_to(plan.root.resolve()).as_posix()
    return command if cwd == "." else f"cd {shlex.quote(cwd)} && {command}"


def turbo_files(plan: Plan, npm_version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The root package.json and turbo.json that make turbo run `plan`'s steps.

    One npm script per step (cd to its cwd, set its env, run its argv) and one task
    per script (turbo's single-package mode) with the step's dependencies, inputs
    (its excludes, buildlib's default ones included, as `!` globs), outputs (a
    path as written and everything under it: an output may be a directory), the
    environment variables it fingerprints, and `cache = false` where buildlib's
    is. Tool versions, which buildlib also fingerprints, turbo has no place for.
    """
    package = {
        "name": "noop-benchmark",
        "private": True,
        "packageManager": f"npm@{npm_version}",
        "scripts": {name: _script(plan, name) for name in plan.steps},
    }
    tasks = {
        name: {
            "dependsOn": list(step.depends_on),
            "inputs": [
                *step.inputs,
                *(f"!{pattern}" for pattern in dict.fromkeys((*step.exclude, *DEFAULT_EXCLUDES))),
            ],
            "outputs": [path for output in step.outputs for path in (output, f"{output}/**")],
            "env": list(step.env_inputs),
            "cache": step.cacheable,
        }
        for name, step in plan.steps.items()
    }
    turbo = {
        "$schema": "https://turborepo.com/schema.json",
        "ui": "stream",
        "envMode": "loose",
        "remoteCache": {"enabled": False},
        "tasks": tasks,
    }
    return package, turbo


def check_all_cached(report: Mapping[str, Any], *, expected: int) -> None:
    """Raise BenchmarkError unless the build report has `expected` steps, all cached."""
    steps = report.get("steps", [])
    odd = [f"{s['name']}: {s['outcome']}" for s in steps if s.get("outcome") != "cached"]
    if report.get("exit_code") != 0 or odd or len(steps) != expected:
        raise BenchmarkError(
            f"the no-op build was not one: exit {report.get('exit_code')}, "
            f"{len(steps)} of {expected} steps, not cached: "
            f"{', '.join(odd) or 'none'}"
        )


def check_turbo_cached(output: str, *, expected: int) -> None:
    """Raise BenchmarkError unless turbo's summary says all `expected` tasks were cache hits."""
    found = TURBO_CACHED.search(ANSI.sub("", output))
    if found is None or found.group(1) != found.group(2) or int(found.group(2)) != expected:
        summary = found.group(0) if found else "no `Cached:` line"
        raise BenchmarkError(
            f"turbo's run was not all cached ({summary} for {expected} tasks):\n{output[-2000:]}"
        )


def _setup_turbo(clone: Path, plan: Plan, env: Mapping[str, str], logs: Path) -> Path:
    """Write turbo's files into the clone and install turbo there; returns its executable."""
    npm = require("npm")
    version = subprocess.run(
        [npm, "--version"], capture_output=True, text=True, check=True, env=dict(env)
    ).stdout.strip()
    package, turbo = turbo_files(plan, version)
    (clone / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    (clone / "turbo.json").write_text(json.dumps(turbo, indent=2) + "\n")
    timed(
        [npm, "install", "--save-dev", "--no-audit", "--no-fund", TURBO],
        cwd=clone,
        log=logs / "npm-install-turbo.log",
        env=env,
    )
    executable = clone / "node_modules" / ".bin" / "turbo"
    if not executable.is_file():
        raise BenchmarkError(f"`npm install {TURBO}` did not give {executable}")
    return executable


def run(ctx: Context) -> Result:
    git = require("git")
    for tool in ("cargo", "node", "npm", "npx"):  # the app's steps fail late without them
        require(tool)
    nox = resolve_nox()
    repeats = QUICK_REPEATS if ctx.quick else REPEATS
    env = bench_env(ctx.workdir)
    logs = ctx.workdir / "logs"
    logs.mkdir()
    clone = ctx.workdir / "clone"
    timed(
        [git, "clone", "--quiet", str(REPO), str(clone)],
        cwd=ctx.workdir,
        log=logs / "clone.log",
        env=env,
    )
    commit = subprocess.run(
        [git, "rev-parse", "--short", "HEAD"], cwd=clone, text=True, capture_output=True, check=True
    ).stdout.strip()
    plan = development_plan(clone, env)
    names = list(plan.steps)
    turbo = _setup_turbo(clone, plan, env, logs)
    report = clone / ".buildlib" / "reports" / "latest.json"

    def nox_build(label: str) -> Timing:
        return timed([nox, "-s", SESSION], cwd=clone, log=logs / f"nox-build-{label}.log", env=env)

    def engine(label: str) -> Timing:
        return timed(
            [str(clone / ENGINE), "-m", "buildlib", "build", "--mode", MODE, "--plain"],
            cwd=clone,
            log=logs / f"engine-{label}.log",
            env=env,
        )

    def turbo_run(label: str) -> Timing:
        return timed(
            [str(turbo), "run", *names, "--output-logs=none", "--ui=stream"],
            cwd=clone,
            log=logs / f"turbo-{label}.log",
            env=env,
        )

    def nox_list(label: str) -> Timing:
        return timed([nox, "-l"], cwd=clone, log=logs / f"nox-l-{label}.log", env=env)

    def buildlib_cached() -> float:
        """Check the last build's report; returns its own wall time (the engine's build phase)."""
        data = json.loads(report.read_text())
        check_all_cached(data, expected=len(names))
        return float(data["wall"])

    def turbo_cached(label: str) -> None:
        check_turbo_cached(
            (logs / f"turbo-{label}.log").read_text(errors="replace"), expected=len(names)
        )

    cold_buildlib = nox_build("cold")
    cold_turbo = turbo_run("cold")
    nox_build("warm-up")  # turbo's cold run rewrote outputs: let buildlib settle
    buildlib_cached()
    turbo_run("warm-up")
    turbo_cached("warm-up")
    dry = subprocess.run(
        [str(turbo), "run", *names, "--dry=json"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    misses = [t["taskId"] for t in json.loads(dry)["tasks"] if t["cache"]["status"] != "HIT"]
    if misses:
        raise BenchmarkError(f"turbo --dry=json after its warm-up: not cache hits: {misses}")

    load_before = load_average()
    samples: dict[str, list[Timing]] = {"nox": [], "engine": [], "turbo": [], "floor": []}
    build_walls: list[float] = []
    for i in range(repeats):
        label = str(i)
        samples["nox"].append(nox_build(label))
        buildlib_cached()
        samples["engine"].append(engine(label))
        build_walls.append(buildlib_cached())
        samples["turbo"].append(turbo_run(label))
        turbo_cached(label)
        samples["floor"].append(nox_list(label))
    via_nox, direct = fastest(samples["nox"]), fastest(samples["engine"])
    turbo_t, floor = fastest(samples["turbo"]), fastest(samples["floor"])
    ratio_nox, ratio_engine = via_nox.wall / turbo_t.wall, direct.wall / turbo_t.wall
    above_ms = (via_nox.wall - floor.wall) * 1000
    met = ratio_engine < TARGET_RATIO and above_ms <= TARGET_ABOVE_FLOOR_MS
    engine_wall = min(build_walls)
    rows = (
        Row(
            label=f'buildlib via nox -s "{SESSION}"',
            seconds=via_nox.wall,
            ratio=ratio_nox,
            cpu=via_nox.cpu,
            note=f"{above_ms:.0f} ms above nox -l",
        ),
        Row(
            label="buildlib engine directly",
            seconds=direct.wall,
            ratio=ratio_engine,
            cpu=direct.cpu,
            note=f"build phase (report's wall) {engine_wall * 1000:.0f} ms",
        ),
        Row(
            label=f"turbo run, {len(names)} tasks cached",
            seconds=turbo_t.wall,
            ratio=1.0,
            cpu=turbo_t.cpu,
        ),
        Row(
            label="nox -l (floor)",
            seconds=floor.wall,
            ratio=floor.wall / turbo_t.wall,
            cpu=floor.cpu,
        ),
    )
    turbo_version = subprocess.run(
        [str(turbo), "--version"], cwd=clone, env=env, text=True, capture_output=True, check=True
    ).stdout.strip()
    notes = [
        f"fastest of {repeats} alternating run(s) each, after an untimed warm-up; clone "
        f"of {commit}; cold builds: buildlib via nox {cold_buildlib.wall:.1f}s "
        f"(engine venv included), turbo {cold_turbo.wall:.1f}s",
        f"nox: {nox}; turbo {turbo_version}",
    ]
    figures = {
        "repeats": float(repeats),
        "above_floor_ms": above_ms,
        "ratio_nox": ratio_nox,
        "ratio_engine": ratio_engine,
        "cpu_ratio_nox": via_nox.cpu / turbo_t.cpu,
        "cpu_ratio_engine": direct.cpu / turbo_t.cpu,
        "engine_report_wall": engine_wall,
        "cold_buildlib": cold_buildlib.wall,
        "cold_turbo": cold_turbo.wall,
        "load_before": load_before,
        "load_after": load_average(),
    }
    return Result(
        name="noop",
        reference=f"turbo run with a full cache hit = {turbo_t.wall:.3f}s",
        target=f"buildlib engine < {TARGET_RATIO:.0f} x turbo (measured {ratio_engine:.2f}; "
        f"CPU time {direct.cpu / turbo_t.cpu:.2f}) and via nox <= "
        f"{TARGET_ABOVE_FLOOR_MS:.0f} ms above nox -l (measured {above_ms:.0f} ms; via "
        f"nox / turbo {ratio_nox:.2f}, of which nox -l alone "
        f"{floor.wall / turbo_t.wall:.2f})",
        verdict=Verdict.MET if met else Verdict.MISSED,
        rows=rows,
        figures=figures,
        notes=tuple(notes),
    )
