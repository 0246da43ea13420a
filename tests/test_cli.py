"""The engine's command line as users run it: real `python -m buildlib` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import PY_TOML, ROOT, read_times, sleep_step, write_manifest


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def buildlib(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; /proc tells.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


CROSS = """
[[step]]
name = "compile"
description = "Compile for the target"
command = ["cargo", "build", "--target", "{rust_target}", "--profile", "{profile}"]
env = { CARGO_TERM_COLOR = "never", NODE_ENV_COPY = "{mode}" }
tools = ["cargo"]
outputs = ["target/{rust_target}/{profile}/app{exe_suffix}"]

[[step]]
name = "sign"
command = ["signtool", "sign", "target/{rust_target}/{profile}/app{exe_suffix}"]
depends_on = ["compile"]
when = 'sys_platform == "win32"'

[[step]]
name = "package"
command = ["{python}", "-c", "print('{node_platform}-{node_arch}')"]
depends_on = ["compile", "sign"]
[step.target.aarch64-apple-darwin]
env = { MACOSX_DEPLOYMENT_TARGET = "11.0" }
"""

TOOLS = '[tools]\ncargo = ["cargo", "--version"]\n'


def test_dry_run_for_a_cross_target_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    write_manifest(tmp_path, CROSS, extra=TOOLS)
    proc = buildlib(
        tmp_path, "build", "--dry-run", "--mode", "production", "--target", "x86_64-pc-windows-msvc"
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "target=x86_64-pc-windows-msvc" in out
    assert "cargo build --target x86_64-pc-windows-msvc --profile release" in out
    assert "signtool sign target/x86_64-pc-windows-msvc/release/app.exe" in out  # win32 marker
    assert "win32-x64" in out
    assert "NODE_ENV=production" in out
    assert out.index("compile") < out.index("sign") < out.index("package")
    # What a build would do with each step: nothing was ever built here.
    assert "(3 steps: 3 would run; nothing will run)" in out
    assert out.count("would: run [MISS]") == 3
    assert "would: run [MISS]: no earlier result" in out
    assert "would: run [MISS]: dependency compile runs first" in out
    # Nothing ran and nothing was recorded: the only file is the tool versions' cache.
    written = {
        p.relative_to(tmp_path).as_posix()
        for p in (tmp_path / ".buildlib").rglob("*")
        if p.is_file()
    }
    assert written <= {".buildlib/tools.json"}


def test_dry_run_for_macos_applies_target_override_and_drops_windows_steps(tmp_path: Path) -> None:
    write_manifest(tmp_path, CROSS, extra=TOOLS)
    proc = buildlib(tmp_path, "--dry-run", "--target", "aarch64-apple-darwin")
    assert proc.returncode == 0, proc.stderr
    assert "MACOSX_DEPLOYMENT_TARGET=11.0" in proc.stdout
    assert "signtool" not in proc.stdout
    assert "darwin-arm64" in proc.stdout


def test_cross_target_build_fails_before_any_step_with_the_fix(tmp_path: Path) -> None:
    write_manifest(tmp_path, CROSS, extra=TOOLS)
    for target, fix in (
        ("aarch64-apple-darwin", "macos-14"),
        ("aarch64-unknown-linux-gnu", "rustup target add aarch64-unknown-linux-gnu"),
    ):
        proc = buildlib(tmp_path, "--target", target)
        assert proc.returncode == 1
        assert fix in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / ".buildlib" / "logs").exists()


def test_graph_prints_mermaid(tmp_path: Path) -> None:
    write_manifest(tmp_path, CROSS, extra=TOOLS)
    proc = buildlib(tmp_path, "--graph", "--target", "x86_64-pc-windows-msvc", "package")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  s0["compile"]' in lines and "  s0 --> s1" in lines and "  s1 --> s2" in lines


def test_unknown_step_and_mode_are_clear_errors(tmp_path: Path) -> None:
    write_manifest(tmp_path, sleep_step("a", 0))
    proc = buildlib(tmp_path, "b")
    assert proc.returncode == 1 and "unknown step 'b'" in proc.stderr
    proc = buildlib(tmp_path, "--mode", "staging")
    assert proc.returncode == 1 and "unknown mode 'staging'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_from_a_step_of_another_mode_is_an_error_not_nothing_to_do(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        sleep_step("a", 0) + sleep_step("p", 0) + 'modes = ["production"]\n',
    )
    proc = buildlib(tmp_path, "--mode", "development", "--from", "p")
    assert proc.returncode == 1, proc.stdout
    assert "--from: step 'p' is not part of this build (mode development" in proc.stderr
    assert "nothing to do" not in proc.stdout
    proc = buildlib(tmp_path, "--mode", "production", "--from", "p")
    assert proc.returncode == 0, proc.stderr


def test_unknown_step_in_a_monorepo_names_a_few_steps_not_all(tmp_path: Path) -> None:
    names = [f"pkg-{i:03d}" for i in range(300)]
    write_manifest(tmp_path, "".join(sleep_step(name, 0) for name in names))
    for args in (("pkg-0x7",), ("--from", "pkg-0x7"), ("explain-miss", "pkg-0x7")):
        proc = buildlib(tmp_path, *args)
        assert proc.returncode == 1, proc.stderr
        assert "unknown step 'pkg-0x7'" in proc.stderr
        assert "pkg-019," in proc.stderr and "pkg-020" not in proc.stderr
        assert "... and 280 more (`buildlib plan` lists them all)" in proc.stderr


def test_build_exits_1_naming_the_failing_step(tmp_path: Path) -> None:
    write_manifest(tmp_path, sleep_step("good", 0) + sleep_step("broken", 0, code=7))
    proc = buildlib(tmp_path, "-j", "2", "--no-cache")
    assert proc.returncode == 1
    assert "broken" in proc.stdout + proc.stderr


GRANDCHILD = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
""")


def _spawning_workspace(tmp_path: Path) -> Path:
    (tmp_path / "spawn.py").write_text(GRANDCHILD)
    steps = "".join(
        f"""
[[step]]
name = "{name}"
command = [{PY_TOML}, "spawn.py", "{name}.pids"]
"""
        for name in ("one", "two")
    )
    write_manifest(tmp_path, steps)
    return tmp_path


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_every_process_group_and_leaves_no_orphan(
    tmp_path: Path, signum: int, code: int
) -> None:
    root = _spawning_workspace(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildlib", "-j", "2", "--no-cache", "--plain"],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid_files = [root / "one.pids", root / "two.pids"]
    assert wait_for(lambda: all(p.exists() for p in pid_files)), proc.stdout
    pids = [int(x) for p in pid_files for x in p.read_text().split()]
    assert all(alive(p) for p in pids)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == code, out
    assert "interrupted" in out
    assert wait_for(lambda: not any(alive(p) for p in pids), timeout=10), "orphans left"


def test_sigkill_of_the_orchestrator_leaves_no_orphan(tmp_path: Path) -> None:
    root = _spawning_workspace(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildlib", "-j", "2", "--no-cache", "--plain"],
        cwd=root,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_files = [root / "one.pids", root / "two.pids"]
    assert wait_for(lambda: all(p.exists() for p in pid_files))
    pids = [int(x) for p in pid_files for x in p.read_text().split()]
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not any(alive(p) for p in pids), timeout=15), "orphans left"


def test_second_build_waits_for_the_first_and_no_wait_fails_at_once(tmp_path: Path) -> None:
    write_manifest(tmp_path, sleep_step("slow", 2.0))
    first = subprocess.Popen(
        [sys.executable, "-m", "buildlib", "--no-cache", "--plain"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert wait_for(
        lambda: (
            (tmp_path / ".buildlib" / "lock").exists()
            and (tmp_path / ".buildlib" / "lock").read_text().startswith("pid")
        )
    )
    busy = buildlib(tmp_path, "--no-cache", "--no-wait")
    assert busy.returncode == 1
    assert "another build is running" in busy.stderr
    second = buildlib(tmp_path, "--no-cache", "--plain")
    first.communicate(timeout=30)
    assert first.returncode == 0 and second.returncode == 0
    assert "waiting" in second.stdout + second.stderr
    times = [json.loads(line) for line in (tmp_path / "times.jsonl").read_text().splitlines()]
    assert len(times) == 2
    assert times[1]["start"] >= times[0]["end"]  # never ran at the same time


def test_resume_reruns_only_the_failed_step_and_its_dependents(tmp_path: Path) -> None:
    (tmp_path / "flag").write_text("fail")
    steps = (
        sleep_step("a", 0)
        + sleep_step("b", 0)
        + """
[[step]]
name = "c"
command = ["sh", "-c", "test \\"$(cat flag)\\" = ok && echo c >> times.jsonl.c"]
depends_on = ["a"]

[[step]]
name = "d"
command = ["sh", "-c", "echo d >> times.jsonl.d"]
depends_on = ["c"]
"""
    )
    write_manifest(tmp_path, steps)
    first = buildlib(tmp_path, "--no-cache", "-k", "--plain")
    assert first.returncode == 1
    (tmp_path / "flag").write_text("ok")
    (tmp_path / "times.jsonl").unlink()
    second = buildlib(tmp_path, "--no-cache", "--resume", "--plain")
    assert second.returncode == 0, second.stdout + second.stderr
    assert not (tmp_path / "times.jsonl").exists()  # a and b were not re-run
    assert (tmp_path / "times.jsonl.c").exists() and (tmp_path / "times.jsonl.d").exists()
    report = json.loads((tmp_path / ".buildlib" / "reports" / "latest.json").read_text())
    ran = {s["name"] for s in report["steps"] if s["outcome"] == "built"}
    assert ran == {"c", "d"}


def test_from_runs_the_step_and_everything_downstream(tmp_path: Path) -> None:
    steps = (
        sleep_step("a", 0)
        + sleep_step("b", 0, deps=["a"])
        + sleep_step("c", 0, deps=["b"])
        + sleep_step("x", 0)
    )
    write_manifest(tmp_path, steps)
    assert buildlib(tmp_path, "--plain").returncode == 0
    (tmp_path / "times.jsonl").unlink()
    proc = buildlib(tmp_path, "--from", "b", "--plain")
    assert proc.returncode == 0, proc.stderr
    assert set(read_times(tmp_path)) == {"b", "c"}
    # The steps taken as done kept their fingerprints: a normal build now runs nothing.
    (tmp_path / "times.jsonl").unlink()
    assert buildlib(tmp_path, "--plain").returncode == 0
    assert not (tmp_path / "times.jsonl").exists()


def test_only_runs_the_step_with_dependencies_from_the_journal(tmp_path: Path) -> None:
    steps = sleep_step("a", 0) + sleep_step("b", 0, deps=["a"]) + sleep_step("c", 0, deps=["b"])
    write_manifest(tmp_path, steps)
    assert buildlib(tmp_path, "--no-cache", "--plain").returncode == 0
    (tmp_path / "times.jsonl").unlink()
    proc = buildlib(tmp_path, "--no-cache", "--only", "b", "--plain")
    assert proc.returncode == 0, proc.stderr
    assert set(read_times(tmp_path)) == {"b"}
