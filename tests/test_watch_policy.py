"""The watch loop's decisions (buildlib/watch/policy.py), on plain values."""

from __future__ import annotations

from buildlib.run.results import Outcome
from buildlib.watch.policy import (
    MAX_RESTARTS,
    RESTART_MAX_DELAY,
    STABLE_AFTER,
    Backoff,
    StepResult,
    dependency_restarts,
    ready_services,
    rebuild_selection,
)

DEPS = {
    "core": [],
    "native": ["core"],
    "web": [],
    "bundle": ["web"],
    "electron": ["native", "bundle"],
    "docs": [],
}


def r(outcome: Outcome, digest: str | None = "d") -> StepResult:
    return StepResult(outcome=outcome, digest=digest)


def test_a_change_rebuilds_its_steps_and_everything_downstream_in_order() -> None:
    assert rebuild_selection(DEPS, ["native"], []) == ["native", "electron"]
    assert rebuild_selection(DEPS, ["web", "core"], []) == [
        "core",
        "native",
        "web",
        "bundle",
        "electron",
    ]
    assert rebuild_selection(DEPS, ["docs"], []) == ["docs"]


def test_steps_that_did_not_finish_last_time_are_retried_with_any_rebuild() -> None:
    assert rebuild_selection(DEPS, ["docs"], ["bundle"]) == ["bundle", "docs"]
    assert rebuild_selection(DEPS, [], ["gone-from-the-plan"]) == []


def test_a_dependency_restarts_only_opted_in_services_and_only_when_its_outputs_changed() -> None:
    services = {"dev": ["bundle"], "api": ["native"], "plain": ["bundle"]}
    before = {"bundle": r(Outcome.BUILT, "b1"), "native": r(Outcome.BUILT, "n1")}
    after = {"bundle": r(Outcome.BUILT, "b2"), "native": r(Outcome.BUILT, "n1")}
    # plain did not opt in; api's dependency came out the same (early cutoff)
    assert dependency_restarts(services, ["dev", "api"], before, after) == {
        "dev": "outputs of bundle changed"
    }
    # an unknown digest (--no-cache) after a run counts as a change
    assert dependency_restarts(
        {"dev": ["bundle"]}, ["dev"], before, {"bundle": r(Outcome.BUILT, None)}
    ) == {"dev": "outputs of bundle changed"}
    # restored from the cache with other outputs: a change too
    assert dependency_restarts(
        {"dev": ["bundle"]}, ["dev"], before, {"bundle": r(Outcome.RESTORED, "b3")}
    ) == {"dev": "outputs of bundle changed"}


def test_failed_or_unchanged_dependencies_restart_nothing() -> None:
    before = {"bundle": r(Outcome.BUILT, "b1")}
    for now in (
        r(Outcome.FAILED, None),
        r(Outcome.CACHED, "b1"),
        r(Outcome.SKIPPED, None),
        r(Outcome.INTERRUPTED, None),
    ):
        assert dependency_restarts({"dev": ["bundle"]}, ["dev"], before, {"bundle": now}) == {}


def test_a_service_is_ready_once_every_dependency_is_built() -> None:
    services = {"dev": ["web", "native"], "solo": []}
    assert ready_services(services, {}) == ["solo"]
    assert ready_services(services, {"web": r(Outcome.BUILT)}) == ["solo"]
    assert ready_services(services, {"web": r(Outcome.CACHED), "native": r(Outcome.FAILED)}) == [
        "solo"
    ]
    assert ready_services(services, {"web": r(Outcome.CACHED), "native": r(Outcome.RESTORED)}) == [
        "dev",
        "solo",
    ]


def test_backoff_doubles_is_bounded_and_gives_up_after_quick_exits_in_a_row() -> None:
    backoff = Backoff()
    delays = [backoff.after_exit(uptime=0.1) for _ in range(MAX_RESTARTS)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff.after_exit(uptime=0.1) is None  # gives up: waits for a change
    backoff.reset()  # a deliberate restart (its inputs changed)
    assert backoff.after_exit(uptime=0.1) == 0.5


def test_backoff_never_exceeds_its_cap_and_a_stable_run_starts_a_fresh_count() -> None:
    assert Backoff(exits=MAX_RESTARTS).after_exit(uptime=STABLE_AFTER) == 0.5
    assert Backoff(exits=MAX_RESTARTS).after_exit(uptime=STABLE_AFTER - 1) is None
    delays = [Backoff(exits=n).after_exit(uptime=0.0) for n in range(40)]
    assert all(d is None or d <= RESTART_MAX_DELAY for d in delays)
