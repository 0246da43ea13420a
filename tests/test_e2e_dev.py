"""End to end: `nox -s dev` on the real app (issue 16 item 7).

`nox -s dev` runs `buildlib watch` in development mode: the first build, then the Vite
dev server (the `web-dev` service) on loopback, and a rebuild of what each edit affects.
A development build costs minutes on a cold clone, so when tests/test_e2e.py's clone
(the same xdist worker: `xdist_group("e2e")`, run first) already holds one, it is
reused and the first build finds every step up to date; run alone, this module clones
and the watch's first build is a cold one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_e2e import ROOT, TRIPLE, _env

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(1800)]

STATE = Path(".buildlib/watch") / f"development-{TRIPLE}.json"
NATIVE = (
    Path(f"crates/tachikoma-native/dist/{TRIPLE}/development")
    / "tachikoma-native.linux-x64-gnu.node"
)
CLI = Path(f"target/{TRIPLE}/debug/tachikoma")
MAIN = Path(f"electron/dist/{TRIPLE}/development/main/index.js")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """test_e2e.py's clone when it holds a development build, else a fresh clone."""
    for made in sorted(tmp_path_factory.getbasetemp().glob("e2e*/clone")):
        if (made / MAIN.parent / "build.json").is_file() and (made / NATIVE).is_file():
            return made, _env(made.parent)
    tmp = tmp_path_factory.mktemp("e2e_dev")
    path = tmp / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(path)], check=True)
    return path, _env(tmp)


class Dev:
    """`nox -s dev` in its own session, its output in a file, found again by a marker
    in the environment of every process it starts."""

    def __init__(self, root: Path, env: dict[str, str], log: Path) -> None:
        self.root = root
        self.env = env
        self.marker = uuid.uuid4().hex
        self.log = log
        (root / STATE).unlink(missing_ok=True)  # a killed watch leaves its last one
        with log.open("wb") as out, _children_get_sigint():
            self.proc = subprocess.Popen(
                ["nox", "-s", "dev"],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**env, "DEV_TEST_MARKER": self.marker},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def state(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads((self.root / STATE).read_text())
        except (OSError, ValueError):
            return None
        return found if found.get("pid") and found["state"] != "stopped" else None

    def wait(self, check: Callable[[dict[str, Any]], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"nox -s dev exited:\n{self.output()[-6000:]}"
            state = self.state()
            if state is not None and (found := check(state)):
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.output()[-6000:]}")

    def idle(self, number: int, timeout: float) -> dict[str, Any]:
        """The state once rebuild `number` (0: the first build) is done and nothing waits."""
        found: dict[str, Any] = self.wait(
            lambda s: (
                s
                if s["state"] == "watching"
                and not s["queued"]
                and s["last_rebuild"] is not None
                and s["last_rebuild"]["number"] >= number
                else None
            ),
            f"rebuild #{number}",
            timeout,
        )
        return found

    def service(self, name: str) -> dict[str, Any]:
        state = self.state()
        assert state is not None
        found: dict[str, Any] = next(s for s in state["services"] if s["name"] == name)
        return found

    def processes(self) -> list[int]:
        """Every live process (zombies aside) started with this run's marker."""
        needle = f"DEV_TEST_MARKER={self.marker}".encode()
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if needle in environ.split(b"\0") and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(pid))
        return found

    def kill(self) -> None:
        for pid in [self.proc.pid, *self.processes()]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()


@pytest.fixture
def dev(clone: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Dev]:
    started = Dev(*clone, tmp_path / "dev.log")
    yield started
    started.kill()


@contextlib.contextmanager
def _children_get_sigint() -> Iterator[None]:
    """A terminal's Ctrl-C reaches nox as SIGINT. A pytest-xdist worker ignores SIGINT,
    and an ignored signal stays ignored across exec (Python then installs no
    KeyboardInterrupt handler): nox would never see the Ctrl-C. A handled signal is
    reset to its default at exec, so the child starts as under a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _holds(path: Path, text: str) -> bool:
    try:
        return text.encode() in path.read_bytes()
    except FileNotFoundError:
        return False


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def test_nox_dev_serves_the_page_rebuilds_the_native_module_and_ctrl_c_leaves_nothing(
    dev: Dev,
) -> None:
    root = dev.root
    first = dev.idle(0, timeout=1500)  # up to date when test_e2e.py built it, else cold
    assert first["last_rebuild"]["ok"], dev.output()[-6000:]
    url = dev.wait(lambda s: s["services"][0]["url"], "the Vite dev server's URL", 180)
    assert [s["name"] for s in first["services"]] == ["web-dev"]
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    page = get(url)
    assert "/@vite/client" in page and 'id="app"' in page  # Vite's dev server, not a file
    assert 'content="development"' in page  # vite.config.ts's mode stamp, served live

    cli_before = (root / CLI).read_bytes()
    lib = root / "crates/tachikoma-native/src/lib.rs"
    saved = lib.read_text()
    probe = f"dev-probe-{uuid.uuid4().hex[:12]}"
    try:
        _edit_stop_and_check(dev, lib, saved, probe, cli_before, url)
    finally:
        lib.write_text(saved)  # after the watch stopped: restoring it is no rebuild
        # The clone may be test_e2e.py's: put its development outputs back as they were
        # (restored from the cache), so its other tests find every step up to date.
        back = subprocess.run(
            ["nox", "-s", "build-3.12(mode='development')"],
            cwd=root,
            env=dev.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]


def _edit_stop_and_check(
    dev: Dev, lib: Path, saved: str, probe: str, cli_before: bytes, url: str
) -> None:
    """The edit, what it rebuilt, then Ctrl-C; `lib` is restored after this returns."""
    root = dev.root
    vite_pid = dev.service("web-dev")["pid"]
    lib.write_text(
        saved + f'\n#[napi]\npub fn dev_probe() -> String {{\n    "{probe}".to_owned()\n}}\n'
    )
    edited = time.monotonic()
    node = root / NATIVE
    deadline = edited + 600
    while not _holds(node, probe):  # the old file is removed before the step runs
        assert time.monotonic() < deadline, dev.output()[-6000:]
        time.sleep(0.05)
    to_node = time.monotonic() - edited
    rebuilt = dev.idle(1, timeout=600)["last_rebuild"]
    to_idle = time.monotonic() - edited
    print(
        f"\nlib.rs edit -> rebuilt .node on disk: {to_node:.2f}s; rebuild #1 done: "
        f"{to_idle:.2f}s (its own count {rebuilt['seconds']:.2f}s), ran {rebuilt['ran']}"
    )
    assert rebuilt["number"] == 1 and rebuilt["ok"], rebuilt
    assert rebuilt["changed"] == ["crates/tachikoma-native/src/lib.rs"]
    # native-module and its dependent electron-build; rust-check and rust-build declare
    # lib.rs too (cargo checks every member's target roots, build.toml), and find
    # nothing to compile: the CLI comes out byte for byte as it was. No web step runs.
    assert set(rebuilt["ran"]) == {"rust-check", "rust-build", "native-module", "electron-build"}, (
        rebuilt
    )
    assert (root / CLI).read_bytes() == cli_before
    assert "devProbe" in (root / "crates/tachikoma-native/index.d.ts").read_text()
    assert dev.service("web-dev")["pid"] == vite_pid  # Vite is not restarted for it
    assert 'id="app"' in get(url)
    time.sleep(1)  # a few debounces: napi's temporary files (build.toml's excludes) ...
    state = dev.state()
    assert state is not None and state["last_rebuild"]["number"] == 1, state  # ... rebuild nothing

    running = dev.processes()
    assert len(running) >= 5, running  # nox, watch, its watchdog, npx, Vite's node
    os.killpg(dev.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
    assert dev.proc.wait(timeout=60) == 130, dev.output()[-3000:]
    assert "watch: stopped (SIGINT)" in dev.output()
    assert dev.processes() == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in dev.processes()]
    with pytest.raises(OSError):
        get(url)  # nothing listens there any more
