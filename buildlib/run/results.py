"""What a build produced: one record per step and one per build.

These records are the only input of every report (terminal summary, JSON, history,
Chrome trace, HTML, metrics), so reports never reach into the executor.
Times are seconds; `start`/`end` are relative to the build's start.
"""

from __future__ import annotations

import enum

from buildlib.core.records import field, record


class Outcome(enum.Enum):
    """How a step ended. SKIPPED: never started (a dependency failed, or the build stopped)."""

    BUILT = "built"
    CACHED = "cached"  # fingerprint matched and outputs were intact: nothing to do
    RESTORED = "restored"  # fingerprint matched; outputs were restored from the cache
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @property
    def ok(self) -> bool:
        return self in (Outcome.BUILT, Outcome.CACHED, Outcome.RESTORED)

    @property
    def from_cache(self) -> bool:
        return self in (Outcome.CACHED, Outcome.RESTORED)


@record
class StepRecord:
    """One step's result. `worker` is the executor lane it ran on (-1 if it never ran)."""

    name: str
    outcome: Outcome
    start: float = 0.0
    end: float = 0.0
    worker: int = -1
    attempts: int = 0
    exit_code: int | None = None
    reasons: tuple[str, ...] = ()  # why it ran (--explain), empty for cache hits
    cache_source: str | None = None  # "local" | "remote" for hits
    log_path: str | None = None
    fingerprint: str | None = None
    command: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@record
class BuildRecord:
    """A whole build: what was asked, what happened, and the derived figures reports show."""

    build_id: str
    started_at: str  # ISO 8601, UTC
    workspace: str
    mode: str
    target: str
    host: str
    jobs: int
    wall: float
    exit_code: int
    steps: tuple[StepRecord, ...]
    critical_path: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def busy_time(self) -> float:
        """Sum of the step durations that actually ran (cache hits count their check time)."""
        return sum(s.duration for s in self.steps)

    @property
    def parallelism(self) -> float:
        return self.busy_time / self.wall if self.wall > 0 else 0.0

    @property
    def cache_hit_rate(self) -> float:
        considered = [s for s in self.steps if s.outcome.ok]
        if not considered:
            return 0.0
        return sum(1 for s in considered if s.outcome.from_cache) / len(considered)

    @property
    def critical_path_length(self) -> float:
        by_name = {s.name: s for s in self.steps}
        return sum(by_name[n].duration for n in self.critical_path if n in by_name)
