"""Benchmark `remote`: two clones sharing one remote cache, and what a bad remote costs.

A generated workspace of STEPS steps (a chain of four lanes; each step sleeps
STEP_SECONDS, then writes FILES output files of SIZE bytes) is built by clone A with
a remote cache (it uploads everything), then by clone B, which has its own empty
local cache and reads the remote (`--remote-read-only`): clone B's hit rate, its wall
time, and that wall time against clone B building the same workspace with no cache at
all. Done once against bazel-remote started with its default settings (it validates
every /ac/ upload as a REAPI ActionResult) and once against Debian's nginx with
WebDAV PUT, the two servers docs/cache.md describes.

Then the cost of a bad remote: the same cold build with a remote that accepts and
never answers, and with one that announces a body and sends a byte every 2 s, each
against the build with no remote, with BUILDLIB_REMOTE_TIMEOUT=2. The target is
issue 11's: a bad remote costs one deadline (here 2 s, plus scheduling noise), not
one per step, and never hangs the build.
"""

from __future__ import annotations

import http.server
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.harness import REPO, BenchmarkError, Context, Result, Row, Timing, Verdict, timed
from benchmarks.harness import tool_env as base_env

STEPS, FILES, SIZE, STEP_SECONDS = 40, 20, 16 << 10, 0.25
QUICK_STEPS = 8
DEADLINE = 2.0
LOST_TARGET = DEADLINE + 1.5  # one deadline, plus this VM's noise


def _manifest(steps: int) -> str:
    parts = ["[modes.development]\n"]
    for i in range(steps):
        deps = f'depends_on = ["s{i - 4:03d}"]' if i >= 4 else ""
        parts.append(
            textwrap.dedent(f"""
            [[step]]
            name = "s{i:03d}"
            command = ["python3", "../gen.py", "s{i:03d}"]
            inputs = ["src/s{i:03d}.txt"]
            outputs = ["out/s{i:03d}"]
            {deps}
            """)
        )
    return "".join(parts)


GEN = textwrap.dedent(f"""
    import os, pathlib, random, sys, time
    name = sys.argv[1]
    time.sleep({STEP_SECONDS})
    out = pathlib.Path("out") / name
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(name + pathlib.Path("src", name + ".txt").read_text())
    for i in range({FILES}):
        (out / f"f{{i:03d}}.bin").write_bytes(rng.randbytes({SIZE}))
""")


def _workspace(base: Path, name: str, steps: int) -> Path:
    root = base / name / "ws"
    (root / "src").mkdir(parents=True)
    (base / name / "gen.py").write_text(GEN)
    (root / "build.toml").write_text(_manifest(steps))
    for i in range(steps):
        (root / "src" / f"s{i:03d}.txt").write_text(f"source {i}\n")
    return root


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = base_env()
    env["BUILDLIB_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def _build(root: Path, log: Path, *args: str, **env: str) -> Timing:
    argv = [sys.executable, "-m", "buildlib", "build", "--plain", "-j", "2", *args]
    return timed(argv, cwd=root, log=log, env=_env(root.parent / "cache", **env))


def _hit_rate(log: Path) -> float:
    for line in log.read_text().splitlines():
        if "cache hit rate" in line:
            return float(line.split("cache hit rate ")[1].split("%")[0]) / 100
    raise BenchmarkError(f"no hit rate in {log}")


@contextmanager
def _server(handler: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            handler(self)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _silent() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"  # the kernel accepts; no answer
    finally:
        listener.close()


def _trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    try:
        for _ in range(100):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(2)
    except OSError:
        return


def run(ctx: Context) -> Result:
    sys.path.insert(0, str(REPO / "tests"))
    from bazel_remote_server import running_bazel_remote
    from nginx_server import running_nginx

    steps = QUICK_STEPS if ctx.quick else STEPS
    rows: list[Row] = []
    figures: dict[str, float] = {}
    base = ctx.workdir
    cold_root = _workspace(base, "cold", steps)
    cold = _build(cold_root, base / "cold.log", "--no-cache")
    rows.append(
        Row(label=f"no cache: {steps} steps built", seconds=cold.wall, ratio=1.0, cpu=cold.cpu)
    )
    servers = {"bazel-remote (defaults)": running_bazel_remote, "nginx (WebDAV PUT)": running_nginx}
    verdict = Verdict.MET
    for label, start in servers.items():
        key = label.split()[0]
        with start(base / f"{key}-server") as server:
            first = _workspace(base, f"{key}-a", steps)
            _build(first, base / f"{key}-a.log", "--remote-cache", server.url)
            second = _workspace(base, f"{key}-b", steps)
            log = base / f"{key}-b.log"
            hit = _build(second, log, "--remote-cache", server.url, "--remote-read-only")
        rate = _hit_rate(log)
        figures[f"{key}_hit_rate"] = rate
        figures[f"{key}_second_clone_s"] = hit.wall
        rows.append(
            Row(
                label=f"second clone from {label}",
                seconds=hit.wall,
                ratio=hit.wall / cold.wall,
                cpu=hit.cpu,
                note=f"hit rate {rate:.0%}",
            )
        )
        if rate < 1.0:
            verdict = Verdict.MISSED
    for label, server_of in (
        ("a remote that never answers", _silent),
        ("a remote that trickles a byte every 2 s", lambda: _server(_trickle)),
    ):
        root = _workspace(base, label.split()[-1], steps)
        with server_of() as url:
            bad = _build(
                root,
                base / f"{label.split()[-1]}.log",
                "--remote-cache",
                url,
                BUILDLIB_REMOTE_TIMEOUT=str(DEADLINE),
            )
        lost = bad.wall - cold.wall
        figures[f"lost_s_{label.split()[-1]}"] = lost
        rows.append(
            Row(
                label=f"cold build with {label}",
                seconds=bad.wall,
                ratio=bad.wall / cold.wall,
                cpu=bad.cpu,
                note=f"{lost:+.2f} s against no remote",
            )
        )
        if lost > LOST_TARGET:
            verdict = Verdict.MISSED
    return Result(
        name="remote",
        reference=f"a build of the same {steps} steps with no cache = {cold.wall:.3f}s",
        target=f"second clone all hits from both servers; a bad remote "
        f"costs at most one deadline ({DEADLINE:g} s, +1.5 s noise)",
        verdict=verdict,
        rows=tuple(rows),
        figures=figures,
        notes=(
            f"{steps} steps x {FILES} files x {SIZE >> 10} KiB, each step "
            f"{STEP_SECONDS:g} s of work; -j 2",
        ),
    )
