"""Run the benchmarks and print their ratios: `python benchmarks/run.py [NAME ...] [--quick]`.

A report, not a test: each benchmark prints its figures and whether it meets its
target, and this exits 0 whether or not targets are met. It exits 1 only when a
benchmark crashed (a tool it drives failed or is missing), 2 on a bad argument.
Results also go to benchmarks/results/latest.json (not committed).

To add a benchmark: write `benchmarks/<name>.py` with `run(ctx: Context) -> Result`
and add it to `REGISTRY` below.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/run.py`

from benchmarks import (
    cutoff,
    hashing,
    install,
    monorepo_measure,
    noop,
    overhead,
    remote,
    restore,
    scheduling,
    shards,
    watch,
)
from benchmarks.harness import Benchmark, Context, Result

REGISTRY: dict[str, Benchmark] = {
    "scheduling": Benchmark(
        run=scheduling.run,
        summary="40-step random DAG of sleeps at -j 2: "
        "makespan / lower bound for buildlib, make, nox",
    ),
    "overhead": Benchmark(
        run=overhead.run, summary="500 `true` steps at -j 2: buildlib wall time / make's"
    ),
    "hash": Benchmark(
        run=hashing.run,
        summary="20k-file tree: unchanged check vs git status, cold hash vs sha256sum",
    ),
    "restore": Benchmark(run=restore.run, summary="restore 200 MB of cached outputs vs cp -a"),
    "noop": Benchmark(
        run=noop.run,
        summary="no-op build of the real app (all cached) via nox "
        "and the engine vs turbo's full cache hit and nox -l",
    ),
    "monorepo": Benchmark(
        run=monorepo_measure.run,
        summary="npm-workspace monorepo: no-op and "
        "one edit at 1,000 steps vs turbo; growth to 10,000 steps",
    ),
    "cutoff": Benchmark(
        run=cutoff.run,
        summary="a comment-only edit: early cutoff against "
        "without it (the app) and against turbo (a 200-package monorepo)",
    ),
    "install": Benchmark(
        run=install.run,
        summary="the app's web/node_modules from the local "
        "cache, file by file and as one archive, vs npm ci --offline; "
        "cache space per lockfile version",
    ),
    "remote": Benchmark(
        run=remote.run,
        summary="a second clone from bazel-remote and nginx "
        "(hit rate, wall), and the time a hung or trickling remote costs",
    ),
    "shards": Benchmark(
        run=shards.run,
        summary="one build over 1, 2, 4, 8 CI jobs: planned "
        "makespan / lower bound for the app and a 200-step DAG; 2 jobs "
        "replayed through bazel-remote",
    ),
    "watch": Benchmark(
        run=watch.run,
        summary="save to rebuilt output on disk under `watch`, "
        "a TypeScript file (tsc) and a Rust source (cargo), vs turbo watch",
    ),
}

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(REGISTRY)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller inputs, one repetition: checks the benchmarks still run; "
        "its ratios are not the figures",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS,
        help="where to write the results (default: benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each benchmark's work directory (its logs) and print where",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")
    return args


def render(result: Result, seconds: float) -> str:
    """One benchmark as a small table: label, seconds, ratio, note."""
    lines = [f"== {result.name} ({seconds:.0f}s) — ratio = seconds / {result.reference}"]
    if result.rows:
        width = max(len(r.label) for r in result.rows) + len(" (simulated)")
        lines.append(f"  {'':{width}}  {'wall s':>8}  {'ratio':>6}  {'cpu s':>7}")
        for row in result.rows:
            label = row.label + (" (simulated)" if row.simulated else "")
            cpu = "-" if row.cpu is None else f"{row.cpu:.3f}"
            note = f"  {row.note}" if row.note else ""
            lines.append(f"  {label:{width}}  {row.seconds:8.3f}  {row.ratio:6.3f}  {cpu:>7}{note}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(f"  target: {result.target} -> {result.verdict.value.upper()}")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a temp file in the same directory, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".latest-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2, allow_nan=False, default=str)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(value: Any) -> Any:
    """NaN/inf (e.g. no load average) become null so the file stays strict JSON."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name, bench in REGISTRY.items():
            print(f"{name:12} {bench.summary}")
        return 0
    names = args.names or list(REGISTRY)
    quick = " (--quick: a smoke run, not the figures)" if args.quick else ""
    print(
        f"benchmarks {' '.join(names)}{quick} on {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}",
        flush=True,
    )
    entries: list[dict[str, Any]] = []
    crashed: list[str] = []
    for name in names:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        start = time.perf_counter()
        try:
            result = REGISTRY[name].run(Context(workdir=workdir, quick=args.quick))
        except Exception:  # a crash is reported, then the next benchmark runs
            crashed.append(name)
            print(f"== {name}: CRASHED\n{traceback.format_exc()}", flush=True)
            entries.append(
                {"name": name, "verdict": "crashed", "error": traceback.format_exc(limit=3)}
            )
        else:
            print(render(result, time.perf_counter() - start), flush=True)
            entries.append(_jsonable(result) | {"seconds": time.perf_counter() - start})
        finally:
            if args.keep:
                print(f"  work directory kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    write_json(
        args.json,
        _finite(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "quick": args.quick,
                "results": entries,
            }
        ),
    )
    summary = ", ".join(f"{e['name']} {e['verdict']}" for e in entries)
    print(f"summary: {summary}; results in {args.json}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
