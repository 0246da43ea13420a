"""What every benchmark shares: its result record, the run context, and timed commands.

A benchmark is a function `(Context) -> Result`. It runs buildlib and its peers
in the same process tree and the same minute, so their ratio means something on
a busy machine where absolute seconds do not. A peer that fails is a crash
(`BenchmarkError`); a target that is missed is a figure, not an error.
"""

from __future__ import annotations

import enum
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Verdict(enum.Enum):
    MET = "met"
    MISSED = "missed"
    SKIPPED = "skipped"  # the benchmark could not run here; `Result.notes` says why


@dataclass(frozen=True, kw_only=True)
class Row:
    """One tool's figure: measured seconds, or computed ones when `simulated`."""

    label: str
    seconds: float  # wall time
    ratio: float  # seconds / the benchmark's reference
    cpu: float | None = None  # user + system seconds, where measured
    simulated: bool = False
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Result:
    name: str
    reference: str  # what every ratio divides by, with its value
    target: str  # the goal in words, e.g. "buildlib warm <= 1.03 x lower bound"
    verdict: Verdict
    rows: tuple[Row, ...] = ()
    figures: Mapping[str, float] = field(default_factory=dict)  # extra numbers for latest.json
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Context:
    """Handed to every benchmark: where to work and how hard to try."""

    workdir: Path  # an empty directory of its own, removed afterwards
    quick: bool  # smaller inputs and one repetition: a smoke run, not a figure


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """A registry entry; `run.py` keeps the name -> Benchmark table."""

    run: Callable[[Context], Result]
    summary: str


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Wall seconds, and the CPU seconds (user + system) spent on them.

    For a command, the CPU time is its own and that of every descendant it waited
    for; in-process, that of all of this process's threads. CPU time barely moves
    when other work shares the machine, so it backs up a wall ratio measured on a
    busy one.
    """

    wall: float
    cpu: float


def fastest(samples: Sequence[Timing]) -> Timing:
    """The least wall and the least CPU time of repeated runs (timeit's rule: noise only adds)."""
    return Timing(wall=min(s.wall for s in samples), cpu=min(s.cpu for s in samples))


class BenchmarkError(Exception):
    """A tool the benchmark drives failed or is missing: the figures would be meaningless."""


def tool_env() -> dict[str, str]:
    """The environment every timed command gets.

    The source tree goes first on PYTHONPATH so `python -m buildlib` is this
    checkout (in the nox session it is also installed editable, so nothing
    changes there); BUILDLIB_* settings of the caller are dropped so they cannot
    change what is measured, and so is PYTHONDONTWRITEBYTECODE: a developer's Python
    caches bytecode (the nox engine environment compiles it at install), so a module
    edited since the last run is compiled once, not at every timed start.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BUILDLIB_", "NOX")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def buildlib_argv(manifest: Path, *, jobs: int, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "buildlib",
        "build",
        "--manifest",
        str(manifest),
        "-j",
        str(jobs),
        "--no-cache",
        "--plain",
        *extra,
    ]


def require(tool: str) -> str:
    """The tool's absolute path, or a BenchmarkError naming what to install."""
    path = shutil.which(tool)
    if path is None:
        raise BenchmarkError(f"{tool} is not on PATH; install it to run this benchmark")
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    argv: Sequence[str], *, cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> Timing:
    """Run `argv` to completion with its output to `log`.

    Raises BenchmarkError with the log's tail if it exits non-zero. Not thread-safe:
    the CPU figure is the change in this process's reaped-children total.
    """
    with log.open("wb") as out:
        cpu = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env or tool_env()),
            check=False,
        )
        elapsed = time.perf_counter() - start
        cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise BenchmarkError(
            f"{' '.join(argv[:4])} ... exited {proc.returncode}; log {log}:\n{tail}"
        )
    return Timing(wall=elapsed, cpu=cpu)


def in_process(fn: Callable[[], object]) -> Timing:
    """Time a call in this process (CPU: every thread of this process)."""
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    return Timing(wall=time.perf_counter() - start, cpu=time.process_time() - cpu)


def load_average() -> float:
    """The 1-minute load average, printed with the figures: ratios on a busy machine wobble."""
    try:
        return os.getloadavg()[0]
    except OSError:  # not every platform has it
        return float("nan")
