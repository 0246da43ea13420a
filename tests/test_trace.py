"""The Chrome trace has one complete event per step that ran, on its worker's thread."""

from __future__ import annotations

import json
from typing import Any

from helpers import make_record

from buildlib.report.trace import build_trace
from buildlib.run.results import Outcome, StepRecord

STEPS = (
    StepRecord(
        name="core",
        outcome=Outcome.BUILT,
        start=0.0,
        end=4.25,
        worker=0,
        attempts=2,
        exit_code=0,
        reasons=("input changed: a.rs",),
        log_path="/w/.buildlib/logs/core.log",
    ),
    StepRecord(
        name="deps", outcome=Outcome.CACHED, start=0.001, end=0.001, worker=1, cache_source="local"
    ),
    StepRecord(
        name="web", outcome=Outcome.RESTORED, start=0.01, end=0.35, worker=1, cache_source="remote"
    ),
    StepRecord(
        name="tsc", outcome=Outcome.FAILED, start=0.4, end=2.4, worker=2, attempts=1, exit_code=2
    ),
    StepRecord(
        name="napi", outcome=Outcome.BUILT, start=4.3, end=9.9, worker=0, attempts=1, exit_code=0
    ),
    StepRecord(name="package", outcome=Outcome.SKIPPED),
)
RECORD = make_record(steps=STEPS, mode="debug", host="h", jobs=3, critical_path=("core", "napi"))


def events_of(trace: dict[str, object], ph: str) -> list[Any]:
    events = trace["traceEvents"]
    assert isinstance(events, list)
    return [e for e in events if e["ph"] == ph]


def test_document_shape_and_json_round_trip() -> None:
    trace = build_trace(RECORD)
    assert trace["displayTimeUnit"] == "ms"
    assert json.loads(json.dumps(trace, allow_nan=False)) == trace


def test_one_complete_event_per_step_that_ran_in_microseconds() -> None:
    record = RECORD
    steps = {e["name"]: e for e in events_of(build_trace(record), "X") if e["tid"] != 0}
    assert set(steps) == {"core", "deps", "web", "tsc", "napi"}  # skipped never ran
    for step in record.steps:
        if step.name not in steps:
            continue
        event = steps[step.name]
        assert event["tid"] == step.worker + 1
        assert event["ts"] == round(step.start * 1e6)
        assert event["pid"] == 1
        assert event["cat"] == step.outcome.value
    assert steps["core"]["dur"] == 4_250_000
    assert steps["napi"]["dur"] == 5_600_000
    assert steps["deps"]["dur"] == 1  # a zero-length cache hit is still drawn


def test_args_carry_outcome_attempts_cache_source_and_critical_path() -> None:
    steps = {e["name"]: e["args"] for e in events_of(build_trace(RECORD), "X")}
    assert steps["core"] == {
        "outcome": "built",
        "attempts": 2,
        "exit_code": 0,
        "cache_source": None,
        "critical_path": True,
        "reasons": ["input changed: a.rs"],
        "log": "/w/.buildlib/logs/core.log",
    }
    assert steps["web"]["cache_source"] == "remote"
    assert steps["web"]["outcome"] == "restored"
    assert steps["tsc"]["critical_path"] is False
    assert steps["tsc"]["exit_code"] == 2


def test_threads_are_named_per_worker_lane_and_a_build_span_sits_on_tid_0() -> None:
    trace = build_trace(RECORD)
    names = {
        e["tid"]: e["args"]["name"] for e in events_of(trace, "M") if e["name"] == "thread_name"
    }
    assert names == {0: "build", 1: "worker 1", 2: "worker 2", 3: "worker 3"}
    build = [e for e in events_of(trace, "X") if e["tid"] == 0]
    assert len(build) == 1
    assert (build[0]["ts"], build[0]["dur"]) == (0.0, 10_000_000)
