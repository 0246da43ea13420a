"""The nox sessions (issue 13 items 1, 2, 3, 13): `nox -l` fits one screen, the step x mode x
target variants exist when asked for, `nox -s rust-build` builds one variant, `nox -s build`
builds the default mode, no "uv binary not found", and a missing Python 3.12 is one clear
message and a failure, never a traceback or a "skipped" that exits 0. Real nox processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers import PY, ROOT, sleep_step, write_manifest

from buildlib.integrations.nox_sessions import Requested, requested_sessions
from buildlib.workspace.targets import TARGETS, host_triple

HOST = host_triple()


def nox_argv() -> list[str]:
    """nox, run by the interpreter it is installed in (not through a pyenv shim, so PATH
    can be narrowed without losing it)."""
    found = shutil.which("nox")
    if found is None:
        pytest.fail("nox is not on PATH: pip install nox")
    if shutil.which("pyenv") and "/shims/" in found:
        found = subprocess.run(
            ["pyenv", "which", "nox"], capture_output=True, text=True, check=True
        ).stdout.strip()
    first = Path(found).read_text(errors="replace").splitlines()[0]
    python = first.removeprefix("#!").strip().split()[0] if first.startswith("#!") else ""
    return [python, found] if python and Path(python).exists() else [found]


def nox(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "BUILDLIB_", "NOX")) or k == "BUILDLIB_CACHE_DIR"
    }
    env.update(extra)
    return subprocess.run(
        [*nox_argv(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# -- nox's command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["nox", "-l"], {}, Requested()),
        (["nox", "-s", "rust-build"], {}, Requested(names=("rust-build",))),
        (
            ["nox", "-s", "a", "b(mode='x', target='y')", "-v"],
            {},
            Requested(names=("a", "b(mode='x', target='y')")),
        ),
        (
            ["nox", "--session=a", "-sb", "-e", "c", "--sessions", "d"],
            {},
            Requested(names=("a", "b", "c", "d")),
        ),
        (["nox", "-t", "cross", "-l"], {}, Requested(tags=("cross",))),
        (
            ["nox", "--tags=host", "-k", "rust and production"],
            {},
            Requested(tags=("host",), keywords=True),
        ),
        (["nox", "-s", "tests", "--", "-s", "x(mode='m')"], {}, Requested(names=("tests",))),
        (["nox"], {"NOXSESSION": "verify,rust-build"}, Requested(names=("verify", "rust-build"))),
    ],
)
def test_the_sessions_asked_for_are_read_from_nox_s_command_line(
    argv: list[str], environ: dict[str, str], expected: Requested
) -> None:
    assert requested_sessions(argv, environ) == expected


def test_variants_exist_when_named_or_selected_by_a_variant_tag_or_keyword() -> None:
    assert Requested(names=("rust-build(mode='test', target='x')",)).wants_variants_of("rust-build")
    assert not Requested(names=("rust-build",)).wants_variants_of("rust-build")
    assert not Requested(names=("rust-build-extra(a)",)).wants_variants_of("rust-build")
    assert Requested(tags=("cross",)).wants_variants_of("web")
    assert not Requested(tags=("step",)).wants_variants_of("web")
    assert Requested(keywords=True).wants_variants_of("web")


# -- this repository's sessions ----------------------------------------------------------------


def listed(stdout: str) -> list[str]:
    return [
        line[2:].split(" -> ")[0].split(" [")[0]
        for line in stdout.splitlines()
        if line[:2] in ("* ", "- ")
    ]


def test_nox_l_fits_one_screen_of_160_by_45() -> None:
    proc = nox(ROOT, "-l")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 45 - 1, proc.stdout  # and the prompt under it
    assert max(map(len, lines)) <= 160, max(lines, key=len)
    sessions = listed(proc.stdout)
    assert not any("target=" in name for name in sessions), sessions
    for name in (
        "build",
        "build-3.12(mode='production')",
        "verify",
        "clean",
        "metrics",
        "tests",
        "lint",
        "bench",
        "audit",
        "dev",
        "rust-build",
        "svelte-check",
    ):
        assert name in sessions, name
    assert "web-dev" not in sessions  # a service: `nox -s dev` (watch) starts it, no build
    assert "* build -> Build every step of the default mode (development)" in proc.stdout
    assert "uv binary not found" not in proc.stdout + proc.stderr


def test_the_variants_are_listed_by_tag() -> None:
    steps = len(
        [
            n
            for n in listed(nox(ROOT, "-l").stdout)
            if n
            in {
                "rust-check",
                "rust-build",
                "native-install",
                "native-module",
                "web-install",
                "svelte-check",
                "svelte-build",
                "electron-install",
                "electron-build",
            }
        ]
    )
    every = nox(ROOT, "-t", "variants", "-l")
    selected = [line for line in every.stdout.splitlines() if line.startswith("* ")]
    assert len(selected) == steps * 3 * len(TARGETS)  # 9 steps x 3 modes x 6 targets
    cross = nox(ROOT, "-t", "cross", "-l")
    assert sum(line.startswith("* ") for line in cross.stdout.splitlines()) == steps * 3 * (
        len(TARGETS) - 1
    )
    assert f"* rust-build(mode='production', target='{HOST}') [step,variants,host]" in every.stdout


def test_nox_l_on_a_terminal_shows_it_all(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: apt-get install -y tmux")
    name = f"nox-l-{os.getpid()}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "45", "-c", str(ROOT)],
        check=True,
    )
    try:
        command = " ".join(nox_argv()) + " -l"
        subprocess.run(
            ["tmux", "send-keys", "-t", name, f"clear; {command}; echo done-$?", "Enter"],
            check=True,
        )
        screen: list[str] = []
        for _ in range(300):
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
            if "done-0" in screen:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        # The first line of the listing is still on screen: nothing scrolled away.
        assert screen[0].startswith("Sessions for this workspace"), screen[:3]
        assert "done-0" in screen
        assert any(line.startswith("sessions marked with") for line in screen)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)


# -- a workspace's own sessions, built for real ------------------------------------------------


def workspace(tmp_path: Path) -> Path:
    """A workspace whose noxfile registers buildlib's sessions; the engine is this Python
    ($BUILDLIB_ENGINE_PYTHON), so no environment is created."""
    root = tmp_path / "ws"
    write_manifest(
        root,
        sleep_step("first", 0.1) + sleep_step("second", 0.1, deps=["first"]),
        extra='[workspace]\ndefault_mode = "test"\n',
    )
    (root / "noxfile.py").write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        import nox
        from buildlib.integrations.nox_sessions import register

        nox.options.default_venv_backend = "none"
        register(nox, Path(__file__).parent / "build.toml")
        nox.options.sessions = ["build"]
    """)
    )
    return root


def builds(root: Path) -> list[tuple[str, str, list[str]]]:
    """(mode, target, steps) of each build, from the history."""
    lines = (root / ".buildlib" / "history.jsonl").read_text().splitlines()
    return [(e["mode"], e["target"], [s[0] for s in e["steps"]]) for e in map(json.loads, lines)]


ENGINE = {"BUILDLIB_ENGINE_PYTHON": PY, "PYTHONPATH": str(ROOT)}


def test_a_step_session_builds_the_default_mode_for_this_machine(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    proc = nox(root, "-s", "second", **ENGINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert builds(root) == [("test", HOST, ["first", "second"])]  # one variant: test, host
    assert "uv binary not found" not in proc.stdout + proc.stderr
    # A named variant exists and builds that mode; the options reach the engine too.
    proc = nox(root, "-s", f"first(mode='production', target='{HOST}')", **ENGINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert builds(root)[-1] == ("production", HOST, ["first"])
    assert nox(root, "-s", "first", "--", "--mode", "development", **ENGINE).returncode == 0
    assert builds(root)[-1] == ("development", HOST, ["first"])


def test_build_is_the_default_mode_and_build_3_12_every_mode(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    default = nox(root, **ENGINE)  # `nox` alone runs `build`
    assert default.returncode == 0, default.stdout + default.stderr
    assert [b[0] for b in builds(root)] == ["test"]
    assert nox(root, "-s", "build", **ENGINE).returncode == 0
    assert nox(root, "-s", "build-3.12", **ENGINE).returncode == 0
    assert sorted(b[0] for b in builds(root)[2:]) == ["development", "production", "test"]
    # verify after it looks at the mode built last (the default session's `verify`).
    verify = nox(root, "-s", "verify", **ENGINE)
    assert "verify (test, " in verify.stdout + verify.stderr  # build-3.12 built it last


def test_without_python_3_12_one_clear_message_and_a_failure(tmp_path: Path) -> None:
    """A PATH with nox's own Python and the basic tools, but no python3.12 nor pyenv."""
    root = workspace(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "env"):
        if (found := shutil.which(tool)) is not None:
            (bin_dir / tool).symlink_to(found)
    narrow = {"PATH": str(bin_dir)}
    for session in ("build", "rust-build", "verify"):
        proc = nox(root, "-s", session, **narrow)
        text = proc.stdout + proc.stderr
        if session == "rust-build":
            assert proc.returncode != 0 and "Sessions not found" in text  # not a step here
            continue
        assert proc.returncode == 1, text
        assert "Traceback" not in text and "skipped" not in text, text
        assert re.search(
            rf"Session {session} aborted: Python 3\.12 is not on PATH: buildlib's "
            r"sessions run on it\n\s+fix: ",
            text,
        ), text
    # The repository's own `tests` session: the same, where it used to say "skipped" and
    # exit 0.
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "noxfile.py", repo / "noxfile.py")
    shutil.copy(ROOT / "build.toml", repo / "build.toml")
    (repo / "buildlib").symlink_to(ROOT / "buildlib")
    for app_dir in ("web", "electron", "crates"):
        (repo / app_dir).symlink_to(ROOT / app_dir)
    proc = nox(repo, "-s", "tests", **narrow)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "skipped" not in text, text
    assert "Session tests aborted: Python 3.12 is not on PATH" in text


# -- the sessions' own environments ---------------------------------------------------------

MAKE_ENV = textwrap.dedent("""
    import sys
    from pathlib import Path
    from buildlib.integrations.nox_sessions import python_environment
    print(python_environment(Path(sys.argv[1]), "engine"))
""")


def make_env(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [PY, "-c", MAKE_ENV, str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(900)
def test_two_sessions_starting_at_once_share_one_environment(tmp_path: Path) -> None:
    """Each pytest-xdist worker, or two terminals, may start a session in the same
    workspace: one makes the environment while the other waits for its turn. Without the
    turn, the second ran pip in a venv that had no pip yet ("No module named pip")."""
    first, second = make_env(tmp_path), make_env(tmp_path)
    outs = [proc.communicate(timeout=840) for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    python = tmp_path / ".nox" / "engine" / "bin" / "python"
    assert {out.strip() for out, _ in outs} == {str(python)}
    check = subprocess.run(
        [str(python), "-c", "import buildlib.cli"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.timeout(900)
def test_an_environment_left_without_pip_is_made_again(tmp_path: Path) -> None:
    """A `venv` interrupted before pip was installed leaves a python and no pip: the next
    session makes the environment again instead of failing until someone deletes it."""
    venv = tmp_path / ".nox" / "engine"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    proc = make_env(tmp_path)
    _, err = proc.communicate(timeout=840)
    assert proc.returncode == 0, err
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, check=False
    )
    assert done.returncode == 0
