"""The build as a Chrome trace (trace-event JSON): open it in Perfetto or chrome://tracing.

One complete event (`"ph": "X"`, microseconds) per step that ran, cache hits
included (their check is usually a short event), on the thread of its worker
lane (`tid` = lane + 1; `tid` 0 carries one event spanning the whole build).
Steps that never started (skipped) have no event. Called by `report.write_build_reports`.
"""

from __future__ import annotations

from buildlib.run.results import BuildRecord, Outcome, StepRecord

PID = 1
BUILD_TID = 0

# Color names chrome://tracing knows (Perfetto picks its own colors and ignores them).
_CNAME = {
    Outcome.BUILT: "good",
    Outcome.CACHED: "grey",
    Outcome.RESTORED: "olive",
    Outcome.FAILED: "terrible",
    Outcome.INTERRUPTED: "bad",
}


def _us(seconds: float) -> float:
    # Whole microseconds keep the file small; trace viewers accept fractional values too.
    return float(round(seconds * 1_000_000))


def build_trace(record: BuildRecord) -> dict[str, object]:
    """The trace document for `record`: `{"traceEvents": [...], "displayTimeUnit": "ms"}`."""
    critical = set(record.critical_path)
    ran = [s for s in record.steps if s.worker >= 0]
    lanes = sorted({s.worker for s in ran})
    events: list[dict[str, object]] = [
        _meta("process_name", BUILD_TID, {"name": f"buildlib {record.mode} {record.target}"}),
        _meta("thread_name", BUILD_TID, {"name": "build"}),
        _meta("thread_sort_index", BUILD_TID, {"sort_index": BUILD_TID}),
    ]
    for lane in lanes:
        events.append(_meta("thread_name", lane + 1, {"name": f"worker {lane + 1}"}))
        events.append(_meta("thread_sort_index", lane + 1, {"sort_index": lane + 1}))
    events.append(
        {
            "name": f"build {record.build_id}",
            "cat": "build",
            "ph": "X",
            "pid": PID,
            "tid": BUILD_TID,
            "ts": 0.0,
            "dur": _us(record.wall),
            "args": {
                "mode": record.mode,
                "target": record.target,
                "jobs": record.jobs,
                "exit_code": record.exit_code,
                "parallelism": round(record.parallelism, 3),
                "cache_hit_rate": round(record.cache_hit_rate, 3),
                "critical_path": list(record.critical_path),
            },
        }
    )
    events.extend(_step_event(s, s.name in critical) for s in ran)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "build_id": record.build_id,
            "started_at": record.started_at,
            "host": record.host,
            "workspace": record.workspace,
        },
    }


def _meta(name: str, tid: int, args: dict[str, object]) -> dict[str, object]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def _step_event(step: StepRecord, on_critical_path: bool) -> dict[str, object]:
    args: dict[str, object] = {
        "outcome": step.outcome.value,
        "attempts": step.attempts,
        "exit_code": step.exit_code,
        "cache_source": step.cache_source,
        "critical_path": on_critical_path,
    }
    if step.reasons:
        args["reasons"] = list(step.reasons)
    if step.log_path:
        args["log"] = step.log_path
    event: dict[str, object] = {
        "name": step.name,
        "cat": step.outcome.value,
        "ph": "X",
        "pid": PID,
        "tid": step.worker + 1,
        "ts": _us(step.start),
        # At least 1 µs so a near-instant cache hit is still drawn and clickable.
        "dur": max(1.0, _us(step.duration)),
        "args": args,
    }
    if step.outcome in _CNAME:
        event["cname"] = _CNAME[step.outcome]
    return event
