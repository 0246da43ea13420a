"""detect_tool_versions with real tiny tools: shell scripts that count how often they run."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildlib.errors import UserError
from buildlib.toolversions import ToolError, detect_tool_versions

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the tools are POSIX shell scripts")


def make_tool(path: Path, body: str) -> Path:
    """An executable sh script; `$RUNS` is a file it appends one line to per run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def counting_tool(path: Path, version: str) -> Path:
    return make_tool(path, f"""\
        echo run >> "{path}.runs"
        echo "{path.name} {version}"
        """)


def runs(tool: Path) -> int:
    log = Path(f"{tool}.runs")
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_versions_are_cached_until_the_tool_changes(tmp_path: Path) -> None:
    tool = counting_tool(tmp_path / "bin" / "mytool", "1.0")
    cache = tmp_path / "state" / "tools.json"
    commands = {"mytool": [str(tool), "--version"]}
    assert detect_tool_versions(commands, ["mytool"], cache) == {"mytool": "mytool 1.0"}
    assert detect_tool_versions(commands, ["mytool"], cache) == {"mytool": "mytool 1.0"}
    assert runs(tool) == 1
    counting_tool(tool, "2.0")  # edited in place: size and ctime change
    assert detect_tool_versions(commands, ["mytool"], cache) == {"mytool": "mytool 2.0"}
    assert runs(tool) == 2
    assert [p.name for p in cache.parent.iterdir()] == ["tools.json"]  # no temp file left


def test_tools_are_found_on_path_and_only_requested_ones_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    one = counting_tool(bindir / "one", "1")
    two = counting_tool(bindir / "two", "2")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    commands = {"one": ["one", "-V"], "two": ["two"]}
    assert detect_tool_versions(commands, ["one", "one"], tmp_path / "t.json") == {"one": "one 1"}
    assert (runs(one), runs(two)) == (1, 0)
    assert detect_tool_versions(commands, [], tmp_path / "t.json") == {}


def test_script_reached_through_a_link_is_cached_by_its_target(tmp_path: Path) -> None:
    """The npm case: /usr/bin/npm -> .../npm/bin/npm-cli.js."""
    script = counting_tool(tmp_path / "lib" / "npm-cli.js", "10.0")
    link = tmp_path / "bin" / "npm"
    link.parent.mkdir()
    link.symlink_to(script)
    commands = {"npm": [str(link), "--version"]}
    for _ in range(2):
        assert detect_tool_versions(commands, ["npm"], tmp_path / "t.json") == {
            "npm": "npm-cli.js 10.0"}
    assert runs(script) == 1


def test_multicall_binaries_and_version_manager_shims_always_run(tmp_path: Path) -> None:
    """rustup's cargo/rustc proxies and pyenv-style shims: same file, changing versions."""
    sh = shutil.which("sh")
    assert sh is not None
    multicall = tmp_path / "multi" / "rustup"
    multicall.parent.mkdir()
    shutil.copy(os.path.realpath(sh), multicall)  # a real binary, named unlike its link
    proxy = tmp_path / "bin" / "cargo"
    proxy.parent.mkdir()
    proxy.symlink_to(multicall)
    log = tmp_path / "proxy.runs"
    shim = counting_tool(tmp_path / "pyenv" / "shims" / "python9", "9.0")
    hardlinked = counting_tool(tmp_path / "hard" / "tool", "3")
    os.link(hardlinked, tmp_path / "hard" / "other-name")
    commands = {"cargo": [str(proxy), "-c", f"echo run >> {log}; echo cargo 1.0"],
                "python": [str(shim)], "hard": [str(hardlinked)]}
    for _ in range(2):
        assert detect_tool_versions(commands, commands, tmp_path / "t.json") == {
            "cargo": "cargo 1.0", "python": "python9 9.0", "hard": "tool 3"}
    assert len(log.read_text().splitlines()) == 2
    assert (runs(shim), runs(hardlinked)) == (2, 2)


def test_tools_run_in_parallel(tmp_path: Path) -> None:
    """Each tool waits for the other's marker: run one after the other, both time out."""
    a, b = tmp_path / "a.started", tmp_path / "b.started"
    wait = "i=0; while [ ! -e {other} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"
    left = make_tool(tmp_path / "left", f"touch {a}; {wait.format(other=b)}; "
                     f"[ -e {b} ] && echo left-ok\n")
    right = make_tool(tmp_path / "right", f"touch {b}; {wait.format(other=a)}; "
                      f"[ -e {a} ] && echo right-ok\n")
    versions = detect_tool_versions({"left": [str(left)], "right": [str(right)]},
                                    ["left", "right"], tmp_path / "t.json", timeout=15)
    assert versions == {"left": "left-ok", "right": "right-ok"}


def test_version_on_stderr_and_stdin_is_devnull(tmp_path: Path) -> None:
    tool = make_tool(tmp_path / "old", 'read line; echo "old 0.1 stdin=[$line]" >&2\n')
    # Give this process a stdin with data on it: the tool must not inherit it.
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.write(write_end, b"typed by someone\n")
    os.close(write_end)
    os.dup2(read_end, 0)
    try:
        versions = detect_tool_versions({"old": [str(tool)]}, ["old"], tmp_path / "t.json")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read_end)
    assert versions == {"old": "old 0.1 stdin=[]"}


def test_missing_tool_names_the_tool_the_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        detect_tool_versions({"node": ["buildlib-no-such-tool-xyz", "--version"]}, ["node"],
                             tmp_path / "t.json")
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "tool 'node'" in message and "`tools`" in message and "not on PATH" in message
    assert "fix: install node" in message


def test_undeclared_tool_points_at_the_tools_table(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"tool 'zig'.*\[tools\]"):
        detect_tool_versions({}, ["zig"], tmp_path / "t.json")


def test_failing_version_command_shows_exit_code_and_stderr(tmp_path: Path) -> None:
    tool = make_tool(tmp_path / "broken", "echo 'error: license expired' >&2; exit 3\n")
    with pytest.raises(ToolError, match=r"tool 'broken'.*exited with 3: error: license expired"):
        detect_tool_versions({"broken": [str(tool)]}, ["broken"], tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_hanging_tool_times_out_with_its_children(tmp_path: Path) -> None:
    """The grandchild holds the pipes open; killing only the shell would hang the read."""
    tool = make_tool(tmp_path / "hang", "sleep 60 & sleep 60\n")
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"tool 'hang'.*did not finish within 0.5 s"):
        detect_tool_versions({"hang": [str(tool)]}, ["hang"], tmp_path / "t.json", timeout=0.5)
    assert time.monotonic() - start < 30  # the 60 s sleeps were killed, not waited for


@pytest.mark.parametrize("content", ["", "{", "[]", '{"version": 1, "entries": []}',
                                     '{"version": 1, "entries": {"k": {"stamp": "x"}}}',
                                     '{"version": 99, "entries": {}}'])
def test_corrupt_cache_is_ignored(tmp_path: Path, content: str) -> None:
    cache = tmp_path / "t.json"
    cache.write_text(content)
    tool = counting_tool(tmp_path / "tool", "1")
    assert detect_tool_versions({"tool": [str(tool)]}, ["tool"], cache) == {"tool": "tool 1"}
    assert detect_tool_versions({"tool": [str(tool)]}, ["tool"], cache) == {"tool": "tool 1"}
    assert runs(tool) == 1


def test_python_reports_its_version(tmp_path: Path) -> None:
    versions = detect_tool_versions({"python": [sys.executable, "--version"]}, ["python"],
                                    tmp_path / "t.json")
    assert versions["python"] == f"Python {sys.version.split()[0]}"
