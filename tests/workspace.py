"""Helpers for tests that build temporary workspaces with real child processes."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

from buildlib.run.reporter import BuildStart
from buildlib.run.results import BuildRecord, StepRecord

PY = sys.executable

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
    root.mkdir(parents=True, exist_ok=True)
    (root / "step.py").write_text(STEP_SCRIPT)
    path = root / "build.toml"
    path.write_text(textwrap.dedent(extra) + MODES + textwrap.dedent(steps))
    return path


def sleep_step(name: str, seconds: float, *, deps: Sequence[str] = (), code: int = 0,
               retries: int = 0) -> str:
    """A [[step]] table running step.py, which appends to times.jsonl."""
    return textwrap.dedent(f"""
        [[step]]
        name = "{name}"
        command = [{json.dumps(PY)}, "step.py", "{name}", "{seconds}", "times.jsonl", "{code}"]
        depends_on = {json.dumps(list(deps))}
        retries = {retries}
    """)


def read_times(root: Path) -> dict[str, tuple[float, float]]:
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
