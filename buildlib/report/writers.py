"""The after-build reports: JSON (schema in docs/report.schema.json), Chrome trace, HTML, history.

`write_build_reports` is the one call the CLI makes once a build has finished.
Every file is written atomically (a temp file in the same directory, then
`os.replace`), so a reader never sees half a report; `latest.*` are copies, not
symlinks, so they survive moving or archiving the build directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildlib.core.atomicfile import read_own, write_text_atomic
from buildlib.core.layout import BuildDir
from buildlib.core.records import record
from buildlib.report import history
from buildlib.run.results import BuildRecord, Outcome, StepRecord

SCHEMA_VERSION = 1
KEEP_BUILDS = 30  # per-build report files kept; older ones are deleted after each build
_SUFFIXES = (".trace.json", ".json", ".html")
# The build id names files; the executor's ids are "<UTC time>-<hex>", anything else is a bug.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@record
class ReportPaths:
    """Where `write_build_reports` put each file. A build in which no step ran (a no-op)
    has no trace or HTML page: they would show nothing, and at 10,000 steps they cost
    more than the build; `latest.html` stays the last build that did something."""

    json: Path
    trace: Path | None
    html: Path | None
    latest_json: Path
    latest_html: Path | None
    history: Path


def _seconds(value: float) -> float:
    return round(value, 6)


def record_to_json(
    record: BuildRecord,
    deps: Mapping[str, Sequence[str]],
    components: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, object]:
    """The build as a JSON-ready dict (schema version 1): StepRecord fields plus derived figures.

    `deps` maps each step to the steps it depends on; steps missing from it get
    an empty `depends_on`. `components` maps a step to its fingerprint's components
    (`fingerprint_components`, null for a step missing from it). `record.extra` must
    hold JSON values only.
    """
    components = components or {}
    critical = set(record.critical_path)
    counts = {o.value: 0 for o in Outcome}
    for step in record.steps:
        counts[step.outcome.value] += 1
    return {
        "schema_version": SCHEMA_VERSION,
        "build_id": record.build_id,
        "started_at": record.started_at,
        "workspace": record.workspace,
        "mode": record.mode,
        "target": record.target,
        "host": record.host,
        "jobs": record.jobs,
        "exit_code": record.exit_code,
        "ok": record.ok,
        "wall": _seconds(record.wall),
        "busy_time": _seconds(record.busy_time),
        "parallelism": round(record.parallelism, 4),
        "cache_hit_rate": round(record.cache_hit_rate, 4),
        "critical_path": list(record.critical_path),
        "critical_path_length": _seconds(record.critical_path_length),
        "counts": counts,
        "steps": [
            _step_to_json(s, deps.get(s.name, ()), s.name in critical, components.get(s.name))
            for s in record.steps
        ],
        "warnings": list(record.warnings),
        "extra": dict(record.extra),
    }


def _step_to_json(
    step: StepRecord,
    depends_on: Sequence[str],
    on_critical_path: bool,
    components: Mapping[str, str] | None,
) -> dict[str, object]:
    return {
        "name": step.name,
        "outcome": step.outcome.value,
        "start": _seconds(step.start),
        "end": _seconds(step.end),
        "duration": _seconds(step.duration),
        "worker": step.worker,
        "attempts": step.attempts,
        "exit_code": step.exit_code,
        "reasons": list(step.reasons),
        "cache_source": step.cache_source,
        "log_path": step.log_path,
        "fingerprint": step.fingerprint,
        "command": list(step.command),
        "depends_on": list(depends_on),
        "on_critical_path": on_critical_path,
        "fingerprint_components": dict(components) if components is not None else None,
    }


def fingerprint_components(record: BuildRecord, build_dir: BuildDir) -> dict[str, dict[str, str]]:
    """The fingerprint components of each step the build ran or restored, from the
    records its success or restore left (`run/step_state.py`), kept only when they are
    of the fingerprint this build saw: what `buildlib diff` compares between two builds
    (docs/explain-miss.md). A failed step has none; nor has a step up to date, whose
    record is the one an earlier build left (`diff` reads it there): a no-op reads no
    step's record, where reading them all cost 10,000 files on 10,000 steps (issue 17)."""
    from buildlib.run.step_state import StepState

    state = StepState(build_dir.state(record.mode, record.target))
    found: dict[str, dict[str, str]] = {}
    for step in record.steps:
        if step.fingerprint is None or step.outcome not in (Outcome.BUILT, Outcome.RESTORED):
            continue
        components = state.components(step.name, step.fingerprint)
        if components is not None:
            found[step.name] = components
    return found


def write_build_reports(
    record: BuildRecord, deps: Mapping[str, Sequence[str]], build_dir: BuildDir
) -> ReportPaths:
    """Write `.buildlib/reports/<id>.{json,trace.json,html}`, `latest.*`, append the history.

    Raises OSError when the disk refuses; the files already written stay whole.
    """
    if not _SAFE_ID.fullmatch(record.build_id):
        raise ValueError(f"build id {record.build_id!r} is not a safe file name")
    reports = build_dir.reports
    reports.mkdir(parents=True, exist_ok=True)
    # Compact: json's C encoder only runs without indent (5x faster on a 500-step build);
    # `python -m json.tool` pretty-prints it for a person.
    report_text = (
        json.dumps(
            record_to_json(record, deps, fingerprint_components(record, build_dir)),
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        + "\n"
    )
    ran = did_something(record)
    paths = ReportPaths(
        json=reports / f"{record.build_id}.json",
        trace=reports / f"{record.build_id}.trace.json" if ran else None,
        html=reports / f"{record.build_id}.html" if ran else None,
        latest_json=reports / "latest.json",
        latest_html=reports / "latest.html" if ran else None,
        history=build_dir.history,
    )
    _write_twice(paths.json, paths.latest_json, report_text)
    if paths.trace is not None and paths.html is not None and paths.latest_html is not None:
        from buildlib.report.html import render_html
        from buildlib.report.trace import build_trace

        write_text_atomic(
            paths.trace,
            json.dumps(
                build_trace(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            + "\n",
        )
        _write_twice(paths.html, paths.latest_html, render_html(record, deps, build_dir))
    write_last_build(build_dir, record)
    history.append(paths.history, history.entry_from_record(record))
    history.trim(paths.history)
    prune_reports(reports, keep=KEEP_BUILDS)
    return paths


def did_something(record: BuildRecord) -> bool:
    """Whether a step ran, was restored, failed or was skipped (not a no-op)."""
    return any(s.outcome is not Outcome.CACHED for s in record.steps) or not record.steps


def html_report_path(record: BuildRecord, build_dir: BuildDir) -> Path | None:
    """Where `write_build_reports` puts the build's HTML page; None for a no-op (none)."""
    if not did_something(record) or not _SAFE_ID.fullmatch(record.build_id):
        return None
    return build_dir.reports / f"{record.build_id}.html"


@record
class LastBuild:
    """The mode and target of the workspace's latest build: what `verify` and `metrics`
    look at when no --mode is given."""

    mode: str
    target: str
    build_id: str


def write_last_build(build_dir: BuildDir, record: BuildRecord) -> None:
    write_text_atomic(
        build_dir.last_build,
        json.dumps({"mode": record.mode, "target": record.target, "build_id": record.build_id})
        + "\n",
    )


def read_last_build(build_dir: BuildDir) -> LastBuild | None:
    """The latest build's mode and target, or None (no build yet, or an unreadable file)."""
    found = read_own(build_dir.last_build, 1 << 16)  # never a FIFO, which would block
    try:
        data = json.loads(found.decode("utf-8") if found is not None else "")
        return LastBuild(
            mode=str(data["mode"]),
            target=str(data["target"]),
            build_id=str(data.get("build_id", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_twice(path: Path, latest: Path, text: str) -> None:
    """`text` at `path`, and `latest` the same file: a hard link renamed into place (as
    atomic as a second write, without writing the bytes twice); a copy where the file
    system has no hard links."""
    write_text_atomic(path, text)
    temp = latest.with_name(f".{latest.name}.{os.getpid()}.link")
    try:
        temp.unlink(missing_ok=True)
        os.link(path, temp)
        temp.replace(latest)
    except OSError:
        temp.unlink(missing_ok=True)
        write_text_atomic(latest, text)


def prune_reports(reports: Path, *, keep: int) -> list[str]:
    """Delete the report files of all but the newest `keep` builds; returns their ids.

    Build ids start with their UTC start time, so sorting them sorts by age. `latest.*`
    and files this module did not name are left alone; the history keeps every build.
    """
    ids: set[str] = set()
    for name in (entry.name for entry in os.scandir(reports)):
        for suffix in _SUFFIXES:
            stem = name.removesuffix(suffix)
            if stem not in (name, "latest") and _SAFE_ID.fullmatch(stem):
                ids.add(stem)
                break
    old = sorted(ids)[:-keep] if keep > 0 else sorted(ids)
    for build_id in old:
        for suffix in _SUFFIXES:
            (reports / f"{build_id}{suffix}").unlink(missing_ok=True)
    return old
