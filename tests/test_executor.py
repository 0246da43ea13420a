"""The executor with real child processes: order, parallelism, priorities, failures, retries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import RecordingReporter, read_times, sleep_step, write_manifest

from buildlib.planning.plan import build_plan
from buildlib.run.executor import ExecOptions, Executor
from buildlib.run.gate import AlwaysRun
from buildlib.run.results import BuildRecord, Outcome, StepRecord
from buildlib.workspace.manifest import load_manifest
from buildlib.workspace.targets import get_target, host_triple


def run(
    root: Path,
    steps: str,
    *,
    jobs: int,
    keep_going: bool = False,
    estimates: dict[str, float] | None = None,
) -> tuple[BuildRecord, RecordingReporter]:
    manifest = load_manifest(write_manifest(root, steps))
    plan = build_plan(
        manifest,
        mode="development",
        target=get_target(host_triple()),
        environ=os.environ,
        estimates=estimates,
    )
    reporter = RecordingReporter()
    options = ExecOptions(
        jobs=jobs, keep_going=keep_going, log_dir=root / "logs", retry_base_delay=0.05
    )
    record = Executor(
        plan,
        reporter=reporter,
        options=options,
        gate=AlwaysRun(plan.root),
        environ={**os.environ, "PWD": str(root)},
    ).run()
    return record, reporter


def outcomes(record: BuildRecord) -> dict[str, Outcome]:
    return {s.name: s.outcome for s in record.steps}


def max_overlap(times: dict[str, tuple[float, float]]) -> int:
    points = sorted(
        [(s, 1) for s, _ in times.values()] + [(e, -1) for _, e in times.values()],
        key=lambda p: (p[0], p[1]),
    )
    running = best = 0
    for _, delta in points:
        running += delta
        best = max(best, running)
    return best


def test_a_step_never_starts_before_its_dependencies_end(tmp_path: Path) -> None:
    steps = (
        sleep_step("a", 0.3)
        + sleep_step("b", 0.1, deps=["a"])
        + sleep_step("c", 0.2)
        + sleep_step("d", 0.1, deps=["b", "c"])
    )
    record, _ = run(tmp_path, steps, jobs=4)
    assert record.exit_code == 0
    times = read_times(tmp_path)
    for step, deps in {"b": ["a"], "d": ["b", "c"]}.items():
        for dep in deps:
            assert times[step][0] >= times[dep][1], (step, dep)


def test_independent_steps_overlap_at_j2(tmp_path: Path) -> None:
    record, _ = run(tmp_path, sleep_step("a", 1.0) + sleep_step("b", 1.0), jobs=2)
    times = read_times(tmp_path)
    assert record.exit_code == 0
    assert times["a"][0] < times["b"][1] and times["b"][0] < times["a"][1]


def test_never_more_than_n_at_once(tmp_path: Path) -> None:
    steps = "".join(sleep_step(f"s{i}", 0.2) for i in range(8))
    record, _ = run(tmp_path, steps, jobs=3)
    assert record.exit_code == 0
    assert max_overlap(read_times(tmp_path)) == 3


def test_longest_remaining_critical_path_starts_first(tmp_path: Path) -> None:
    # At -j 1 with three ready roots, the one heading the longest chain must go first,
    # even though it is declared last.
    steps = (
        sleep_step("short", 0.05)
        + sleep_step("medium", 0.05)
        + sleep_step("long", 0.05)
        + sleep_step("long-tail", 0.05, deps=["long"])
    )
    estimates = {"short": 1.0, "medium": 2.0, "long": 2.0, "long-tail": 5.0}
    record, _ = run(tmp_path, steps, jobs=1, estimates=estimates)
    order = sorted(read_times(tmp_path).items(), key=lambda kv: kv[1][0])
    assert [name for name, _ in order] == ["long", "long-tail", "medium", "short"]
    assert record.exit_code == 0


def test_a_step_starts_when_its_own_dependencies_are_done_not_a_level(tmp_path: Path) -> None:
    # "quick-child" depends only on "quick"; it must not wait for the slow sibling "slow".
    steps = (
        sleep_step("quick", 0.1)
        + sleep_step("slow", 1.5)
        + sleep_step("quick-child", 0.1, deps=["quick"])
    )
    run(tmp_path, steps, jobs=3)
    times = read_times(tmp_path)
    assert times["quick-child"][1] < times["slow"][1]


def test_fail_fast_stops_running_steps_and_starts_nothing_new(tmp_path: Path) -> None:
    steps = (
        sleep_step("bad", 0.2, code=3)
        + sleep_step("long", 30)
        + sleep_step("after", 0.1, deps=["long"])
        + sleep_step("later", 0.1)
    )
    record, _ = run(tmp_path, steps, jobs=2)
    result = outcomes(record)
    assert record.exit_code == 1
    assert result["bad"] is Outcome.FAILED
    assert result["long"] is Outcome.INTERRUPTED
    assert result["after"] is Outcome.SKIPPED
    assert result["later"] is Outcome.SKIPPED
    assert record.wall < 20  # "long" was stopped, not waited for
    bad = next(r for r in record.steps if r.name == "bad")
    assert bad.exit_code == 3


def test_keep_going_builds_everything_independent_and_reports_all_failures(tmp_path: Path) -> None:
    steps = (
        sleep_step("bad1", 0.1, code=1)
        + sleep_step("bad2", 0.1, code=2)
        + sleep_step("child", 0.1, deps=["bad1"])
        + sleep_step("ok", 0.3)
        + sleep_step("ok-child", 0.1, deps=["ok"])
    )
    record, _ = run(tmp_path, steps, jobs=2, keep_going=True)
    result = outcomes(record)
    assert record.exit_code == 1
    assert result == {
        "bad1": Outcome.FAILED,
        "bad2": Outcome.FAILED,
        "child": Outcome.SKIPPED,
        "ok": Outcome.BUILT,
        "ok-child": Outcome.BUILT,
    }


def test_failed_step_log_tail_is_reported(tmp_path: Path) -> None:
    steps = """
        [[step]]
        name = "noisy"
        command = ["sh", "-c", "for i in $(seq 1 100); do echo line $i; done; exit 4"]
    """
    record, reporter = run(tmp_path, steps, jobs=1)
    assert record.exit_code == 1
    tail = reporter.tails["noisy"]
    assert tail[-1] == "line 100" and len(tail) <= 30
    assert Path(record.steps[0].log_path or "").read_text().count("line") == 100


def test_flaky_step_passes_on_second_attempt_and_the_retry_is_visible(tmp_path: Path) -> None:
    steps = """
        [[step]]
        name = "flaky"
        command = ["sh", "-c", "if [ -e marker ]; then echo second; else touch marker; echo first; exit 1; fi"]
        retries = 2
    """
    record, reporter = run(tmp_path, steps, jobs=1)
    assert record.exit_code == 0
    assert record.steps[0].attempts == 2
    assert any("retrying" in w for w in reporter.warnings)
    log = Path(record.steps[0].log_path or "").read_text()
    assert "first" in log and "second" in log and "attempt 1 failed" in log


def test_retries_are_exhausted(tmp_path: Path) -> None:
    steps = """
        [[step]]
        name = "broken"
        command = ["sh", "-c", "exit 5"]
        retries = 2
    """
    record, _ = run(tmp_path, steps, jobs=1)
    assert record.exit_code == 1
    assert record.steps[0].attempts == 3
    assert record.steps[0].exit_code == 5


@pytest.mark.parametrize(
    ("program", "said", "not_said"),
    [
        ("no-such-program-here", "not found on PATH", "no file"),
        # A relative path is looked for from the step's cwd, not on PATH.
        ("./bin/tool", "no file {root}/bin/tool", "PATH"),
    ],
)
def test_a_missing_program_fails_the_step_naming_where_it_was_looked_for(
    tmp_path: Path, program: str, said: str, not_said: str
) -> None:
    steps = f"""
        [[step]]
        name = "ghost"
        command = ["{program}", "x"]
    """
    record, reporter = run(tmp_path, steps, jobs=1)
    assert record.exit_code == 1
    tail = reporter.tails["ghost"][0]
    assert said.format(root=tmp_path) in tail and not_said not in tail


def test_an_output_that_is_a_fifo_fails_the_step_saying_so(tmp_path: Path) -> None:
    steps = """
        [[step]]
        name = "pipe"
        command = ["mkfifo", "out.fifo"]
        outputs = ["out.fifo"]
    """
    record, reporter = run(tmp_path, steps, jobs=1)
    assert record.exit_code == 1
    tail = "\n".join(reporter.tails["pipe"])
    assert "declared output 'out.fifo' is a FIFO (named pipe)" in tail
    assert "matches no file" not in tail


class BrokenReporter(RecordingReporter):
    """A reporter with a bug: settling step 'a' raises in the job thread."""

    def step_finished(self, record: StepRecord, log_tail: Sequence[str]) -> None:
        if record.name == "a":
            raise RuntimeError("reporter bug")
        super().step_finished(record, log_tail)


@pytest.mark.timeout(30)
def test_a_bug_while_settling_a_step_ends_the_build_and_stops_the_rest(tmp_path: Path) -> None:
    """The job thread's exception reaches the caller (no hang), and the step still
    running is stopped with its group (no orphan)."""
    steps = f"""
        [[step]]
        name = "a"
        command = ["sh", "-c", "while [ ! -s {tmp_path / "slow.pid"} ]; do sleep 0.01; done"]

        [[step]]
        name = "slow"
        command = ["sh", "-c", "echo $$ > {tmp_path / "slow.pid"}; exec sleep 60"]
    """
    manifest = load_manifest(write_manifest(tmp_path, steps))
    plan = build_plan(
        manifest,
        mode="development",
        target=get_target(host_triple()),
        environ=os.environ,
        estimates={"slow": 60.0},
    )
    options = ExecOptions(jobs=2, log_dir=tmp_path / "logs", grace=1.0)
    executor = Executor(
        plan,
        reporter=BrokenReporter(),
        options=options,
        gate=AlwaysRun(plan.root),
        environ=dict(os.environ),
    )
    with pytest.raises(RuntimeError, match="reporter bug"):
        executor.run()
    pid = int((tmp_path / "slow.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
