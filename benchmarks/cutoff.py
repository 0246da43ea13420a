"""Benchmark `cutoff`: a comment-only edit, with early cutoff, without it, and with turbo.

Issue 12: a step's fingerprint takes its dependencies' *output* digests, so when a
rebuilt step's outputs come out byte-identical (a comment edit) its dependents stay up
to date. turbo (and Nx) hash a task's dependencies' hashes: the same edit re-runs every
task downstream. Two workspaces, each edited the same way in every run:

- the app (this repository, cloned; production mode): a comment edit in
  web/src/App.svelte (Vite's production build drops comments), then one in
  crates/tachikoma-native/src/lib.rs (a module doc comment: rustc keeps no trace of it).
  "with cutoff" is a plain build after the edit; "without cutoff" re-runs the steps that
  read the file and everything downstream of them (`build --only STEP...`, forced): the
  work an engine without cutoff does. Only buildlib runs here: turbo needs one workspace of
  package.json scripts, which the app (Cargo + two npm projects) is not.
- the npm-workspace monorepo of `monorepo.py` (200 packages; 50 with --quick) whose
  `build.js` drops `//` comment lines, as a minifier does, in both tools' trees: a
  comment line appended to a source of the middle package; buildlib against turbo 2.11
  on the same tree, alternately, median of 3 edits.

Each run is checked: which steps ran must be exactly what cutoff predicts (the edited
step only) and, without it, the edited step and its dependents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from benchmarks import monorepo
from benchmarks.harness import REPO, BenchmarkError, Context, Result, Row, Verdict
from benchmarks.monorepo_measure import (
    ANSI,
    TURBO_CACHED,
    Engine,
    Run,
    base_env,
    buildlib_outcomes,
    default_python,
    run_child,
)

PACKAGES, QUICK_PACKAGES = 200, 50
REPEATS, QUICK_REPEATS = 3, 1
RAN = ("built", "failed")

STRIP_JS = """\
// Concatenate src/*.js into dist/out.js without `//` comment lines (as a minifier would).
const fs = require("fs");
const path = require("path");
const src = path.join(__dirname, "src");
const names = fs.readdirSync(src).filter((n) => n.endsWith(".js")).sort();
const text = names.map((n) => fs.readFileSync(path.join(src, n), "utf8")).join("")
  .split("\\n").filter((line) => !line.startsWith("//")).join("\\n");
fs.mkdirSync(path.join(__dirname, "dist"), { recursive: true });
fs.writeFileSync(path.join(__dirname, "dist", "out.js"), text);
"""

# (the steps that read the file, the file, the comment line edited: a regex of the line,
# and its new text's format). svelte-check reads App.svelte too (a check: no outputs);
# cargo reads every workspace member's lib.rs, so the Rust steps read the native one.
APP_EDITS = (
    (
        ("svelte-check", "svelte-build"),
        "web/src/App.svelte",
        r"^  // Recompute whenever the text changes.*$",
        "  // Recompute whenever the text changes; a late answer for old text is dropped ({k}).",
    ),
    (
        ("rust-check", "rust-build", "native-module"),
        "crates/tachikoma-native/src/lib.rs",
        r"^//! the UI report the same answers.*$",
        "//! the UI report the same answers ({k}).",
    ),
)


def ran_steps(root: Path) -> set[str]:
    return {name for name, outcome in buildlib_outcomes(root).items() if outcome in RAN}


def downstream(root: Path, steps: Iterable[str], env: Mapping[str, str], python: str) -> set[str]:
    """`steps` and every step that depends on them, transitively, from `buildlib plan`."""
    out = subprocess.run(
        [python, "-m", "buildlib", "plan", "--mode", "production"],
        cwd=root,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deps = {s["name"]: set(s["depends_on"]) for s in json.loads(out)["steps"]}
    found = set(steps)
    changed = True
    while changed:
        more = {name for name, needs in deps.items() if needs & found} - found
        changed = bool(more)
        found |= more
    return found


def edit_comment(path: Path, pattern: str, new: str, k: int) -> None:
    text = path.read_text()
    edited, count = re.subn(pattern, new.format(k=k), text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise BenchmarkError(
            f"{path}: no line matches {pattern!r}: the benchmark's edit needs updating"
        )
    path.write_text(edited)


def measure_app(ctx: Context, engine: Engine) -> list[Row]:
    root = ctx.workdir / "app"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(root)], check=True)
    env = engine.env(ctx.workdir / "app-cache") | {"ELECTRON_SKIP_BINARY_DOWNLOAD": "1"}
    logs = ctx.workdir / "app-logs"
    logs.mkdir()

    def build(label: str, *extra: str) -> Run:
        return run_child(
            engine.argv("--mode", "production", *extra),
            cwd=root,
            env=env,
            log=logs / f"{label}.log",
        )

    build("cold")
    rows: list[Row] = []
    for k, (readers, file, pattern, new) in enumerate(APP_EDITS, start=1):
        label = Path(file).stem
        without = downstream(root, readers, env, engine.python)
        edit_comment(root / file, pattern, new, k)
        cut = build(f"{label}-cutoff")
        ran = ran_steps(root)
        if ran != set(readers):
            raise BenchmarkError(
                f"app, comment edit in {file}: ran {sorted(ran)}, expected "
                f"only {sorted(readers)} (the outputs should be byte-identical)"
            )
        # Without cutoff: the readers and everything downstream run (forced, as an engine
        # that hashes its dependencies' fingerprints would run them).
        full = build(f"{label}-without", "--only", *sorted(without))
        if ran_steps(root) != without:
            raise BenchmarkError(f"app, --only {sorted(without)}: ran {sorted(ran_steps(root))}")
        rows += [
            Row(
                label=f"app, comment in {file}: with cutoff",
                seconds=cut.wall,
                ratio=cut.wall / full.wall,
                cpu=cut.cpu,
                note=f"{len(readers)} ran: {', '.join(readers)}",
            ),
            Row(
                label=f"app, comment in {file}: without cutoff",
                seconds=full.wall,
                ratio=1.0,
                cpu=full.cpu,
                note=f"{len(without)} steps ran: {', '.join(sorted(without))}",
            ),
        ]
    return rows


def measure_monorepo(ctx: Context, engine: Engine) -> tuple[list[Row], dict[str, float]]:
    packages = QUICK_PACKAGES if ctx.quick else PACKAGES
    repos = {
        tool: monorepo.generate(ctx.workdir / f"mono-{tool}", packages=packages, seed=0)
        for tool in ("buildlib", "turbo")
    }
    for repo in repos.values():
        for name in repo.names:
            (repo.root / "packages" / name / "build.js").write_text(STRIP_JS)
    b_root, t_root = repos["buildlib"].root, repos["turbo"].root
    b_env = engine.env(ctx.workdir / "mono-cache")
    t_env = monorepo.turbo_env(base_env())
    turbo = monorepo.find_turbo()
    logs = ctx.workdir / "mono-logs"
    logs.mkdir()
    middle = repos["buildlib"].middle
    dependents = repos["buildlib"].dependents(middle)

    def b(label: str) -> Run:
        return run_child(engine.argv(), cwd=b_root, env=b_env, log=logs / f"b-{label}.log")

    def t(label: str) -> tuple[Run, int]:
        run = run_child(
            monorepo.turbo_argv(turbo), cwd=t_root, env=t_env, log=logs / f"t-{label}.log"
        )
        found = TURBO_CACHED.search(ANSI.sub("", (logs / f"t-{label}.log").read_text()))
        if found is None:
            raise BenchmarkError(f"turbo printed no `Cached:` line: {logs / f't-{label}.log'}")
        return run, int(found.group(2)) - int(found.group(1))

    b("cold")
    t("cold")
    b_runs: list[Run] = []
    t_runs: list[Run] = []
    for k in range(1, (QUICK_REPEATS if ctx.quick else REPEATS) + 1):
        for repo in repos.values():
            path = repo.root / "packages" / middle / "src" / "m00.js"
            path.write_text(path.read_text() + f"// comment {k}\n")
        b_runs.append(b(f"edit-{k}"))
        if (ran := ran_steps(b_root)) != {middle}:
            raise BenchmarkError(f"monorepo: buildlib ran {sorted(ran)[:8]}, expected {middle}")
        run, turbo_ran = t(f"edit-{k}")
        t_runs.append(run)
        if turbo_ran != 1 + len(dependents):
            raise BenchmarkError(
                f"monorepo: turbo ran {turbo_ran} tasks, expected "
                f"{1 + len(dependents)} (the edited package and dependents)"
            )
    wall = statistics.median(r.wall for r in b_runs)
    t_wall = statistics.median(r.wall for r in t_runs)
    rows = [
        Row(
            label=f"monorepo ({packages}), comment edit: buildlib",
            seconds=wall,
            ratio=wall / t_wall,
            cpu=statistics.median(r.cpu for r in b_runs),
            note="1 step ran; its dependents up to date (outputs unchanged)",
        ),
        Row(
            label=f"monorepo ({packages}), comment edit: turbo",
            seconds=t_wall,
            ratio=1.0,
            cpu=statistics.median(r.cpu for r in t_runs),
            note=f"{1 + len(dependents)} tasks ran: {middle} and its dependents",
        ),
    ]
    return rows, {"monorepo_edit_ratio": wall / t_wall, "monorepo_turbo_tasks": 1 + len(dependents)}


def run(ctx: Context) -> Result:
    engine = Engine(python=default_python(), pythonpath=str(REPO))
    rows, figures = measure_monorepo(ctx, engine)
    if not ctx.quick or os.environ.get("BUILDLIB_BENCH_APP"):
        rows += measure_app(ctx, engine)
    shutil.rmtree(ctx.workdir / "app", ignore_errors=True)
    met = figures["monorepo_edit_ratio"] < 1.0 and all(
        row.ratio < 1.0 for row in rows if "with cutoff" in row.label
    )
    return Result(
        name="cutoff",
        reference="without cutoff (app: --only, forced) and turbo (monorepo), same run",
        target="a comment edit runs only the edited step; faster than without cutoff and "
        "than turbo",
        verdict=Verdict.MET if met else Verdict.MISSED,
        rows=tuple(rows),
        figures=figures,
        notes=(
            "with --quick the app's part runs only with BUILDLIB_BENCH_APP=1 (a cold "
            "production build of the app takes minutes)",
        ),
    )
