"""The strace-based tracer (buildlib/audit) on real processes (shell, Python, node, cargo),
real strace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from buildlib.audit.accesses import parse_strace_file
from buildlib.audit.trace_result import TraceResult
from buildlib.audit.tracer import (
    INSTALL_HINT,
    StraceNotFoundError,
    find_strace,
    strace_argv,
    trace_command,
)

needs_strace = pytest.mark.skipif(
    shutil.which("strace") is None, reason=f"needs strace: {INSTALL_HINT}"
)
PY = sys.executable


def trace(
    tmp_path: Path,
    argv: list[str],
    cwd: Path,
    *,
    seccomp_bpf: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = 300,
) -> TraceResult:
    result = trace_command(
        argv,
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        log_dir=tmp_path / "logs",
        seccomp_bpf=seccomp_bpf,
        timeout=timeout,
    )
    assert result.warnings == (), result.warnings
    return result


def output(result: TraceResult) -> str:
    assert result.output_file is not None
    return result.output_file.read_text(errors="replace")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@needs_strace
@pytest.mark.parametrize("seccomp_bpf", [True, False], ids=["seccomp-bpf", "ptrace-only"])
def test_shell_step(tmp_path: Path, ws: Path, seccomp_bpf: bool) -> None:
    (ws / "undeclared.txt").write_text("secret\n")
    (ws / "old.txt").write_text("old\n")
    (ws / "doomed.txt").write_text("bye\n")
    tool = ws / "tool.sh"
    tool.write_text("#!/bin/sh\necho ran > tool.out\n")
    tool.chmod(0o755)
    script = textwrap.dedent("""\
        cat undeclared.txt > /dev/null
        mkdir out
        echo hi > out/new.txt
        mv old.txt renamed.txt
        rm doomed.txt
        ./tool.sh
        ls out > /dev/null
        exit 3
    """)
    r = trace(tmp_path, ["sh", "-c", script], ws, seccomp_bpf=seccomp_bpf)
    assert r.exit_code == 3
    # absolute, normalized paths
    assert str(ws / "undeclared.txt") in r.read
    assert any(p.endswith("/cat") for p in r.executed)
    assert "/bin/sh" in r.executed  # the #! interpreter of tool.sh
    s = r.scoped(ws)
    assert s.read == {"undeclared.txt", "tool.sh"}  # sh reads the script it runs
    assert s.inputs >= {"undeclared.txt"}
    assert s.written == {"out/new.txt", "tool.out"}
    assert "out" in s.created
    assert s.renamed == (("old.txt", "renamed.txt"),)
    assert s.deleted == {"doomed.txt"}
    assert s.executed == {"tool.sh"}
    assert "out" in s.listed
    assert s.outputs == {"out", "out/new.txt", "renamed.txt", "tool.out"}
    assert "old.txt" not in s.outputs and "doomed.txt" not in s.outputs
    assert [e.argv for e in s.execs] == [("./tool.sh",)]
    # pre-existing files gone at the end; the launcher of each program
    assert s.removed == {"old.txt", "doomed.txt"}
    assert r.execs[0].launcher is None  # the traced command itself
    launcher = s.execs[0].launcher
    assert launcher is not None and launcher.endswith("/sh")


@needs_strace
def test_seccomp_and_ptrace_agree(tmp_path: Path) -> None:
    argv = ["sh", "-c", "cat in.txt > out.txt; cp out.txt copy.txt; rm out.txt; ls > list.txt"]
    results = []
    for seccomp_bpf in (True, False):
        ws = tmp_path / f"ws-{seccomp_bpf}"
        ws.mkdir()
        (ws / "in.txt").write_text("x")
        results.append(
            trace(tmp_path / f"logs-{seccomp_bpf}", argv, ws, seccomp_bpf=seccomp_bpf).scoped(ws)
        )
    a, b = results
    for field in (
        "read",
        "written",
        "created",
        "deleted",
        "renamed",
        "probed_missing",
        "executed",
        "inputs",
        "outputs",
        "listed",
    ):
        assert getattr(a, field) == getattr(b, field), field
    assert a.outputs == {"copy.txt", "list.txt"}
    assert a.inputs == {"in.txt"}


@needs_strace
def test_python_child_chdirs_and_opens_relative_paths(tmp_path: Path, ws: Path) -> None:
    (ws / "sub").mkdir()
    (ws / "sub" / "data.txt").write_text("data")
    (ws / "sub" / "a.txt").write_text("a")
    child = textwrap.dedent("""\
        import os
        os.chdir("sub")
        open("data.txt").read()
        open("../from_child.txt", "w").write("x")
        os.mkdir("made")          # mkdir(2): no dirfd, resolved with the tracked cwd
        os.rename("a.txt", "b.txt")  # rename(2) likewise
    """)
    parent = (
        f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    )
    r = trace(tmp_path, [PY, "-c", parent], ws)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert "sub/data.txt" in s.read and "data.txt" not in s.read
    assert "from_child.txt" in s.written
    assert "sub/made" in s.created
    assert s.renamed == (("sub/a.txt", "sub/b.txt"),)
    assert s.outputs == {"from_child.txt", "sub/made", "sub/b.txt"}


@needs_strace
@pytest.mark.parametrize("seccomp_bpf", [True, False], ids=["seccomp-bpf", "ptrace-only"])
def test_thread_chdir_is_shared_and_exec_from_a_thread(
    tmp_path: Path,
    ws: Path,
    seccomp_bpf: bool,
) -> None:
    (ws / "sub").mkdir()
    code = textwrap.dedent("""\
        import os, threading
        t = threading.Thread(target=os.chdir, args=("sub",))
        t.start(); t.join()
        os.mkdir("by_main")      # the thread's chdir moved the whole process
        def run():
            os.execv("/bin/sh", ["sh", "-c", "mkdir from_exec"])
        threading.Thread(target=run).start()
        threading.Event().wait(30)
    """)
    r = trace(tmp_path, [PY, "-c", code], ws, seccomp_bpf=seccomp_bpf)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert s.created == {"sub/by_main", "sub/from_exec"}
    assert "/bin/sh" in r.executed


@needs_strace
def test_grandchildren_are_followed(tmp_path: Path, ws: Path) -> None:
    (ws / "level1" / "level2").mkdir(parents=True)
    (ws / "level1" / "level2" / "g.txt").write_text("g")
    (ws / "bg.txt").write_text("bg")
    code = textwrap.dedent("""\
        import os, subprocess
        os.chdir("level1")
        pid = os.fork()
        if pid == 0:
            os.chdir("level2")
            pid2 = os.fork()
            if pid2 == 0:
                open("g.txt").read()
                os.mkdir("gdir")
                subprocess.run(["sh", "-c", "(cat ../../bg.txt > ../../bg.copy) & wait"], check=True)
                os._exit(0)
            os._exit(os.waitpid(pid2, 0)[1] >> 8)
        os._exit(os.waitpid(pid, 0)[1] >> 8)
    """)
    r = trace(tmp_path, [PY, "-c", code], ws)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert "level1/level2/g.txt" in s.read
    assert "bg.txt" in s.read
    assert s.created == {"level1/level2/gdir"}
    assert s.written == {"bg.copy"}
    assert len({e.pid for e in r.execs}) >= 3  # python, sh, and the subshell's cat


@needs_strace
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_script(tmp_path: Path, ws: Path) -> None:
    (ws / "src").mkdir()
    (ws / "src" / "input.json").write_text('{"n": 1}')
    (ws / "build.js").write_text(
        textwrap.dedent("""\
        const fs = require('fs');
        const data = JSON.parse(fs.readFileSync('src/input.json', 'utf8'));
        fs.mkdirSync('dist', { recursive: true });
        fs.writeFileSync('dist/out.js', `module.exports = ${data.n};\\n`);
        fs.existsSync('.env');
        // async fs goes through libuv's thread pool, or io_uring when UV_USE_IO_URING=1
        fs.promises.readFile('src/async.txt').then((b) => fs.promises.writeFile('dist/async.out', b));
    """)
    )
    (ws / "src" / "async.txt").write_text("async")
    # trace_command turns libuv's io_uring off, or the async read and write would vanish
    env = dict(os.environ, UV_USE_IO_URING="1")
    r = trace(tmp_path, ["node", "build.js"], ws, env=env)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert {"build.js", "src/input.json", "src/async.txt"} <= s.read
    assert s.written == {"dist/out.js", "dist/async.out"}
    assert "dist" in s.created
    assert ".env" in s.probed_missing
    assert {"dist/out.js", "dist"} <= s.outputs
    assert any(p.endswith("/node") for p in r.executed)


@needs_strace
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_io_uring_is_reported_as_a_blind_spot(tmp_path: Path, ws: Path) -> None:
    (ws / "a.txt").write_text("a")
    script = "require('fs').promises.readFile('a.txt').then(() => {})"
    log = tmp_path / "strace.log"
    # strace run by hand, without trace_command's UV_USE_IO_URING=0
    subprocess.run(
        strace_argv(["node", "-e", script], log),
        cwd=ws,
        check=True,
        env=dict(os.environ, UV_USE_IO_URING="1"),
    )
    r = parse_strace_file(log, cwd=str(ws))
    uring = [w for w in r.warnings if "io_uring" in w]
    if not uring:
        pytest.skip("this node/kernel does not use io_uring for fs operations")
    assert "a.txt" not in r.scoped(ws).read  # the limit this warning is about


@needs_strace
@pytest.mark.e2e  # a real cargo build: ~20 s on 2 shared cores
@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
def test_cargo_build_script_reads_undeclared_file(tmp_path: Path, ws: Path) -> None:
    (ws / "shared").mkdir()
    (ws / "shared" / "config.json").write_text('{"answer": 42}')
    crate = ws / "tiny"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        textwrap.dedent("""\
        [package]
        name = "tiny"
        version = "0.1.0"
        edition = "2021"
        build = "build.rs"
    """)
    )
    (crate / "build.rs").write_text(
        textwrap.dedent("""\
        fn main() {
            let cfg = std::fs::read_to_string("../shared/config.json").unwrap();
            println!("cargo:rustc-env=CONFIG_LEN={}", cfg.len());
            println!("cargo:rerun-if-changed=build.rs");
        }
    """)
    )
    (crate / "src" / "main.rs").write_text('fn main() { println!("{}", env!("CONFIG_LEN")); }\n')
    env = dict(os.environ, CARGO_TERM_COLOR="never", CARGO_TARGET_DIR=str(crate / "target"))
    r = trace(tmp_path, ["cargo", "build", "--offline"], crate, env=env)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert "shared/config.json" in s.read
    assert "shared/config.json" in s.inputs
    assert {"tiny/src/main.rs", "tiny/build.rs", "tiny/Cargo.toml"} <= s.read
    assert "tiny/target/debug/tiny" in s.outputs
    assert any(p.endswith("build-script-build") for p in s.executed)
    assert any(p.endswith("/rustc") for p in r.executed)
    # the build script ran with the crate as its cwd: nothing resolved against ws
    assert "config.json" not in {Path(p).name for p in s.probed_missing}


@needs_strace
def test_odd_names_are_decoded_exactly(tmp_path: Path, ws: Path) -> None:
    raw_dir = b"dir with space"
    raw_src = b'caf\xe9 \xff <x>|y "q" back\\slash\ttab\nnl \x012 \x1b[0m?*.txt'  # not UTF-8
    raw_dst = "copié ☃.txt".encode()
    (ws / os.fsdecode(raw_dir)).mkdir()
    src = os.path.join(os.fsencode(ws), raw_dir, raw_src)
    with open(src, "wb") as f:
        f.write(b"odd")
    dst = os.path.join(os.fsencode(ws), raw_dir, raw_dst)
    r = trace(tmp_path, ["cp", "--", os.fsdecode(src), os.fsdecode(dst)], ws)
    assert r.exit_code == 0, output(r)
    assert os.fsdecode(src) in r.read
    assert os.fsdecode(dst) in r.written
    s = r.scoped(ws)
    (read,) = s.read
    assert os.fsencode(read) == raw_dir + b"/" + raw_src
    assert s.written == {"dir with space/copié ☃.txt"}
    assert r.execs[0].argv[2] == os.fsdecode(src)  # argv strings decoded the same way


@needs_strace
def test_missing_files_are_probes(tmp_path: Path, ws: Path) -> None:
    code = textwrap.dedent("""\
        import os
        os.path.exists(".env")
        try:
            open("config.local.json")
        except FileNotFoundError:
            pass
        if not os.path.exists("gen.txt"):
            open("gen.txt", "w").write("x")
    """)
    r = trace(tmp_path, [PY, "-c", code], ws)
    assert r.exit_code == 0, output(r)
    s = r.scoped(ws)
    assert {".env", "config.local.json", "gen.txt"} <= s.probed_missing
    assert ".env" not in s.read and "config.local.json" not in s.read
    # seen missing, then opened with O_CREAT: the trace proves it was created
    assert s.created == {"gen.txt"}
    assert s.outputs == {"gen.txt"}
    assert s.inputs == set()


@needs_strace
def test_scoped_ignores_and_outside(tmp_path: Path, ws: Path) -> None:
    (ws / "target").mkdir()
    (ws / "target" / "cache.bin").write_text("c")
    (ws / "src.txt").write_text("s")
    outside = tmp_path / "outside.txt"
    outside.write_text("o")
    script = f"cat src.txt target/cache.bin {outside} /etc/hostname > /dev/null 2>&1; true"
    r = trace(tmp_path, ["sh", "-c", script], ws)
    assert r.scoped(ws, ignore=("target",)).read == {"src.txt"}
    kept = r.scoped(ws, ignore=("target", "/etc", "/usr", "/lib"), keep_outside=True).read
    assert kept == {"src.txt", str(outside)}
    # /tmp is ignored by default, but a workspace under /tmp still sees itself
    assert "src.txt" in r.scoped(ws).read


@needs_strace
def test_killed_by_signal_and_timeout(tmp_path: Path, ws: Path) -> None:
    r = trace(tmp_path / "a", ["sh", "-c", "kill -TERM $$"], ws)
    assert r.exit_code == -15
    with pytest.raises(subprocess.TimeoutExpired):
        trace_command(
            ["sh", "-c", "sleep 60 & sleep 60"], cwd=ws, env=None, log_dir=tmp_path / "b", timeout=1
        )


def test_missing_strace_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(StraceNotFoundError) as info:
        find_strace(str(tmp_path))
    assert INSTALL_HINT in info.value.render()


def test_missing_program(tmp_path: Path, ws: Path) -> None:
    with pytest.raises(FileNotFoundError):
        trace_command(["no-such-program-xyz"], cwd=ws, env=None, log_dir=tmp_path)
