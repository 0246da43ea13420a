"""verify: real workspaces in tmp_path, a real gcc-built binary, real `run` subprocesses."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import needs_linux_x64_gcc

from buildlib.verify.checks import (
    SCHEMA_VERSION,
    Status,
    check_artifacts,
    manifest_path,
    nox_step_hint,
    render_report,
    verify_artifacts,
)
from buildlib.workspace.artifacts import Artifact, ArtifactKind
from buildlib.workspace.targets import get_target

LINUX_X64 = get_target("x86_64-unknown-linux-gnu")
LINUX_ARM = get_target("aarch64-unknown-linux-gnu")
WIN_X64 = get_target("x86_64-pc-windows-msvc")
EXE = "target/{triple}/release/tachikoma"

TOOL_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("tachikoma 0.2.0\n"); return 0; }
    if (argc > 2 && strcmp(argv[1], "--exit") == 0) {
        fprintf(stderr, "warming up\nfailing on purpose\n");
        return atoi(argv[2]);
    }
    if (argc > 1 && strcmp(argv[1], "--abort") == 0) { abort(); }
    return 0;
}
"""


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real host executable: prints its version, exits with a given code, or aborts."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("tool")
    (work / "tool.c").write_text(TOOL_C)
    subprocess.run(
        ["gcc", "-o", str(work / "tachikoma"), str(work / "tool.c")],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return work / "tachikoma"


def place(tool: Path, root: Path, triple: str) -> str:
    rel = EXE.format(triple=triple)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tool, root / rel)
    return rel


def artifact(
    root: Path,
    rel: str,
    kind: ArtifactKind,
    *,
    step: str = "rust-build",
    run: tuple[str, ...] = (),
    expect: str = "",
) -> Artifact:
    path = root / rel
    return Artifact(
        path=path,
        rel=rel,
        step=step,
        kind=kind,
        run=tuple(a.replace("{path}", str(path)) for a in run),
        expect=expect,
    )


def exe_artifact(root: Path, rel: str, *args: str, expect: str = "") -> Artifact:
    return artifact(root, rel, ArtifactKind.EXECUTABLE, run=("{path}", *args), expect=expect)


# --- executables -------------------------------------------------------------------------


@needs_linux_x64_gcc
def test_host_executable_passes_and_runs(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    report = verify_artifacts(
        [exe_artifact(tmp_path, rel, "--version", expect="tachikoma 0.2.0")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok
    (check,) = report.checks
    assert check.status is Status.OK
    assert check.problems == ()
    assert check.notes == ("ELF x86_64", f"ran `{rel} --version`")


@needs_linux_x64_gcc
def test_host_binary_fails_for_aarch64_target(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_ARM.triple)  # a "cross build" that produced a host binary
    report = verify_artifacts(
        [exe_artifact(tmp_path, rel, "--version")],
        root=tmp_path,
        target=LINUX_ARM,
        host=LINUX_X64,
        mode="production",
    )
    assert not report.ok
    assert report.problems == (
        f"{rel}: is an ELF x86_64 binary, but aarch64-unknown-linux-gnu needs ELF aarch64"
        " — run step 'rust-build'",
    )
    assert report.checks[0].notes == ("run skipped: cross target",)


@needs_linux_x64_gcc
@pytest.mark.parametrize(
    ("triple", "needs"),
    [
        ("x86_64-apple-darwin", "Mach-O x86_64"),
        ("aarch64-apple-darwin", "Mach-O aarch64"),
        ("x86_64-pc-windows-msvc", "PE x86_64"),
        ("aarch64-pc-windows-msvc", "PE aarch64"),
    ],
)
def test_host_binary_fails_for_other_formats(
    tool: Path, tmp_path: Path, triple: str, needs: str
) -> None:
    rel = place(tool, tmp_path, triple)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel)],
        root=tmp_path,
        target=get_target(triple),
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: is an ELF x86_64 binary, but {triple} needs {needs} — run step 'rust-build'",
    )


def test_missing_executable_names_the_nox_session(tmp_path: Path) -> None:
    rel = EXE.format(triple=LINUX_X64.triple)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--version")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
        step_hint=nox_step_hint("production", LINUX_X64.triple),
    )
    assert report.problems == (
        "target/x86_64-unknown-linux-gnu/release/tachikoma: missing — run step 'rust-build' "
        "(nox -s \"rust-build(mode='production', target='x86_64-unknown-linux-gnu')\")",
    )
    assert report.checks[0].status is Status.FAILED


@needs_linux_x64_gcc
def test_missing_exec_bit_is_reported_and_not_run(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    (tmp_path / rel).chmod(0o644)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--version")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    # Only one problem: running it would only fail again with "permission denied".
    assert report.problems == (
        f"{rel}: is not executable (mode 644, no exec bit) — run step 'rust-build'",
    )


@needs_linux_x64_gcc
def test_run_that_exits_1(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--exit", "1")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: `{rel} --exit 1` exited 1: failing on purpose — run step 'rust-build'",
    )


@needs_linux_x64_gcc
def test_run_that_prints_the_wrong_version(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--version", expect="tachikoma 0.3.0")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: `{rel} --version` printed 'tachikoma 0.2.0', expected it to contain "
        "'tachikoma 0.3.0' — run step 'rust-build'",
    )


@needs_linux_x64_gcc
def test_run_killed_by_a_signal(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--abort")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: `{rel} --abort` was killed by SIGABRT — run step 'rust-build'",
    )


@needs_linux_x64_gcc
def test_truncated_executable(tool: Path, tmp_path: Path) -> None:
    rel = place(tool, tmp_path, LINUX_X64.triple)
    (tmp_path / rel).write_bytes(tool.read_bytes()[:10])
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--version")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: not an executable: the header is truncated — run step 'rust-build'",
    )


def test_script_is_not_a_native_executable(tmp_path: Path) -> None:
    rel = "bin/tool"
    (tmp_path / "bin").mkdir()
    (tmp_path / rel).write_text("#!/bin/sh\necho tachikoma 0.2.0\n")
    (tmp_path / rel).chmod(0o755)
    report = check_artifacts(
        [exe_artifact(tmp_path, rel, "--version")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: not a native executable: a script (starts with #!) — run step 'rust-build'",
    )


def test_directory_is_not_an_executable(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    report = check_artifacts(
        [exe_artifact(tmp_path, "out")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        "out: is a directory, not an executable file — run step 'rust-build'",
    )


def test_pe_target_ignores_the_exec_bit(tmp_path: Path) -> None:
    """A Windows binary checked on a POSIX host: its mode means nothing, its header does."""
    lfanew = 0x80
    dos = bytearray(b"MZ".ljust(lfanew, b"\0"))
    dos[0x3C:0x40] = struct.pack("<I", lfanew)
    coff = struct.pack("<HHIIIHH", 0x8664, 0, 0, 0, 0, 240, 0x0022)
    (tmp_path / "tachikoma.exe").write_bytes(bytes(dos) + b"PE\0\0" + coff + bytes(240))
    (tmp_path / "tachikoma.exe").chmod(0o644)
    report = check_artifacts(
        [exe_artifact(tmp_path, "tachikoma.exe", "--version")],
        root=tmp_path,
        target=WIN_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok
    assert report.checks[0].notes == ("PE x86_64", "run skipped: cross target")


@pytest.fixture(scope="module")
def go_cross(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real cross-compiled executables (Go needs no extra toolchain to cross-compile)."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed (it is the cross compiler these tests use)")
    work = tmp_path_factory.mktemp("go")
    (work / "go.mod").write_text("module hello\n\ngo 1.21\n")
    (work / "main.go").write_text("package main\n\nfunc main() {}\n")
    binaries = {}
    for triple, goos in (
        ("aarch64-unknown-linux-gnu", "linux"),
        ("aarch64-apple-darwin", "darwin"),
    ):
        out = work / triple
        env = {
            **os.environ,
            "GOOS": goos,
            "GOARCH": "arm64",
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-trimpath",
        }
        subprocess.run(
            ["go", "build", "-o", str(out), "."],
            cwd=work,
            env=env,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        binaries[triple] = out
    return binaries


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("triple", "described"),
    [
        ("aarch64-unknown-linux-gnu", "ELF aarch64"),
        ("aarch64-apple-darwin", "Mach-O aarch64"),
    ],
)
def test_real_cross_binary_passes_without_running(
    go_cross: dict[str, Path], tmp_path: Path, triple: str, described: str
) -> None:
    rel = place(go_cross[triple], tmp_path, triple)
    report = verify_artifacts(
        [exe_artifact(tmp_path, rel, "--version", expect="never checked")],
        root=tmp_path,
        target=get_target(triple),
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok, report.problems
    assert report.checks[0].notes == (described, "run skipped: cross target")


# --- html --------------------------------------------------------------------------------

INDEX_HTML = """<!doctype html>
<html><head>
  <script type="module" crossorigin src="/assets/index-abc.js"></script>
  <link rel="stylesheet" crossorigin href="./assets/index-abc.css?v=1">
  <link rel="modulepreload" href="assets/vendor-def.js#entry">
  <LINK REL="Preload Stylesheet" HREF="assets/my%20theme.css">
  <link rel="icon" href="/favicon-not-checked.ico">
  <script src="https://cdn.example.com/lib.js"></script>
  <link rel="stylesheet" href="//fonts.example.com/font.css">
  <script src="data:text/javascript,console.log(1)"></script>
  <script>console.log("inline")</script>
</head><body><div id="app"></div></body></html>
"""


def write_site(root: Path, *, missing: tuple[str, ...] = ()) -> str:
    dist = root / "web" / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX_HTML)
    for name in ("index-abc.js", "index-abc.css", "vendor-def.js", "my theme.css"):
        if name not in missing:
            (dist / "assets" / name).write_text("/* asset */")
    return "web/dist/index.html"


def html_artifact(root: Path, rel: str) -> Artifact:
    return artifact(root, rel, ArtifactKind.HTML, step="web-build")


def test_html_with_every_asset_passes(tmp_path: Path) -> None:
    rel = write_site(tmp_path)
    report = check_artifacts(
        [html_artifact(tmp_path, rel)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok
    assert report.checks[0].notes == ("7 script/stylesheet references checked",)


def test_html_names_each_missing_asset(tmp_path: Path) -> None:
    rel = write_site(tmp_path, missing=("index-abc.js", "vendor-def.js", "my theme.css"))
    report = check_artifacts(
        [html_artifact(tmp_path, rel)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f"{rel}: references missing web/dist/assets/index-abc.js "
        f"(<script src=\"/assets/index-abc.js\">) — run step 'web-build'",
        f"{rel}: references missing web/dist/assets/vendor-def.js "
        f'(<link rel="modulepreload" href="assets/vendor-def.js#entry">) — run step \'web-build\'',
        f"{rel}: references missing web/dist/assets/my theme.css "
        f'(<link rel="stylesheet" href="assets/my%20theme.css">) — run step \'web-build\'',
    )


def test_html_reference_outside_its_directory(tmp_path: Path) -> None:
    rel = "site/index.html"
    (tmp_path / "site").mkdir()
    (tmp_path / rel).write_text('<script src="../shared/app.js"></script><script src=""></script>')
    report = check_artifacts(
        [html_artifact(tmp_path, rel)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == (
        f'{rel}: references missing shared/app.js (<script src="../shared/app.js">)'
        " — run step 'web-build'",
        f"{rel}: has an empty reference (<script src=\"\">) — run step 'web-build'",
    )


def test_missing_html(tmp_path: Path) -> None:
    report = check_artifacts(
        [html_artifact(tmp_path, "web/dist/index.html")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.problems == ("web/dist/index.html: missing — run step 'web-build'",)


# --- command and exists ------------------------------------------------------------------


def command_artifact(root: Path, rel: str, code: str, expect: str = "") -> Artifact:
    return artifact(
        root,
        rel,
        ArtifactKind.COMMAND,
        step="electron-build",
        run=(sys.executable, "-c", code),
        expect=expect,
    )


def test_command_runs_in_the_workspace_root(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("electron 33")
    report = check_artifacts(
        [
            command_artifact(
                tmp_path,
                "marker.txt",
                "import pathlib; print(pathlib.Path('marker.txt').read_text())",
                expect="electron 33",
            )
        ],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok
    assert report.checks[0].status is Status.OK


def test_command_failing_and_wrong_output(tmp_path: Path) -> None:
    (tmp_path / "main.js").write_text("")
    report = check_artifacts(
        [
            command_artifact(tmp_path, "main.js", "import sys; sys.exit('boom')"),
            command_artifact(tmp_path, "main.js", "print('v1')", expect="v2"),
            command_artifact(
                tmp_path, "main.js", "print('a' * 300); print(); print('b')", expect="v2"
            ),
            command_artifact(tmp_path, "main.js", "pass", expect="v2"),
        ],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    first, second, long, silent = report.problems
    assert first.endswith("` exited 1: boom — run step 'electron-build'")
    assert second.endswith(
        "` printed 'v1', expected it to contain 'v2' — run step 'electron-build'"
    )
    assert long.endswith(
        f"` printed '{'a' * 119}…' (and 2 more lines), expected it to contain "
        "'v2' — run step 'electron-build'"
    )
    assert silent.endswith(
        "` printed nothing, expected it to contain 'v2' — run step 'electron-build'"
    )


def test_wrong_output_names_the_line_about_the_expectation(tmp_path: Path) -> None:
    # `tachikoma info` of a debug binary copied over the release one: the problem shows
    # the mode it was built for, not the first line of the output.
    (tmp_path / "tachikoma").write_text("")
    info = (
        "print('tachikoma 0.1.0'); print('mode: development'); "
        "print('target: x86_64-unknown-linux-gnu'); print('profile: debug')"
    )
    report = check_artifacts(
        [command_artifact(tmp_path, "tachikoma", info, expect="mode: production")],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    (problem,) = report.problems
    assert problem.endswith(
        "` printed 'mode: development', expected it to contain "
        "'mode: production' — run step 'electron-build'"
    )


def test_command_on_a_cross_target_is_skipped_not_run(tmp_path: Path) -> None:
    (tmp_path / "main.js").write_text("")
    report = verify_artifacts(
        [command_artifact(tmp_path, "main.js", "open('ran', 'w')")],
        root=tmp_path,
        target=LINUX_ARM,
        host=LINUX_X64,
        mode="production",
    )
    assert report.ok
    assert report.checks[0].status is Status.SKIPPED
    assert report.checks[0].notes == ("skipped: cross target",)
    assert not (tmp_path / "ran").exists()
    assert "SKIP main.js [command]  (skipped: cross target)" in render_report(report)


def test_command_that_cannot_start(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    missing = artifact(tmp_path, "x", ArtifactKind.COMMAND, run=(str(tmp_path / "no-such-tool"),))
    report = check_artifacts(
        [missing], root=tmp_path, target=LINUX_X64, host=LINUX_X64, mode="production"
    )
    assert report.problems == (
        f"x: `{tmp_path / 'no-such-tool'}` could not start: No such file or directory"
        " — run step 'rust-build'",
    )


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see the grandchild")
def test_command_timeout_kills_its_process_group(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "open('grandchild.pid', 'w').write(str(p.pid)); time.sleep(120)"
    )
    report = check_artifacts(
        [command_artifact(tmp_path, "x", code)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
        timeout=3,
    )
    (problem,) = report.problems
    assert "did not finish within 3 s (killed)" in problem
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    # It was SIGKILLed with its group; wait only for init to reap it.
    deadline = time.monotonic() + 30
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


def test_command_timeout_does_not_hang_on_an_escaped_grandchild(tmp_path: Path) -> None:
    """A grandchild in its own session survives the group kill and holds stdout open;
    verification must still return instead of waiting for it."""
    (tmp_path / "x").write_text("")
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
        "start_new_session=True); "
        "open('escaped.pid', 'w').write(str(p.pid)); time.sleep(120)"
    )
    try:
        report = check_artifacts(
            [command_artifact(tmp_path, "x", code)],
            root=tmp_path,
            target=LINUX_X64,
            host=LINUX_X64,
            mode="production",
            timeout=3,
        )
        (problem,) = report.problems
        assert "did not finish within 3 s (killed)" in problem
    finally:
        pid_file = tmp_path / "escaped.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_exists_accepts_files_and_directories_not_dangling_links(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    report = check_artifacts(
        [
            artifact(tmp_path, name, ArtifactKind.EXISTS, step="napi-build")
            for name in ("dir", "file", "link")
        ],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    assert [c.status for c in report.checks] == [Status.OK, Status.OK, Status.FAILED]
    assert report.problems == ("link: missing — run step 'napi-build'",)


# --- everything at once, and the manifest ------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    html_rel = write_site(tmp_path, missing=("vendor-def.js",))
    (tmp_path / "main.js").write_text("")
    artifacts = [
        exe_artifact(tmp_path, EXE.format(triple=LINUX_X64.triple), "--version"),
        html_artifact(tmp_path, html_rel),
        command_artifact(tmp_path, "main.js", "raise SystemExit(3)"),
        artifact(tmp_path, "main.js", ArtifactKind.EXISTS, step="electron-build"),
    ]
    report = verify_artifacts(
        artifacts, root=tmp_path, target=LINUX_X64, host=LINUX_X64, mode="dev"
    )
    assert not report.ok
    assert [c.status for c in report.checks] == [
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
        Status.OK,
    ]
    assert len(report.problems) == 3
    text = render_report(report)
    assert text.splitlines()[0] == "verify dev x86_64-unknown-linux-gnu: 4 artifacts, 3 failed"
    assert "FAIL web/dist/index.html [html]" in text
    assert "OK   main.js [exists]" in text
    assert "3 problems:" in text
    for problem in report.problems:
        assert f"  - {problem}" in text
    assert text.splitlines()[-1] == (
        f"artifact manifest: {tmp_path / '.buildlib/artifacts/dev-x86_64-unknown-linux-gnu.json'}"
    )


@needs_linux_x64_gcc
def test_manifest_records_each_artifact(tool: Path, tmp_path: Path) -> None:
    exe_rel = place(tool, tmp_path, LINUX_X64.triple)
    html_rel = write_site(tmp_path, missing=("index-abc.css",))
    (tmp_path / "dist").mkdir()
    report = verify_artifacts(
        [
            exe_artifact(tmp_path, exe_rel, "--version", expect="tachikoma"),
            html_artifact(tmp_path, html_rel),
            artifact(tmp_path, "dist", ArtifactKind.EXISTS, step="package"),
        ],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="production",
    )
    path = manifest_path(tmp_path, "production", LINUX_X64.triple)
    assert report.manifest_path == path
    assert path == tmp_path / ".buildlib" / "artifacts" / "production-x86_64-unknown-linux-gnu.json"
    data = json.loads(path.read_text())
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert (data["mode"], data["target"], data["host"], data["ok"]) == (
        "production",
        LINUX_X64.triple,
        LINUX_X64.triple,
        False,
    )
    created = datetime.datetime.fromisoformat(data["created_at"])
    assert created.utcoffset() == datetime.timedelta(0)
    exe, html, dist = data["artifacts"]
    exe_bytes = (tmp_path / exe_rel).read_bytes()
    assert exe == {
        "path": exe_rel,
        "size": len(exe_bytes),
        "sha256": hashlib.sha256(exe_bytes).hexdigest(),
        "step": "rust-build",
        "kind": "executable",
        "ok": True,
        "status": "ok",
        "problems": [],
        "notes": ["ELF x86_64", f"ran `{exe_rel} --version`"],
    }
    html_bytes = (tmp_path / html_rel).read_bytes()
    assert html["sha256"] == hashlib.sha256(html_bytes).hexdigest()
    assert (html["kind"], html["ok"], html["status"]) == ("html", False, "failed")
    assert html["problems"] == list(report.checks[1].problems)
    assert "web/dist/assets/index-abc.css" in html["problems"][0]
    assert (dist["size"], dist["sha256"], dist["ok"]) == (None, None, True)


def test_manifest_is_replaced_not_appended(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    first = verify_artifacts(
        [artifact(tmp_path, "a", ArtifactKind.EXISTS)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="dev",
    )
    (tmp_path / "a").write_text("two!")
    second = verify_artifacts(
        [artifact(tmp_path, "a", ArtifactKind.EXISTS)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="dev",
    )
    assert first.manifest_path == second.manifest_path is not None
    (entry,) = json.loads(second.manifest_path.read_text())["artifacts"]
    assert (entry["size"], entry["sha256"]) == (4, hashlib.sha256(b"two!").hexdigest())


def test_check_artifacts_writes_nothing(tmp_path: Path) -> None:
    report = check_artifacts(
        [artifact(tmp_path, "absent", ArtifactKind.EXISTS)],
        root=tmp_path,
        target=LINUX_X64,
        host=LINUX_X64,
        mode="dev",
    )
    assert report.manifest_path is None
    assert not (tmp_path / ".buildlib").exists()
    assert os.listdir(tmp_path) == []
