"""Benchmark `watch` (issue 16): from saving a file to the rebuilt output on disk, for
`buildlib watch` and `turbo watch build` on the same workspace, in the same run.

The workspace (generated, npm workspaces, typescript from the local npm cache):

- `packages/ts`: ten TypeScript files compiled by `tsc -p tsconfig.json` into `dist/`;
- `packages/rs`: a small binary crate (no dependencies) compiled by
  `cargo build --offline` into `target/debug/rs-app`.

Both packages' `build` script is what both tools run: turbo runs `npm run build` in
each package (turbo.json: `inputs` the sources, `outputs` dist/ and the binary), and
buildlib's two steps are `npm run build` in the same directories, with the same inputs
and outputs. One tree; the tools take turns (buildlib, turbo, then turbo, buildlib:
the machine's load drifts, so each tool gets an early and a late session), and each
session is one long-running watcher that sees every save.

A save rewrites `packages/ts/src/m03.ts` or `packages/rs/src/text.rs` with a string
that is new every time; its latency is the time from the write to the moment that
string is in `dist/m03.js` or in the binary (polled every 5 ms: stat, then read on a
change). Between saves the watcher must be idle (buildlib: its status file says the rebuild
is done and nothing is queued; turbo, which has no such file: its output unchanged for
`QUIET` seconds after the new output appeared), so no save is queued behind another.
Each buildlib save is checked: its rebuild ran exactly the edited step. Figures: the
median per file per tool, and buildlib's over turbo's; and buildlib's own share, the
latency minus the step's own run (its report's duration): noticing the save, the
debounce, hashing the inputs, starting the step and this script's polling, less the
time the step still runs after writing its output (so it can come out below zero).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import monorepo
from benchmarks.harness import REPO, BenchmarkError, Context, Result, Row, Verdict
from benchmarks.monorepo_measure import Engine, base_env, default_python

SAVES, QUICK_SAVES = 5, 1  # per file, per session; two sessions per tool (one with --quick)
QUIET = 2.0  # seconds without output from the watcher: it is idle
POLL = 0.005
TIMEOUT = 180.0  # for one save's output, or the first build
TYPESCRIPT = "6.0.3"  # as tests/repos.py pins it (and web/): in the local npm cache

# (label, step, source, output, the source's text with {marker})
FILES = (
    (
        "TypeScript (tsc)",
        "ts",
        "packages/ts/src/m03.ts",
        "packages/ts/dist/m03.js",
        "export const v03: string = '{marker}'\n",
    ),
    (
        "Rust (cargo)",
        "rs",
        "packages/rs/src/text.rs",
        "packages/rs/target/debug/rs-app",
        'pub const MESSAGE: &str = "{marker}";\n',
    ),
)

MANIFEST = """\
version = 2
[modes.development]

[[step]]
name = "ts"
command = ["npm", "run", "build"]
cwd = "packages/ts"
inputs = ["src/**", "tsconfig.json", "package.json"]
outputs = ["dist"]

[[step]]
name = "rs"
command = ["npm", "run", "build"]
cwd = "packages/rs"
inputs = ["src/**", "Cargo.toml", "package.json"]
outputs = ["target/debug/rs-app"]
"""


def _json(data: object) -> str:
    return json.dumps(data, indent=2) + "\n"


def generate(root: Path) -> None:
    """Write the workspace and install typescript (`npm install --prefer-offline`)."""
    files = {
        "package.json": _json(
            {
                "name": "watchbench",
                "private": True,
                "workspaces": ["packages/*"],
                "packageManager": monorepo.PACKAGE_MANAGER,
            }
        ),
        "turbo.json": _json(
            {
                "$schema": "https://turborepo.com/schema.json",
                "tasks": {
                    "build": {
                        "inputs": ["src/**", "tsconfig.json", "Cargo.toml", "package.json"],
                        "outputs": ["dist/**", "target/debug/rs-app"],
                    }
                },
            }
        ),
        "build.toml": MANIFEST,
        ".gitignore": "node_modules/\ndist/\ntarget/\n.turbo/\n.buildlib/\n",
        "packages/ts/package.json": _json(
            {
                "name": "ts-app",
                "version": "1.0.0",
                "private": True,
                "scripts": {"build": "tsc -p tsconfig.json"},
                "devDependencies": {"typescript": TYPESCRIPT},
            }
        ),
        "packages/ts/tsconfig.json": _json(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "rootDir": "src",
                    "outDir": "dist",
                    "strict": True,
                    "skipLibCheck": True,
                    "types": [],
                },
                "include": ["src"],
            }
        ),
        "packages/rs/package.json": _json(
            {
                "name": "rs-app",
                "version": "1.0.0",
                "private": True,
                "scripts": {"build": "cargo build --offline --quiet"},
            }
        ),
        "packages/rs/Cargo.toml": (
            '[package]\nname = "rs-app"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n'
        ),
        "packages/rs/src/main.rs": (
            'mod text;\n\nfn main() {\n    println!("{}", text::MESSAGE);\n}\n'
        ),
        "packages/rs/src/text.rs": 'pub const MESSAGE: &str = "rev-0";\n',
    }
    files |= {
        f"packages/ts/src/m{i:02d}.ts": f"export const v{i:02d}: string = 'm{i:02d}-0'\n"
        for i in range(10)
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    done = subprocess.run(
        ["npm", "install", "--prefer-offline", "--no-audit", "--no-fund"],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"npm install in {root} exited {done.returncode}:\n{done.stderr[-2000:]}"
        )


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tools' environment: no BUILDLIB_/TURBO_/NOX settings, cargo's outputs where the
    package says (no CARGO_TARGET_DIR), no npm update notice."""
    env = {k: v for k, v in base_env().items() if k != "CARGO_TARGET_DIR"}
    return env | {"npm_config_update_notifier": "false"} | dict(extra or {})


@dataclass
class Session:
    """One watcher process, in a session of its own (its group is what Ctrl-C stops)."""

    tool: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, tool: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> Session:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(tool=tool, proc=proc, log=log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchmarkError(
                f"{self.tool} watch exited ({self.proc.returncode}); "
                f"log {self.log}:\n{self.text()[-2000:]}"
            )

    def quiet(self) -> None:
        """Until its output has not changed for `QUIET` seconds."""
        size, since = -1, time.monotonic()
        deadline = since + TIMEOUT
        while True:
            self.check_alive()
            now = time.monotonic()
            current = self.log.stat().st_size
            if current != size:
                size, since = current, now
            elif now - since >= QUIET:
                return
            if now > deadline:
                raise BenchmarkError(f"{self.tool} watch never went quiet; log {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Ctrl-C to its group, as in a terminal; SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # anything left of its group
            os.killpg(self.proc.pid, signal.SIGKILL)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def save_and_wait(session: Session, source: Path, text: str, output: Path, marker: bytes) -> float:
    """Write `text` to `source`; seconds until `marker` is in `output`."""
    seen = _stamp(output)
    start = time.perf_counter()
    source.write_text(text)
    while True:
        stamp = _stamp(output)
        if stamp is not None and stamp != seen:
            seen = stamp
            try:
                if marker in output.read_bytes():
                    return time.perf_counter() - start
            except OSError:
                pass
        if time.perf_counter() - start > TIMEOUT:
            raise BenchmarkError(
                f"{session.tool} watch: {output} never got {marker!r} after "
                f"{source} was saved; log {session.log}"
            )
        session.check_alive()
        time.sleep(POLL)


def buildlib_idle(session: Session, root: Path, number: int) -> list[str]:
    """Until buildlib's rebuild `number` (0: the first build) is done and nothing is
    queued (its status file); the steps that rebuild ran."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        session.check_alive()
        for path in (root / ".buildlib" / "watch").glob("development-*.json"):
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            last = status.get("last_rebuild") or {}
            if (
                status.get("state") == "watching"
                and not status.get("queued")
                and last.get("number", -1) >= number
            ):
                if last["number"] != number:
                    raise BenchmarkError(
                        f"buildlib watch: rebuild #{last['number']} where "
                        f"#{number} was expected; log {session.log}"
                    )
                return list(last.get("ran", ()))
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"buildlib watch: rebuild #{number} never ended; log {session.log}"
            )
        time.sleep(0.05)


def step_duration(root: Path, step: str) -> float:
    """How long `step` itself ran in buildlib's last build (its report)."""
    report = json.loads((root / ".buildlib" / "reports" / "latest.json").read_text())
    return float(next(s["duration"] for s in report["steps"] if s["name"] == step))


def turbo_runs(text: str) -> int:
    """Task executions turbo reported so far (cache misses and cache-hit replays)."""
    return text.count("cache miss, executing") + text.count("cache hit")


@dataclass
class Found:
    """One session's figures, per file label."""

    latencies: dict[str, list[float]]
    own: dict[str, list[float]]  # buildlib: latency minus the step's own run
    runs: list[int]  # turbo: the task runs each save caused


def measure_session(tool: str, session: Session, root: Path, saves: int, first: int) -> Found:
    """`saves` saves of each file, one after the other."""
    latencies: dict[str, list[float]] = {label: [] for label, *_ in FILES}
    own: dict[str, list[float]] = {label: [] for label, *_ in FILES}
    runs: list[int] = []
    number = 0
    if tool == "buildlib":
        buildlib_idle(session, root, number)
    else:  # its first build: both outputs written, then quiet (a replay may follow)
        while not all((root / out).exists() for _, _, _, out, _ in FILES):
            session.check_alive()
            time.sleep(0.1)
        session.quiet()
    for k in range(first, first + saves):
        for label, step, src, out, template in FILES:
            marker = f"{tool}-{step}-{k}"
            before_runs = turbo_runs(session.text())
            latencies[label].append(
                save_and_wait(
                    session, root / src, template.format(marker=marker), root / out, marker.encode()
                )
            )
            if tool == "buildlib":
                number += 1
                ran = buildlib_idle(session, root, number)
                if ran != [step]:
                    raise BenchmarkError(
                        f"buildlib watch: saving {src} ran {ran}, expected "
                        f"[{step!r}]; log {session.log}"
                    )
                own[label].append(latencies[label][-1] - step_duration(root, step))
            else:
                session.quiet()
                runs.append(turbo_runs(session.text()) - before_runs)
    return Found(latencies=latencies, own=own, runs=runs)


def run(ctx: Context) -> Result:
    root = ctx.workdir / "ws"
    root.mkdir()
    generate(root)
    turbo = monorepo.find_turbo()
    engine = Engine(python=default_python(), pythonpath=str(REPO))
    b_env = _env(engine.env(ctx.workdir / "cache"))
    t_env = _env(monorepo.turbo_env(base_env()))
    argv = {
        "buildlib": [engine.python, "-m", "buildlib", "watch"],
        "turbo": [str(turbo), "watch", "build", "--ui=stream"],
    }
    env = {"buildlib": b_env, "turbo": t_env}
    saves = QUICK_SAVES if ctx.quick else SAVES
    order = ["buildlib", "turbo"] if ctx.quick else ["buildlib", "turbo", "turbo", "buildlib"]
    latencies: dict[str, dict[str, list[float]]] = {
        t: {label: [] for label, *_ in FILES} for t in argv
    }
    own: dict[str, list[float]] = {label: [] for label, *_ in FILES}
    turbo_task_runs: list[int] = []
    for n, tool in enumerate(order):
        session = Session.start(
            tool, argv[tool], cwd=root, env=env[tool], log=ctx.workdir / f"{n}-{tool}.log"
        )
        try:
            found = measure_session(tool, session, root, saves, first=n * saves)
        finally:
            session.stop()
        for label, values in found.latencies.items():
            latencies[tool][label] += values
            own[label] += found.own[label]
        turbo_task_runs += found.runs
    rows: list[Row] = []
    figures: dict[str, float] = {}
    ratios = []
    for label, step, *_ in FILES:
        b = statistics.median(latencies["buildlib"][label])
        t = statistics.median(latencies["turbo"][label])
        mine = statistics.median(own[label])
        ratios.append(b / t)
        figures |= {
            f"{step}_buildlib_s": b,
            f"{step}_turbo_s": t,
            f"{step}_ratio": b / t,
            f"{step}_buildlib_own_s": mine,
        }
        count = len(latencies["buildlib"][label])
        spread = {
            tool: ", ".join(f"{v:.2f}" for v in sorted(latencies[tool][label])) for tool in argv
        }
        rows += [
            Row(
                label=f"{label}: buildlib watch",
                seconds=b,
                ratio=b / t,
                note=f"median of {count} saves: {spread['buildlib']}; its own share "
                f"(latency - the step's run): {mine:.2f}",
            ),
            Row(
                label=f"{label}: turbo watch",
                seconds=t,
                ratio=1.0,
                note=f"median of {count} saves: {spread['turbo']}",
            ),
        ]
    return Result(
        name="watch",
        reference="turbo watch's median, same workspace and run",
        target="save-to-output latency of buildlib watch no worse than turbo watch's "
        "(ratio <= 1.0) for both files",
        verdict=Verdict.MET if max(ratios) <= 1.0 else Verdict.MISSED,
        rows=tuple(rows),
        figures=figures,
        notes=(
            f"turbo {monorepo.TURBO_VERSION} `turbo watch build --ui=stream`; buildlib "
            "`watch` (debounce 0.1 s); both run `npm run build` in the package",
            _turbo_note(turbo_task_runs),
            "latency: write of the source to the new string found in the output; "
            "machine load shifts both tools alike (sessions alternate)",
        ),
    )


def _turbo_note(runs: Sequence[int]) -> str:
    """What turbo ran per save (the saved package's task once, or more: a cache-hit
    replay after it saw its own outputs change)."""
    if set(runs) == {1}:
        return f"turbo ran one task per save ({len(runs)} saves)"
    return (
        f"task runs turbo reported per save: {list(runs)} (more than 1: the save's task, "
        "then cache-hit replays when turbo saw its own outputs change)"
    )
