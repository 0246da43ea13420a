"""What the test modules share; no test module imports from another.

- Manifests for executor and CLI tests: `MODES`, `write_manifest` (also writes `step.py`,
  the `STEP_SCRIPT` that `sleep_step` steps run), `read_times`, and `RecordingReporter`,
  a reporter that keeps every event.
- Workspaces built through the real CLI: `Workspace`, `make_workspace` (three steps,
  `WORKSPACE_STEPS`, one of them using the `fake` tool `make_tool` writes), `ok`, `ROOT`.
- The step cache: `KEY1`..`KEY3`, `SCOPE`, `make_output_tree` (a step's outputs on disk)
  and `digest_of`.
- Build records for the report writers: `make_record`.
- Real tools' input: `BAD_RS`, `ts_project`, and `node_tool` (tsc, svelte-check).
- Processes and servers: `free_port`, `stop_server`, `run_without_dac_override`, and the
  `needs_linux_x64_gcc` mark.

`PY` is this interpreter's path; `PY_TOML` is the same path quoted for a TOML string.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from buildlib.core import records
from buildlib.incremental.outputs import OutputScope
from buildlib.run.reporter import BuildStart
from buildlib.run.results import BuildRecord, StepRecord
from buildlib.workspace.targets import get_target, host_triple

ROOT = Path(__file__).resolve().parent.parent  # the repository: PYTHONPATH for `-m buildlib`
PY = sys.executable
PY_TOML = json.dumps(PY)


# -- manifests for the executor and CLI tests ----------------------------------------------

MODES = """
[modes.development]
vars = { profile = "debug" }
env = { NODE_ENV = "development" }

[modes.production]
vars = { profile = "release" }
env = { NODE_ENV = "production" }

[modes.test]
vars = { profile = "debug" }
env = { NODE_ENV = "test" }
"""

# A step body: record start/end timestamps (from the step itself) and sleep.
STEP_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    name, seconds, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    start = time.time()
    time.sleep(seconds)
    code = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with open(log, "a") as f:
        f.write(json.dumps({"step": name, "start": start, "end": time.time()}) + "\\n")
    sys.exit(code)
""")


def write_manifest(root: Path, steps: str, *, extra: str = "") -> Path:
    """root/build.toml: `extra`, the three modes, then `steps`; and root/step.py."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "step.py").write_text(STEP_SCRIPT)
    path = root / "build.toml"
    path.write_text(textwrap.dedent(extra) + MODES + textwrap.dedent(steps))
    return path


def sleep_step(
    name: str, seconds: float, *, deps: Sequence[str] = (), code: int = 0, retries: int = 0
) -> str:
    """A [[step]] table running step.py, which appends to times.jsonl."""
    return textwrap.dedent(f"""
        [[step]]
        name = "{name}"
        command = [{PY_TOML}, "step.py", "{name}", "{seconds}", "times.jsonl", "{code}"]
        depends_on = {json.dumps(list(deps))}
        retries = {retries}
    """)


def read_times(root: Path) -> dict[str, tuple[float, float]]:
    """Each sleep_step's (start, end), as the step itself measured them."""
    result = {}
    for line in (root / "times.jsonl").read_text().splitlines():
        entry = json.loads(line)
        result[entry["step"]] = (entry["start"], entry["end"])
    return result


class RecordingReporter:
    """A hand-written fake reporter that keeps every event (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, object]] = []
        self.finished: list[StepRecord] = []
        self.tails: dict[str, list[str]] = {}
        self.record: BuildRecord | None = None
        self.warnings: list[str] = []

    def build_started(self, start: BuildStart) -> None:
        with self.lock:
            self.events.append(("build_started", start))

    def step_started(self, name: str, worker: int, attempt: int) -> None:
        with self.lock:
            self.events.append(("step_started", name))

    def step_output(self, name: str, line: str) -> None:
        with self.lock:
            self.events.append(("step_output", (name, line)))

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        with self.lock:
            self.finished.append(record)
            self.tails[record.name] = list(log_tail)

    def warning(self, message: str) -> None:
        with self.lock:
            self.warnings.append(message)

    def build_finished(self, record: BuildRecord) -> None:
        self.record = record


# -- workspaces built through the CLI ---------------------------------------------------------

# gen: src/*.txt -> out/gen.txt (uppercased); pack: out/gen.txt -> out/pack.txt + an executable
# script; other: independent, reads GREETING from the environment. Each appends its name to
# runs.log when it runs.
WORKSPACE_STEPS = textwrap.dedent(f"""
    [tools]
    fake = ["fake-tool", "--version"]

    [[step]]
    name = "gen"
    command = [{PY_TOML}, "-c", "import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); (p / 'gen.txt').write_text(''.join(f.read_text().upper() for f in sorted(pathlib.Path('src').glob('*.txt')))); open('runs.log', 'a').write('gen\\\\n')"]
    inputs = ["src/*.txt"]
    outputs = ["out/gen.txt"]
    tools = ["fake"]

    [[step]]
    name = "pack"
    command = [{PY_TOML}, "-c", "import os, pathlib; t = pathlib.Path('out/gen.txt').read_text(); pathlib.Path('out/pack.txt').write_text('[' + t + ']'); s = pathlib.Path('out/run.sh'); s.write_text('#!/bin/sh\\\\necho hi\\\\n'); s.chmod(0o755); open('runs.log', 'a').write('pack\\\\n')"]
    depends_on = ["gen"]
    outputs = ["out/pack.txt", "out/run.sh"]

    [[step]]
    name = "other"
    command = [{PY_TOML}, "-c", "import os, pathlib; pathlib.Path('other.txt').write_text(os.environ.get('GREETING', '-')); open('runs.log', 'a').write('other\\\\n')"]
    env_inputs = ["GREETING"]
    outputs = ["other.txt"]
""")


class Workspace:
    """A workspace at `root` built by `python -m buildlib` with its own cache directory and
    `bin_dir` (where make_tool writes) first on PATH."""

    def __init__(self, root: Path, cache: Path, bin_dir: Path) -> None:
        self.root = root
        self.cache = cache
        self.bin_dir = bin_dir

    def build(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        (self.root / "runs.log").unlink(missing_ok=True)
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_"))
        }
        full_env.update(
            {
                "PYTHONPATH": str(ROOT),
                "BUILDLIB_CACHE_DIR": str(self.cache),
                "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
                **env,
            }
        )
        return subprocess.run(
            [sys.executable, "-m", "buildlib", "build", "--plain", "-j", "2", *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def add_steps(self, steps: str) -> None:
        """Append `steps` (TOML, dedented) to the workspace's build.toml."""
        manifest = self.root / "build.toml"
        manifest.write_text(manifest.read_text() + textwrap.dedent(steps))

    def ran(self) -> list[str]:
        """The steps the last build ran, sorted."""
        log = self.root / "runs.log"
        return sorted(log.read_text().split()) if log.exists() else []

    def report(self) -> dict[str, Any]:
        """The last build's JSON report."""
        report: dict[str, Any] = json.loads(
            (self.root / ".buildlib" / "reports" / "latest.json").read_text()
        )
        return report

    def report_steps(self) -> list[dict[str, Any]]:
        steps = self.report()["steps"]
        assert isinstance(steps, list)
        return steps

    def report_step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.report_steps() if s["name"] == name)

    def outcomes(self) -> dict[str, str]:
        return {s["name"]: s["outcome"] for s in self.report_steps()}


def make_tool(bin_dir: Path, version: str) -> None:
    """bin_dir/fake-tool, which prints `version`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / "fake-tool"
    tool.write_text(f"#!/bin/sh\necho fake-tool {version}\n")
    tool.chmod(0o755)


def make_workspace(base: Path, name: str = "ws", cache: str = "cache") -> Workspace:
    """base/name holding WORKSPACE_STEPS and two sources; its cache is base/cache."""
    root = base / name
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("alpha\n")
    (root / "src" / "b.txt").write_text("beta\n")
    (root / "build.toml").write_text(MODES + WORKSPACE_STEPS)
    make_tool(base / "bin", "1.0")
    return Workspace(root, base / cache, base / "bin")


def run_buildlib(
    cwd: Path, *args: str, umask: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m buildlib ARGS` in `cwd`, as a user would run it: none of the caller's
    BUILDLIB_* or GITHUB_* variables but the test's own cache directory (conftest), plus
    `env`; under `umask` when given (else the caller's)."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "BUILDLIB_")) or k == "BUILDLIB_CACHE_DIR"
    }
    environ.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        umask=-1 if umask is None else umask,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the step cache -------------------------------------------------------------------------

KEY1, KEY2, KEY3 = (hashlib.sha256(n.encode()).hexdigest() for n in ("one", "two", "three"))
SCOPE = OutputScope(["out"])  # the outputs make_output_tree's step declares


def make_output_tree(root: Path, *, seed: str = "") -> list[str]:
    """A step's outputs: an executable, a data file, an in-tree symlink to each, a dir link;
    and its log, root/logs/step.log. Returns the outputs' paths."""
    (root / "out/bin").mkdir(parents=True, exist_ok=True)
    (root / "out/share").mkdir(parents=True, exist_ok=True)
    (root / "out/bin/app").write_text(f"#!/bin/sh\necho app {seed}\n")
    (root / "out/bin/app").chmod(0o755)
    (root / "out/share/data.txt").write_text(f"data {seed}\n" * 100)
    (root / "out/share/data.txt").chmod(0o640)
    (root / "out/app").symlink_to("bin/app")
    (root / "out/current").symlink_to("share")
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs/step.log").write_text(f"compiling {seed}\ndone\n")
    return ["out/app", "out/bin/app", "out/current", "out/share/data.txt"]


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- build records --------------------------------------------------------------------------


def make_record(
    *, steps: tuple[StepRecord, ...], build_id: str = "20250101T000000-abcdef", **changes: object
) -> BuildRecord:
    """A finished, failed build of `steps`; `changes` replace any other field."""
    record = BuildRecord(
        build_id=build_id,
        started_at="2025-01-01T00:00:00+00:00",
        workspace="/w",
        mode="release",
        target="x86_64-unknown-linux-gnu",
        host="box",
        jobs=2,
        wall=10.0,
        exit_code=1,
        steps=steps,
    )
    return records.replace(record, **changes)


# -- real tools' input ----------------------------------------------------------------------

BAD_RS = textwrap.dedent("""\
    fn main() {
        let x: i32 = "hello";
        println!("{}", y);
    }
""")
BAD_TS = textwrap.dedent("""\
    const x: number = "s";
    export function f(a: string): number {
      return a;
    }
""")
BAD_SVELTE = textwrap.dedent("""\
    <script lang="ts">
      let count: number = "zero";
    </script>

    <h1>{missing}{count}</h1>
""")
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "es2022",
        "module": "esnext",
        "moduleResolution": "bundler",
    },
    "include": ["src"],
}


def ts_project(root: Path) -> Path:
    """A small TypeScript + Svelte project under root/app with two type errors per file."""
    app = root / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "x.ts").write_text(BAD_TS)
    (app / "src" / "App.svelte").write_text(BAD_SVELTE)
    (app / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    return app


def node_tool(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node_modules/.bin/`name`: the apps' own when installed, else from one npm install
    shared by every xdist worker (skips the test when npm is missing or fails)."""
    for app in ("web", "electron"):
        candidate = ROOT / app / "node_modules" / ".bin" / name
        if candidate.exists():
            return candidate
    shared = tmp_path_factory.getbasetemp().parent / "npm-tools"
    shared.mkdir(exist_ok=True)
    binary = shared / "node_modules" / ".bin" / name
    with (shared / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install, however many workers ask
        if not binary.exists():
            npm = shutil.which("npm")
            if npm is None:
                pytest.skip("npm is not installed, so tsc and svelte-check cannot be")
            proc = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(shared),
                    "--no-audit",
                    "--no-fund",
                    "typescript@5",
                    "svelte@5",
                    "svelte-check@4",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                pytest.skip(f"npm install typescript/svelte-check failed:\n{proc.stderr[-2000:]}")
    return binary


# -- processes and servers ------------------------------------------------------------------


def free_port() -> int:
    """A local TCP port nothing listens on (yet: another process may take it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server started in its own session; SIGKILL its group after 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def run_without_dac_override(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in this Python with permission checks in force. As root, setpriv
    (util-linux, on every Debian) drops the capabilities that let root read any file."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions do not apply")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )


needs_linux_x64_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or host_triple() != get_target("x86_64-unknown-linux-gnu").triple,
    reason="needs gcc on an x86_64 Linux host",
)
