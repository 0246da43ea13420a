"""Bad input gets one clear message naming what to fix, never a traceback (issue 13, items
11, 12, 14 and 15), through the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MODES, PY_TOML, ROOT, write_manifest


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_"))}
    full.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_clear_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The build failed with exit 1, one `error:` message holding every needle, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert text.count("error:") == 1, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


STEP = """
[[step]]
name = "{name}"
command = [{py}, "-c", "print('ran')"]
{extra}
"""


def step(name: str, extra: str = "") -> str:
    return STEP.format(name=name, py=PY_TOML, extra=textwrap.dedent(extra))


# -- item 14: the manifest ------------------------------------------------------------------


def test_a_cwd_that_is_a_file_is_a_manifest_error_naming_step_and_key(tmp_path: Path) -> None:
    write_manifest(tmp_path, step("gen", 'cwd = "notes.txt"'))
    (tmp_path / "notes.txt").write_text("a file\n")
    text = one_clear_error(
        run(tmp_path, "build", "--plain"),
        "build.toml",
        "step 'gen'",
        "key 'cwd'",
        "'notes.txt' is a file, not a directory",
        "fix:",
    )
    assert not (tmp_path / ".buildlib" / "logs").exists(), text  # nothing started


def test_a_cwd_below_a_file_or_missing_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file\n")
    write_manifest(tmp_path, step("gen", 'cwd = "notes.txt/sub"'))
    one_clear_error(run(tmp_path, "build"), "step 'gen'", "key 'cwd'", "below a file")
    write_manifest(tmp_path, step("gen", 'cwd = "nowhere"'))
    one_clear_error(
        run(tmp_path, "build"),
        "step 'gen'",
        "key 'cwd'",
        "'nowhere' does not exist",
        "declare it among the outputs",
    )


def test_a_cwd_another_step_makes_is_accepted(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        textwrap.dedent("""
        [[step]]
        name = "make-dir"
        command = ["sh", "-c", "mkdir -p gen/sub && touch gen/sub/keep"]
        outputs = ["gen/**"]
    """)
        + step(
            "use-dir",
            """
        cwd = "gen/sub"
        depends_on = ["make-dir"]
    """,
        ),
    )
    proc = run(tmp_path, "build", "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('env = { "A=B" = "1" }', "key 'env.A=B'"),
        ('env_inputs = ["TOKEN=x"]', "key 'env_inputs'"),
        ('[step.mode.production]\nenv = { "X=1" = "y" }', "key 'mode.production.env.X=1'"),
    ],
)
def test_an_environment_name_with_equals_is_a_manifest_error(
    tmp_path: Path, extra: str, key: str
) -> None:
    write_manifest(tmp_path, step("gen", extra))
    one_clear_error(
        run(tmp_path, "build", "--plain"), "step 'gen'", key, "contains '='", "fix: rename it"
    )


def test_a_mode_environment_name_with_equals_names_the_mode(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text(
        '[modes.development]\nenv = { "NODE_ENV=dev" = "1" }\n' + step("gen")
    )
    one_clear_error(run(tmp_path, "build"), "key 'modes.development.env.NODE_ENV=dev'")


def test_two_steps_declaring_the_same_output_name_both(tmp_path: Path) -> None:
    write_manifest(
        tmp_path, step("first", 'outputs = ["out/app"]') + step("second", 'outputs = ["out/app"]')
    )
    one_clear_error(
        run(tmp_path, "build", "--plain"),
        "'first'",
        "'second'",
        "overlapping outputs",
        "key 'outputs'",
        "fix:",
    )
    # A directory and a file inside it overlap as well, and a dry run refuses it too.
    write_manifest(
        tmp_path, step("first", 'outputs = ["out"]') + step("second", 'outputs = ["out/app"]')
    )
    one_clear_error(
        run(tmp_path, "build", "--dry-run"), "'first'", "'second'", "overlapping outputs"
    )


# -- item 14: a full .buildlib ----------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the kernel itself answers ENOSPC."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run the tests as root, as CI does")
    mount = tmp_path / "ws" / ".buildlib"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_build_directory_names_the_path_and_the_fix(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    root = tiny_tmpfs.parent
    write_manifest(root, step("gen"))
    fd = os.open(tiny_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096):  # to the last block
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = run(root, "build", "--plain")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "No space left on device" in text and str(tiny_tmpfs) in text, text
    assert "fix:" in text, text


# -- item 11: options before the command ----------------------------------------------------


def test_options_before_the_command_apply_to_it(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    write_manifest(workspace, step("gen"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = str(workspace / "build.toml")
    proc = run(elsewhere, "--manifest", manifest, "build", "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unknown step" not in proc.stdout + proc.stderr
    assert "build development for" in proc.stdout
    proc = run(elsewhere, "--manifest", manifest, "--mode", "production", "plan")
    assert proc.returncode == 0, proc.stderr
    assert '"mode": "production"' in proc.stdout


# -- item 12: a reader that goes away -------------------------------------------------------


@pytest.mark.parametrize("args", [("build", "--dry-run"), ("plan",), ("build", "--graph")])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    """`buildlib plan | head -1`: more output than a pipe holds, and a reader that leaves."""
    write_manifest(tmp_path, "".join(step(f"s{i}") for i in range(2000)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m buildlib {' '.join(args)} | head -1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stderr == "", proc.stderr  # no traceback, no "Exception ignored"
    # As `git log | head` under pipefail; output that fits in the pipe's buffer may all be
    # written before the reader leaves (the graph), and then the command simply succeeded.
    assert proc.returncode == 141 or (proc.returncode == 0 and args[-1] == "--graph")
    assert len(proc.stdout.splitlines()) == 1


# -- item 15: "did you mean" ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles", "code"),
    [
        (("build", "--targt", "foo"), ("unknown option '--targt'", "did you mean '--target'?"), 2),
        (("verify", "--mde", "x"), ("unknown option '--mde'", "did you mean '--mode'?"), 2),
        (("build", "--mode", "prod"), ("unknown mode 'prod'", "did you mean 'production'?"), 1),
        (("build", "--mode", "prodution"), ("did you mean 'production'?",), 1),
        (
            ("build", "--target", "x86_64-linux"),
            ("unknown target triple 'x86_64-linux'", "did you mean 'x86_64-unknown-linux-gnu'?"),
            1,
        ),
        (("build", "gne"), ("unknown step 'gne'", "did you mean 'gen'?"), 1),
    ],
)
def test_near_misses_get_did_you_mean(
    tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...], code: int
) -> None:
    write_manifest(tmp_path, step("gen"))
    proc = run(tmp_path, *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_an_unknown_default_mode_from_the_environment_says_where_it_came_from(
    tmp_path: Path,
) -> None:
    write_manifest(tmp_path, step("gen"))
    proc = run(tmp_path, "build", BUILDLIB_MODE="prod")
    one_clear_error(proc, "unknown mode 'prod' (from $BUILDLIB_MODE)", "did you mean")


def test_modes_are_the_helpers_three() -> None:
    assert "[modes.production]" in MODES  # the near-miss tests above rely on it
