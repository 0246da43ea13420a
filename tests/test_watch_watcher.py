"""The change watcher (buildlib/watch/watcher.py): real inotify events on a real file system,
and real inotify limits in a user namespace of their own."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildlib.watch.inotify import TooManyWatchesError, estimate_watches
from buildlib.watch.watcher import DEFAULT_DEBOUNCE, ChangeWatcher, prefix_ignorer

ROOT = Path(__file__).resolve().parent.parent
DIRS = ["web/src", "electron/src"]
IGNORED = prefix_ignorer(["web/src/gen", ".buildlib", "web/node_modules", "web/dist"])

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify (Linux) behaviour")


def write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def notify_threads() -> int:
    """Rust threads of notify ("notify-rs inotify loop", comm cut to 15 chars)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().startswith("notify-rs")
        except OSError:
            pass
    return n


def inotify_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return n


def wait_until(cond: object, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(cond())  # type: ignore[operator]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write(root / "web/src/main.ts", "main")
    write(root / "web/src/lib/util.ts", "util")
    write(root / "web/src/gen/routes.ts", "generated")  # an output inside an input dir
    write(root / "web/package.json", "{}")
    write(root / "web/node_modules/pkg/index.js", "")  # not watched
    write(root / "electron/src/main.ts", "main")
    write(root / "electron/src/ipc/x.ts", "x")
    (root / ".buildlib").mkdir()
    return root


@pytest.fixture
def watch(ws: Path) -> Iterator[ChangeWatcher]:
    threads = threading.active_count()
    w = ChangeWatcher(ws, DIRS, IGNORED, flat_dirs=["web"])
    try:
        yield w
    finally:
        w.close()
    assert threading.active_count() == threads


def test_an_edit_is_seen(ws: Path, watch: ChangeWatcher) -> None:
    (ws / "web/src/main.ts").write_text("edited")
    assert watch.next_batch(5) == {"web/src/main.ts"}
    (ws / "electron/src/ipc/x.ts").write_text("edited")
    (ws / "web/package.json").write_text('{"a": 1}')  # flat directory
    assert watch.next_batch(5) == {"electron/src/ipc/x.ts", "web/package.json"}
    assert watch.next_batch(0.5) is None


def test_a_burst_of_200_writes_is_one_batch(ws: Path, watch: ChangeWatcher) -> None:
    # the caller is already waiting when the burst starts, as in `buildlib watch`
    names = [f"web/src/lib/f{i:03}.ts" for i in range(200)]
    stamps: list[float] = []

    def burst() -> None:
        time.sleep(0.1)
        for name in names:
            fd = os.open(ws / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, b"burst")
            os.close(fd)
            stamps.append(time.monotonic())

    writer = threading.Thread(target=burst)
    writer.start()
    first = watch.next_batch(10)
    assert first is not None
    batches = [first]
    writer.join()
    while (more := watch.next_batch(0.5)) is not None:
        batches.append(more)
    took = stamps[-1] - stamps[0]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    print(f"burst of 200 writes took {took * 1000:.0f} ms, longest gap {max(gaps) * 1000:.0f} ms")
    assert set().union(*batches) == set(names)  # never loses a change
    # a burst splits only where the writer itself paused for about the debounce time
    # (this VM is shared: a writer thread can be descheduled for that long)
    pauses = sum(g >= DEFAULT_DEBOUNCE * 0.7 for g in gaps)
    if pauses == 0:
        assert len(batches) == 1
    else:
        assert len(batches) <= 1 + pauses


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_checkout_of_50_files_is_one_batch(ws: Path) -> None:
    for i in range(45):
        write(ws / f"web/src/pages/p{i:02}.ts", f"main {i}")
    for i in range(45, 50):
        write(ws / f"web/src/pages/p{i:02}.ts", f"gone {i}")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "main")
    git(ws, "checkout", "-q", "-b", "other")
    for i in range(40):
        write(ws / f"web/src/pages/p{i:02}.ts", f"other {i}")
    for i in range(45, 50):
        (ws / f"web/src/pages/p{i:02}.ts").unlink()
    for i in range(5):
        write(ws / f"web/src/feature/f{i}.ts", f"new {i}")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "other")
    git(ws, "checkout", "-q", "main")
    expected = (
        {f"web/src/pages/p{i:02}.ts" for i in [*range(40), *range(45, 50)]}
        | {f"web/src/feature/f{i}.ts" for i in range(5)}
        | {"web/src/feature"}
    )
    assert len(expected) == 51  # 50 files and the new directory
    with ChangeWatcher(ws, DIRS, IGNORED) as w:
        git(ws, "checkout", "-q", "other")
        assert w.next_batch(5) == expected
        assert w.next_batch(0.5) is None


def test_an_atomic_rename_swap_of_50_files_is_one_batch(ws: Path, watch: ChangeWatcher) -> None:
    targets = [ws / f"web/src/lib/s{i:02}.ts" for i in range(50)]
    for p in targets:
        p.write_text("old")
    assert watch.next_batch(5) == {f"web/src/lib/s{i:02}.ts" for i in range(50)}
    for p in targets:  # how editors and many tools save: write a temporary, rename over
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text("new")
        os.replace(tmp, p)
    batch = watch.next_batch(5)
    assert batch is not None
    real = {p for p in batch if not p.endswith(".tmp")}
    assert real == {f"web/src/lib/s{i:02}.ts" for i in range(50)}
    assert watch.next_batch(0.5) is None


def test_a_change_while_the_caller_is_busy_is_delivered_afterwards(
    ws: Path, watch: ChangeWatcher
) -> None:
    (ws / "web/src/main.ts").write_text("1")
    assert watch.next_batch(5) == {"web/src/main.ts"}
    # the caller now rebuilds for 2 s (it does not call next_batch); meanwhile the user
    # saves twice
    (ws / "web/src/lib/util.ts").write_text("during build")
    time.sleep(1.0)
    (ws / "electron/src/main.ts").write_text("during build")
    time.sleep(1.0)
    # both, in one batch, ready at once (timeout 0: no waiting for a quiet period that
    # passed long ago)
    assert watch.next_batch(0) == {"web/src/lib/util.ts", "electron/src/main.ts"}
    assert watch.next_batch(0.3) is None


def test_writes_under_an_ignored_output_dir_produce_nothing(ws: Path, watch: ChangeWatcher) -> None:
    # a step that writes into its own input tree (web/src/gen) must not retrigger itself
    for i in range(100):
        write(ws / f"web/src/gen/out{i}.ts", "generated")
    write(ws / "web/src/gen/sub/deeper/chunk.js", "generated")
    shutil.rmtree(ws / "web/src/gen/sub")
    write(ws / "web/dist/index.html", "built")  # output in the flat-watched web/
    assert watch.next_batch(1.0) is None


def test_ignored_traffic_never_delays_a_real_change(ws: Path) -> None:
    # A batch comes out after a quiet period or at max_delay: with max_delay far beyond
    # the timeout, it comes out at all only if the churn below never broke the quiet.
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            (ws / "web/src/gen/out0.ts").write_text(str(time.monotonic()))
            time.sleep(0.01)

    with ChangeWatcher(ws, DIRS, IGNORED, flat_dirs=["web"], max_delay=600) as watch:
        churner = threading.Thread(target=churn)
        churner.start()
        try:
            (ws / "web/src/main.ts").write_text("real")
            assert watch.next_batch(60) == {"web/src/main.ts"}
        finally:
            stop.set()
            churner.join()


def test_a_directory_created_after_start_is_watched(ws: Path, watch: ChangeWatcher) -> None:
    # files written at once, before notify has had time to watch the new directories
    os.makedirs(ws / "web/src/feature/deep/er")
    (ws / "web/src/feature/a.ts").write_text("a")
    (ws / "web/src/feature/deep/er/b.ts").write_text("b")
    assert watch.next_batch(5) == {
        "web/src/feature",
        "web/src/feature/a.ts",
        "web/src/feature/deep",
        "web/src/feature/deep/er",
        "web/src/feature/deep/er/b.ts",
    }
    (ws / "web/src/feature/deep/er/c.ts").write_text("c")
    assert watch.next_batch(5) == {"web/src/feature/deep/er/c.ts"}
    # a directory moved in from elsewhere is watched as well
    write(ws / "elsewhere/moved/m.ts", "m")
    os.rename(ws / "elsewhere/moved", ws / "electron/src/moved")
    assert watch.next_batch(5) == {"electron/src/moved", "electron/src/moved/m.ts"}
    (ws / "electron/src/moved/n.ts").write_text("n")
    assert watch.next_batch(5) == {"electron/src/moved/n.ts"}


def test_deleting_and_recreating_a_watched_directory(ws: Path, watch: ChangeWatcher) -> None:
    shutil.rmtree(ws / "web/src")
    batch = watch.next_batch(5)
    assert batch is not None and "web/src" in batch
    assert batch <= {"web/src", "web/src/main.ts", "web/src/lib", "web/src/lib/util.ts"}
    write(ws / "web/src/lib/util.ts", "back")
    (ws / "web/src/main.ts").write_text("back")
    batch = watch.next_batch(5)
    assert batch is not None
    assert (
        {"web/src/main.ts", "web/src/lib/util.ts"}
        <= batch
        <= {"web/src", "web/src/main.ts", "web/src/lib", "web/src/lib/util.ts"}
    )
    (ws / "web/src/lib/later.ts").write_text("later")
    assert watch.next_batch(5) == {"web/src/lib/later.ts"}
    # replaced by a rename (the old inode keeps its watch under a new name)
    os.rename(ws / "electron/src", ws / "electron/src.old")
    write(ws / "electron/src/main.ts", "new")
    batch = watch.next_batch(5)
    assert batch is not None and "electron/src/main.ts" in batch
    (ws / "electron/src.old/main.ts").write_text("not watched any more")
    (ws / "electron/src/main.ts").write_text("watched")
    assert watch.next_batch(5) == {"electron/src/main.ts"}
    # a subdirectory deleted and recreated at once
    shutil.rmtree(ws / "web/src/lib")
    write(ws / "web/src/lib/util.ts", "again")
    batch = watch.next_batch(5)
    assert batch is not None and "web/src/lib/util.ts" in batch
    (ws / "web/src/lib/util.ts").write_text("again 2")
    assert watch.next_batch(5) == {"web/src/lib/util.ts"}


def test_a_directory_missing_at_start_is_watched_once_created(ws: Path) -> None:
    with ChangeWatcher(ws, ["web/src", "docs/api"], IGNORED) as w:
        write(ws / "docs/api/index.md", "hi")
        batch = w.next_batch(5)
        assert batch is not None and "docs/api/index.md" in batch
        (ws / "docs/api/index.md").write_text("again")
        assert w.next_batch(5) == {"docs/api/index.md"}


def test_a_continuous_stream_still_yields_batches(ws: Path) -> None:
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            (ws / f"web/src/lib/s{i % 5}.ts").write_text(str(i))
            i += 1
            time.sleep(0.02)

    # a write every 20 ms is never quiet for the 0.1 s debounce: only max_delay ends a batch
    with ChangeWatcher(ws, DIRS, IGNORED, max_delay=0.5) as w:
        writer = threading.Thread(target=stream)
        writer.start()
        try:
            assert w.next_batch(30)
            assert w.next_batch(30)  # and again, while the stream goes on
        finally:
            stop.set()
            writer.join()


def test_close_is_prompt_and_leaves_nothing_running(ws: Path) -> None:
    # earlier tests' notify threads end asynchronously after their close(): let them
    wait_until(lambda: notify_threads() == 0 and inotify_fds() == 0)
    threads, rust, fds = threading.active_count(), notify_threads(), inotify_fds()
    w = ChangeWatcher(ws, DIRS, IGNORED, flat_dirs=["web"])
    assert inotify_fds() == fds + 2  # one instance for recursive, one for flat directories
    assert threading.active_count() == threads + 2
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(w.next_batch(30)))
    waiter.start()
    time.sleep(0.2)  # let it wait
    w.close()
    waiter.join(5)
    assert not waiter.is_alive() and got == [None]
    assert threading.active_count() == threads
    assert wait_until(lambda: notify_threads() == rust and inotify_fds() == fds)
    assert w.next_batch(0) is None
    w.close()  # idempotent


def test_the_estimate_matches_the_kernels_watch_count(ws: Path, tmp_path: Path) -> None:
    for i in range(30):
        (ws / f"web/src/components/c{i}/parts").mkdir(parents=True)
    write(tmp_path / "vendor/a/b/lib.ts", "")
    os.symlink(tmp_path / "vendor", ws / "web/src/vendor")  # notify follows symlinks
    os.symlink(ws / "electron/src", ws / "web/src/electron-link")  # same inodes: no extra
    est = estimate_watches(ws, DIRS, IGNORED, ["web"])
    # web/src: itself, lib, gen, components, 60 below it, vendor/a/b (3): 67; electron: 2; web: 1
    assert est.per_dir == {"web/src": 67, "electron/src": 2, "web": 1}
    assert est.total == 70 and est.ignored == 1
    assert est.heaviest[0] == ("web/src/components", 61)
    with ChangeWatcher(ws, DIRS, IGNORED, flat_dirs=["web"]) as w:
        assert w.watch_count() == est.total


def test_a_node_modules_sized_tree_is_refused(ws: Path) -> None:
    for i in range(60):
        (ws / f"crates/native/node_modules/p{i}/lib").mkdir(parents=True)
    write(ws / "crates/core/src/lib.rs", "")
    fds = inotify_fds()
    with pytest.raises(TooManyWatchesError, match=r"crates/native \(122\)") as info:
        ChangeWatcher(ws, ["crates"], max_watches=100)
    assert info.value.estimate.total == 125
    assert inotify_fds() == fds  # nothing was started


def test_polling_sees_an_edit(ws: Path) -> None:
    with ChangeWatcher(ws, DIRS, IGNORED, force_polling=True, poll_delay=0.05) as w:
        assert w.watch_count() is None
        # notify's poller compares mtimes in whole seconds: an edit in the same second
        # as its last scan is missed (one reason polling is no silent fallback)
        time.sleep(1.1)
        (ws / "web/src/main.ts").write_text("polled edit")
        assert w.next_batch(5) == {"web/src/main.ts"}


# --------------------------------------------------------------------------- inotify limits
#
# Reproduced for real in a fresh user namespace per test: its own limits
# (/proc/sys/user/max_inotify_{watches,instances}) can be lowered by its root without
# touching the machine's fs.inotify.* values, which other processes rely on.


def run_in_userns(ws: Path, body: str) -> str:
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    code = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from buildlib.watch.inotify import InotifyLimitError
        from buildlib.watch.watcher import ChangeWatcher
        root = {str(ws)!r}
        def limit(name, value):
            with open("/proc/sys/user/" + name, "w") as f:
                f.write(str(value))
        """
    ) + textwrap.dedent(body)
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"no user namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_watch_limit_at_start_is_reported(ws: Path) -> None:
    for i in range(150):
        (ws / f"web/src/components/c{i}").mkdir(parents=True)
    out = run_in_userns(
        ws,
        """
        limit("max_inotify_watches", 100)
        try:
            ChangeWatcher(root, ["web/src", "electron/src"])
        except InotifyLimitError as e:
            assert e.limit == "fs.inotify.max_user_watches" and e.value == 100, e
            print(e)
        else:
            raise AssertionError("no error")
    """,
    )
    assert "inotify watch limit reached while watching electron/src, web/src" in out
    assert "user.max_inotify_watches = 100" in out
    assert "the watched directories need about 156" in out
    assert "sudo sysctl fs.inotify.max_user_watches=" in out


def test_the_watch_limit_reached_later_is_reported_not_missed(ws: Path) -> None:
    out = run_in_userns(
        ws,
        """
        from watchfiles._rust_notify import RustNotify
        limit("max_inotify_watches", 40)
        # watchfiles alone: past the limit, new directories are silently unwatched
        raw = RustNotify([root + "/electron/src"], False, False, 300, True, False)
        for i in range(50):
            os.mkdir(f"{root}/electron/src/d{i}")
        raw.watch(50, 20, 2000, None)
        time.sleep(0.2)
        for i in range(50):
            open(f"{root}/electron/src/d{i}/f.ts", "w").close()
        seen = raw.watch(50, 20, 2000, None)
        raw.close()
        print("watchfiles saw", len(seen), "of 50")
        time.sleep(0.3)  # notify's thread releases its watches

        w = ChangeWatcher(root, ["web/src"])
        for i in range(60):
            os.makedirs(f"{root}/web/src/d{i}")
            open(f"{root}/web/src/d{i}/f.ts", "w").close()
        try:
            while w.next_batch(10) is not None:
                pass
        except InotifyLimitError as e:
            print(e)
        else:
            raise AssertionError("no error")
        finally:
            w.close()
    """,
    )
    seen = int(out.split("watchfiles saw ")[1].split()[0])
    assert seen < 50  # the silent failure this watcher guards against
    assert "inotify watch limit reached (no watch could be added for web/src/d" in out
    assert "sudo sysctl fs.inotify.max_user_watches=" in out


def test_the_instance_limit_is_reported(ws: Path) -> None:
    out = run_in_userns(
        ws,
        """
        limit("max_inotify_instances", 0)
        try:
            ChangeWatcher(root, ["web/src"])
        except InotifyLimitError as e:
            assert e.limit == "fs.inotify.max_user_instances" and e.value == 0, e
            print(e)
        else:
            raise AssertionError("no error")
    """,
    )
    assert "fs.inotify.max_user_instances" in out
    assert "user.max_inotify_instances = 0" in out
    assert "sudo sysctl fs.inotify.max_user_instances=" in out
