"""detect_tool_versions with real tiny tools: shell scripts that count how often they run."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildlib.core.errors import UserError
from buildlib.incremental.toolversions import ToolError, detect_tool_versions

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the tools are POSIX shell scripts")


def make_tool(path: Path, body: str) -> Path:
    """An executable sh script; `$RUNS` is a file it appends one line to per run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def counting_tool(path: Path, version: str) -> Path:
    return make_tool(
        path,
        f"""\
        echo run >> "{path}.runs"
        echo "{path.name} {version}"
        """,
    )


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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
            "npm": "npm-cli.js 10.0"
        }
    assert runs(script) == 1


def test_a_compiler_chosen_through_alternatives_links_is_cached_by_the_file_that_runs(
    tmp_path: Path,
) -> None:
    """Debian's cc -> /etc/alternatives/cc -> gcc -> gcc-12 -> x86_64-linux-gnu-gcc-12:
    the links after the alternatives entry name the program that runs, so its version is
    cached (a no-op build ran `cc --version` every time). A program reached under
    another name may dispatch on PATH and always runs: cc -> ccache, and gcc ->
    bin/wrap -> ../Cellar/wrap/4.9/bin/wrap (Homebrew's layout, where a link on the way
    bears the dispatcher's own name)."""
    sh = shutil.which("sh")
    assert sh is not None

    def binary(path: Path) -> Path:  # a real executable file, not a script
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(sh), path)
        return path

    usr = tmp_path / "usr" / "bin"
    binary(usr / "x86_64-linux-gnu-fake-12")
    (usr / "fake-12").symlink_to("x86_64-linux-gnu-fake-12")
    (usr / "fake").symlink_to("fake-12")
    alternatives = tmp_path / "etc" / "alternatives"
    alternatives.mkdir(parents=True)
    (alternatives / "cc").symlink_to("../../usr/bin/fake")  # relative, through ..
    (usr / "cc").symlink_to(alternatives / "cc")
    other = tmp_path / "other"
    (other / "cc").parent.mkdir()
    (other / "cc").symlink_to(binary(other / "ccache"))
    brew = tmp_path / "brew"
    binary(brew / "Cellar" / "wrap" / "4.9" / "bin" / "wrap")
    (brew / "bin").mkdir()
    (brew / "bin" / "wrap").symlink_to("../Cellar/wrap/4.9/bin/wrap")
    (brew / "gcc").symlink_to(brew / "bin" / "wrap")
    tools = {"cc": usr / "cc", "ccache-as-cc": other / "cc", "brew-wrapper": brew / "gcc"}
    logs = {name: tmp_path / f"{name}.runs" for name in tools}
    commands = {
        name: [str(path), "-c", f"echo run >> {logs[name]}; echo {name} 1"]
        for name, path in tools.items()
    }
    for _ in range(2):
        assert detect_tool_versions(commands, commands, tmp_path / "t.json") == {
            name: f"{name} 1" for name in tools
        }
    runs_of = {name: len(log.read_text().splitlines()) for name, log in logs.items()}
    assert runs_of == {"cc": 1, "ccache-as-cc": 2, "brew-wrapper": 2}


def test_multicall_binaries_and_version_manager_shims_always_run(tmp_path: Path) -> None:
    """busybox-like binaries and pyenv-style shims: same file, changing versions."""
    sh = shutil.which("sh")
    assert sh is not None
    multicall = tmp_path / "multi" / "busybox"
    multicall.parent.mkdir()
    shutil.copy(os.path.realpath(sh), multicall)  # a real binary, named unlike its link
    proxy = tmp_path / "bin" / "cargo"
    proxy.parent.mkdir()
    proxy.symlink_to(multicall)
    log = tmp_path / "proxy.runs"
    shim = counting_tool(tmp_path / "pyenv" / "shims" / "python9", "9.0")
    hardlinked = counting_tool(tmp_path / "hard" / "tool", "3")
    os.link(hardlinked, tmp_path / "hard" / "other-name")
    commands = {
        "cargo": [str(proxy), "-c", f"echo run >> {log}; echo cargo 1.0"],
        "python": [str(shim)],
        "hard": [str(hardlinked)],
    }
    for _ in range(2):
        assert detect_tool_versions(commands, commands, tmp_path / "t.json") == {
            "cargo": "cargo 1.0",
            "python": "python9 9.0",
            "hard": "tool 3",
        }
    assert len(log.read_text().splitlines()) == 2
    assert (runs(shim), runs(hardlinked)) == (2, 2)


# A fake rustup: picks a toolchain the way rustup documents it (RUSTUP_TOOLCHAIN, then
# directory overrides and rust-toolchain{,.toml} walking up from the physical cwd, then
# settings.toml's default)
# and runs that toolchain's copy of the name it was called by. Each run adds a line to
# `rustup.runs` beside it.
FAKE_RUSTUP = """\
    echo run >> "$(dirname "$0")/rustup.runs"
    called=$(basename "$0")
    home=${RUSTUP_HOME:-$HOME/.rustup}
    tc=$RUSTUP_TOOLCHAIN
    d=$(pwd -P)
    while [ -z "$tc" ]; do
      tc=$(sed -n "s|^\\"$d\\" *= *\\"\\(.*\\)\\"|\\1|p" "$home/settings.toml")
      [ -n "$tc" ] && break
      for f in "$d/rust-toolchain.toml" "$d/rust-toolchain"; do
        [ -f "$f" ] && tc=$(sed -n 's/^\\(channel\\|path\\) *= *"\\(.*\\)"/\\2/p; t; /^[a-z0-9.-][a-z0-9.-]*$/p' "$f")
      done
      [ "$d" = / ] && break
      d=$(dirname "$d")
    done
    [ -n "$tc" ] || tc=$(sed -n 's/^default_toolchain *= *"\\(.*\\)"/\\1/p' "$home/settings.toml")
    case $tc in /*) exec "$tc/bin/$called" "$@" ;; esac
    exec "$home/toolchains/$tc/bin/$called" "$@"
    """


def install_toolchain(home: Path, name: str, version: str) -> None:
    for tool in ("cargo", "rustc"):
        make_tool(home / "toolchains" / name / "bin" / tool, f'echo "{tool} {version}"\n')


def set_default(home: Path, name: str, overrides: dict[Path, str] | None = None) -> None:
    """Write settings.toml as rustup does: the default and the directory overrides."""
    lines = [
        f'"{directory}" = "{toolchain}"\n' for directory, toolchain in (overrides or {}).items()
    ]
    (home / "settings.toml").write_text(
        f'version = "12"\ndefault_toolchain = "{name}"\nprofile = "default"\n\n[overrides]\n'
        + "".join(lines)
    )


@pytest.fixture
def rustup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """~/.cargo/bin with rustup and its cargo/rustc symlinks on PATH, and ~/.rustup with
    `stable` (1.80.0, the default) installed. HOME is tmp_path; returns RUSTUP_HOME."""
    bindir = tmp_path / ".cargo" / "bin"
    make_tool(bindir / "rustup", FAKE_RUSTUP)
    for proxy in ("cargo", "rustc"):
        (bindir / proxy).symlink_to("rustup")
    home = tmp_path / ".rustup"
    install_toolchain(home, "stable", "1.80.0")
    set_default(home, "stable")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    for name in ("RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


RUST = {"cargo": ["cargo", "-V"], "rustc": ["rustc", "-vV"]}


def rustup_runs(home: Path) -> int:
    return runs(home.parent / ".cargo" / "bin" / "rustup")


def test_rustup_proxies_are_cached_until_the_toolchain_selection_changes(
    rustup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    cwd = workspace / "crates"
    cwd.mkdir(parents=True)
    cache = tmp_path / "tools.json"
    seen = 0

    def detect() -> dict[str, str]:
        return detect_tool_versions(RUST, RUST, cache, cwd=cwd)

    def ran() -> int:
        nonlocal seen
        before, seen = seen, rustup_runs(rustup)
        return seen - before

    assert detect() == {"cargo": "cargo 1.80.0", "rustc": "rustc 1.80.0"}
    assert ran() == 2
    assert detect() == {"cargo": "cargo 1.80.0", "rustc": "rustc 1.80.0"}
    assert ran() == 0  # nothing changed: no process

    install_toolchain(rustup, "nightly", "1.90.0-nightly")  # rustup toolchain install
    assert detect() == {"cargo": "cargo 1.80.0", "rustc": "rustc 1.80.0"}
    assert ran() == 2
    set_default(rustup, "nightly")  # rustup default nightly
    assert detect() == {"cargo": "cargo 1.90.0-nightly", "rustc": "rustc 1.90.0-nightly"}
    assert ran() == 2
    set_default(rustup, "stable")
    assert detect()["rustc"] == "rustc 1.80.0"
    assert ran() == 2

    # rustup update: the toolchain's binary is replaced by a new file
    new = make_tool(tmp_path / "new-rustc", 'echo "rustc 1.81.0"\n')
    new.replace(rustup / "toolchains" / "stable" / "bin" / "rustc")
    assert detect() == {"cargo": "cargo 1.80.0", "rustc": "rustc 1.81.0"}
    assert ran() == 1  # rustc only: stable's cargo is the same file
    assert detect()["rustc"] == "rustc 1.81.0"
    assert ran() == 0

    (workspace / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "nightly"\n')
    assert detect()["rustc"] == "rustc 1.90.0-nightly"  # found in a parent of cwd
    assert ran() == 2
    (cwd / "rust-toolchain").write_text("stable\n")  # the nearer file wins
    assert detect()["rustc"] == "rustc 1.81.0"
    assert ran() == 2
    assert detect()["rustc"] == "rustc 1.81.0"
    assert ran() == 0

    monkeypatch.setenv("RUSTUP_TOOLCHAIN", "nightly")  # beats the toolchain files
    assert detect()["cargo"] == "cargo 1.90.0-nightly"
    assert ran() == 2
    assert detect()["cargo"] == "cargo 1.90.0-nightly"
    assert ran() == 0

    shutil.rmtree(rustup / "toolchains" / "nightly")  # rustup toolchain uninstall
    with pytest.raises(ToolError, match="tool 'cargo'"):
        detect()
    seen = rustup_runs(rustup)
    monkeypatch.delenv("RUSTUP_TOOLCHAIN")
    assert detect()["cargo"] == "cargo 1.80.0"
    assert ran() == 2


def test_rustup_home_and_the_directory_are_part_of_the_stamp(
    rustup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "tools.json"
    plain, overridden = tmp_path / "plain", tmp_path / "overridden"
    plain.mkdir()
    overridden.mkdir()
    install_toolchain(rustup, "beta", "1.81.0-beta.3")
    set_default(rustup, "stable", overrides={overridden: "beta"})  # rustup override set beta
    assert detect_tool_versions(RUST, ["rustc"], cache, cwd=plain) == {"rustc": "rustc 1.80.0"}
    assert detect_tool_versions(RUST, ["rustc"], cache, cwd=overridden) == {
        "rustc": "rustc 1.81.0-beta.3"
    }
    assert rustup_runs(rustup) == 2
    monkeypatch.chdir(overridden)  # cwd=None means the current directory
    assert detect_tool_versions(RUST, ["rustc"], cache) == {"rustc": "rustc 1.81.0-beta.3"}
    assert rustup_runs(rustup) == 2

    other = tmp_path / "other-rustup"
    install_toolchain(other, "beta", "1.82.0-beta.1")
    set_default(other, "beta")
    monkeypatch.setenv("RUSTUP_HOME", str(other))
    assert detect_tool_versions(RUST, ["rustc"], cache, cwd=plain) == {
        "rustc": "rustc 1.82.0-beta.1"
    }
    assert rustup_runs(rustup) == 3


def test_rustup_proxy_hard_linked_beside_rustup_is_cached(rustup: Path, tmp_path: Path) -> None:
    bindir = rustup.parent / ".cargo" / "bin"
    (bindir / "rustc").unlink()
    os.link(bindir / "rustup", bindir / "rustc")
    cache = tmp_path / "tools.json"
    for _ in range(2):
        assert detect_tool_versions(RUST, ["rustc"], cache) == {"rustc": "rustc 1.80.0"}
    assert rustup_runs(rustup) == 1
    set_default(rustup, "nightly")
    install_toolchain(rustup, "nightly", "1.90.0-nightly")
    assert detect_tool_versions(RUST, ["rustc"], cache) == {"rustc": "rustc 1.90.0-nightly"}


@pytest.mark.parametrize("where", ["env", "file", "settings"])
def test_rustup_path_toolchains_are_never_cached(
    rustup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A toolchain outside RUSTUP_HOME is not watched, so the proxy runs every time."""
    custom = tmp_path / "custom"
    install_toolchain(custom, "dev", "1.99.0-dev")
    path = custom / "toolchains" / "dev"
    cwd = tmp_path / "ws"
    cwd.mkdir()
    if where == "env":
        monkeypatch.setenv("RUSTUP_TOOLCHAIN", str(path))
    elif where == "file":
        (cwd / "rust-toolchain.toml").write_text(f'[toolchain]\npath = "{path}"\n')
    else:
        set_default(rustup, str(path))
    for _ in range(2):
        assert detect_tool_versions(RUST, ["rustc"], tmp_path / "t.json", cwd=cwd) == {
            "rustc": "rustc 1.99.0-dev"
        }
    assert rustup_runs(rustup) == 2


def test_tools_run_in_parallel(tmp_path: Path) -> None:
    """Each tool waits for the other's marker: run one after the other, both time out."""
    a, b = tmp_path / "a.started", tmp_path / "b.started"
    wait = "i=0; while [ ! -e {other} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"
    left = make_tool(
        tmp_path / "left", f"touch {a}; {wait.format(other=b)}; [ -e {b} ] && echo left-ok\n"
    )
    right = make_tool(
        tmp_path / "right", f"touch {b}; {wait.format(other=a)}; [ -e {a} ] && echo right-ok\n"
    )
    versions = detect_tool_versions(
        {"left": [str(left)], "right": [str(right)]},
        ["left", "right"],
        tmp_path / "t.json",
        timeout=15,
    )
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
        detect_tool_versions(
            {"node": ["buildlib-no-such-tool-xyz", "--version"]}, ["node"], tmp_path / "t.json"
        )
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


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        '{"version": 1, "entries": []}',
        '{"version": 2, "entries": {"k": {"stamp": 1}}}',
        '{"version": 1, "entries": {}}',
        '{"version": 99, "entries": {}}',
    ],
)
def test_corrupt_cache_is_ignored(tmp_path: Path, content: str) -> None:
    cache = tmp_path / "t.json"
    cache.write_text(content)
    tool = counting_tool(tmp_path / "tool", "1")
    assert detect_tool_versions({"tool": [str(tool)]}, ["tool"], cache) == {"tool": "tool 1"}
    assert detect_tool_versions({"tool": [str(tool)]}, ["tool"], cache) == {"tool": "tool 1"}
    assert runs(tool) == 1


def test_python_reports_its_version(tmp_path: Path) -> None:
    versions = detect_tool_versions(
        {"python": [sys.executable, "--version"]}, ["python"], tmp_path / "t.json"
    )
    assert versions["python"] == f"Python {sys.version.split()[0]}"
