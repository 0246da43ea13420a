"""The reporter protocol: how the executor tells a person (or CI) what is happening.

The executor calls these methods from its single scheduling thread, except
`step_started` and `step_output`, which job threads call (a step is "started" when its
process is, not when its cache check begins), so they must be thread-safe; each
`step_output` call carries one whole line. Implementations: `report/terminal.py`
(plain, GitHub) and `report/live.py` (rich).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from buildlib.core.records import record
from buildlib.run.results import BuildRecord, StepRecord


@record
class BuildStart:
    """What the reporter knows before the first step starts."""

    mode: str
    target: str
    jobs: int
    steps: Sequence[str]  # every selected step, in topological order
    estimates: dict[str, float]  # expected duration per step from earlier builds (may be empty)
    log_dir: str


class Reporter(Protocol):
    def build_started(self, start: BuildStart) -> None: ...

    def step_started(self, name: str, worker: int, attempt: int) -> None: ...

    def step_output(self, name: str, line: str) -> None:
        """One line of a step's output (only when streaming, e.g. --verbose). Thread-safe."""

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        """`log_tail`: the last lines of the step's log, filled for failures only."""

    def warning(self, message: str) -> None: ...

    def build_finished(self, record: BuildRecord) -> None: ...
