"""`BuildDir.own`: the engine writes below `.buildlib/` only into directories of its own,
whatever a repository shipped there.

The invariant, tested on generated `.buildlib/` trees: after `own()`, each place of the
engine's directories (`logs/`, `logs/<tag>/`, `state/<tag>/`, `audit/<tag>/<step>/`...)
is a real directory or nothing, so the writers' `mkdir -p` and writes that follow stay
inside the workspace; and nothing outside the workspace changed: no entry made, removed
or rewritten there, whatever symlinks, files or FIFOs stood at those places. A
`.buildlib` that is a symlink or not a directory is refused, and nothing outside is
touched.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildlib.core.atomicfile import write_text_atomic
from buildlib.core.errors import UserError
from buildlib.core.layout import BuildDir

TAG = "dev-x86_64-unknown-linux-gnu"
# Every directory the engine writes in, at each level where one can be planted.
PLACES = (
    "logs",
    f"logs/{TAG}",
    "state",
    f"state/{TAG}",
    "journal",
    "reports",
    "plans",
    "watch",
    "artifacts",
    "audit",
    f"audit/{TAG}",
    f"audit/{TAG}/step",
)
PLANTS = ("directory", "link to a directory", "dangling link", "link to a file", "file", "fifo")


def snapshot(top: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under `top`: its kind and (for a file) its content, not following links."""
    found: dict[str, tuple[str, bytes]] = {}
    for directory, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            info = path.lstat()
            rel = str(path.relative_to(top))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                found[rel] = ("file", path.read_bytes())
            else:
                found[rel] = (stat.filemode(info.st_mode)[0], b"")
    return found


def plant(place: Path, kind: str, outside: Path) -> None:
    """Put `kind` at `place` (whose parent is a directory), aimed into `outside` for links,
    at a target holding files of the names the engine writes there."""
    target = outside / f"target-{len(list(outside.iterdir()))}"
    if kind == "directory":
        place.mkdir()
    elif kind == "link to a directory":
        target.mkdir()
        for name in ("precious.txt", "latest.json", "index.marshal", "step.log", TAG):
            (target / name).write_text("precious")
        place.symlink_to(target)
    elif kind == "dangling link":
        place.symlink_to(target)  # a writer going through it would create `target`
    elif kind == "link to a file":
        target.write_text("precious")
        place.symlink_to(target)
    elif kind == "file":
        place.write_text("shipped")
    elif kind == "fifo":
        os.mkfifo(place)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(PLACES), st.sampled_from(PLANTS), min_size=1))
def test_the_engines_directories_are_its_own_after_own(planted: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        root, outside = base / "ws", base / "outside"
        (root / ".buildlib").mkdir(parents=True)
        outside.mkdir()
        for rel, kind in sorted(planted.items()):  # parents before their children
            place = root / ".buildlib" / rel
            if place.parent.is_dir() and not place.parent.is_symlink():
                plant(place, kind, outside)  # else below a link or a file: not reachable
        before = snapshot(outside)
        BuildDir(root).own()
        for rel in PLACES:
            place = root / ".buildlib" / rel
            assert not place.is_symlink() and (place.is_dir() or not place.exists()), rel
        # What the writers then do: mkdir -p, write a file by rename, remove one.
        for rel in PLACES:
            place = root / ".buildlib" / rel
            place.mkdir(parents=True, exist_ok=True)
            write_text_atomic(place / "latest.json", "{}")
            (place / "index.marshal").unlink(missing_ok=True)
        assert snapshot(outside) == before


@pytest.mark.parametrize("shipped", ["link to a directory", "dangling link", "file", "fifo"])
def test_a_buildlib_that_is_not_a_directory_is_refused(tmp_path: Path, shipped: str) -> None:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    plant(root / ".buildlib", shipped, outside)
    before = snapshot(outside)
    with pytest.raises(UserError) as refused:
        BuildDir(root).own()
    what = "a symlink" if "link" in shipped else "not a directory"
    assert f".buildlib is {what}" in refused.value.message
    assert "rm " in (refused.value.fix or "")
    assert snapshot(outside) == before


def test_nothing_shipped_nothing_made(tmp_path: Path) -> None:
    """No `.buildlib` yet: `own` makes nothing (the writers make what they use)."""
    BuildDir(tmp_path).own()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("linked", ["watch and logs", "logs/<tag>"])
def test_watch_writes_its_status_and_service_logs_after_clearing_their_places(
    tmp_path: Path, linked: str
) -> None:
    """`watch` writes its status file and (re)opens a service's log without a build (no
    workspace lock): a link a checkout put at their directories since it started is
    cleared first, never written through."""
    import io
    import queue

    from buildlib.watch.services import Supervisor
    from buildlib.watch.view import WatchStatus, WatchView

    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / ".buildlib").mkdir(parents=True)
    outside.mkdir()
    build_dir = BuildDir(root)
    if linked == "watch and logs":
        (root / ".buildlib" / "watch").symlink_to(outside)
        (root / ".buildlib" / "logs").symlink_to(outside)
    else:
        (root / ".buildlib" / "logs").mkdir()
        build_dir.logs("dev", "t").symlink_to(outside)
    view = WatchView(
        io.StringIO(), status_path=build_dir.watch_status("dev", "t"), build_dir=build_dir
    )
    status = WatchStatus(
        mode="dev",
        target="t",
        pid=1,
        state="watching",
        watching=(),
        watches=None,
        services=(),
        last_rebuild=None,
    )
    view.status(status, line=False)
    supervisor = Supervisor(
        {},
        environ={},
        view=view,
        events=queue.SimpleQueue(),
        build_dir=build_dir,
        log_dir=build_dir.logs("dev", "t"),
    )
    supervisor._open_log("serve", ["serve"]).close()
    assert list(outside.iterdir()) == []
    assert build_dir.watch_status("dev", "t").is_file()
    assert (build_dir.logs("dev", "t") / "serve.log").is_file()


def test_own_parents_clears_only_the_way_to_one_file(tmp_path: Path) -> None:
    """A few lstats, whatever else `.buildlib` holds: a link elsewhere stays for `own`."""
    outside = tmp_path / "outside"
    outside.mkdir()
    build_dir = BuildDir(tmp_path / "ws")
    (build_dir.path / "logs").mkdir(parents=True)
    build_dir.logs("dev", "t").symlink_to(outside)
    (build_dir.path / "reports").symlink_to(outside)
    build_dir.own_parents(build_dir.logs("dev", "t") / "serve.log")
    assert not build_dir.logs("dev", "t").exists()
    assert (build_dir.path / "reports").is_symlink()
    build_dir.own_parents(build_dir.path / "gone" / "deeper" / "file")  # nothing there: fine
    assert list(outside.iterdir()) == []


def test_own_parents_refuses_a_path_that_climbs_out(tmp_path: Path) -> None:
    build_dir = BuildDir(tmp_path / "ws")
    build_dir.path.mkdir(parents=True)
    (tmp_path / "precious").write_text("precious")
    with pytest.raises(ValueError):
        build_dir.own_parents(build_dir.path / ".." / ".." / "precious" / "x")
    with pytest.raises(ValueError):
        build_dir.own_parents(tmp_path / "elsewhere" / "x")
    assert (tmp_path / "precious").read_text() == "precious"


@pytest.mark.parametrize("missing", ["O_NONBLOCK", "O_NOFOLLOW", "O_CLOEXEC"])
def test_own_files_open_where_os_lacks_a_posix_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """Windows' os module has no O_NONBLOCK or O_NOFOLLOW: the engine's own files (a
    log, the journal) still open there, and what they held is replaced."""
    from buildlib.core.atomicfile import open_own

    target = tmp_path / "step.log"
    target.write_bytes(b"an older build's log\n")
    monkeypatch.delattr(os, missing)
    fd = open_own(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"this build's\n")
    finally:
        os.close(fd)
    assert target.read_bytes() == b"this build's\n"
