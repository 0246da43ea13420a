"""Issue 14 part 2: why a step missed the cache, named component by component.

Real builds of generated workspaces through `python -m buildlib`: each test changes one
thing a fingerprint hashes (a tool's version, an environment value, a file, the argv,
a dependency's outputs) and `explain-miss` must name it, and only it, against the newest
entry the cache holds; across two clones the entry comes from a shared nginx (and
bazel-remote, which checks every action-cache upload); `diff` compares two reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from helpers import PY_TOML, ROOT, Workspace, make_tool, make_workspace, ok
from nginx_server import Nginx, running_nginx

from buildlib.cache.latest import pointer_name

TARGET = "x86_64-unknown-linux-gnu"
# Reads API_TOKEN and never writes it anywhere: any trace of the value is buildlib's.
SECRETIVE = f"""
[[step]]
name = "secretive"
command = [{PY_TOML}, "-c", "import os, pathlib; pathlib.Path('secretive.txt').write_text(str(len(os.environ.get('API_TOKEN', ''))))"]
env_inputs = ["API_TOKEN"]
outputs = ["secretive.txt"]
"""
FLAGS = f"""
[[step]]
name = "flags"
command = [{PY_TOML}, "-c", "import pathlib, sys; pathlib.Path('flags.txt').write_text(' '.join(sys.argv[1:]))", "--level", "{{level}}"]
outputs = ["flags.txt"]
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with running_nginx(tmp_path / "nginx") as server:
        yield server


def buildlib(ws: Workspace, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m buildlib ARGS` in the workspace, with its cache and tools, as ws.build."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_"))}
    full_env.update(
        {
            "PYTHONPATH": str(ROOT),
            "BUILDLIB_CACHE_DIR": str(ws.cache),
            "PATH": f"{ws.bin_dir}{os.pathsep}{os.environ['PATH']}",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "buildlib", *args],
        cwd=ws.root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def explain(ws: Workspace, step: str, *args: str, **env: str) -> list[str]:
    """explain-miss STEP's difference lines (those under its two header lines)."""
    proc = buildlib(ws, "explain-miss", step, *args, **env)
    ok(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{step} (development, {TARGET}): fingerprint "), proc.stdout
    assert lines[1].startswith("newest entry: fingerprint "), proc.stdout
    return [line.strip() for line in lines[2:]]


def test_a_changed_tool_version_names_both_versions(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    make_tool(ws.bin_dir, "2.0")
    assert explain(ws, "gen") == ["tool fake: fake-tool 2.0 here, fake-tool 1.0 in the entry"]
    # pack depends on gen, whose outputs cannot be known before it runs again
    assert explain(ws, "pack") == [
        "dependency gen runs first (its own fingerprint differs): its outputs are unknown "
        "until then; `buildlib explain-miss gen` says why"
    ]
    assert explain(ws, "other") == ["the same fingerprint: a build restores this entry (no miss)"]


def test_a_changed_env_value_is_named_and_its_value_is_never_written(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.add_steps(SECRETIVE)
    first, second = "first-s3cret-Value", "second-s3cret-Value"
    ok(ws.build(API_TOKEN=first))
    proc = buildlib(ws, "explain-miss", "secretive", API_TOKEN=second)
    ok(proc)
    assert proc.stdout.splitlines()[2:] == ["  env API_TOKEN differs"]
    assert explain(ws, "secretive") == ["env API_TOKEN differs (unset here)"]
    proc = ws.build("--explain", API_TOKEN=second)
    ok(proc)
    for text in (
        proc.stdout + proc.stderr,
        *_all_text(ws.root / ".buildlib"),
        *_all_text(ws.cache),
    ):
        assert first not in text and second not in text
    report = ws.report_step("secretive")["fingerprint_components"]
    assert report["env:API_TOKEN"].startswith("sha256:")


def _all_text(directory: Path) -> Iterator[str]:
    for path in directory.rglob("*"):
        if path.is_file():
            yield path.read_bytes().decode("utf-8", "replace")


def test_changed_added_and_removed_files_are_each_named(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    (ws.root / "src/a.txt").write_text("ALPHA, edited\n")
    (ws.root / "src/b.txt").unlink()
    (ws.root / "src/c.txt").write_text("new\n")
    assert explain(ws, "gen") == [
        "file src/a.txt differs",
        "file src/c.txt only here",
        "file src/b.txt only in the entry",
    ]


def test_a_changed_argument_is_named_by_its_position(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.add_steps(FLAGS.replace("{level}", "1"))
    ok(ws.build("flags"))
    manifest = ws.root / "build.toml"
    manifest.write_text(manifest.read_text().replace('"--level", "1"', '"--level", "2"'))
    assert explain(ws, "flags") == ["argv differs at position 4: '2' here, '1' in the entry"]
    manifest.write_text(manifest.read_text().replace('"--level", "2"', '"--level"'))
    assert explain(ws, "flags") == ["argv differs at position 4: 4 arguments here, 5 in the entry"]


def test_a_dependency_with_other_outputs_is_named_and_not_its_files(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    (ws.root / "src/a.txt").write_text("changed\n")
    ok(ws.build("gen"))  # gen is up to date with new outputs; pack has not run
    assert explain(ws, "pack") == ["dependency gen's outputs differ"]


def test_explain_on_a_miss_names_what_differs_from_the_cache_entry(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "first")
    ok(first.build(GREETING="hello"))
    second = Workspace(tmp_path / "second", first.cache, first.bin_dir)  # same cache
    (second.root / "src").mkdir(parents=True)
    for name in ("build.toml", "src/a.txt", "src/b.txt"):
        (second.root / name).write_bytes((first.root / name).read_bytes())
    (second.root / "src/b.txt").write_text("beta, but another one\n")
    key = first.report_step("other")["fingerprint"][:12]
    line = f"the local cache's newest entry for other ({key}) differs: env GREETING differs"
    dry = second.build("--dry-run", "--explain", GREETING="bonjour")
    ok(dry)
    assert line in dry.stdout
    proc = second.build("--explain", GREETING="bonjour")
    ok(proc)
    why = proc.stdout.split("why steps ran:")[1]
    assert (
        f"other: no earlier result; the local cache's newest entry for other ({key}) "
        "differs: env GREETING differs"
    ) in why
    assert "gen: no earlier result; the local cache's newest entry for gen" in why
    assert "differs: file src/b.txt differs\n" in why
    assert second.outcomes()["pack"] == "built"  # gen's outputs differ: so do pack's inputs
    assert "pack: no earlier result; the local cache's newest entry for pack " in why
    assert "differs: dependency gen's outputs differ" in why
    # Nothing differs from an entry that is hit, so a hit says nothing more.
    proc = first.build("--explain", GREETING="hello")
    ok(proc)
    assert "cache's newest entry" not in proc.stdout


def test_the_second_clone_reads_the_entry_the_first_put_on_the_remote(
    tmp_path: Path, nginx: Nginx
) -> None:
    ci = make_workspace(tmp_path / "ci", "repo", cache="cache")
    ok(ci.build("--remote-cache", nginx.url, GREETING="hello"))
    pointer = pointer_name("gen", "development", TARGET)
    assert (nginx.data / "ac" / pointer).is_file()
    dev = make_workspace(tmp_path / "dev", "repo", cache="cache")  # its own cache and tools
    make_tool(dev.bin_dir, "2.0")
    lines = explain(dev, "gen", "--remote-cache", nginx.url)
    assert lines == ["tool fake: fake-tool 2.0 here, fake-tool 1.0 in the entry"]
    proc = buildlib(dev, "explain-miss", "gen", "--remote-cache", nginx.url)
    assert "remote cache, stored " in proc.stdout.splitlines()[1]
    assert not (dev.cache / "ac").exists()  # read, not restored
    assert explain(dev, "other", "--remote-cache", nginx.url, GREETING="bonjour") == [
        "env GREETING differs"
    ]
    # Without the remote, this clone's cache has nothing to compare with.
    proc = buildlib(dev, "explain-miss", "gen")
    assert proc.returncode == 1
    assert "no entry for this step, mode and target in the local cache" in proc.stdout
    proc = dev.build("--explain", "--remote-cache", nginx.url, GREETING="hello")
    ok(proc)
    assert (
        "gen: no earlier result; the remote cache's newest entry for gen "
        f"({ci.report_step('gen')['fingerprint'][:12]}) differs: tool fake: fake-tool 2.0 "
        "here, fake-tool 1.0 in the entry"
    ) in proc.stdout
    assert dev.outcomes()["other"] == "restored"


@pytest.mark.bazel_remote
def test_bazel_remote_takes_the_pointer_and_serves_it(tmp_path: Path) -> None:
    from bazel_remote_server import running_bazel_remote

    with running_bazel_remote(tmp_path / "bazel-remote") as server:
        ci = make_workspace(tmp_path / "ci", "repo", cache="cache")
        proc = ci.build("--remote-cache", server.url)
        ok(proc)
        assert "warning" not in proc.stdout + proc.stderr  # every upload accepted
        dev = make_workspace(tmp_path / "dev", "repo", cache="cache")
        (dev.root / "src/a.txt").write_text("other\n")
        assert explain(dev, "gen", "--remote-cache", server.url) == ["file src/a.txt differs"]
        assert server.errors() == []


def test_diff_names_per_step_what_differs_between_two_reports(tmp_path: Path) -> None:
    laptop = make_workspace(tmp_path / "laptop", "repo")
    ok(laptop.build(GREETING="hello"))
    ci = make_workspace(tmp_path / "ci", "repo")
    make_tool(ci.bin_dir, "2.0")
    (ci.root / "src/a.txt").write_text("gamma\n")
    ok(ci.build(GREETING="bonjour"))
    schema = json.loads((ROOT / "docs/report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(laptop.report())
    assert laptop.report_step("gen")["fingerprint_components"]["tool:fake"] == "fake-tool 1.0"
    a, b = tmp_path / "laptop.json", tmp_path / "ci.json"
    a.write_bytes((laptop.root / ".buildlib/reports/latest.json").read_bytes())
    b.write_bytes((ci.root / ".buildlib/reports/latest.json").read_bytes())
    proc = buildlib(laptop, "diff", str(a), str(b))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"A: {a} (build ") and lines[1].startswith(f"B: {b} (build ")
    assert lines[2:] == [
        "gen:",
        "  tool fake: fake-tool 1.0 in A, fake-tool 2.0 in B",
        "  file src/a.txt differs",
        "pack:",
        "  dependency gen's outputs differ",
        "other:",
        "  env GREETING differs",
    ]
    assert "hello" not in proc.stdout and "bonjour" not in proc.stdout
    same = buildlib(laptop, "diff", str(a), str(a), "--all")
    ok(same)
    assert same.stdout.splitlines()[2:] == [
        "gen: same fingerprint",
        "pack: same fingerprint",
        "other: same fingerprint",
        "no step's fingerprint differs",
    ]


def test_a_no_op_report_leaves_components_in_the_state_and_diff_reads_them(
    tmp_path: Path,
) -> None:
    """A no-op reads no step's record (issue 17: 10,000 files on 10,000 steps): its report
    has no components for steps up to date, and `diff` takes them from the state of the
    workspace that wrote it (beside the report, or the report's `workspace` for a copy),
    as long as that state is of the report's fingerprint."""
    laptop = make_workspace(tmp_path / "laptop", "repo")
    ok(laptop.build(GREETING="hello"))
    ok(laptop.build(GREETING="hello"))
    assert laptop.ran() == []
    assert {s["fingerprint_components"] is None for s in laptop.report()["steps"]} == {True}
    ci = make_workspace(tmp_path / "ci", "repo")
    (ci.root / "src/a.txt").write_text("gamma\n")
    ok(ci.build(GREETING="hello"))
    latest = laptop.root / ".buildlib/reports/latest.json"
    ci_report = tmp_path / "ci.json"
    ci_report.write_bytes((ci.root / ".buildlib/reports/latest.json").read_bytes())
    proc = buildlib(laptop, "diff", str(latest), str(ci_report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[2:] == [
        "gen:",
        "  file src/a.txt differs",
        "pack:",
        "  dependency gen's outputs differ",
    ]
    expected = proc.stdout.splitlines()[2:]
    moved = tmp_path / "laptop.json"  # a copy: found through its `workspace`
    moved.write_bytes(latest.read_bytes())
    proc = buildlib(laptop, "diff", str(moved), str(ci_report))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[2:] == expected
    elsewhere = json.loads(latest.read_text())
    elsewhere["workspace"] = str(tmp_path / "another-machine")
    away = tmp_path / "away.json"
    away.write_text(json.dumps(elsewhere))
    proc = buildlib(laptop, "diff", str(away), str(ci_report))
    assert proc.returncode == 1
    assert (
        "no components recorded in A (the step failed or never ran there; or it was up to "
        "date and the state of the workspace that wrote the report, which holds them, is "
        "not on this machine or has moved on" in proc.stdout
    )
    (laptop.root / "src/a.txt").write_text("gamma\n")
    ok(laptop.build(GREETING="hello"))  # the state moves on: the old report's records are gone
    old_noop = laptop.root / ".buildlib/reports" / moved.name
    old_noop.write_bytes(moved.read_bytes())
    proc = buildlib(laptop, "diff", str(old_noop), str(ci_report))
    assert "gen:\n  fingerprints differ; no components recorded in A" in proc.stdout


def test_bad_input_gets_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    broken = tmp_path / "broken.json"
    broken.write_text('{"steps": ')
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema_version": 1, "steps": [{"outcome": "built"}]}))
    report = ws.root / ".buildlib/reports/latest.json"
    for args, message, code in (
        (("diff", str(broken), str(report)), f"{broken}: not valid JSON", 2),
        (("diff", str(report), str(tmp_path / "missing.json")), "missing.json: cannot read", 2),
        (("diff", str(other), str(report)), f"{other}: steps[0] has no name", 2),
        (("explain-miss", "nope"), "explain-miss: unknown step 'nope'", 1),
    ):
        proc = buildlib(ws, *args)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    ws.add_steps(f"""
        [[step]]
        name = "uncached"
        command = [{PY_TOML}, "-c", "pass"]
        cache = false
        """)
    proc = buildlib(ws, "explain-miss", "uncached")
    assert proc.returncode == 1
    assert "uncached: caching is off for this step (cache = false in " in proc.stdout
