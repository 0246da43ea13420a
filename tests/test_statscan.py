"""The stat loop of a no-op build: the C version (`_speedups`) against the Python one.

Both run on the same real trees and must give the same answers: which files are
unchanged (their cached digest), which must be hashed (with their stat key), and which
are left out (missing, directories, FIFOs). The C version is what builds use whenever it
was compiled at install time, so a test also checks that it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from helpers import run_without_dac_override
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildlib.incremental import filehash, statscan
from buildlib.incremental.statscan import CachedEntry, StatKey, check_stats, lstat_keys

NOW = time.time_ns() + 3600 * 10**9  # every file on disk is old enough to trust


# check_stats' answer: (what must be hashed, the cached digests it reused)
Answer = tuple[list[tuple[str, StatKey, bool]], dict[str, str]]


def both(
    root: Path, paths: list[str], entries: dict[str, CachedEntry], trusted_before: int = NOW
) -> tuple[Answer, Answer]:
    """(C answer, Python answer), each as (todo, result)."""
    answers: list[Answer] = []
    for accelerated in (True, False):
        result: dict[str, str] = {}
        todo = check_stats(
            str(root), paths, entries, trusted_before, result, accelerated=accelerated
        )
        answers.append((todo, result))
    return answers[0], answers[1]


def key_of(path: Path) -> tuple[int, int, int, int]:
    st = path.lstat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src/nested").mkdir(parents=True)
    for rel, data in {
        "a.txt": b"a",
        "src/b.rs": b"bb",
        "src/nested/c.ts": b"ccc",
        "empty": b"",
    }.items():
        (root / rel).write_bytes(data)
    (root / "link").symlink_to("a.txt")
    (root / "dangling").symlink_to("nowhere")
    (root / "dirlink").symlink_to("src")
    os.mkfifo(root / "fifo")
    return root


def test_the_c_version_was_built() -> None:
    # Installing the project compiles _speedups.c whenever a C compiler is there (setup.py).
    if sysconfig.get_config_var("CC") is None or shutil.which("cc") is None:
        pytest.skip("no C compiler: the Python loop is the only one")
    assert statscan.ACCELERATED, (
        "buildlib.incremental._speedups is missing or stale: reinstall the project"
    )


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_same_answers_on_every_kind_of_path(tree: Path) -> None:
    paths = [
        "a.txt",
        "src/b.rs",
        "src/nested/c.ts",
        "empty",
        "link",
        "dangling",
        "dirlink",
        "fifo",
        "src",
        "missing",
        "a.txt/under-a-file",
        "src/nested/../b.rs",
    ]
    entries: dict[str, CachedEntry] = {
        "a.txt": (*key_of(tree / "a.txt"), "digest-a"),  # unchanged: reused
        "src/b.rs": (*key_of(tree / "src/b.rs")[:3], 1, "digest-b"),  # other inode
        "link": (*key_of(tree / "link"), "digest-link"),  # a symlink, unchanged
        "empty": (0, 0, 0, 0, "stale"),  # changed
    }
    c, python = both(tree, paths, entries)
    assert c == python
    todo, result = c
    assert result == {"a.txt": "digest-a", "link": "digest-link"}
    assert [(rel, is_link) for rel, _key, is_link in todo] == [
        ("src/b.rs", False),
        ("src/nested/c.ts", False),
        ("empty", False),
        ("dangling", True),
        ("dirlink", True),
        ("src/nested/../b.rs", False),
    ]
    assert todo[0][1] == key_of(tree / "src/b.rs")


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_recent_files_are_never_trusted(tree: Path) -> None:
    entries: dict[str, CachedEntry] = {"a.txt": (*key_of(tree / "a.txt"), "digest-a")}
    mtime = key_of(tree / "a.txt")[1]
    c, python = both(tree, ["a.txt"], entries, trusted_before=mtime)  # changed "just now"
    assert c == python
    assert c[1] == {}


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_a_file_dated_before_1970_is_reused_like_any_other(tree: Path) -> None:
    os.utime(tree / "a.txt", ns=(-5 * 10**9, -5 * 10**9))
    entries: dict[str, CachedEntry] = {"a.txt": (*key_of(tree / "a.txt"), "digest-a")}
    assert key_of(tree / "a.txt")[1] < 0
    c, python = both(tree, ["a.txt"], entries)
    assert c == python
    assert c[1] == {"a.txt": "digest-a"}


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_a_time_beyond_64_bit_nanoseconds_is_exact_and_never_trusted(tree: Path) -> None:
    far = 10**19  # the year 2286: ext4 stores it, 64-bit nanoseconds do not
    os.utime(tree / "a.txt", ns=(far, far))
    key = key_of(tree / "a.txt")
    assert key[1] == far
    entries: dict[str, CachedEntry] = {"a.txt": (*key, "digest-a")}
    c, python = both(tree, ["a.txt"], entries, trusted_before=2**63 - 1)
    assert c == python
    assert c == ([("a.txt", key, False)], {})


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_paths_are_taken_as_the_python_loop_takes_them(tree: Path) -> None:
    # f"{root}/{rel}": a leading slash stays under the root; an empty root means "/".
    c, python = both(tree, ["/a.txt", "//src/b.rs", "", "/"], {})
    assert c == python
    assert [rel for rel, _key, _link in c[0]] == ["/a.txt", "//src/b.rs"]
    absolute = str(tree / "a.txt").lstrip("/")
    for accelerated in (True, False):
        found = check_stats("", [absolute], {}, NOW, {}, accelerated=accelerated)
        assert [rel for rel, _key, _link in found] == [absolute]


@pytest.mark.parametrize("accelerated", [True, False])
def test_a_nul_byte_is_refused_as_lstat_refuses_it(tree: Path, accelerated: bool) -> None:
    with pytest.raises(ValueError, match="null"):
        check_stats(str(tree), ["a.txt", "b\0c"], {}, NOW, {}, accelerated=accelerated)
    with pytest.raises(ValueError, match="null"):
        check_stats(f"{tree}\0x", ["a.txt"], {}, NOW, {}, accelerated=accelerated)


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_malformed_cache_entries_only_miss(tree: Path) -> None:
    key = key_of(tree / "a.txt")
    for entry in [
        (key[0], key[1]),
        ("x", key[1], key[2], key[3], "d"),
        (key[0], key[1], key[2], -1, "d"),
        (2**70, *key[1:], "d"),
    ]:
        c, python = both(tree, ["a.txt"], {"a.txt": entry})  # type: ignore[dict-item]
        assert c == python, entry
        assert c[1] == {}, entry


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_many_paths_on_several_threads_keep_their_order(tmp_path: Path) -> None:
    root = tmp_path / "many"
    paths = []
    for i in range(5000):  # several threads' shares
        rel = f"d{i % 7}/f{i}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if i % 3:
            (root / rel).write_bytes(b"x" * (i % 11))
        paths.append(rel)
    entries: dict[str, CachedEntry] = {
        rel: (*key_of(root / rel), rel) for rel in paths[::2] if (root / rel).exists()
    }
    c, python = both(root, paths, entries)
    assert c == python
    assert len(c[1]) == len(entries)


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes: a surrogate escape in the str
    (root / name).write_bytes(b"x")
    c, python = both(root, [name, "plain"], {})
    assert c == python
    assert [rel for rel, _key, _link in c[0]] == [name]


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_missing_root_means_every_path_is_missing(tmp_path: Path) -> None:
    c, python = both(tmp_path / "gone", ["a", "b/c"], {})
    assert c == python == ([], {})


@pytest.mark.parametrize("accelerated", [True, False])
def test_other_lstat_errors_raise(tree: Path, accelerated: bool) -> None:
    (tree / "loop").symlink_to("loop")
    for rel, error in [("loop/x", errno.ELOOP), ("n" * 300, errno.ENAMETOOLONG)]:
        with pytest.raises(OSError) as caught:
            check_stats(str(tree), ["a.txt", rel], {}, NOW, {}, accelerated=accelerated)
        assert caught.value.errno == error
        assert caught.value.filename == f"{tree}/{rel}"


def test_lstat_keys_and_the_snapshot(tree: Path) -> None:
    keys = lstat_keys(str(tree), ["a.txt", "link", "src", "fifo", "missing"])
    assert keys == {"a.txt": key_of(tree / "a.txt"), "link": key_of(tree / "link")}
    snapshot = filehash.stat_snapshot(tree, ["a.txt", "missing", "src"])
    assert snapshot["a.txt"] == key_of(tree / "a.txt")[:2]
    assert snapshot["missing"] == snapshot["src"] == (-1, -1)
    (tree / "loop").symlink_to("loop")  # one path that cannot be stat'ed spoils no other
    snapshot = filehash.stat_snapshot(tree, ["a.txt", "loop/x"])
    assert snapshot == {"a.txt": key_of(tree / "a.txt")[:2], "loop/x": (-1, -1)}


def test_a_file_hasher_gives_the_same_digests_with_either_loop(tree: Path) -> None:
    cache = tree.parent / "stat.cache"
    first = FileHasherRun(tree, cache, accelerated=True)
    # a.txt, b.rs, c.ts, empty, and the three symlinks (their target strings)
    assert first.counters.files_hashed == 7
    for accelerated in (True, False):
        again = FileHasherRun(tree, cache, accelerated=accelerated)
        assert again.digests == first.digests
        assert again.counters.files_hashed == 0


class FileHasherRun:
    """One FileHasher pass over every file of `root`, its stat cache saved."""

    def __init__(self, root: Path, cache: Path, *, accelerated: bool) -> None:
        hasher = filehash.FileHasher(root, cache, clock=lambda: NOW)
        hasher.accelerated = accelerated
        self.digests = hasher.hash_files(hasher.expand(["**"]))
        self.counters = hasher.counters
        hasher.save()


def walked(
    root: Path,
    patterns: list[str],
    exclude: list[str],
    *,
    c_walk: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[str], int]:
    with monkeypatch.context() as patch:
        if not c_walk:
            patch.setattr(statscan, "_c_walk_files", None)
        hasher = filehash.FileHasher(root)
        return hasher.expand(patterns, exclude), hasher.counters.dirs_scanned


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
@pytest.mark.parametrize(
    ("patterns", "exclude"),
    [
        (["**"], []),
        (["web/**"], []),
        (["web", "src/*.rs"], []),
        (["**"], ["**/deep/**"]),
        (["**"], ["**/*.log"]),  # a general exclude: the Python walk throughout
        (["web/src/**"], []),  # a prefix the C walk opens itself
        (["web/link-to-src/**"], []),  # a prefix through a symlink: nothing
        (["web/src/text-link/**"], []),  # a prefix that is a symlink to a file: that file
        (["web/index.html/**", "web/dangling/**"], []),
        (["missing/deeper/**", "web/src/deep/er/**"], []),
    ],
)
def test_the_c_walk_lists_what_the_python_walk_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patterns: list[str], exclude: list[str]
) -> None:
    root = tmp_path / "ws"
    for rel in [
        "a.txt",
        ".hidden",
        "src/main.rs",
        "src/lib.rs",
        "web/index.html",
        "web/src/App.svelte",
        "web/src/deep/er/x.ts",
        "web/node_modules/dep/i.js",
        "web/dist/bundle.js",
        "node_modules",
        "web/build.log",
        "empty/.keep",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "emptydir/inner").mkdir(parents=True)
    (root / "web/link-to-src").symlink_to("src")  # a symlink to a directory: not followed
    (root / "web/dangling").symlink_to("nowhere")
    (root / "web/src/text-link").symlink_to("App.svelte")
    os.mkfifo(root / "web/fifo")
    (root / os.fsdecode(b"web/caf\xe9.txt")).write_bytes(b"x")
    c = walked(root, patterns, exclude, c_walk=True, monkeypatch=monkeypatch)
    python = walked(root, patterns, exclude, c_walk=False, monkeypatch=monkeypatch)
    assert c == python
    assert c[0] or patterns == ["web/link-to-src/**"]
    assert statscan.walk_files(str(root), "", ("node_modules",)) is not None  # C did run


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.lists(
        st.tuples(
            st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
            st.sampled_from(["dir", "file", "link-dir", "link-file", "dangling"]),
        ),
        max_size=12,
    ),
    prefix=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4),
)
def test_any_prefix_walks_the_same_in_c_and_python(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    entries: list[tuple[list[str], str]],
    prefix: list[str],
) -> None:
    # Whatever lies on the way to a glob's literal prefix (directories, files, symlinks to
    # either, dangling ones, nothing), the C walk that opens the prefix itself finds what
    # the Python walk finds after checking each component with lstat.
    root = tmp_path_factory.mktemp("ws")
    for parts, kind in entries:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "dir":
                path.mkdir(exist_ok=True)
                (path / "f").write_bytes(b"x")
            elif kind == "file":
                path.write_bytes(b"x")
            else:
                targets: dict[str, Path] = {
                    "link-dir": root / "a",
                    "link-file": root / "t",
                    "dangling": root / "gone",
                }
                path.symlink_to(targets[kind])
        except OSError:  # the place is taken, or lies through a symlink loop
            continue
    (root / "t").write_bytes(b"x")
    patterns = ["/".join(prefix) + "/**"]
    c = walked(root, patterns, [], c_walk=True, monkeypatch=monkeypatch)
    python = walked(root, patterns, [], c_walk=False, monkeypatch=monkeypatch)
    assert c == python


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_a_skip_name_holding_a_nul_matches_nothing(tmp_path: Path) -> None:
    for rel in ["a/x", "c/a/f", "b/y"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = statscan.walk_files(str(tmp_path), "", ("a\0b", "b"))
    assert found is not None
    assert sorted(found[0]) == ["a/x", "c/a/f"]


@pytest.mark.skipif(not statscan.ACCELERATED, reason="_speedups is not built")
def test_a_path_longer_than_the_system_allows_goes_to_python(tmp_path: Path) -> None:
    # Relative to the root's descriptor C could list it, but scandir of the whole path
    # fails: the C walk must fail the same way so that the error reads the same.
    root = tmp_path / "r"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    rel = []
    try:
        for _ in range(20):  # 20 x 250 bytes: longer than PATH_MAX (4096)
            name = "d" * 249
            os.mkdir(name, dir_fd=fd)
            next_fd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            rel.append(name)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    assert statscan.walk_files(str(root), "", ()) is None
    with pytest.raises(filehash.HashError, match="cannot list"):
        filehash.FileHasher(root).expand(["**"])


def test_a_failing_c_walk_hands_the_subtree_to_python(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(root: str, start: str, skip: tuple[str, ...]) -> tuple[list[str], int]:
        raise PermissionError(13, "Permission denied", f"{root}/{start}")

    expected = filehash.FileHasher(tree).expand(["**"])
    monkeypatch.setattr(statscan, "_c_walk_files", failing)
    assert statscan.walk_files(str(tree), "", ()) is None
    assert filehash.FileHasher(tree).expand(["**"]) == expected


@pytest.mark.parametrize("c_walk", [True, False])
def test_an_unreadable_directory_is_reported_by_either_walk(tree: Path, c_walk: bool) -> None:
    (tree / "src/nested").chmod(0)
    try:
        code = (
            "import sys\n"
            "from buildlib.incremental import filehash, statscan\n"
            f"if not {c_walk}: statscan._c_walk_files = None\n"
            "try:\n"
            f"    filehash.FileHasher({str(tree)!r}).expand(['**'])\n"
            "except filehash.HashError as exc:\n"
            "    print(exc.render())\n"
            "else:\n"
            "    print('listed')\n"
        )
        done = run_without_dac_override(code)
    finally:
        (tree / "src/nested").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "cannot list" in done.stdout and "src/nested" in done.stdout, done.stdout


@pytest.mark.skipif(
    not statscan.ACCELERATED or shutil.which("cc") is None,
    reason="_speedups is not built, or no C compiler for the shim",
)
def test_a_directory_that_fails_while_being_read_is_reported(tmp_path: Path) -> None:
    # An LD_PRELOAD shim makes readdir fail with EIO in directories named "flaky": the C
    # walk must not return a partial listing, and the Python walk reports the error.
    shim = tmp_path / "readdir_fails.so"
    source = Path(__file__).parent / "data" / "readdir_fails.c"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", str(source), "-o", str(shim), "-ldl"],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "ws"
    for rel in ["ok/a", "flaky/b"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    code = (
        "from buildlib.incremental import filehash, statscan\n"
        f"print(statscan.walk_files({str(root)!r}, '', ()))\n"
        "try:\n"
        f"    filehash.FileHasher({str(root)!r}).expand(['**'])\n"
        "except filehash.HashError as exc:\n"
        "    print(exc.render())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_PRELOAD": str(shim)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    first, rest = done.stdout.split("\n", 1)
    assert first == "None"
    assert "cannot list" in rest and "flaky" in rest and "Input/output error" in rest
