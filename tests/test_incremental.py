"""Incremental builds through the CLI: fingerprints, the local cache, the remote cache, --explain.

Each test builds a temporary workspace with real `python -m buildlib` processes and reads
what happened from the build's JSON report.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MODES, PY_TOML, ROOT, Workspace, free_port, make_tool, make_workspace, ok


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def test_no_op_rebuild_runs_nothing(ws: Workspace) -> None:
    ok(ws.build())
    assert ws.ran() == ["gen", "other", "pack"]
    ok(ws.build())
    assert ws.ran() == []
    assert set(ws.outcomes().values()) == {"cached"}


def test_a_no_op_writes_back_the_log_of_an_up_to_date_step_whose_log_is_gone(
    ws: Workspace,
) -> None:
    """The logs a build finds are listed once (not a stat per step): one deleted log, or
    the whole directory, comes back from the step's record; the others are not rewritten."""
    ok(ws.build())
    logs = next((ws.root / ".buildlib/logs").iterdir())
    before = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in logs.iterdir()}
    assert set(before) == {"gen.log", "other.log", "pack.log"}
    (logs / "gen.log").unlink()
    ok(ws.build())
    assert ws.ran() == []
    after = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in logs.iterdir()}
    assert after["gen.log"][0] == before["gen.log"][0]
    assert after["other.log"] == before["other.log"] and after["pack.log"] == before["pack.log"]
    for path in logs.iterdir():
        path.unlink()
    logs.rmdir()
    ok(ws.build())
    assert {p.name: p.read_text() for p in logs.iterdir()} == {
        name: text for name, (text, _) in before.items()
    }


def test_changing_one_input_reruns_only_what_is_downstream(ws: Workspace) -> None:
    ok(ws.build())
    (ws.root / "src" / "b.txt").write_text("beta two\n")
    proc = ws.build("--explain")
    ok(proc)
    assert ws.ran() == ["gen", "pack"]
    assert "gen: input file src/b.txt changed" in proc.stdout
    assert "pack: dependency gen rebuilt, its outputs changed" in proc.stdout
    reasons = {s["name"]: s["reasons"] for s in ws.report_steps()}
    assert reasons["gen"] == ["input file src/b.txt changed"]
    assert (ws.root / "out" / "pack.txt").read_text() == "[ALPHA\nBETA TWO\n]"


def test_a_step_rerun_after_an_edit_is_recorded_and_the_next_build_is_a_no_op(
    ws: Workspace,
) -> None:
    # Its recorded outputs are stat'ed in the inputs' pass (for the up-to-date check):
    # they must not count as inputs that vanished while it ran.
    ok(ws.build())
    (ws.root / "src" / "b.txt").write_text("beta three\n")
    proc = ws.build()
    ok(proc)
    assert ws.ran() == ["gen", "pack"]
    assert "changed while it ran" not in proc.stdout
    ok(ws.build())
    assert ws.ran() == []


def test_a_changed_environment_variable_reruns_the_steps_that_declared_it(ws: Workspace) -> None:
    ok(ws.build(GREETING="hello"))
    proc = ws.build("--explain", GREETING="bonjour")
    ok(proc)
    assert ws.ran() == ["other"]
    assert "environment variable GREETING changed" in proc.stdout


def test_a_changed_tool_version_reruns_the_steps_that_use_it(ws: Workspace) -> None:
    ok(ws.build())
    make_tool(ws.bin_dir, "2.0")
    proc = ws.build("--explain")
    ok(proc)
    # gen runs again; its output comes out the same, so pack stays up to date (cutoff)
    assert ws.ran() == ["gen"]
    assert "tool version of fake changed" in proc.stdout
    assert "pack: up to date (cached): dependency gen rebuilt, outputs unchanged" in proc.stdout


def test_missing_outputs_are_restored_from_the_cache_with_their_mode(ws: Workspace) -> None:
    ok(ws.build())
    original = (ws.root / "out" / "pack.txt").read_bytes()
    for name in ("pack.txt", "run.sh"):
        (ws.root / "out" / name).unlink()
    ok(ws.build())
    assert ws.ran() == []
    assert ws.outcomes()["pack"] == "restored"
    assert (ws.root / "out" / "pack.txt").read_bytes() == original
    assert os.stat(ws.root / "out" / "run.sh").st_mode & stat.S_IXUSR


def test_a_modified_output_is_restored_not_trusted(ws: Workspace) -> None:
    ok(ws.build())
    (ws.root / "out" / "gen.txt").write_text("tampered")
    ok(ws.build())
    assert ws.outcomes()["gen"] == "restored"
    assert (ws.root / "out" / "gen.txt").read_text() == "ALPHA\nBETA\n"


def test_a_corrupt_cache_entry_is_detected_discarded_and_rebuilt(ws: Workspace) -> None:
    ok(ws.build())
    gen = (ws.root / "out" / "gen.txt").read_bytes()
    digest = hashlib.sha256(gen).hexdigest()
    blobs = [p for p in ws.cache.rglob(digest + "*") if p.is_file()]
    assert blobs, "the output blob is stored under its sha256"
    for blob in blobs:
        blob.chmod(0o644)
        blob.write_bytes(b"corrupted!")
    (ws.root / "out" / "gen.txt").unlink()
    proc = ws.build()
    ok(proc)
    assert "gen" in ws.ran()  # rebuilt, not restored from the bad blob
    assert (ws.root / "out" / "gen.txt").read_bytes() == gen
    assert "corrupt" in (proc.stdout + proc.stderr).lower()


def test_a_failed_step_is_never_recorded_as_done_even_if_it_wrote_outputs(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(
        MODES
        + textwrap.dedent(f"""
        [[step]]
        name = "half"
        command = [{PY_TOML}, "-c", "import pathlib, sys; pathlib.Path('o.txt').write_text('x'); open('runs.log', 'a').write('half\\\\n'); sys.exit(1)"]
        outputs = ["o.txt"]
    """)
    )
    ws = Workspace(root, tmp_path / "cache", tmp_path)
    assert ws.build().returncode == 1
    assert ws.build().returncode == 1
    assert ws.ran() == ["half"]  # ran again: the first failure was not recorded


def test_force_reruns_everything(ws: Workspace) -> None:
    ok(ws.build())
    proc = ws.build("--force", "--explain")
    ok(proc)
    assert ws.ran() == ["gen", "other", "pack"]
    assert "gen: forced" in proc.stdout


def test_two_clones_share_one_local_cache(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "one")
    second = make_workspace(tmp_path, "two")
    ok(first.build())
    ok(second.build())
    assert second.ran() == []
    assert set(second.outcomes().values()) == {"restored"}


def test_a_command_naming_a_file_of_the_checkout_is_shared_between_clones(
    tmp_path: Path,
) -> None:
    """`{root}/stamp.sh` (and `{python}`, the engine environment in the checkout's .nox/)
    differ between checkouts: the fingerprint writes them `{root}`, so the second clone
    restores what the first built instead of running it again."""
    clones = [make_workspace(tmp_path, name) for name in ("one", "two")]
    for clone in clones:
        (clone.root / "stamp.sh").write_text(
            "echo stamp >> runs.log; mkdir -p out; echo stamped > out/stamp.txt\n"
        )
        clone.add_steps("""
            [[step]]
            name = "stamp"
            command = ["sh", "{root}/stamp.sh"]
            inputs = ["stamp.sh"]
            outputs = ["out/stamp.txt"]
            """)
    first, second = clones
    ok(first.build())
    assert "stamp" in first.ran()
    ok(second.build())
    assert second.ran() == []
    assert second.outcomes()["stamp"] == "restored"
    components = second.report_step("stamp")["fingerprint_components"]
    assert components["argv"] == json.dumps(["sh", "{root}/stamp.sh"])


@pytest.mark.nginx
def test_two_clones_with_separate_caches_share_one_nginx_remote(tmp_path: Path) -> None:
    from nginx_server import running_nginx

    with running_nginx(tmp_path / "nginx") as nginx:
        first = make_workspace(tmp_path, "one", cache="cache1")
        second = make_workspace(tmp_path, "two", cache="cache2")
        ok(first.build("--remote-cache", nginx.url))
        ok(second.build("--remote-cache", nginx.url))
        assert second.ran() == []
        steps = second.report_steps()
        assert all(s["outcome"] == "restored" and s["cache_source"] == "remote" for s in steps), (
            steps
        )
        for rel in ("out/gen.txt", "out/pack.txt", "out/run.sh", "other.txt"):
            a, b = (first.root / rel).read_bytes(), (second.root / rel).read_bytes()
            assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


@pytest.mark.nginx
def test_read_only_remote_never_uploads(tmp_path: Path) -> None:
    from nginx_server import running_nginx

    with running_nginx(tmp_path / "nginx") as nginx:
        ws = make_workspace(tmp_path)
        ok(ws.build("--remote-cache", nginx.url, "--remote-read-only"))
        log = (tmp_path / "nginx").rglob("access.log")
        text = "".join(p.read_text() for p in log)
        assert "PUT" not in text


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_remote_that_never_answers_costs_one_timeout_and_one_warning(
    ws: Workspace, silent_server: str
) -> None:
    proc = ws.build("--remote-cache", silent_server, BUILDLIB_REMOTE_TIMEOUT="1")
    ok(proc)
    assert ws.ran() == ["gen", "other", "pack"]
    warnings = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "remote" in line.lower() and "warn" in line.lower()
    ]
    assert len(warnings) == 1, proc.stdout


def test_a_remote_that_is_down_leaves_the_build_green(ws: Workspace) -> None:
    proc = ws.build("--remote-cache", f"http://127.0.0.1:{free_port()}")
    ok(proc)
    assert ws.ran() == ["gen", "other", "pack"]


def test_an_unwritable_cache_directory_leaves_the_build_green_with_a_warning(ws: Workspace) -> None:
    ws.cache.mkdir()
    ws.cache.chmod(0o500)
    try:
        if os.access(ws.cache, os.W_OK):  # root ignores mode bits: use a file as the "directory"
            ws.cache.chmod(0o700)
            ws.cache.rmdir()
            ws.cache.write_text("not a directory")
        proc = ws.build()
        ok(proc)
        assert "warn" in (proc.stdout + proc.stderr).lower()
    finally:
        if ws.cache.is_dir():
            ws.cache.chmod(0o700)


def test_clean_cache_empties_it_and_prune_shrinks_it(ws: Workspace) -> None:
    ok(ws.build())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BUILDLIB_CACHE_DIR": str(ws.cache)}

    def size() -> int:
        return sum(p.stat().st_size for p in ws.cache.rglob("*") if p.is_file())

    assert size() > 0
    prune = subprocess.run(
        [sys.executable, "-m", "buildlib", "prune", "--max-size", "0"],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prune.returncode == 0, prune.stderr
    assert "removed" in prune.stdout
    assert size() == 0
    ok(ws.build("--force"))
    assert size() > 0
    clean = subprocess.run(
        [sys.executable, "-m", "buildlib", "clean", "--cache"],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert clean.returncode == 0, clean.stderr
    assert size() == 0
    assert not (ws.root / "out" / "gen.txt").exists()
    assert not (ws.root / "other.txt").exists()
    assert (ws.root / "src" / "a.txt").exists()


SLOW_WRITER = textwrap.dedent(f"""
    [[step]]
    name = "slow"
    command = [{PY_TOML}, "-c", "import pathlib, time; f = open('big.txt', 'w'); f.write('partial'); f.flush(); pathlib.Path('started').touch(); time.sleep(60); f.write(' complete'); f.close()"]
    outputs = ["big.txt"]
""")


def test_sigkill_mid_build_then_rebuild_reruns_the_half_done_step(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(
        MODES + SLOW_WRITER.replace("time.sleep(60)", "time.sleep(float(open('delay').read()))")
    )
    (root / "delay").write_text("60")
    ws = Workspace(root, tmp_path / "cache", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BUILDLIB_CACHE_DIR": str(ws.cache)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildlib", "build", "--plain"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (root / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (root / "big.txt").read_text() == "partial"  # a half-written output is on disk
    (root / "delay").write_text("0")
    ok(ws.build())
    assert ws.outcomes()["slow"] == "built"  # the half-done step was not taken as done
    assert (root / "big.txt").read_text() == "partial complete"
