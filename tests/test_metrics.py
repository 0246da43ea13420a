"""Metrics flag a step whose latest BUILT run is slower than its recent median, and no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildlib.core.errors import UserError
from buildlib.report.history import HistoryEntry, HistoryStep, append
from buildlib.report.metrics import is_slowdown, metrics_table, render_metrics
from buildlib.run.results import Outcome

TARGET = "x86_64-unknown-linux-gnu"


def add(
    path: Path, build_id: str, steps: dict[str, tuple[Outcome, float]], *, mode: str = "debug"
) -> None:
    append(
        path,
        HistoryEntry(
            build_id=build_id,
            started_at="2025-01-01T00:00:00+00:00",
            mode=mode,
            target=TARGET,
            wall=10.0,
            exit_code=0,
            steps=tuple(HistoryStep(name=n, outcome=o, duration=d) for n, (o, d) in steps.items()),
        ),
    )


@pytest.fixture
def slowed(tmp_path: Path) -> Path:
    """Ten steady builds, then one where `link` doubled and `tiny` jittered."""
    path = tmp_path / "history.jsonl"
    B = Outcome.BUILT
    add(path, "ancient", {"compile": (B, 500.0), "link": (B, 1.0)})  # outside --last 10
    for i in range(10):
        add(
            path,
            f"b{i}",
            {
                "compile": (B, 30.0 + (i % 3) * 0.5),
                "link": (B, 6.0),
                "tiny": (B, 1.0),
                "bundle": (Outcome.CACHED, 0.05),
            },
        )
    add(path, "other-mode", {"compile": (B, 300.0), "link": (B, 60.0)}, mode="release")
    add(
        path,
        "slow",
        {
            "compile": (B, 30.2),
            "link": (B, 12.5),
            "tiny": (B, 2.9),
            "bundle": (Outcome.CACHED, 9.0),
        },
    )
    return path


def test_the_slowed_step_is_flagged_and_the_unchanged_ones_are_not(slowed: Path) -> None:
    result = metrics_table(slowed, last=10, mode="debug", target=TARGET)
    assert result.builds == 12  # every build is read; each step keeps its last 10 runs
    steps = {s.name: s for s in result.steps}
    assert [s.name for s in result.slow_steps] == ["link"]
    link = steps["link"]
    assert (link.last, link.median, link.slowest) == (12.5, 6.0, 12.5)
    assert len(link.durations) == 10
    assert not steps["compile"].slow
    assert steps["compile"].slowest == 31.0  # the 500 s build is outside the window
    # 2.9 s is nearly 3x the median, but within median + 2 s: jitter, not a slowdown.
    assert steps["tiny"].last == 2.9 and not steps["tiny"].slow
    assert "bundle" not in steps  # only ever a cache hit: nothing to time


def test_render_marks_only_the_slowed_step(slowed: Path) -> None:
    text = render_metrics(metrics_table(slowed, last=10, mode="debug", target=TARGET))
    rows = {line.split()[0]: line for line in text.splitlines()[2:5]}
    assert set(rows) == {"compile", "link", "tiny"}
    assert rows["link"].rstrip().endswith("SLOWER")
    assert "SLOWER" not in rows["compile"] and "SLOWER" not in rows["tiny"]
    assert "12.5s" in rows["link"] and "6.0s" in rows["link"]
    assert "last > max(1.5 x median, median + 2 s)" in text


def test_other_modes_do_not_leak_in_and_none_means_all(slowed: Path) -> None:
    release = metrics_table(slowed, mode="release", target=TARGET)
    assert release.builds == 1
    assert {s.name: s.last for s in release.steps} == {"compile": 300.0, "link": 60.0}
    assert not release.slow_steps  # one sample is not a trend
    assert metrics_table(slowed).builds == 13


def test_rule_boundaries() -> None:
    assert is_slowdown(16.0, 10.0, 3)  # > 15 = 1.5 x median
    assert not is_slowdown(15.0, 10.0, 3)
    assert is_slowdown(2.1, 0.05, 3)  # > 2.05 = median + 2 s
    assert not is_slowdown(2.0, 0.05, 3)
    assert not is_slowdown(100.0, 10.0, 2)  # too few runs


def test_empty_history_says_so(tmp_path: Path) -> None:
    result = metrics_table(tmp_path / "history.jsonl", mode="debug", target=TARGET)
    assert result.steps == () and result.builds == 0
    assert render_metrics(result) == (
        f"no build of debug x86_64-unknown-linux-gnu is recorded in {tmp_path}/history.jsonl yet"
    )


def test_a_mode_never_built_points_at_the_builds_there_are(slowed: Path) -> None:
    text = render_metrics(metrics_table(slowed, mode="test", target=TARGET))
    assert text.startswith("no build of test x86_64-unknown-linux-gnu is recorded")
    assert "12 builds of debug x86_64-unknown-linux-gnu are: metrics --mode debug" in text


def test_builds_that_built_nothing_say_so(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    add(path, "noop", {"compile": (Outcome.CACHED, 0.01)})
    text = render_metrics(metrics_table(path, mode="debug", target=TARGET))
    assert "no step has built in the 1 builds of debug" in text
    assert "every step was up to date or restored" in text


def test_unreadable_lines_are_reported(slowed: Path) -> None:
    with slowed.open("ab") as handle:
        handle.write(b'{"v":1,"id":"torn"')
    result = metrics_table(slowed, mode="debug", target=TARGET)
    assert result.skipped_lines == 1
    assert "1 unreadable history line(s) skipped" in render_metrics(result)


def test_last_below_one_is_a_user_error(slowed: Path) -> None:
    with pytest.raises(UserError, match="--last 0"):
        metrics_table(slowed, last=0)
