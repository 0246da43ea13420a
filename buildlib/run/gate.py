"""The executor's gate: the protocol that decides whether a step runs, and its verdicts.

The executor asks its gate, step by step, from job threads: `check` says whether a step
must run (a `Decision` with no outcome) or is already done (cached, or restored from
the cache); after a run, `record_success` or `record_failure` says what happened. A
gate keeps whatever it needs between the two in the decision's `state`, whose type
it chooses (`Decision[StateT]`). Two gates exist: `AlwaysRun` (`--no-cache`) here and
`caching_gate.CachingGate`, which fingerprints, skips, restores and stores.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from buildlib.core.records import record
from buildlib.planning.plan import PlannedStep
from buildlib.run.results import Outcome

StateT = TypeVar("StateT")


@record
class Decision(Generic[StateT]):
    """The gate's verdict on one step: skip it (`outcome` set) or run it (`outcome` None)."""

    outcome: Outcome | None
    fingerprint: str | None = None
    reasons: tuple[str, ...] = ()
    cache_source: str | None = None
    replay_log: str = ""  # the stored log of a cache hit, replayed into the step's log file
    state: StateT | None = None  # what the gate wants back in `record_success`
    outputs_digest: str | None = None  # what dependents see of a step skipped or restored


@record
class Recorded:
    """What `record_success` made of a run: a reason to fail it after all (a declared
    output that matches no file), and the digest of its outputs for its dependents."""

    failure: str | None = None
    outputs_digest: str | None = None


class Gate(Protocol[StateT]):
    """Decides whether a step must run and records what a successful run produced.

    Called from job threads, one call per step at a time; implementations guard
    their own shared state.
    """

    def check(
        self, step: PlannedStep, dep_fingerprints: Mapping[str, str], *, resumed: bool = False
    ) -> Decision[StateT]:
        """`resumed`: the step succeeded in the build `--resume` continues; it runs only
        if it has gone stale since."""

    def record_success(
        self, step: PlannedStep, decision: Decision[StateT], log_path: Path
    ) -> Recorded:
        """Record a successful run (see `Recorded`)."""

    def record_failure(self, step: PlannedStep, decision: Decision[StateT]) -> None: ...

    def interrupt(self) -> None:
        """A signal arrived: give up waiting on anything slow (called from the main thread)."""

    def problems(self) -> Mapping[str, int]:
        """Counts of cache entries refused, corrupt or not stored, for the summary."""

    def stored_log(self, step: PlannedStep) -> str:
        """The log of the run that made an up-to-date step, for when its log file is gone."""

    def current_outputs_digest(self, step: PlannedStep) -> str | None:
        """The digest of the step's outputs as they are now (a step taken as done)."""

    def close(self) -> None:
        """Called once after the last step: persist what the gate learned."""


class AlwaysRun:
    """The gate with no memory: every step runs (`--no-cache`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(
        self, step: PlannedStep, dep_fingerprints: Mapping[str, str], *, resumed: bool = False
    ) -> Decision[None]:
        if resumed:  # nothing is fingerprinted, so it is taken at the journal's word
            return Decision(
                outcome=Outcome.CACHED,
                reasons=("done in the build --resume continues (not re-checked: --no-cache)",),
            )
        return Decision(outcome=None, reasons=("caching disabled",))

    def record_success(
        self, step: PlannedStep, decision: Decision[None], log_path: Path
    ) -> Recorded:
        if not step.outputs:
            return Recorded(failure=None)
        from buildlib.incremental.outputs import expand_outputs, missing_patterns

        missing = missing_patterns(step.outputs, expand_outputs(self.root, step.outputs))
        return Recorded(
            failure=missing_outputs_message(step.name, missing, self.root) if missing else None
        )

    def record_failure(self, step: PlannedStep, decision: Decision[None]) -> None:
        return None

    def interrupt(self) -> None:
        return None

    def problems(self) -> Mapping[str, int]:
        return {}

    def stored_log(self, step: PlannedStep) -> str:
        return ""

    def current_outputs_digest(self, step: PlannedStep) -> str | None:
        return None  # nothing is fingerprinted

    def close(self) -> None:
        return None


def missing_outputs_message(step: str, patterns: list[str], root: Path) -> str:
    """The failure text for a step that succeeded without producing a declared output;
    for one whose place holds something an output cannot be (a FIFO, a socket, a
    device), what is there."""
    for pattern in patterns:
        kind = _unstorable_kind(root / pattern)
        if kind is not None:
            return (
                f"step '{step}' succeeded but its declared output {pattern!r} is {kind}\n"
                "  fix: outputs are regular files, directories and symlinks; make the "
                "command write a file there, or drop it from the step's `outputs`"
            )
    named = ", ".join(repr(p) for p in patterns)
    return (
        f"step '{step}' succeeded but its declared output {named} matches no file\n"
        "  fix: correct the path in the step's `outputs` in build.toml (templates such "
        "as {profile} are filled), or make the command write it"
    )


def _unstorable_kind(path: Path) -> str | None:
    """`a FIFO (named pipe)`, `a socket`, `a device`, or None (nothing there, a glob, or
    an entry an output may be)."""
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None
