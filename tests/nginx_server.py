"""A real Debian nginx serving a Bazel-style HTTP cache (GET/HEAD/PUT) from a temp dir.

Used by the remote cache tests: `running_nginx(directory)` writes a config, starts
`nginx` on a free loopback port, waits until it accepts connections and stops it on
exit. `extra` is pasted into the cache's `location /` block (e.g. the
`limit_except GET { deny all; }` that docs/cache.md recommends). The access log has
one `METHOD URI STATUS` line per request, so tests can check what was sent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import free_port, stop_server

CONFIG = """\
user root;
daemon off;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format cache '$request_method $uri $status';
    access_log {base}/access.log cache;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {base}/data;
        client_max_body_size 0;
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
{extra}
        }}
    }}
}}
"""


@dataclass(frozen=True, kw_only=True)
class Nginx:
    url: str
    port: int
    data: Path  # the document root: data/ac/<key>, data/cas/<sha256>
    access_log: Path

    def requests(self, count: int) -> list[tuple[str, str, int]]:
        """(method, uri, status) of every request, once `count` of them are logged.

        nginx logs a request after answering it, so a client can be done before the
        line is written: wait (bounded) for the number of requests the client sent.
        """
        deadline = time.monotonic() + 10
        while True:
            text = self.access_log.read_text(encoding="utf-8") if self.access_log.exists() else ""
            lines = [line for line in text.splitlines() if line]
            if len(lines) >= count or time.monotonic() > deadline:
                return [(m, u, int(s)) for m, u, s in (line.split(" ") for line in lines)]
            time.sleep(0.01)


def nginx_binary() -> str:
    """The nginx executable; fails under CI (it must be installed), skips elsewhere."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        message = "nginx is not installed: apt-get install -y nginx"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def running_nginx(base: Path, *, extra: str = "") -> Iterator[Nginx]:
    binary = nginx_binary()
    for _attempt in range(5):  # another test may take the free port before nginx binds it
        port = free_port()
        for sub in ("data", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "nginx.conf").write_text(
            CONFIG.format(base=base, port=port, extra=extra), encoding="utf-8"
        )
        with (base / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [
                    binary,
                    "-p",
                    str(base),
                    "-e",
                    str(base / "error.log"),
                    "-c",
                    str(base / "nginx.conf"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        if _wait_ready(process, port):
            break
        process.wait(timeout=10)
    else:
        log = (base / "error.log").read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"nginx did not start:\n{log}")
    try:
        yield Nginx(
            url=f"http://127.0.0.1:{port}",
            port=port,
            data=base / "data",
            access_log=base / "access.log",
        )
    finally:
        stop_server(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once nginx accepts connections; False if it exited (e.g. port taken)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("nginx started but never accepted connections")
