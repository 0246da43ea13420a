"""ProcessTable's two ways of starting a step behave alike: posix_spawn in the engine's
own directory, Popen elsewhere. Real processes throughout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from buildlib.run.process import Process, ProcessTable, SpawnedProcess, encode_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX here")

SH = shutil.which("sh") or "/bin/sh"


def run(table: ProcessTable, cwd: Path, script: str, log: Path) -> tuple[Process, int]:
    with log.open("wb") as out:
        proc = table.spawn(
            [SH, "-c", script], cwd=cwd, env=encode_env(dict(os.environ)), stdout=out
        )
        try:
            return proc, proc.wait()
        finally:
            table.release(proc)


@pytest.mark.parametrize("here", [True, False], ids=["posix_spawn", "popen"])
def test_exit_codes_output_groups_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, here: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    cwd = tmp_path if here else tmp_path / "sub"
    cwd.mkdir(exist_ok=True)
    table = ProcessTable(grace=1.0)
    try:
        proc, code = run(
            table,
            cwd,
            "echo out; echo err >&2; pwd; ps -o pgid= -p $$; read line || echo stdin-empty; exit 3",
            tmp_path / "log",
        )
        assert isinstance(proc, SpawnedProcess) is here
        assert code == 3
        lines = (tmp_path / "log").read_text().split()
        assert lines[:3] == ["out", "err", str(cwd)]
        assert int(lines[3]) == proc.pid  # its own process group
        assert lines[4] == "stdin-empty"
        _, killed = run(table, cwd, "kill -TERM $$", tmp_path / "log2")
        assert killed == -signal.SIGTERM  # as Popen reports a signal
    finally:
        table.close()


def test_stop_all_ends_a_spawned_group_and_wait_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = ProcessTable(grace=0.5)
    with (tmp_path / "log").open("wb") as out:
        proc = table.spawn(
            [SH, "-c", "sleep 30 & sleep 30; wait"],
            cwd=tmp_path,
            env=encode_env(dict(os.environ)),
            stdout=out,
        )
    assert isinstance(proc, SpawnedProcess)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.05)
    started = time.monotonic()
    assert table.stop_all() == [proc.pid]
    assert proc.returncode is not None and proc.returncode < 0
    assert time.monotonic() - started < 5
    assert wait_for(lambda: not live_members(proc.pid)), "the background sleep outlived it"
    table.release(proc)
    table.close()


def live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies (an orphaned zombie waits for init)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
