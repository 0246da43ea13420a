"""`nox -s tests` runs the suite with `-p tests.no_skips`: a skipped test fails the run,
naming the skip's reason and the way out, unless `--allow-missing-tools` (issue 13 item 16).
Each case runs a real pytest on a small test module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import ROOT

SKIPPING = textwrap.dedent("""
    import shutil
    import pytest

    def test_runs():
        assert True

    def test_needs_a_tool():
        if shutil.which("no-such-tool-here") is None:
            pytest.skip("no-such-tool-here is not installed: apt-get install no-such-tool")

    @pytest.mark.xfail(reason="a known bug", strict=False)
    def test_known_bug():
        assert False
""")

MODULE_SKIP = textwrap.dedent("""
    import pytest

    pytest.importorskip("no_such_module_here")

    def test_never_collected():
        assert True
""")


def pytest_run(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.no_skips",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_sample.py",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_with_its_reason_and_the_way_out(tmp_path: Path) -> None:
    done = pytest_run(tmp_path, SKIPPING)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed, 1 xfailed" in done.stdout, done.stdout
    assert "no-such-tool-here is not installed: apt-get install no-such-tool" in done.stdout
    assert "-- --allow-missing-tools" in done.stdout


def test_allow_missing_tools_lets_it_skip(tmp_path: Path) -> None:
    done = pytest_run(tmp_path, SKIPPING, "--allow-missing-tools")
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in done.stdout, done.stdout


def test_a_module_skipped_at_import_fails_too(tmp_path: Path) -> None:
    done = pytest_run(tmp_path, MODULE_SKIP)
    assert done.returncode != 0, done.stdout
    assert "no_such_module_here" in done.stdout, done.stdout
    allowed = pytest_run(tmp_path, MODULE_SKIP, "--allow-missing-tools")
    assert "1 skipped" in allowed.stdout, allowed.stdout
    assert allowed.returncode == 5, allowed.stdout  # pytest's "no tests ran", not a failure
