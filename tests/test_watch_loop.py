"""`buildlib watch` end to end on workspaces generated here: a real `python -m buildlib
watch` process, real steps and services (Python snippets), real inotify.

The tests wait by polling the status file (`.buildlib/watch/<mode>-<target>.json`)
and the files the steps write, each with a deadline; a step that must still be running
while the test acts waits for a "hold" file outside the workspace to go away
(handshake). Every process the watch starts inherits a marker variable, so what is
left after it ends is found in the process table (/proc/*/environ).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import MODES, PY_TOML, ROOT
from repos import npm_workspace

from buildlib.workspace.targets import host_triple

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="inotify and /proc (Linux)"),
    pytest.mark.timeout(300),
]

STATUS = f".buildlib/watch/development-{host_triple()}.json"

# A step: waits while HOLD exists, then writes OUT from its inputs and logs its run.
#   step.py NAME OUT MODE SRC...   MODE: cat (concatenate), upper (upper-cased, stripped)
STEP = textwrap.dedent("""
    import json, os, pathlib, sys, time
    name, out, mode, *sources = sys.argv[1:]
    log = os.environ["RUNS"]
    def note(event):
        with open(log, "a") as f:
            f.write(json.dumps({"step": name, "event": event, "t": time.monotonic()}) + "\\n")
    note("start")
    hold = os.environ.get("HOLD")
    while hold and os.path.exists(hold):
        time.sleep(0.02)
    text = ""
    for source in sources:
        p = pathlib.Path(source)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        text += "".join(f.read_text() for f in files)
    if mode == "upper":
        text = text.strip().upper()
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(out).write_text(text)
    note("end")
""")

# A service: serves DIR over HTTP on a free port and says where, as dev servers do.
#   serve.py DIR [--exit-once FILE] [--ignore-term]
SERVE = textwrap.dedent("""
    import functools, http.server, json, os, signal, sys, time
    directory = sys.argv[1]
    args = sys.argv[2:]
    if "--exit-once" in args:
        flag = args[args.index("--exit-once") + 1]
        if os.path.exists(flag):
            os.remove(flag)
            print("crashing on purpose", flush=True)
            sys.exit(3)
    if "--ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--child" in args:  # a worker in the same group, as npx starts node
        import subprocess
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["RUNS"], "a") as f:
        f.write(json.dumps({"step": "serve", "event": "start", "pid": os.getpid(),
                            "t": time.monotonic()}) + "\\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    print(f"  Local: http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
""")


def step(
    name: str,
    out: str,
    *sources: str,
    deps: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    mode: str = "cat",
    extra: str = "",
) -> str:
    args = ", ".join(json.dumps(a) for a in (name, out, mode, *sources))
    return textwrap.dedent(f"""
        [[step]]
        name = "{name}"
        command = [{PY_TOML}, "step.py", {args}]
        depends_on = {json.dumps(list(deps))}
        inputs = {json.dumps(list(inputs or sources))}
        outputs = {json.dumps(list(outputs or (out,)))}
    """) + textwrap.dedent(extra)


def service(
    name: str, directory: str, *flags: str, deps: tuple[str, ...] = (), extra: str = ""
) -> str:
    args = ", ".join(json.dumps(a) for a in ("serve.py", directory, *flags))
    return textwrap.dedent(f"""
        [[step]]
        name = "{name}"
        service = true
        command = [{PY_TOML}, "-u", {args}]
        depends_on = {json.dumps(list(deps))}
    """) + textwrap.dedent(extra)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def workspace(base: Path, steps: str, files: dict[str, str]) -> Path:
    root = base / "ws"
    write(root / "build.toml", "version = 2\n" + MODES + steps)
    write(root / "step.py", STEP)
    write(root / "serve.py", SERVE)
    for rel, text in files.items():
        write(root / rel, text)
    return root


def wait_until(
    cond: Callable[[], Any],
    what: str,
    timeout: float = 120.0,
    show: Callable[[], str] | None = None,
) -> Any:
    """`cond()` once it is true; on a timeout, the message ends with `show()` (what the
    watch printed), so a failure on CI says what happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"\n{show()}" if show is not None else ""
            raise AssertionError(f"timed out waiting for {what}{seen}")
        time.sleep(0.05)


class Watch:
    """A `python -m buildlib watch` in its own session, as a terminal would start it."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.marker = uuid.uuid4().hex
        self.runs_log = root.parent / "runs.jsonl"
        self.hold = root.parent / "hold"
        self.log = root.parent / f"watch-{self.marker[:8]}.log"
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_JOBS"))
        }
        full_env.update(
            {
                "PYTHONPATH": str(ROOT),
                "WATCH_TEST_MARKER": self.marker,
                "RUNS": str(self.runs_log),
                "HOLD": str(self.hold),
                **(env or {}),
            }
        )
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "buildlib", "watch", "-j", "2", *args],
                cwd=root,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / STATUS).read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("pid") == self.proc.pid else None

    def wait(
        self, cond: Callable[[dict[str, Any]], Any], what: str, timeout: float = 120.0
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"watch exited ({self.proc.returncode}) while waiting for "
                    f"{what}:\n{self.output()}"
                )
            status = self.status()
            return status if status is not None and cond(status) else None

        try:
            return wait_until(check, what, timeout)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def idle(self, number: int, timeout: float = 120.0) -> dict[str, Any]:
        """Until rebuild `number` (0: the first build) is done and nothing waits."""
        return self.wait(
            lambda s: (
                s["state"] == "watching"
                and not s["queued"]
                and s["last_rebuild"] is not None
                and s["last_rebuild"]["number"] >= number
            ),
            f"rebuild #{number} to finish",
            timeout,
        )

    def service(self, name: str) -> dict[str, Any]:
        status = self.status()
        assert status is not None
        found: dict[str, Any] = next(s for s in status["services"] if s["name"] == name)
        return found

    def rebuild_lines(self) -> list[str]:
        return [
            line
            for line in self.output().splitlines()
            if line.startswith("watch: rebuild #") and "done in" not in line
        ]

    def runs(self, name: str, event: str = "end") -> list[dict[str, Any]]:
        if not self.runs_log.exists():
            return []
        return [
            r
            for r in map(json.loads, self.runs_log.read_text().splitlines())
            if r["step"] == name and r["event"] == event
        ]

    def leftovers(self) -> list[int]:
        """Processes still alive that this watch (or anything it started) started."""
        found = []
        needle = f"WATCH_TEST_MARKER={self.marker}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(pid))
        return found

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send `signum` to the watch's whole process group, as Ctrl-C in its terminal does."""
        os.killpg(self.proc.pid, signum)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.kill()


def start(watches: list[Watch], root: Path, *args: str, **env: str) -> Watch:
    watch = Watch(root, *args, env=env)
    watches.append(watch)
    return watch


# -- rebuilding ------------------------------------------------------------------------------


def test_an_edit_rebuilds_the_affected_steps_and_dependents_with_early_cutoff(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("a", "out/a.txt", "src/a", mode="upper")
        + step("b", "out/b.txt", "src/b")
        + step("ab", "out/ab.txt", "out/a.txt", "out/b.txt", deps=("a", "b")),
        {"src/a/x.txt": "alpha", "src/b/y.txt": "beta"},
    )
    watch = start(watches, root)
    first = watch.idle(0)
    assert sorted(first["last_rebuild"]["ran"]) == ["a", "ab", "b"]
    assert (root / "out/ab.txt").read_text() == "ALPHAbeta"

    write(root / "src/a/x.txt", "gamma")
    last = watch.idle(1)["last_rebuild"]
    assert last["changed"] == ["src/a/x.txt"]
    assert last["ran"] == ["a", "ab"]  # b's inputs did not change
    assert (root / "out/ab.txt").read_text() == "GAMMAbeta"

    write(root / "src/a/x.txt", "gamma \n")  # a runs again, its output is the same
    last = watch.idle(2)["last_rebuild"]
    assert last["ran"] == ["a"]  # early cutoff: ab is up to date
    assert len(watch.runs("ab")) == 2
    assert watch.stop() == 130


def test_a_burst_of_saves_is_one_rebuild(tmp_path: Path, watches: list[Watch]) -> None:
    root = workspace(tmp_path, step("all", "out/all.txt", "src"), {"src/0.txt": "0"})
    watch = start(watches, root, "--debounce", "0.5")
    watch.idle(0)
    for i in range(40):  # an editor's "save all", a formatter over the tree
        write(root / f"src/{i % 7}/{i}.txt", str(i))
    last = watch.idle(1)["last_rebuild"]
    assert len(last["changed"]) == 47  # 40 files and the 7 new directories
    assert watch.rebuild_lines() == [
        line for line in watch.rebuild_lines() if line.startswith("watch: rebuild #1:")
    ]
    files = sorted(f for f in (root / "src").rglob("*") if f.is_file())
    assert len(files) == 41
    assert (root / "out/all.txt").read_text() == "".join(f.read_text() for f in files)


def test_changes_during_a_rebuild_are_queued_then_built_after_it_never_beside_it(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("slow", "out/all.txt", "src"),
        {"src/a.txt": "a1", "src/b.txt": "b1", "src/c.txt": "c1"},
    )
    watch = start(watches, root)
    watch.idle(0)
    watch.hold.touch()  # the next run of `slow` waits for it to go
    write(root / "src/a.txt", "a2")
    wait_until(
        lambda: len(watch.runs("slow", "start")) == 2, "the rebuild to start", show=watch.output
    )
    write(root / "src/b.txt", "b2")  # while it runs: queued
    write(root / "src/c.txt", "c2")
    queued = watch.wait(
        lambda s: {"src/b.txt", "src/c.txt"} <= set(s["queued"]), "the two saves to be queued"
    )
    assert queued["state"] == "building"
    assert len(watch.runs("slow", "start")) == 2  # no second build beside the first
    watch.hold.unlink()
    last = watch.idle(2)["last_rebuild"]
    assert sorted(last["changed"]) == ["src/b.txt", "src/c.txt"]  # one rebuild for both
    assert (root / "out/all.txt").read_text() == "a2b2c2"  # nothing was lost
    starts = [r["t"] for r in watch.runs("slow", "start")]
    ends = [r["t"] for r in watch.runs("slow", "end")]
    assert len(starts) == len(ends) == 3
    assert all(end <= later for end, later in zip(ends, starts[1:], strict=False))
    assert len(watch.rebuild_lines()) == 2


def test_a_step_writing_into_its_own_input_tree_causes_no_rebuild_loop(
    tmp_path: Path, watches: list[Watch]
) -> None:
    # gen reads src/ and writes src/gen/ (declared): a generated file inside its inputs,
    # new content every run, as a code generator stamping the time would.
    gen = textwrap.dedent(f"""
        [[step]]
        name = "gen"
        command = [{PY_TOML}, "-c", "import pathlib, time; g = pathlib.Path('src/gen'); g.mkdir(exist_ok=True); (g / 'stamp.ts').write_text(str(time.time())); (g / 'deep').mkdir(exist_ok=True); (g / 'deep/x.ts').write_text(str(time.time())); pathlib.Path('out').mkdir(exist_ok=True); pathlib.Path('out/n').write_text(str(len(list(pathlib.Path('src').rglob('*')))))"]
        inputs = ["src/**"]
        outputs = ["src/gen", "out"]
    """)
    root = workspace(tmp_path, gen, {"src/main.ts": "1", "src/lib/util.ts": "u"})
    watch = start(watches, root)
    watch.idle(0)
    write(root / "src/main.ts", "2")
    watch.idle(1)
    write(root / "src/lib/util.ts", "u2")  # the next rebuild is this edit's, not gen's
    watch.idle(2)
    lines = watch.rebuild_lines()
    assert lines == [
        "watch: rebuild #1: src/main.ts changed: gen",
        "watch: rebuild #2: src/lib/util.ts changed: gen",
    ], watch.output()


def test_outputs_and_the_engines_directory_trigger_nothing(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(tmp_path, step("a", "src/out/a.txt", "src/a.txt"), {"src/a.txt": "a"})
    watch = start(watches, root)
    watch.idle(0)
    write(root / "src/out/a.txt", "edited by hand")
    write(root / "src/out/new/extra.txt", "x")
    write(root / ".buildlib/scratch.txt", "x")
    write(root / "src/node_modules/pkg/index.js", "x")
    write(root / "src/a.txt", "a2")
    last = watch.idle(1)["last_rebuild"]
    assert last["changed"] == ["src/a.txt"]
    assert len(watch.rebuild_lines()) == 1


def test_a_step_that_keeps_rewriting_its_own_input_is_stopped_after_three_rebuilds(
    tmp_path: Path, watches: list[Watch]
) -> None:
    # writes src/count.txt, one of its own inputs, and does not declare it: a loop
    counter = textwrap.dedent(f"""
        [[step]]
        name = "count"
        command = [{PY_TOML}, "-c", "import pathlib; p = pathlib.Path('src/count.txt'); n = int(p.read_text() or 0) if p.exists() else 0; p.write_text(str(n + 1)); pathlib.Path('out').mkdir(exist_ok=True); pathlib.Path('out/n').write_text(str(n))"]
        inputs = ["src/**"]
        outputs = ["out"]
    """)
    root = workspace(tmp_path, counter, {"src/main.ts": "1"})
    watch = start(watches, root)
    watch.wait(lambda s: "rebuild loop" in watch.output(), "the loop to be noticed")
    assert "src/count.txt" in watch.output()
    assert "declare them among the outputs" in watch.output()
    loops = len(watch.rebuild_lines())
    assert loops == 2  # the first build, two rebuilds it caused, then it is ignored
    write(root / "src/main.ts", "2")  # a real edit still rebuilds
    watch.wait(lambda s: len(watch.rebuild_lines()) == loops + 1, "the edit's rebuild")
    last = watch.idle(loops + 1)["last_rebuild"]
    assert last["changed"] == ["src/main.ts"]


def test_a_new_directory_where_only_entries_were_watched_is_watched_from_then_on(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("pkgs", "out/all.txt", "packages", inputs=("packages/*/src/**",)),
        {"packages/a/src/a.txt": "a", "packages/a/node_modules/x/y.js": "y"},
    )
    watch = start(watches, root)
    status = watch.idle(0)
    assert "packages/*" in status["watching"]
    assert not any("node_modules" in w for w in status["watching"])
    write(root / "packages/b/src/deep/b.txt", "b")
    watch.idle(1)
    assert (root / "out/all.txt").read_text().endswith("b")
    write(root / "packages/b/src/deep/b.txt", "b2")  # inside the new directory: seen
    watch.idle(2)
    assert (root / "out/all.txt").read_text().endswith("b2")


def test_the_manifest_is_reloaded_and_an_invalid_one_is_reported_and_kept(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(tmp_path, step("a", "out/a.txt", "src/a.txt"), {"src/a.txt": "a"})
    watch = start(watches, root)
    watch.idle(0)
    manifest = root / "build.toml"
    good = manifest.read_text()
    manifest.write_text(good + "[[step]]\nname = 'broken'\n")
    watch.wait(
        lambda s: "missing required key" in watch.output() or "empty command" in watch.output(),
        "the manifest error",
    )
    assert "the manifest as it was is kept" in watch.output()
    write(root / "src/a.txt", "a2")  # still rebuilding with the old manifest
    watch.idle(1)
    manifest.write_text(good + step("b", "out/b.txt", "src/b.txt"))
    write(root / "src/b.txt", "b")
    watch.wait(lambda s: (root / "out/b.txt").exists(), "the new step to be built")
    assert "build.toml changed: reloaded" in watch.output()
    write(root / "src/b.txt", "b2")
    watch.wait(lambda s: (root / "out/b.txt").read_text() == "b2", "the new step's rebuild")


def test_a_second_watch_of_the_same_mode_is_refused(tmp_path: Path, watches: list[Watch]) -> None:
    root = workspace(tmp_path, step("a", "out/a.txt", "src/a.txt"), {"src/a.txt": "a"})
    first = start(watches, root)
    first.idle(0)
    second = subprocess.run(
        [sys.executable, "-m", "buildlib", "watch"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "another `buildlib watch` is watching" in second.stderr
    assert f"pid {first.proc.pid}" in second.stderr


# -- services --------------------------------------------------------------------------------


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_a_service_starts_once_its_dependencies_are_built_and_serves(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("site", "site/index.html", "src") + service("serve", "site", deps=("site",)),
        {"src/index.html": "<h1>v1</h1>"},
    )
    (tmp_path / "hold").touch()  # site waits: the service must wait for it
    watch = start(watches, root)
    wait_until(lambda: watch.runs("site", "start"), "site to start")
    waiting = watch.wait(lambda s: s["services"], "the status")["services"][0]
    assert waiting["state"] == "waiting" and waiting["pid"] is None
    (tmp_path / "hold").unlink()
    status = watch.wait(lambda s: s["services"][0]["url"], "the service's URL")
    url = status["services"][0]["url"]
    assert url.startswith("http://127.0.0.1:")
    assert get(url + "index.html") == "<h1>v1</h1>"
    started = watch.runs("serve", "start")[0]["t"]
    assert started > watch.runs("site", "end")[0]["t"]  # after its dependency was built
    assert "serve | " in watch.output() and "  Local: http://127.0.0.1" in watch.output()
    pid = status["services"][0]["pid"]
    # the view: a status line once the service has told its address
    assert f"status: serve running {url} (pid {pid})" in watch.output()
    write(root / "src/index.html", "<h1>v2</h1>")
    watch.idle(1)
    assert get(url + "index.html") == "<h1>v2</h1>"  # still the same server, new content
    assert watch.service("serve")["pid"] == pid
    # and after the rebuild: the services, then what changed, what ran, how long
    last = [line for line in watch.output().splitlines() if line.startswith("status:")][-1]
    assert re.fullmatch(
        rf"status: serve running {re.escape(url)} \(pid {pid}\) \| last "
        r"rebuild #1 \(src/index\.html\): ran site in \d+\.\ds, ok",
        last,
    ), last


def test_a_service_restarts_on_its_own_inputs_not_on_its_dependencies_by_default(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("site", "site/index.html", "src")
        + service("serve", "site", deps=("site",), extra='restart_on = ["server.conf"]\n'),
        {"src/index.html": "v1", "server.conf": "1"},
    )
    watch = start(watches, root)
    pid = watch.wait(lambda s: s["services"][0]["url"], "the service")["services"][0]["pid"]
    write(root / "src/index.html", "v2")  # its dependency's outputs change
    watch.idle(1)
    assert watch.service("serve")["pid"] == pid
    assert watch.service("serve")["restarts"] == 0
    write(root / "server.conf", "2")  # its own restart input
    restarted = watch.wait(
        lambda s: s["services"][0]["restarts"] == 1 and s["services"][0]["url"], "the restart"
    )["services"][0]
    assert restarted["pid"] != pid
    assert "service serve restarting: its restart inputs changed: server.conf" in watch.output()
    assert not _alive(pid)


def test_restart_on_deps_restarts_when_a_dependency_changed_its_outputs_only(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("site", "site/index.html", "src", mode="upper")
        + service("serve", "site", deps=("site",), extra="restart_on_deps = true\n"),
        {"src/index.html": "v1"},
    )
    watch = start(watches, root)
    pid = watch.wait(lambda s: s["services"][0]["url"], "the service")["services"][0]["pid"]
    write(root / "src/index.html", "v1  \n")  # site runs; its output comes out the same
    assert watch.idle(1)["last_rebuild"]["ran"] == ["site"]
    assert watch.service("serve")["pid"] == pid
    write(root / "src/index.html", "v2")
    watch.idle(2)
    restarted = watch.wait(
        lambda s: s["services"][0]["url"] and s["services"][0]["pid"] != pid, "the restart"
    )["services"][0]
    assert restarted["restarts"] == 1
    assert "restarting: outputs of site changed" in watch.output()


def test_a_service_that_exits_is_reported_and_started_again(
    tmp_path: Path, watches: list[Watch]
) -> None:
    flag = tmp_path / "crash-once"
    flag.touch()
    root = workspace(tmp_path, service("serve", ".", "--exit-once", str(flag)), {})
    watch = start(watches, root)
    status = watch.wait(lambda s: s["services"][0]["url"], "the service after its crash")
    serve = status["services"][0]
    assert serve["restarts"] == 1 and serve["state"] == "running"
    out = watch.output()
    assert "service serve exited with code 3" in out and "restarting in 0.5s" in out
    assert "crashing on purpose" in out  # the last lines it printed come with the report


def test_a_service_that_keeps_exiting_gives_up_and_says_what_starts_it_again(
    tmp_path: Path, watches: list[Watch]
) -> None:
    exits = textwrap.dedent(f"""
        [[step]]
        name = "flaky"
        service = true
        command = [{PY_TOML}, "-u", "-c", "print('boom'); raise SystemExit(3)"]
        depends_on = ["site"]
        restart_on = ["flaky.cfg"]
    """)
    root = workspace(
        tmp_path,
        step("site", "site/index.html", "src") + exits,
        {"src/index.html": "v1", "flaky.cfg": "1"},
    )
    watch = start(watches, root)
    # 0.5 + 1 + 2 + 4 + 8 s of backoff between six exits
    crashed = watch.wait(
        lambda s: s["services"][0]["state"] == "crashed", "it to give up", timeout=90
    )["services"][0]
    assert crashed["restarts"] == 5 and crashed["last_exit"] == 3
    # the line is printed before the status file is written; waiting for it costs nothing
    out = wait_until(
        lambda: o if "status: flaky crashed" in (o := watch.output()) else None,
        "the crashed status line",
        10,
        watch.output,
    )
    assert out.count("service flaky exited with code 3") == 6
    gave_up = (
        "exited 6 times in a row, each within 30s of its start; gave up: starts again "
        "when a file of its restart_on (flaky.cfg) changes or build.toml changes its "
        "definition"
    )
    assert crashed["detail"] == gave_up
    assert "watch: error: service flaky exited with code 3 after " in out and gave_up in out
    # every exit printed a status line: five backing off, then the last one
    status = [line for line in out.splitlines() if line.startswith("status: flaky ")]
    assert sum("flaky backoff" in line for line in status) == 5
    assert any(
        line.startswith("status: flaky crashed (5 restarts, exited 6 times") for line in status
    ), status
    write(root / "src/index.html", "v2")  # a dependency rebuilt: not a restart input
    watch.idle(1)
    assert watch.service("flaky")["state"] == "crashed"
    write(root / "flaky.cfg", "2")  # its own restart input: it starts again
    watch.wait(lambda s: s["services"][0]["restarts"] == 6, "the restart")
    assert "service flaky started (its restart inputs changed: flaky.cfg)" in watch.output()


VITE_MANIFEST = textwrap.dedent("""
    version = 2
    [modes.development]

    [[step]]
    name = "core"
    command = ["npm", "run", "build"]
    cwd = "packages/core"
    inputs = ["src/**", "package.json", "tsconfig.json"]
    outputs = ["dist"]

    [[step]]
    name = "ui-dev"
    service = true
    command = ["npx", "vite", "--host", "127.0.0.1", "--port", "0"]
    cwd = "packages/ui"
    depends_on = ["core"]
    restart_on = ["vite.config.ts"]
""")


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs node and npm")
def test_a_real_vite_dev_server_serves_svelte_edits_and_ctrl_c_leaves_no_process(
    tmp_path: Path, watches: list[Watch]
) -> None:
    repo = npm_workspace(tmp_path / "ws")
    install = subprocess.run(
        ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
        cwd=repo.root,
        env=repo.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    (repo.root / "build.toml").write_text(VITE_MANIFEST)
    watch = start(
        watches,
        repo.root,
        **{k: v for k, v in repo.env().items() if k.startswith(("npm_config_", "ELECTRON_"))},
    )
    status = watch.wait(lambda s: s["services"][0]["url"], "Vite's URL", timeout=180)
    vite = status["services"][0]
    url = vite["url"]
    assert url.startswith("http://127.0.0.1:"), url  # loopback, as asked
    assert status["last_rebuild"]["ran"] == ["core"]  # Vite started after core was built
    assert "Hello from Svelte" in get(url + "src/App.svelte")  # compiled by the plugin
    assert 'id="app"' in get(url)
    assert f"status: ui-dev running {url} (pid {vite['pid']})" in watch.output()

    app = repo.dir("@demo/ui") / "src/App.svelte"
    app.write_text(app.read_text().replace("Hello from Svelte", "Hello from watch"))
    wait_until(
        lambda: "Hello from watch" in get(url + "src/App.svelte"),
        "Vite to serve the edited component",
        timeout=60,
    )
    time.sleep(1)  # the watcher's debounce: a Svelte edit is nobody's input
    assert len(watch.rebuild_lines()) == 0  # ... so it rebuilds nothing

    core = repo.dir("@demo/core") / "src/index.ts"
    core.write_text(core.read_text().replace("Hello, ", "Hi, "))
    assert watch.idle(1)["last_rebuild"]["ran"] == ["core"]
    assert "Hi, " in (repo.dir("@demo/core") / "dist/index.js").read_text()
    wait_until(
        lambda: "Hi, " in get(url + "@fs" + str(repo.dir("@demo/core")) + "/dist/index.js"),
        "Vite to serve the rebuilt core",
    )
    assert watch.service("ui-dev")["pid"] == vite["pid"]  # a dependency: no restart

    before = watch.leftovers()
    assert len(before) >= 4, before  # watch, its watchdog, npx, Vite's node
    assert watch.stop(signal.SIGINT) == 130
    assert watch.leftovers() == [], [
        Path(f"/proc/{p}/cmdline").read_bytes() for p in watch.leftovers()
    ]
    with pytest.raises(OSError):
        get(url)  # nothing listens there any more


# -- stopping ----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_ctrl_c_stops_every_step_and_service_and_leaves_no_process(
    tmp_path: Path, watches: list[Watch]
) -> None:
    root = workspace(
        tmp_path,
        step("site", "site/index.html", "src")
        + step("slow", "out/slow.txt", "slow")
        + service("serve", "site", "--child", deps=("site",))
        + service("stubborn", "site", "--ignore-term", deps=("site",)),
        {"src/index.html": "x", "slow/a.txt": "a"},
    )
    watch = start(watches, root)
    watch.wait(lambda s: all(x["url"] for x in s["services"]), "both services")
    watch.hold.touch()
    write(root / "slow/a.txt", "b")  # a rebuild under way when Ctrl-C comes
    wait_until(
        lambda: len(watch.runs("slow", "start")) == 2, "the rebuild to start", show=watch.output
    )
    before = watch.leftovers()
    assert len(before) >= 6  # watch, its watchdogs, the step, two services, a worker
    assert watch.stop(signal.SIGINT) == 130
    assert watch.leftovers() == [], [
        Path(f"/proc/{p}/cmdline").read_bytes() for p in watch.leftovers()
    ]
    status = json.loads((root / STATUS).read_text())
    assert status["state"] == "stopped"
    assert {s["state"] for s in status["services"]} == {"stopped"}
    assert "stopped (SIGINT)" in watch.output()


def test_sigterm_stops_it_too_with_143(tmp_path: Path, watches: list[Watch]) -> None:
    root = workspace(tmp_path, service("serve", "."), {})
    watch = start(watches, root)
    watch.wait(lambda s: s["services"][0]["url"], "the service")
    assert watch.stop(signal.SIGTERM) == 143
    assert watch.leftovers() == []


def test_the_watch_limit_is_reported_not_silently_missed(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    files = {f"src/d{i}/x.txt": "x" for i in range(20)}
    root = workspace(tmp_path, step("all", "out/all.txt", "src"), files)
    script = (
        f"echo 5 > /proc/sys/user/max_inotify_watches && exec {sys.executable} -m buildlib watch"
    )
    run = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0 and "unshare failed" in run.stderr:
        pytest.skip(f"no user namespaces here: {run.stderr.strip()}")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "inotify watch limit reached" in run.stderr
    assert "sudo sysctl fs.inotify.max_user_watches=" in run.stderr
    assert "Traceback" not in run.stderr
