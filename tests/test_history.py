"""The history survives torn writes, concurrent appenders and SIGKILL; estimates use BUILT runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildlib.report import history
from buildlib.report.history import HistoryEntry, HistoryStep, append, estimates, read_history
from buildlib.run.results import BuildRecord, Outcome, StepRecord

REPO = Path(__file__).resolve().parents[1]


def entry(
    build_id: str,
    *,
    mode: str = "debug",
    target: str = "x86_64-unknown-linux-gnu",
    steps: dict[str, tuple[Outcome, float]] | None = None,
) -> HistoryEntry:
    steps = steps if steps is not None else {"a": (Outcome.BUILT, 1.5)}
    return HistoryEntry(
        build_id=build_id,
        started_at="2025-01-01T00:00:00+00:00",
        mode=mode,
        target=target,
        wall=sum(d for _, d in steps.values()),
        exit_code=0,
        steps=tuple(HistoryStep(name=n, outcome=o, duration=d) for n, (o, d) in steps.items()),
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    first = entry(
        "b1",
        steps={
            "rust:core": (Outcome.BUILT, 12.25),
            "web": (Outcome.CACHED, 0.1),
            "ünï<code>": (Outcome.FAILED, 3.0),
        },
    )
    second = entry("b2", mode="release")
    append(path, first)
    append(path, second)
    result = read_history(path)
    assert result.entries == (first, second)
    assert result.skipped == 0
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""  # one line per build, newline-terminated


def test_entry_from_record_takes_durations_and_outcomes() -> None:
    record = BuildRecord(
        build_id="b",
        started_at="t",
        workspace="/w",
        mode="debug",
        target="t1",
        host="h",
        jobs=2,
        wall=4.0,
        exit_code=1,
        steps=(
            StepRecord(name="a", outcome=Outcome.BUILT, start=1.0, end=3.5, worker=0),
            StepRecord(name="b", outcome=Outcome.SKIPPED),
        ),
    )
    got = history.entry_from_record(record)
    assert got.steps == (
        HistoryStep(name="a", outcome=Outcome.BUILT, duration=2.5),
        HistoryStep(name="b", outcome=Outcome.SKIPPED, duration=0.0),
    )
    assert (got.mode, got.target, got.wall, got.exit_code) == ("debug", "t1", 4.0, 1)


def test_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    result = read_history(tmp_path / "nope.jsonl")
    assert result.entries == () and result.skipped == 0


def test_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append(path, entry("b1"))
    whole = history.encode_entry(entry("b2"))
    with path.open("ab") as handle:  # what a writer killed half-way through would leave
        handle.write(whole[: len(whole) // 2])
    torn = read_history(path)
    assert [e.build_id for e in torn.entries] == ["b1"]
    assert torn.skipped == 1

    append(path, entry("b3"))
    after = read_history(path)
    assert [e.build_id for e in after.entries] == ["b1", "b3"]
    assert after.skipped == 1
    assert path.read_bytes().endswith(b"\n" + history.encode_entry(entry("b3")))


def test_corrupt_lines_anywhere_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append(path, entry("b1"))
    with path.open("ab") as handle:
        handle.write(b"not json\n")
        handle.write(b"\xff\xfe binary\n")
        handle.write(b'{"v": 1, "id": "x"}\n')  # valid JSON, missing fields
        handle.write(b'{"v": 99, "id": "future"}\n')  # a newer format this reader cannot know
        handle.write(b"[1, 2]\n")
        handle.write(b"\n")  # blank lines are not corruption
    bad_steps = history.encode_entry(entry("b2")).replace(b'"built"', b'"exploded"')
    with path.open("ab") as handle:
        handle.write(bad_steps)
    append(path, entry("b3"))
    result = read_history(path)
    assert [e.build_id for e in result.entries] == ["b1", "b3"]
    assert result.skipped == 6


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from buildlib.report.history import HistoryEntry, HistoryStep, append
    from buildlib.run.results import Outcome

    path, marker = Path(sys.argv[1]), Path(sys.argv[2])
    prefix, count = sys.argv[3], int(sys.argv[4])
    # ~10 KB lines, so a kill or an interleaving inside a line would be visible.
    steps = tuple(HistoryStep(name=f"step-{i:03d}-" + "x" * 40, outcome=Outcome.BUILT,
                              duration=i / 7) for i in range(150))
    for i in range(count):
        append(path, HistoryEntry(build_id=f"{prefix}-{i}", started_at="t", mode="debug",
                                  target="t", wall=1.0, exit_code=0, steps=steps))
        if i == 20:
            marker.touch()
""")


def _writer(path: Path, marker: Path, prefix: str, count: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(marker), prefix, str(count)],
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(marker: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the writer exited before reaching the marker"
        assert time.monotonic() < deadline, "the writer never reached the marker"
        time.sleep(0.005)


@pytest.mark.timeout(120)
def test_sigkilled_writer_leaves_a_readable_history(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    marker = tmp_path / "started"
    proc = _writer(path, marker, "k", 1_000_000)
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    result = read_history(path)
    ids = [e.build_id for e in result.entries]
    assert len(ids) > 20
    assert ids == [f"k-{i}" for i in range(len(ids))]  # no gap, no garbage between lines
    assert result.skipped <= 1
    assert all(len(e.steps) == 150 for e in result.entries)

    append(path, entry("after-kill"))
    again = read_history(path)
    assert again.entries[-1] == entry("after-kill")
    assert len(again.entries) == len(ids) + 1
    assert again.skipped == result.skipped


@pytest.mark.timeout(120)
def test_concurrent_appenders_never_interleave_inside_a_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    procs = [_writer(path, tmp_path / f"m{p}", f"p{p}", 60) for p in range(2)]
    for proc in procs:
        assert proc.wait(timeout=100) == 0
    result = read_history(path)
    assert result.skipped == 0
    for p in range(2):
        assert [e.build_id for e in result.entries if e.build_id.startswith(f"p{p}-")] == [
            f"p{p}-{i}" for i in range(60)
        ]


def test_estimates_take_the_median_of_recent_built_runs_of_the_same_mode_and_target(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.jsonl"
    for i, seconds in enumerate([100.0, 4.0, 5.0, 6.0]):  # the 100 s run is old
        append(
            path,
            entry(f"b{i}", steps={"a": (Outcome.BUILT, seconds), "hit": (Outcome.CACHED, 0.01)}),
        )
    for _ in range(history.RECENT_SAMPLES - 3):
        append(path, entry("recent", steps={"a": (Outcome.BUILT, 5.5)}))
    append(path, entry("cached", steps={"a": (Outcome.CACHED, 0.02)}))
    append(path, entry("failed", steps={"a": (Outcome.FAILED, 0.5)}))
    append(path, entry("other-mode", mode="release", steps={"a": (Outcome.BUILT, 50.0)}))
    append(
        path,
        entry("other-target", target="aarch64-apple-darwin", steps={"a": (Outcome.BUILT, 60.0)}),
    )

    got = estimates(path, mode="debug", target="x86_64-unknown-linux-gnu")
    # The last 10 BUILT runs: 4, 5, 6 and seven 5.5 s runs; 100 s fell out of the window.
    assert got == {"a": 5.5}
    assert estimates(read_history(path), "release", "x86_64-unknown-linux-gnu") == {"a": 50.0}
    assert estimates(path, mode="debug", target="nowhere") == {}


def test_planning_estimates_match_the_records_path_and_skip_the_same_bad_lines(
    tmp_path: Path,
) -> None:
    """The raw fast path agrees with `estimates` over records: this mode's timings over
    the other modes', the same window, and lines `decode_line` rejects are ignored."""
    path = tmp_path / "history.jsonl"
    x86 = "x86_64-unknown-linux-gnu"
    for i, seconds in enumerate([100.0, 4.0, 5.0, 6.0, *[5.5] * 9]):
        append(
            path,
            entry(f"d{i}", steps={"a": (Outcome.BUILT, seconds), "hit": (Outcome.CACHED, 0.01)}),
        )
    append(
        path,
        entry(
            "r1",
            mode="release",
            steps={"a": (Outcome.BUILT, 50.0), "only-release": (Outcome.BUILT, 7.0)},
        ),
    )
    append(path, entry("arm", target="aarch64-apple-darwin", steps={"z": (Outcome.BUILT, 1.0)}))
    with path.open("ab") as handle:
        handle.write(
            b'{"v":1,"id":"x","at":"","mode":"debug","target":"'
            + x86.encode()
            + b'","wall":1,"exit":0,"steps":[["a","exploded",1.0]]}\n'
        )
        handle.write(
            b'{"v":1,"id":"y","at":"","mode":"debug","target":"'
            + x86.encode()
            + b'","wall":1,"exit":0,"steps":[["a","built",true]]}\n'
        )
        handle.write(b"not json\n")
    history_ = read_history(path)
    expected = {
        **estimates(history_, mode=None, target=x86),
        **estimates(history_, mode="debug", target=x86),
    }
    assert (
        history.planning_estimates(path, "debug", x86)
        == expected
        == {"a": 5.5, "only-release": 7.0}
    )
    # Given the steps, reading stops once each has a full window: same answer.
    assert history.planning_estimates(path, "debug", x86, steps=["a", "only-release"]) == {
        "a": 5.5,
        "only-release": 7.0,
    }
    assert history.planning_estimates(tmp_path / "missing.jsonl", "debug", x86) == {}


def test_trim_keeps_the_newest_whole_lines_within_half_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    for i in range(60):
        append(path, entry(f"b{i:02d}"))
    line = len(history.encode_entry(entry("b00")))
    assert history.trim(path, max_bytes=60 * line) is False  # at the limit: untouched
    assert history.trim(path, max_bytes=20 * line) is True
    kept = read_history(path)
    assert kept.skipped == 0
    ids = [e.build_id for e in kept.entries]
    assert ids == [f"b{i:02d}" for i in range(60 - len(ids), 60)]  # the newest, in order
    assert 8 <= len(ids) <= 10 and path.stat().st_size <= 10 * line
    append(path, entry("after"))  # appending goes on as before
    assert read_history(path).entries[-1].build_id == "after"
    assert history.trim(tmp_path / "missing.jsonl") is False
