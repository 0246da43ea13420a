"""`--dry-run` says what a build would do with each step and why (issue 13 item 7): up to
date, restored from the local or remote cache, or run; in text and JSON (`--json`, with
turbo's HIT/MISS vocabulary), every reason with `--explain`. Real CLI processes, a real
nginx for the remote cache; nothing runs and nothing is recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, Workspace, make_workspace, ok
from nginx_server import Nginx, running_nginx


def dry(ws: Workspace, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return ws.build("--dry-run", *args, **env)


def verdicts(text: str) -> dict[str, str]:
    """step -> its `would:` line, from the text dry run."""
    found: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line[:3].strip().isdigit() and ". " in line:
            name = line.split(". ", 1)[1].split()[0]
        elif line.strip().startswith("would:"):
            found[name] = line.strip().removeprefix("would: ")
    return found


def as_json(ws: Workspace, *args: str, **env: str) -> dict[str, Any]:
    proc = dry(ws, "--json", *args, **env)
    ok(proc)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def cache_of(data: dict[str, Any]) -> dict[str, tuple[str, str | None, str]]:
    return {
        s["name"]: (s["cache"]["status"], s["cache"]["source"], s["cache"]["verdict"])
        for s in data["steps"]
    }


def state_files(ws: Workspace) -> set[str]:
    build_dir = ws.root / ".buildlib"
    return {
        p.relative_to(build_dir).as_posix()
        for p in build_dir.rglob("*")
        if p.is_file() and p.name != "tools.json"
    }


def test_after_a_build_every_step_is_up_to_date_and_nothing_is_written(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    before = state_files(ws)
    mtimes = {p: (ws.root / ".buildlib" / p).stat().st_mtime_ns for p in before}
    proc = dry(ws)
    ok(proc)
    assert "(3 steps: 3 up to date; nothing will run)" in proc.stdout
    assert verdicts(proc.stdout) == dict.fromkeys(("gen", "pack", "other"), "up to date [HIT]")
    assert ws.ran() == []
    assert state_files(ws) == before  # no report, no journal line, no state
    assert {p: (ws.root / ".buildlib" / p).stat().st_mtime_ns for p in before} == mtimes


def test_a_changed_input_says_which_and_what_follows(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    (ws.root / "src" / "a.txt").write_text("changed\n")
    proc = dry(ws)
    ok(proc)
    found = verdicts(proc.stdout)
    assert found["gen"] == "run [MISS]: input file src/a.txt changed"
    assert found["pack"].startswith("run [MISS]: dependency gen runs first")
    assert found["other"] == "up to date [HIT]"
    assert "(3 steps: 1 up to date, 2 would run; nothing will run)" in proc.stdout
    # The JSON says the same, as turbo's --dry=json does.
    data = as_json(ws)
    assert cache_of(data) == {
        "gen": ("MISS", None, "run"),
        "pack": ("MISS", None, "run"),
        "other": ("HIT", "LOCAL", "up to date"),
    }
    gen = next(s for s in data["steps"] if s["name"] == "gen")
    assert gen["cache"]["reasons"] == ["input file src/a.txt changed"]
    assert len(gen["cache"]["fingerprint"]) == 64
    assert data["summary"] == {"run": 2, "up to date": 1}


def test_explain_lists_every_reason(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    (ws.root / "src" / "a.txt").write_text("changed\n")
    (ws.root / "src" / "c.txt").write_text("new\n")
    short = dry(ws)
    assert verdicts(short.stdout)["gen"] == (
        "run [MISS]: input file src/a.txt changed (and 1 more; --explain lists them)"
    )
    full = dry(ws, "--explain")
    ok(full)
    lines = full.stdout.splitlines()
    at = lines.index("     would: run [MISS]")
    assert lines[at + 1 : at + 3] == [
        "            - input file src/a.txt changed",
        "            - input file src/c.txt added",
    ]


def test_outputs_another_workspace_built_would_be_restored(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "one")
    ok(first.build())
    second = make_workspace(tmp_path, "two")  # same sources, same cache directory
    proc = dry(second)
    ok(proc)
    found = verdicts(proc.stdout)
    assert found["gen"] == "restore (local) [HIT]: no earlier result"
    assert found["other"].startswith("restore (local) [HIT]")
    assert "3 restored" in proc.stdout.splitlines()[0]
    assert cache_of(as_json(second))["gen"] == ("HIT", "LOCAL", "restore (local)")
    ok(second.build())
    assert second.ran() == []  # the forecast held: everything was restored
    assert set(second.outcomes().values()) == {"restored"}


def test_a_modified_output_would_be_restored(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    (ws.root / "out" / "pack.txt").write_text("tampered")
    found = verdicts(dry(ws).stdout)
    assert found["pack"] == ("restore (local) [HIT]: outputs missing or modified: out/pack.txt")


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with running_nginx(tmp_path / "nginx") as server:
        yield server


def test_a_remote_hit_says_remote(tmp_path: Path, nginx: Nginx) -> None:
    first = make_workspace(tmp_path, "one", cache="cache-one")
    ok(first.build(BUILDLIB_REMOTE_CACHE=nginx.url))
    second = make_workspace(tmp_path, "two", cache="cache-two")  # an empty local cache
    data = as_json(second, BUILDLIB_REMOTE_CACHE=nginx.url)
    assert cache_of(data)["gen"] == ("HIT", "REMOTE", "restore (remote)")
    assert verdicts(dry(second, BUILDLIB_REMOTE_CACHE=nginx.url).stdout)["gen"].startswith(
        "restore (remote) [HIT]"
    )
    assert not (tmp_path / "cache-two").exists() or not any(
        (tmp_path / "cache-two").rglob("*.entry")
    )  # peeked, not downloaded


def test_force_and_no_cache(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    forced = verdicts(dry(ws, "--force").stdout)
    assert forced["gen"] == forced["other"] == "run [MISS]: forced"
    assert forced["pack"].startswith("run [MISS]: dependency gen runs first")
    none = dry(ws, "--no-cache")
    ok(none)
    assert "(3 steps; --no-cache: every step would run; nothing will run)" in none.stdout
    assert "would:" not in none.stdout
    assert all(s["cache"] is None for s in as_json(ws, "--no-cache")["steps"])


def test_json_alone_is_refused_clearly(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    proc = ws.build("--json")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --json goes with --dry-run")


def test_a_dry_run_piped_to_head_is_quiet(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    proc = subprocess.run(
        f"{shutil.which(sys.executable) or sys.executable} -m buildlib build --dry-run "
        "--explain | head -1",
        shell=True,
        cwd=ws.root,
        capture_output=True,
        text=True,
        env={
            "PATH": f"{ws.bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "BUILDLIB_CACHE_DIR": str(ws.cache),
        },
        timeout=120,
    )
    assert proc.stdout.startswith("plan: mode=development") and proc.stderr == ""


def test_json_plans_hold_one_step_per_line_and_parse(tmp_path: Path) -> None:
    """`plan` and `build --dry-run --json` write each step on a line of its own (json's C
    encoder, where `indent` took 0.5 s on 10,000 steps): valid JSON with non-ASCII text,
    and a line per step that `grep` can pick out."""
    ws = make_workspace(tmp_path)
    ws.add_steps("""
        [[step]]
        name = "unicode"
        description = "café \u2028 {braces} ü"
        command = ["echo", "naïve"]
        """)
    proc = subprocess.run(
        [sys.executable, "-m", "buildlib", "plan"],
        cwd=ws.root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    ok(proc)
    for text in (proc.stdout, dry(ws, "--json").stdout):
        data = json.loads(text)
        names = [s["name"] for s in data["steps"]]
        assert "unicode" in names
        lines = [line for line in text.splitlines() if line.startswith('    {"name": ')]
        assert [json.loads(line.rstrip(","))["name"] for line in lines] == names
    assert data["steps"][names.index("unicode")]["description"] == "café \u2028 {braces} ü"
