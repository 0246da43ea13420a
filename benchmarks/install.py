"""Benchmark `install`: an install step's outputs in the cache, file by file and as an archive.

Issue 12's targets for install steps: restoring an install from the local cache costs
at most a plain `npm ci --offline` on the same lockfile, and a lockfile version costs
at most a third of the cache space it took file by file.

The app's web front end (web/package.json and its lockfile) is installed once with
`npm ci` in the work directory (npm's own cache is warm afterwards, so `--offline`
needs no network). Then, in the same minute and alternately (median of the pairs):
`npm ci --offline`; a restore of the same node_modules saved file by file; a restore
of it saved as one archive (`store = "archive"`). Space is the disk the entry takes
in a fresh local store (blocks allocated, as `du` counts them).
"""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path

from benchmarks.harness import (
    REPO,
    BenchmarkError,
    Context,
    Result,
    Row,
    Timing,
    Verdict,
    in_process,
    require,
    timed,
    tool_env,
)

REPEATS, QUICK_REPEATS = 5, 1
NPM_CI = ["ci", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund"]


def disk_usage(top: Path) -> int:
    """Bytes allocated under `top` (st_blocks), as `du` counts them."""
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def run(ctx: Context) -> Result:
    from buildlib.cache.config import CacheConfig
    from buildlib.cache.store import StepCache
    from buildlib.incremental.outputs import OutputScope, expand_outputs

    npm = require("npm")
    project = ctx.workdir / "web"
    project.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(REPO / "web" / name, project / name)
    env = {**tool_env(), "NODE_ENV": "development"}
    timed([npm, *NPM_CI], cwd=project, log=ctx.workdir / "npm-ci.log", env=env)
    files = expand_outputs(ctx.workdir, ["web/node_modules"])
    if not files:
        raise BenchmarkError("npm ci installed nothing into web/node_modules")
    log = ctx.workdir / "install.log"
    log.write_text("npm ci\n")
    scope = OutputScope(["web/node_modules"])
    caches: dict[str, tuple[StepCache, object]] = {}
    sizes: dict[str, int] = {}
    for how, archives in (("file by file", ()), ("archive", ("web/node_modules",))):
        cache = StepCache(CacheConfig(local_dir=ctx.workdir / f"cache-{how.replace(' ', '-')}"))
        key = f"{len(caches):064x}"
        if (
            cache.save(
                "web-install", key, ctx.workdir, files, log, {}, scope=scope, archives=archives
            )
            is not None
        ):
            raise BenchmarkError(f"saving {how} failed: {cache.warnings}")
        entry = cache.lookup("web-install", key)
        if entry is None:
            raise BenchmarkError(f"the entry saved {how} is not found")
        caches[how] = (cache, entry)
        sizes[how] = disk_usage(cache.local.root)

    def restore(how: str) -> None:
        cache, entry = caches[how]
        shutil.rmtree(project / "node_modules")
        if not cache.restore(entry, ctx.workdir, scope):  # type: ignore[arg-type]
            raise BenchmarkError(f"restore ({how}) failed: {cache.warnings}")

    samples: dict[str, list[Timing]] = {"npm ci --offline": [], "file by file": [], "archive": []}
    for i in range(QUICK_REPEATS if ctx.quick else REPEATS):
        samples["npm ci --offline"].append(
            timed(
                [npm, *NPM_CI, "--offline"],
                cwd=project,
                log=ctx.workdir / f"offline-{i}.log",
                env=env,
            )
        )
        for how in ("file by file", "archive"):
            samples[how].append(in_process(lambda how=how: restore(how)))  # type: ignore[misc]
    median = {
        name: Timing(
            wall=statistics.median(t.wall for t in times),
            cpu=statistics.median(t.cpu for t in times),
        )
        for name, times in samples.items()
    }
    reference = median["npm ci --offline"].wall
    rows = tuple(
        Row(
            label=f"restore, {name}" if name != "npm ci --offline" else name,
            seconds=t.wall,
            ratio=t.wall / reference,
            cpu=t.cpu,
        )
        for name, t in median.items()
    )
    space = sizes["archive"] / sizes["file by file"]
    restore_ratio = median["archive"].wall / reference
    met = restore_ratio <= 1.0 and space <= 1 / 3
    return Result(
        name="install",
        reference=f"npm ci --offline ({reference:.2f}s, median)",
        target="archive restore <= 1.0x npm ci --offline; archive entry <= 1/3 of the "
        "file-by-file entry's space",
        verdict=Verdict.MET if met else Verdict.MISSED,
        rows=rows,
        figures={
            "files": len(files),
            "space_file_by_file_mb": sizes["file by file"] / 1e6,
            "space_archive_mb": sizes["archive"] / 1e6,
            "space_ratio": space,
            "restore_archive_ratio": restore_ratio,
        },
        notes=(
            f"web/node_modules: {len(files)} files; one lockfile version takes "
            f"{sizes['file by file'] / 1e6:.1f} MB file by file, "
            f"{sizes['archive'] / 1e6:.1f} MB as an archive ({space:.2f}x)",
        ),
    )
