"""Benchmark `restore`: putting 209 MB of cached outputs back vs `cp -a` of the same files.

The outputs (4 binaries of 40 MB and 2,000 assets of 20 KB) are saved once into a
`StepCache` in the work directory; then, alternately, buildlib looks the entry up
and restores it into an empty directory, and `cp -a` copies the original tree into
another. buildlib checks every byte against its sha256 while restoring; cp checks
nothing. The target is issue 4's: at most 1.2x cp. buildlib is timed in this
process, cp as a command.

On this kind of VM the cost of creating a file swings between ~20 and ~500 us from
minute to minute, for both tools. When it is high, creating the 2,000 files dominates
and the ratio is ~0.8-1.25; when it is low, hashing the 209 MB (~0.12 s of CPU, which
cp does not do) dominates and the ratio is ~1.35. That state can change between
one run and the next, so the ratio judged is the median over five pairs (a restore,
then a copy right after it, which meets the same state); the fastest run of each is
printed too.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics

from benchmarks import tree
from benchmarks.harness import (
    BenchmarkError,
    Context,
    Result,
    Row,
    Timing,
    Verdict,
    fastest,
    in_process,
    load_average,
    require,
    timed,
)

LARGE, LARGE_SIZE, SMALL, SMALL_SIZE = 4, 40 << 20, 2000, 20 << 10
QUICK = (1, 10 << 20, 200, 20 << 10)
REPEATS, QUICK_REPEATS = 5, 1
TARGET = 1.2  # issue 4: restoring from the local cache at most 1.2x `cp -a`
STEP = "bench-outputs"


def run(ctx: Context) -> Result:
    try:
        from buildlib.cache.store import CacheConfig, StepCache  # here: if absent, skip
        from buildlib.incremental.outputs import OutputScope
    except ImportError as exc:
        return Result(
            name="restore",
            reference="-",
            target="-",
            verdict=Verdict.SKIPPED,
            notes=(f"buildlib.cache.store is not importable ({exc})",),
        )
    cp = require("cp")
    large, large_size, small, small_size = (
        QUICK if ctx.quick else (LARGE, LARGE_SIZE, SMALL, SMALL_SIZE)
    )
    repeats = QUICK_REPEATS if ctx.quick else REPEATS
    load_before = load_average()
    source = ctx.workdir / "outputs"
    paths = tree.output_tree(
        source, large=large, large_size=large_size, small=small, small_size=small_size
    )
    size = large * large_size + small * small_size
    log = ctx.workdir / "step.log"
    log.write_text("built\n")
    cache = StepCache(CacheConfig(local_dir=ctx.workdir / "cache", max_size=4 * size))
    key = hashlib.sha256(b"restore benchmark").hexdigest()
    scope = OutputScope(["bin", "assets"])  # the step's declared outputs
    warning = cache.save(STEP, key, source, paths, log, {}, scope=scope)
    if warning is not None:
        raise BenchmarkError(f"StepCache.save did not store the outputs: {warning}")

    def restore(label: str) -> Timing:
        dest = ctx.workdir / f"restored-{label}"
        dest.mkdir()

        def lookup_and_restore() -> None:
            entry = cache.lookup(STEP, key)
            if entry is None:
                raise BenchmarkError(
                    f"StepCache.lookup missed the entry just saved: {cache.warnings}"
                )
            if not cache.restore(entry, dest, scope):
                raise BenchmarkError(f"StepCache.restore refused the entry: {cache.warnings}")

        timing = in_process(lookup_and_restore)
        if (dest / paths[0]).stat().st_size != (source / paths[0]).stat().st_size:
            raise BenchmarkError(f"restored {paths[0]} has the wrong size")
        shutil.rmtree(dest)
        return timing

    def copy(label: str) -> Timing:
        dest = ctx.workdir / f"copied-{label}"
        timing = timed(
            [cp, "-a", str(source), str(dest)], cwd=ctx.workdir, log=ctx.workdir / f"cp-{label}.log"
        )
        shutil.rmtree(dest)
        return timing

    restored: list[Timing] = []
    copied: list[Timing] = []
    for i in range(repeats):
        restored.append(restore(str(i)))
        copied.append(copy(str(i)))
    # Each restore is paired with the copy right after it: on this kind of VM the cost of
    # creating files drifts between runs, for both tools alike, and a pair shares it.
    # The verdict is on the median of the paired ratios; the fastest run of each is shown
    # too (it compares runs from different moments, so one lucky copy swings it).
    paired = statistics.median(r.wall / c.wall for r, c in zip(restored, copied, strict=True))
    rt, ct = fastest(restored), fastest(copied)
    r, c = rt.wall, ct.wall
    rows = (
        Row(
            label="buildlib lookup + restore (verified)",
            seconds=r,
            ratio=paired,
            cpu=rt.cpu,
            note=f"{size / r / 1e6:.0f} MB/s; fastest / fastest {r / c:.2f}",
        ),
        Row(label="cp -a", seconds=c, ratio=1.0, cpu=ct.cpu, note=f"{size / c / 1e6:.0f} MB/s"),
    )
    pairs = ", ".join(f"{x.wall / y.wall:.2f}" for x, y in zip(restored, copied, strict=True))
    return Result(
        name="restore",
        reference=f"cp -a of the same {len(paths)} files, {size / 1e6:.0f} MB = {c:.3f}s",
        target=f"buildlib <= {TARGET:.1f} x cp -a (measured {paired:.2f}, median of pairs)",
        verdict=Verdict.MET if paired <= TARGET else Verdict.MISSED,
        rows=rows,
        figures={
            "bytes": float(size),
            "files": float(len(paths)),
            "repeats": float(repeats),
            "paired_median": paired,
            "fastest_ratio": r / c,
            "load_before": load_before,
            "load_after": load_average(),
        },
        notes=(
            f"{repeats} alternating pairs (restore, then cp); ratio = median of the "
            f"pairs' ratios ({pairs}); seconds = fastest of each; page cache warm for both",
        ),
    )
