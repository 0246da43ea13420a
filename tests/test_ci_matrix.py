"""The CI matrix: mode x target rows, runner labels from the target table, clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from buildlib.core.errors import UserError
from buildlib.integrations.ci_matrix import MAX_JOBS, MatrixError, build_matrix, matrix_main, render
from buildlib.workspace.targets import TARGETS, host_triple

MODES = ("development", "production", "test")
KEYS = {"mode", "target", "runner", "os", "arch", "session", "verify_session", "artifact_name"}


def test_every_mode_times_every_target_in_table_order() -> None:
    rows = build_matrix(modes=["production", "development"])["include"]

    assert len(rows) == 2 * 6
    assert [(r["mode"], r["target"]) for r in rows] == [
        (mode, triple) for mode in ("production", "development") for triple in TARGETS
    ]


@pytest.mark.parametrize("triple", list(TARGETS))
def test_each_row_carries_the_targets_runner_and_platform(triple: str) -> None:
    (row,) = build_matrix(modes=["production"], targets=[triple])["include"]
    target = TARGETS[triple]

    assert set(row) == KEYS
    assert (row["runner"], row["os"], row["arch"]) == (target.runner, target.os, target.arch)
    assert row["session"] == "build-3.12(mode='production')"
    assert row["verify_session"] == f"verify -- --mode production --target {triple}"


def test_the_six_targets_run_on_six_distinct_runners() -> None:
    rows = build_matrix(modes=["test"])["include"]

    assert {r["runner"] for r in rows} == {t.runner for t in TARGETS.values()}
    assert len({r["runner"] for r in rows}) == 6


def test_artifact_names_are_unique_across_the_matrix() -> None:
    rows = build_matrix(modes=MODES)["include"]

    names = [r["artifact_name"] for r in rows]
    assert len(set(names)) == len(names) == 18
    # upload-artifact rejects these characters in names.
    assert not [n for n in names if re.search(r'[":<>|*?\\/\r\n]', n)]


def test_explicit_targets_keep_their_order_and_drop_duplicates() -> None:
    targets = ["aarch64-apple-darwin", "x86_64-pc-windows-msvc", "aarch64-apple-darwin"]
    rows = build_matrix(modes=["production", "production"], targets=targets)["include"]

    assert [(r["mode"], r["target"]) for r in rows] == [
        ("production", "aarch64-apple-darwin"),
        ("production", "x86_64-pc-windows-msvc"),
    ]


def test_unknown_mode_names_the_manifests_modes() -> None:
    with pytest.raises(MatrixError) as info:
        build_matrix(modes=["production", "prod"], known_modes=MODES)

    message = str(info.value)
    assert "unknown mode(s) 'prod'" in message
    assert "development, production, test" in message
    assert isinstance(info.value, UserError)


def test_unknown_target_names_every_known_triple() -> None:
    with pytest.raises(MatrixError) as info:
        build_matrix(modes=["production"], targets=["x86_64-linux", "aarch64-apple-darwin"])

    message = str(info.value)
    assert "unknown target(s) 'x86_64-linux'" in message
    assert all(triple in message for triple in TARGETS)


def test_unknown_mode_and_target_are_reported_together() -> None:
    with pytest.raises(MatrixError) as info:
        build_matrix(modes=["nope"], targets=["riscv64gc-unknown-linux-gnu"], known_modes=MODES)

    assert "'nope'" in str(info.value)
    assert "'riscv64gc-unknown-linux-gnu'" in str(info.value)


@pytest.mark.parametrize("mode", ["", "prod'uction", "a/b", "-x", "with space"])
def test_mode_names_that_would_break_a_session_name_are_refused(mode: str) -> None:
    with pytest.raises(MatrixError, match="not usable in a session name"):
        build_matrix(modes=[mode])


def test_no_modes_is_an_error() -> None:
    with pytest.raises(MatrixError, match="no modes given"):
        build_matrix(modes=[])


def test_no_targets_is_an_error() -> None:
    with pytest.raises(MatrixError, match="no targets given"):
        build_matrix(modes=["test"], targets=[])


def test_without_cross_only_the_hosts_target_remains() -> None:
    host = "aarch64-unknown-linux-gnu"
    rows = build_matrix(modes=MODES, include_cross=False, host=host)["include"]

    assert [(r["mode"], r["target"]) for r in rows] == [(m, host) for m in MODES]


def test_without_cross_the_host_defaults_to_this_machine() -> None:
    rows = build_matrix(modes=["test"], include_cross=False)["include"]

    assert [r["target"] for r in rows] == [host_triple()]


def test_without_cross_and_no_host_target_requested_is_an_error() -> None:
    with pytest.raises(MatrixError, match=r"this host's \(x86_64-pc-windows-msvc\)"):
        build_matrix(
            modes=["test"],
            targets=["aarch64-apple-darwin"],
            include_cross=False,
            host="x86_64-pc-windows-msvc",
        )


def test_a_matrix_over_githubs_job_limit_is_refused() -> None:
    modes = [f"m{i}" for i in range(MAX_JOBS // len(TARGETS) + 1)]

    with pytest.raises(MatrixError, match=f"at most {MAX_JOBS}"):
        build_matrix(modes=modes)


def assert_valid_actions_matrix(matrix: object) -> None:
    """What `strategy.matrix: ${{ fromJSON(...) }}` accepts and what the workflow reads."""
    assert isinstance(matrix, dict)
    assert list(matrix) == ["include"]
    rows = matrix["include"]
    assert isinstance(rows, list)
    assert 0 < len(rows) <= MAX_JOBS
    for row in rows:
        assert isinstance(row, dict)
        assert set(row) == KEYS
        # `matrix.<key>` needs identifier-like keys; values must be scalars.
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) for key in row)
        assert all(isinstance(v, str) and v and "\n" not in v for v in row.values())
    combos = [(r["mode"], r["target"]) for r in rows]
    assert len(set(combos)) == len(combos)


def test_json_output_is_one_line_that_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    code = matrix_main(["--modes", "production", "development", "--json"], manifest_modes=MODES)

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.endswith("\n")
    assert out.count("\n") == 1
    matrix = json.loads(out)
    assert out == json.dumps(matrix, separators=(",", ":")) + "\n"  # compact
    assert matrix == build_matrix(modes=["production", "development"])
    assert_valid_actions_matrix(matrix)


def test_pretty_output_is_the_same_matrix_indented(capsys: pytest.CaptureFixture[str]) -> None:
    code = matrix_main(["--pretty", "--targets", "x86_64-unknown-linux-gnu"], manifest_modes=MODES)

    out, _ = capsys.readouterr()
    assert code == 0
    assert out.count("\n") > 10
    assert json.loads(out) == build_matrix(modes=MODES, targets=["x86_64-unknown-linux-gnu"])


def test_modes_default_to_the_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert matrix_main([], manifest_modes=["staging"]) == 0

    rows = json.loads(capsys.readouterr().out)["include"]
    assert {r["mode"] for r in rows} == {"staging"}
    assert len(rows) == len(TARGETS)


def test_cli_unknown_mode_is_one_message_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = matrix_main(["--modes", "release"], manifest_modes=MODES)

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("error: unknown mode(s) 'release'")
    assert "fix: use modes from development, production, test" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["--bogus"], ["--json", "--pretty"], ["--modes"], ["--targets"]],
)
def test_cli_bad_arguments_are_user_errors_not_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert matrix_main(argv, manifest_modes=MODES) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: buildlib matrix:")
    assert "usage: buildlib matrix" in err


def test_render_pretty_and_compact_hold_the_same_data() -> None:
    matrix = build_matrix(modes=["test"], targets=["aarch64-apple-darwin"])

    assert json.loads(render(matrix, pretty=True)) == json.loads(render(matrix, pretty=False))
    assert "\n" not in render(matrix, pretty=False)


def test_matrix_main_in_a_real_process_writes_only_json_to_stdout() -> None:
    snippet = (
        "import sys; from buildlib.integrations.ci_matrix import matrix_main; "
        "sys.exit(matrix_main(sys.argv[1:], manifest_modes=['development', 'production']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", snippet, "--modes", "production", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )

    assert proc.returncode == 0, proc.stderr
    assert_valid_actions_matrix(json.loads(proc.stdout))
    # The workflow does `echo "matrix=$(...)" >> $GITHUB_OUTPUT`: one line, no trailing junk.
    assert len(proc.stdout.splitlines()) == 1


def test_shard_outputs_with_nothing_to_build_keep_the_verify_jobs_artifact_name() -> None:
    from buildlib.integrations.ci_matrix import MatrixEntry, shard_outputs

    entry = MatrixEntry(mode="production", target=TARGETS["x86_64-unknown-linux-gnu"])

    outputs = shard_outputs(None, entry, waves=2)  # `--affected` found nothing

    assert (outputs["sharded"], outputs["waves"]) == ("true", "0")
    assert outputs["wave1"] == outputs["wave2"] == {"include": [{"id": "unused"}]}
    (final,) = outputs["verify"]["include"]
    assert (final["id"], final["wave"], final["steps"]) == ("verify", "1", "")
    assert final["artifact_name"] == "build-production-x86_64-unknown-linux-gnu-verify"
    assert KEYS <= set(final)
