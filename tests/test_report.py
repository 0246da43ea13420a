"""The JSON report matches docs/report.schema.json, and every report file is written whole."""

from __future__ import annotations

import copy
import json
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from helpers import PY_TOML, make_record, run_buildlib

from buildlib.core import records
from buildlib.core.atomicfile import write_text_atomic as atomic_write_text
from buildlib.core.layout import BuildDir
from buildlib.report import writers as report_module
from buildlib.report.history import read_history
from buildlib.report.writers import record_to_json, write_build_reports
from buildlib.run.results import BuildRecord, Outcome, StepRecord

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "report.schema.json"

DEPS = {
    "core": (),
    "deps": (),
    "web": ("deps",),
    "tsc": ("web",),
    "napi": ("core",),
    "package": ("napi", "tsc"),
    "docs <beta>": (),
}


STEPS = (
    StepRecord(
        name="core",
        outcome=Outcome.BUILT,
        start=0.0,
        end=4.0,
        worker=0,
        attempts=1,
        exit_code=0,
        reasons=("input changed: src/lib.rs",),
        log_path="/w/.buildlib/logs/core.log",
        fingerprint="f" * 64,
        command=("cargo", "build", "--release"),
    ),
    StepRecord(
        name="deps",
        outcome=Outcome.CACHED,
        start=0.0,
        end=0.5,
        worker=1,
        cache_source="local",
        fingerprint="e" * 64,
    ),
    StepRecord(
        name="web", outcome=Outcome.RESTORED, start=0.5, end=1.5, worker=1, cache_source="remote"
    ),
    StepRecord(
        name="tsc",
        outcome=Outcome.FAILED,
        start=1.5,
        end=3.5,
        worker=1,
        attempts=2,
        exit_code=2,
        reasons=("no earlier build",),
    ),
    StepRecord(
        name="napi", outcome=Outcome.BUILT, start=4.0, end=10.0, worker=0, attempts=1, exit_code=0
    ),
    StepRecord(name="package", outcome=Outcome.SKIPPED),
    StepRecord(
        name="docs <beta>",
        outcome=Outcome.INTERRUPTED,
        start=3.5,
        end=4.5,
        worker=1,
        attempts=1,
        exit_code=-15,
    ),
)


def sample_record(build_id: str = "20250101T000000-abcdef", **changes: object) -> BuildRecord:
    """STEPS with a critical path, a warning and an extra field; `changes` replace fields."""
    record = make_record(
        steps=STEPS,
        build_id=build_id,
        critical_path=("core", "napi"),
        warnings=("remote cache unreachable",),
        extra={"note": "from a test"},
    )
    return records.replace(record, **changes)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_written_report_validates_against_the_schema(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    paths = write_build_reports(sample_record(), DEPS, BuildDir(tmp_path))
    report = json.loads(paths.json.read_text())
    validator.validate(report)
    assert report["schema_version"] == 1


def test_schema_rejects_what_is_not_a_report(validator: jsonschema.Draft202012Validator) -> None:
    good: Any = record_to_json(sample_record(), DEPS)
    validator.validate(good)
    bad_outcome = copy.deepcopy(good)
    bad_outcome["steps"][0]["outcome"] = "exploded"
    missing = copy.deepcopy(good)
    del missing["steps"][1]["duration"]
    future = dict(good, schema_version=2)
    for bad in (bad_outcome, missing, future):
        assert not validator.is_valid(bad)


def test_schema_covers_every_step_record_field_and_outcome(
    validator: jsonschema.Draft202012Validator,
) -> None:
    schema = cast("Mapping[str, Any]", validator.schema)  # the fixture loads an object
    step_schema = schema["$defs"]["step"]
    fields = {f.name for f in records.fields(StepRecord)}
    assert fields <= set(step_schema["required"])
    assert set(schema["$defs"]["outcome"]["enum"]) == {o.value for o in Outcome}
    steps = record_to_json(sample_record(), DEPS)["steps"]
    assert isinstance(steps, list)
    assert fields | {"duration", "depends_on", "on_critical_path", "fingerprint_components"} == set(
        steps[0]
    )


def test_derived_figures() -> None:
    report: Any = record_to_json(sample_record(), DEPS)
    # Busy: 4 + 0.5 + 1 + 2 + 6 + 0 + 1 = 14.5 s over a 10 s wall.
    assert report["wall"] == 10.0
    assert report["busy_time"] == 14.5
    assert report["parallelism"] == 1.45
    assert report["cache_hit_rate"] == 0.5  # 2 hits of 4 built-or-hit steps
    assert report["critical_path"] == ["core", "napi"]
    assert report["critical_path_length"] == 10.0
    assert report["counts"] == {
        "built": 2,
        "cached": 1,
        "restored": 1,
        "failed": 1,
        "skipped": 1,
        "interrupted": 1,
    }
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["package"]["depends_on"] == ["napi", "tsc"]
    assert steps["napi"]["on_critical_path"] is True
    assert steps["tsc"]["on_critical_path"] is False
    assert steps["tsc"]["outcome"] == "failed"
    assert steps["core"]["command"] == ["cargo", "build", "--release"]
    assert report["warnings"] == ["remote cache unreachable"]
    assert report["ok"] is False


def test_every_file_is_written_and_latest_follows_the_newest_build(tmp_path: Path) -> None:
    first = write_build_reports(sample_record("20250101T000000-aaaaaa"), DEPS, BuildDir(tmp_path))
    second = write_build_reports(
        sample_record("20250101T000100-bbbbbb", exit_code=0), DEPS, BuildDir(tmp_path)
    )
    for paths in (first, second):
        assert paths.trace is not None and paths.html is not None  # steps ran: both written
        assert paths.json.is_file() and paths.trace.is_file() and paths.html.is_file()
        assert "traceEvents" in json.loads(paths.trace.read_text())
    assert second.latest_json.read_bytes() == second.json.read_bytes()
    assert second.latest_html is not None and second.html is not None
    assert second.latest_html.read_bytes() == second.html.read_bytes()
    assert first.json.read_bytes() != second.json.read_bytes()
    assert second.json.stat().st_mode & 0o777 == 0o644
    # Nothing half-written lies around.
    assert not [
        p for p in (tmp_path / ".buildlib" / "reports").iterdir() if p.name.endswith(".tmp")
    ]
    entries = read_history(second.history).entries
    assert [e.build_id for e in entries] == ["20250101T000000-aaaaaa", "20250101T000100-bbbbbb"]


def test_only_the_newest_builds_reports_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old per-build files are deleted; latest.*, the history and other files stay."""
    monkeypatch.setattr(report_module, "KEEP_BUILDS", 2)
    ids = [f"20250101T0000{i:02d}-aaaaaa" for i in range(4)]
    reports = tmp_path / ".buildlib" / "reports"
    reports.mkdir(parents=True)
    (reports / "notes.txt").write_text("mine")
    for build_id in ids:
        write_build_reports(sample_record(build_id), DEPS, BuildDir(tmp_path))
    names = sorted(p.name for p in reports.iterdir())
    kept = [f"{i}{suffix}" for i in ids[2:] for suffix in (".html", ".json", ".trace.json")]
    assert names == sorted([*kept, "latest.html", "latest.json", "notes.txt"])
    assert len(read_history(tmp_path / ".buildlib" / "history.jsonl").entries) == 4
    assert report_module.prune_reports(reports, keep=0) == ids[2:]
    assert sorted(p.name for p in reports.iterdir()) == ["latest.html", "latest.json", "notes.txt"]


def test_an_unsafe_build_id_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="safe file name"):
        write_build_reports(sample_record("../escape"), DEPS, BuildDir(tmp_path))
    assert not (tmp_path / ".buildlib" / "reports").exists()
    assert not (tmp_path / ".buildlib" / "history.jsonl").exists()


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    target = tmp_path / "latest.json"
    atomic_write_text(target, "old\n")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the bytes written, then refused
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new\n", durable=True)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.json"]


def test_a_name_in_no_encoding_is_written_as_its_escape(tmp_path: Path) -> None:
    """os.listdir reads a file name that is not UTF-8 as lone surrogates: a report that
    names it is written, and its JSON reads the same name back."""
    target = tmp_path / "latest.json"
    atomic_write_text(target, json.dumps({"changed": "src/caf\udce9.txt"}, ensure_ascii=False))
    assert json.loads(target.read_text())["changed"] == "src/caf\udce9.txt"


def test_a_build_with_no_steps_still_writes_valid_reports(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    empty = sample_record(steps=(), critical_path=(), wall=0.0, exit_code=0, warnings=())
    paths = write_build_reports(empty, {}, BuildDir(tmp_path))
    report = json.loads(paths.json.read_text())
    validator.validate(report)
    assert (report["parallelism"], report["cache_hit_rate"], report["steps"]) == (0.0, 0.0, [])
    assert paths.html is not None
    assert "succeeded" in paths.html.read_text()
    assert read_history(paths.history).entries[0].steps == ()


def test_atomic_write_steps_over_a_temp_file_a_killed_writer_left(tmp_path: Path) -> None:
    """A leftover temporary file with the name this process would pick first is skipped."""
    import itertools
    import os
    import threading

    from buildlib.core import atomicfile

    target = tmp_path / "out.json"
    upcoming = next(atomicfile._unique) + 1
    atomicfile._unique = itertools.count(upcoming)
    stale = tmp_path / f".out.json.{os.getpid()}-{threading.get_ident()}-{upcoming}.tmp"
    stale.write_text("left by a killed build")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert stale.read_text() == "left by a killed build"
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o002], ids=["077", "022", "002"])
def test_files_a_build_writes_honour_the_umask(tmp_path: Path, umask: int) -> None:
    """Reports, the step's log and details, the history, the journal: made as any new
    file is, `0o666 & ~umask` at most. With 077, nothing is readable by others (a log
    excerpt may hold what a step printed); the signed files stay private whatever it is."""
    (tmp_path / "build.toml").write_text(
        f'[[step]]\nname = "s"\ncommand = [{PY_TOML}, "-c", "print(1); raise SystemExit(1)"]\n'
    )
    built = run_buildlib(tmp_path, "build", "--plain", umask=umask)
    assert built.returncode == 1, built.stderr  # a failed step: its details are written too
    files = [p for p in (tmp_path / ".buildlib").rglob("*") if p.is_file()]
    assert any(p.parent.name == "reports" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & umask == 0, path
