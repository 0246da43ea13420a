"""The caching gate: is a step up to date, can the cache supply it, and why must it run?

For each step: compute its fingerprint; if the last success recorded for this mode
and target has the same fingerprint and its outputs are intact, skip it (CACHED);
else if the cache (local, then remote) holds a result for the fingerprint, restore it
(RESTORED); else run it, with the reasons `explain` gives. After a success the
outputs are hashed, recorded and stored, unless an input changed while it ran.
A failure erases the step's record, so it can never count as done.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from buildlib.cache.config import CacheConfig
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.incremental.filehash import FileHasher
from buildlib.incremental.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    explain,
    inputs_changed_since,
    outputs_digest,
)
from buildlib.incremental.gitfiles import GitFiles
from buildlib.incremental.outputs import OutputScope, expand_outputs, missing_patterns
from buildlib.planning.plan import Plan, PlannedStep
from buildlib.run.gate import Decision, Recorded, missing_outputs_message
from buildlib.run.step_state import StepState

if TYPE_CHECKING:
    from buildlib.cache.store import StepCache
from buildlib.incremental.toolversions import detect_tool_versions
from buildlib.run.results import Outcome


class Verdict(enum.StrEnum):
    """What a build would do with a step (`CachingGate.predict`)."""

    UP_TO_DATE = "up to date"
    RESTORE_LOCAL = "restore (local)"
    RESTORE_REMOTE = "restore (remote)"
    RUN = "run"


@record
class Prediction:
    verdict: Verdict
    fingerprint: str  # "" when it cannot be known (a dependency runs first)
    reasons: tuple[str, ...] = ()
    outputs_digest: str | None = None  # for dependents; None when the step would run


@record
class _Pending:
    fingerprint: Fingerprint


class CachingGate:
    """The caching gate for one build (a `Gate[_Pending]`). Thread-safe: job threads call it
    concurrently."""

    def __init__(
        self,
        plan: Plan,
        *,
        state_dir: Path,
        cache: CacheConfig,
        forced: set[str] | None,
        environ: Mapping[str, str],
        warn: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.root = plan.root
        self.state_dir = state_dir
        self.forced = forced
        self.environ = environ
        self.warn = warn
        self._cache_config = cache
        self._store: StepCache | None = None
        self.hasher = FileHasher(plan.root, BuildDir(plan.root).filehash_cache)
        self.state = StepState(state_dir)
        self.git = (
            GitFiles(plan.root) if any(s.inputs_from_git for s in plan.steps.values()) else None
        )
        self._lock = threading.Lock()
        self._tools: dict[str, str] | None = None
        self._warned: set[str] = set()
        self._interrupted = False
        self._scopes: dict[str, OutputScope] = {}

    @property
    def store(self) -> StepCache:
        """The cache store, opened on first use: an all-cached build never needs it."""
        with self._lock:
            if self._store is None:
                from buildlib.cache.store import StepCache

                self._store = StepCache(self._cache_config)
                if self._interrupted:
                    self._store.interrupt()
            return self._store

    def _tool_versions(self) -> dict[str, str]:
        if self._tools is None:
            names = {t for s in self.plan.steps.values() for t in s.tools}
            self._tools = detect_tool_versions(
                self.plan.tool_commands, names, BuildDir(self.root).tool_versions, cwd=self.root
            )
        return self._tools

    def _scope(self, step: PlannedStep) -> OutputScope:
        with self._lock:
            scope = self._scopes.get(step.name)
            if scope is None:
                scope = self._scopes[step.name] = OutputScope(step.outputs)
        return scope

    # -- Gate ----------------------------------------------------------------------------

    def check(
        self, step: PlannedStep, dep_fingerprints: Mapping[str, str], *, resumed: bool = False
    ) -> Decision[_Pending]:
        """Skip, restore or run `step`. A `resumed` step (done in the build `--resume`
        continues) is never forced and counts as done, cached or not, while its
        fingerprint matches its last success; a stale one runs."""
        with self._lock:
            tools = self._tool_versions()
        previous = self.state.get(step.name)
        # FileHasher is thread-safe: steps fingerprint in parallel. The stat keys of the
        # inputs are taken before their contents are read (see inputs_changed_since).
        fingerprint = compute_fingerprint(
            step,
            root=self.root,
            hasher=self.hasher,
            environ=self.environ,
            tool_versions=tools,
            dep_fingerprints=dep_fingerprints,
            mode=self.plan.mode,
            target=self.plan.target.triple,
            git=self.git,
            also_hash=self._outputs_to_check(step, previous, resumed=resumed),
        )
        self._warn_no_git(step)
        always = self._runs_anyway(step, resumed=resumed)
        if always is not None:
            return self._run(fingerprint, (always,))
        reasons: list[str] = []
        if previous is not None and previous[0] == fingerprint.digest:
            broken = self._broken_outputs(step, previous[1], fingerprint)
            if not broken:
                return Decision(
                    outcome=Outcome.CACHED,
                    fingerprint=fingerprint.digest,
                    outputs_digest=outputs_digest(previous[1]),
                )
            reasons.append("outputs missing or modified: " + _first(broken))
        elif previous is not None or resumed:
            components = self.state.details(step.name).get("components")
            reasons += explain(components if isinstance(components, dict) else None, fingerprint)
        if resumed:
            reasons.insert(0, "stale since the build --resume continues")
        if step.cacheable:
            restored = self._restore(step, fingerprint)
            if restored is not None:
                return restored
            other = self._cache_reasons(step, fingerprint, previous)
            if other and not reasons:
                reasons.append("no earlier result")
            reasons += other
        return self._run(fingerprint, tuple(reasons) or ("no earlier result",))

    def predict(self, step: PlannedStep, dep_digests: Mapping[str, str | None]) -> Prediction:
        """What `check` would decide, without restoring or running anything (`--dry-run`).

        `dep_digests` holds each dependency's predicted `Prediction.outputs_digest`; None
        for one that would run, whose outputs cannot be known before it does: this step
        then runs too, unless that dependency's outputs come out unchanged.
        """
        unknown = [
            name for name in step.depends_on if name in dep_digests and dep_digests[name] is None
        ]
        if unknown:
            return Prediction(
                verdict=Verdict.RUN,
                fingerprint="",
                reasons=(
                    f"dependency {unknown[0]} runs first; this step runs unless its outputs "
                    "come out unchanged",
                ),
            )
        with self._lock:
            tools = self._tool_versions()
        previous = self.state.get(step.name)
        fingerprint = compute_fingerprint(
            step,
            root=self.root,
            hasher=self.hasher,
            environ=self.environ,
            tool_versions=tools,
            mode=self.plan.mode,
            target=self.plan.target.triple,
            dep_fingerprints={k: v for k, v in dep_digests.items() if v is not None},
            git=self.git,
            also_hash=self._outputs_to_check(step, previous, resumed=False),
        )
        digest = fingerprint.digest
        always = self._runs_anyway(step, resumed=False)
        if always is not None:
            return Prediction(verdict=Verdict.RUN, fingerprint=digest, reasons=(always,))
        reasons: list[str] = []
        if previous is not None and previous[0] == digest:
            broken = self._broken_outputs(step, previous[1], fingerprint)
            if not broken:
                return Prediction(
                    verdict=Verdict.UP_TO_DATE,
                    fingerprint=digest,
                    outputs_digest=outputs_digest(previous[1]),
                )
            reasons.append("outputs missing or modified: " + _first(broken))
        else:
            components = self.state.details(step.name).get("components")
            reasons += explain(components if isinstance(components, dict) else None, fingerprint)
        found = self.store.peek(step.name, digest, shared=_shared(step))
        self._drain_warnings()
        if found is not None:
            source, restored_digest = found
            verdict = Verdict.RESTORE_LOCAL if source == "local" else Verdict.RESTORE_REMOTE
            return Prediction(
                verdict=verdict,
                fingerprint=digest,
                reasons=tuple(reasons),
                outputs_digest=restored_digest,
            )
        reasons += self._cache_reasons(step, fingerprint, previous)
        return Prediction(verdict=Verdict.RUN, fingerprint=digest, reasons=tuple(reasons))

    def _restore(self, step: PlannedStep, fingerprint: Fingerprint) -> Decision[_Pending] | None:
        """A cache hit restored into the workspace, or None (a miss, or a refused entry)."""
        entry = self.store.lookup(step.name, fingerprint.digest, shared=_shared(step))
        self._drain_warnings()
        if entry is None:
            return None
        restored = self.store.restore(entry, self.root, self._scope(step))
        self._drain_warnings()
        if not restored:
            return None
        log = self.store.log_text(entry)
        from buildlib.cache.entries import FileKind

        if any(f.kind is FileKind.ARCHIVE for f in entry.files):  # hashed as they are now
            outputs = self.hasher.hash_files(expand_outputs(self.root, step.outputs))
        else:
            outputs = {f.path: f.sha256 for f in entry.files}
        self._save_state(step.name, fingerprint, outputs, log)
        return Decision(
            outcome=Outcome.RESTORED,
            fingerprint=fingerprint.digest,
            cache_source=str(entry.source),
            replay_log=log,
            outputs_digest=outputs_digest(outputs),
        )

    def _cache_reasons(
        self, step: PlannedStep, fingerprint: Fingerprint, previous: tuple[str, object] | None
    ) -> list[str]:
        """A miss: what differs from the cache's newest entry for the step, when that
        is not the last success `explain` compared with already (run/miss.py)."""
        from buildlib.run.miss import cache_reasons

        skip = {fingerprint.digest} | ({previous[0]} if previous is not None else set())
        found = cache_reasons(
            self.store,
            step.name,
            mode=self.plan.mode,
            target=self.plan.target.triple,
            components=fingerprint.components,
            skip=skip,
        )
        self._drain_warnings()
        return found

    def record_success(
        self, step: PlannedStep, decision: Decision[_Pending], log_path: Path
    ) -> Recorded:
        """Record and store what a successful run produced (see `gate.Recorded`)."""
        pending = decision.state
        if pending is None:  # a decision this gate made to skip: nothing to record
            return Recorded()
        files = expand_outputs(self.root, step.outputs)
        missing = missing_patterns(step.outputs, files)
        if missing:
            self._erase_state(step.name)
            return Recorded(failure=missing_outputs_message(step.name, missing, self.root))
        hashes = self.hasher.hash_files(files)
        changed = inputs_changed_since(self.hasher, step, pending.fingerprint, self.git)
        if changed:
            self.warn(
                f"{step.name}: input {_first(changed)} changed while it ran; "
                "its result is not recorded and it will run again next time"
            )
            self._erase_state(step.name)
            return Recorded(outputs_digest=outputs_digest(hashes))
        log_text = (
            log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        )
        self._save_state(step.name, pending.fingerprint, hashes, log_text)
        if step.cacheable:
            digest = outputs_digest(hashes)
            self.store.save(
                step.name,
                pending.fingerprint.digest,
                self.root,
                files,
                log_path,
                {
                    "mode": self.plan.mode,
                    "target": self.plan.target.triple,
                    "outputs_digest": digest,
                    "components": dict(pending.fingerprint.components),
                },
                scope=self._scope(step),
                shared=_shared(step),
                archives=[p for p, how in step.store.items() if how == "archive"],
            )
        self._drain_warnings()
        return Recorded(outputs_digest=outputs_digest(hashes))

    def current_outputs_digest(self, step: PlannedStep) -> str | None:
        return outputs_digest(self.hasher.hash_files(expand_outputs(self.root, step.outputs)))

    def record_failure(self, step: PlannedStep, decision: Decision[_Pending]) -> None:
        self._erase_state(step.name)
        if self.git is not None:
            self.git.forget()  # it may have written files under another step's cwd

    def _warn_no_git(self, step: PlannedStep) -> None:
        """A step without `inputs` outside a git repository: say so, once per step."""
        if not step.inputs_from_git or self.git is None or self.git.under(".") is not None:
            return
        with self._lock:
            if step.name in self._warned:
                return
            self._warned.add(step.name)
        self.warn(
            f"{step.name}: no `inputs` declared and {self.root} is not a git "
            "repository, so every file under its cwd is an input (minus its outputs "
            "and the excludes); declare `inputs` to say which"
        )

    def interrupt(self) -> None:
        """A signal arrived: abort remote requests in flight (called from the main thread)."""
        with self._lock:
            self._interrupted = True
            store = self._store
        if store is not None:
            store.interrupt()

    def problems(self) -> dict[str, int]:
        """How many cache entries were refused, corrupt or not stored in this build."""
        return {} if self._store is None else self._store.problem_counts()

    def stored_log(self, step: PlannedStep) -> str:
        log = self.state.details(step.name).get("log")
        return log if isinstance(log, str) else ""

    def close(self) -> None:
        self.hasher.save()
        self.state.save()

    # -- helpers -------------------------------------------------------------------------

    def _run(self, fingerprint: Fingerprint, reasons: tuple[str, ...]) -> Decision[_Pending]:
        return Decision(
            outcome=None,
            fingerprint=fingerprint.digest,
            reasons=reasons,
            state=_Pending(fingerprint=fingerprint),
        )

    def _runs_anyway(self, step: PlannedStep, *, resumed: bool) -> str | None:
        """Why the step runs whatever its fingerprint (forced, or caching off for it);
        None when it may be up to date. A resumed step is neither."""
        if resumed:
            return None
        if self.forced is None or step.name in self.forced:
            return "forced"
        if not step.cacheable:
            return "caching is off for this step (cache = false)"
        return None

    def _outputs_to_check(
        self, step: PlannedStep, previous: tuple[str, Mapping[str, str]] | None, *, resumed: bool
    ) -> tuple[str, ...]:
        """The outputs of the step's last success, when the step may turn out up to date:
        hashed with its inputs, in one stat pass."""
        if previous is None or self._runs_anyway(step, resumed=resumed) is not None:
            return ()
        return tuple(previous[1])

    def _broken_outputs(
        self, step: PlannedStep, outputs: Mapping[str, str], fingerprint: Fingerprint
    ) -> list[str]:
        """The recorded outputs that are gone or differ, from what the fingerprint's stat
        pass found of them (those whose stat moved are read now)."""
        missing = missing_patterns(step.outputs, outputs)
        if missing:
            return [f"{pattern} (no file recorded)" for pattern in missing]
        current = dict(fingerprint.also_hashed)
        if fingerprint.also_stale:
            current.update(self.hasher.hash_files(fingerprint.also_stale))
        return [p for p in outputs if current.get(p) != outputs[p]]

    def _save_state(
        self, name: str, fingerprint: Fingerprint, outputs: Mapping[str, str], log: str
    ) -> None:
        self.state.record(name, fingerprint.digest, outputs, fingerprint.components, log)

    def _erase_state(self, name: str) -> None:
        self.state.erase(name)

    def _drain_warnings(self) -> None:
        if self._store is None:
            return
        for message in self._store.drain_warnings():
            self.warn(message)


def _shared(step: PlannedStep) -> bool:
    """Whether the step's results may go to and come from the remote cache: not when one
    of its outputs is `store = "local"` (kept on this machine)."""
    return "local" not in step.store.values()


def _first(items: list[str]) -> str:
    return items[0] + (f" (and {len(items) - 1} more)" if len(items) > 1 else "")
