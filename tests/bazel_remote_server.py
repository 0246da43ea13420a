"""A real bazel-remote (v2.6.2) serving the Bazel HTTP cache protocol from a temp dir.

Used by remote cache tests that need a server which checks what it is sent, unlike nginx:
`running_bazel_remote(base)` starts the binary on a free loopback port with its default
settings, except where it stores (`--dir`), how much (`--max_size`, in GiB) and where it
listens (HTTP on 127.0.0.1, gRPC off with `--grpc_address none`), waits until `/status`
answers and stops it on exit (SIGTERM: a graceful shutdown; SIGKILL to its process group if
that takes over 10 s). In a test module, as with nginx:

    @pytest.fixture
    def bazel_remote(tmp_path: Path) -> Iterator[BazelRemote]:
        with running_bazel_remote(tmp_path / "bazel-remote") as server:
            yield server

What its defaults mean for a client (checked against the binary; bazel-remote's
server/http.go): `/ac/<key>` bodies must be serialized REAPI `ActionResult` messages (a
`PUT` of anything else is a 400; a `PUT` is stored re-serialized, with
`execution_metadata.worker` set to the client's address when it was empty, so a `GET` does
not return the bytes sent), and a `GET`/`HEAD` of `/ac/<key>` is a 404 unless every CAS blob
the entry names (output files without inline contents, stdout/stderr, output directories'
trees and their files) is in the cache. `PUT /cas/<sha256>` checks the sha256 (a mismatch
is a 500, not a 4xx). Names must be 64 lowercase hex digits (else 400).

The binary is $BAZEL_REMOTE (.ci/run sets it), else the one `ci/build-bazel-remote.sh`
leaves in ${BUILDLIB_TOOLS_DIR:-~/.cache/buildlib-ci}, else that script is run to build it
(needs Go; about 2 minutes, once per machine). Without it a test fails under CI and is
skipped elsewhere. Variables named BAZEL_REMOTE_* are bazel-remote's own defaults for its
flags: none reaches the server, so it runs with the built-in defaults whatever is set here.

The access log (stdout) has one `METHOD STATUS CLIENT PATH` line per answered request, but
bazel-remote logs most refused `PUT`s only to its error log (stderr), as `PUT /cas/<h>: why`,
without the status: `requests()` returns the former, `errors()` the latter.
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from helpers import free_port, stop_server

VERSION = "v2.6.2"
ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "ci" / "build-bazel-remote.sh"

# `2026/11/30 01:20:48  PUT 200       127.0.0.1 /cas/<sha256>` (log.LstdFlags, UTC)
ACCESS_LINE = re.compile(r"^\S+ \S+ +([A-Z]+) (\d{3}) +\S+ (\S+)$")
# `2026/11/30 01:20:48 PUT /cas/<sha256>: Invalid empty blob hash: "..."`
ERROR_LINE = re.compile(r"^\S+ \S+ ([A-Z]+) (/\S+): (.*)$")


@dataclass(frozen=True, kw_only=True)
class BazelRemote:
    url: str
    port: int
    data: Path  # --dir: ac.v2/<xx>/<key>-<n>, cas.v2/<xx>/<sha256>-<size>-<n> (zstd framed)
    access_log: Path
    error_log: Path

    def requests(self, count: int) -> list[tuple[str, str, int]]:
        """(method, path, status) of every logged request, once `count` of them are logged.

        bazel-remote logs a request after answering it: wait (bounded) for the number of
        requests the client sent. Refused PUTs are mostly not here, see `errors()`.
        """
        deadline = time.monotonic() + 10
        while True:
            found = [(m[1], m[3], int(m[2])) for m in _matches(ACCESS_LINE, self.access_log)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def errors(self) -> list[tuple[str, str, str]]:
        """(method, path, message) of the requests bazel-remote refused in its error log."""
        return [(m[1], m[2], m[3]) for m in _matches(ERROR_LINE, self.error_log)]


def _matches(pattern: re.Pattern[str], log: Path) -> list[re.Match[str]]:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [m for line in text.splitlines() if (m := pattern.match(line))]


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def default_binary() -> Path:
    """Where ci/build-bazel-remote.sh leaves the binary (it is the script's default too)."""
    tools = os.environ.get("BUILDLIB_TOOLS_DIR") or str(Path.home() / ".cache" / "buildlib-ci")
    return Path(tools) / f"bazel-remote-{VERSION}"


@functools.cache
def _built_binary() -> str:
    """Runs ci/build-bazel-remote.sh (a no-op when the binary is there); its path, or why not.

    Several xdist workers may get here at once: the script takes a lock, so one builds and the
    others wait for it, then find the binary.
    """
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        return "!Go is not installed: it is needed to build bazel-remote"
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"!{BUILD_SCRIPT.name} did not finish within 900 s"
    if done.returncode != 0:
        return f"!{BUILD_SCRIPT.name} failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def bazel_remote_binary() -> str:
    """The bazel-remote executable; fails under CI when there is none, skips elsewhere."""
    given = os.environ.get("BAZEL_REMOTE")
    if given:
        if not os.access(given, os.X_OK):
            _unavailable(
                f"BAZEL_REMOTE={given} is not an executable file: "
                f"bash ci/build-bazel-remote.sh builds one"
            )
        return given
    default = default_binary()
    if os.access(default, os.X_OK):
        return str(default)
    found = _built_binary()
    if found.startswith("!"):
        _unavailable(f"no bazel-remote binary: {found[1:]}")
    return found


@contextmanager
def running_bazel_remote(
    base: Path, *, max_size_gib: int = 1, extra: tuple[str, ...] = ()
) -> Iterator[BazelRemote]:
    """bazel-remote on a free loopback port storing in `base/data`; `extra` flags are added."""
    binary = bazel_remote_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAZEL_REMOTE_")}
    (base / "data").mkdir(parents=True, exist_ok=True)
    access_log, error_log = base / "access.log", base / "error.log"
    for _attempt in range(5):  # another test may take the free port before bazel-remote binds it
        port = free_port()
        argv = [
            binary,
            "--dir",
            str(base / "data"),
            "--max_size",
            str(max_size_gib),
            "--http_address",
            f"127.0.0.1:{port}",
            "--grpc_address",
            "none",
            *extra,
        ]
        with access_log.open("wb") as stdout, error_log.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
        if _wait_ready(process, port):
            break
        process.wait(timeout=10)
    else:
        log = error_log.read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"bazel-remote did not start:\n{log}")
    try:
        yield BazelRemote(
            url=f"http://127.0.0.1:{port}",
            port=port,
            data=base / "data",
            access_log=access_log,
            error_log=error_log,
        )
    finally:
        stop_server(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once `GET /status` answers 200; False if bazel-remote exited (e.g. port taken)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/status")
            with connection.getresponse() as response:
                response.read()
                if response.status == 200:
                    return True
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError("bazel-remote started but never answered GET /status")
