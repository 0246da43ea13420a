"""FileHasher on real temporary trees: globbing, excludes, the stat cache and its file."""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import threading
import time
from pathlib import Path

import pytest
from helpers import run_without_dac_override
from hypothesis import assume, given
from hypothesis import strategies as st

from buildlib.core.globs import literal_prefix, normal_path
from buildlib.ecosystems.defaults import DEFAULT_EXCLUDES
from buildlib.incremental import filehash, statscan
from buildlib.incremental.filehash import (
    RACY_WINDOW_NS,
    SMALL_FILE,
    FileHasher,
    PatternError,
    stat_snapshot,
)

LATER = 3600 * 10**9  # a clock an hour ahead: every file on disk is old enough to trust


def future_clock() -> int:
    return time.time_ns() + LATER


def write(root: Path, rel: str, data: bytes | str = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for rel in (
        "a.txt",
        "b.toml",
        ".hidden",
        "src/x.py",
        "src/y.py",
        "src/sub/z.py",
        "src/sub/notes.md",
        "docs/guide.md",
        "web/src/App.svelte",
        "web/node_modules/pkg/index.js",
        "node_modules/top.js",
        "target/debug/app",
        "crates/a/target/debug/lib.rlib",
        "web/dist/index.html",
        "src/__pycache__/x.cpython-311.pyc",
        ".git/HEAD",
        ".nox/s/bin/python",
        ".buildlib/state.json",
    ):
        write(root, rel, rel)
    return root


# -- globbing --------------------------------------------------------------------------------

NOT_EXCLUDED = [
    ".hidden",
    "a.txt",
    "b.toml",
    "docs/guide.md",
    "src/sub/notes.md",
    "src/sub/z.py",
    "src/x.py",
    "src/y.py",
    "web/src/App.svelte",
]


@pytest.mark.parametrize(
    ("patterns", "exclude", "expected"),
    [
        (["**"], [], NOT_EXCLUDED),
        (["."], [], NOT_EXCLUDED),
        (["src/**/*.py"], [], ["src/sub/z.py", "src/x.py", "src/y.py"]),
        (["src"], [], ["src/sub/notes.md", "src/sub/z.py", "src/x.py", "src/y.py"]),
        (["src/"], ["**/*.md"], ["src/sub/z.py", "src/x.py", "src/y.py"]),
        (["*.txt"], [], ["a.txt"]),
        (["*"], [], NOT_EXCLUDED),  # a matched directory means everything under it
        (["src/?.py"], [], ["src/x.py", "src/y.py"]),
        (["src/[x].py", "src/[!x].py"], [], ["src/x.py", "src/y.py"]),
        (["./src/sub/z.py", "b.toml", "missing.txt"], [], ["b.toml", "src/sub/z.py"]),
        (["**/*.md"], ["docs"], ["src/sub/notes.md"]),
        (["src/**", "src/x.py"], ["src/sub/**"], ["src/x.py", "src/y.py"]),
        (["**/App.svelte"], [], ["web/src/App.svelte"]),
        ([], [], []),
    ],
)
def test_expand_globs(
    tree: Path, patterns: list[str], exclude: list[str], expected: list[str]
) -> None:
    assert FileHasher(tree).expand(patterns, [*exclude, *DEFAULT_EXCLUDES]) == sorted(expected)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("c/[a-c].txt", ["c/a.txt", "c/b.txt"]),
        ("c/[!a-c].txt", ["c/-.txt", "c/[.txt", "c/].txt", "c/^.txt"]),
        ("c/[]].txt", ["c/].txt"]),
        ("c/[--].txt", ["c/-.txt"]),  # '-' alone, never a set operation
        ("c/[^a]*.txt", ["c/-.txt", "c/[.txt", "c/].txt", "c/^.txt", "c/b.txt"]),  # '^' is '!'
        ("c/[.txt", ["c/[.txt"]),  # an unclosed '[' is literal
        ("c/*.t?t", ["c/-.txt", "c/[.txt", "c/].txt", "c/^.txt", "c/a.txt", "c/b.txt"]),
    ],
)
def test_character_classes(tmp_path: Path, pattern: str, expected: list[str]) -> None:
    for name in ("a.txt", "b.txt", "-.txt", "].txt", "^.txt", "[.txt"):
        write(tmp_path, f"c/{name}")
    write(tmp_path, "c/sub/a.txt")  # `*` and classes never match across '/'
    assert FileHasher(tmp_path).expand([pattern]) == sorted(expected)


@pytest.mark.parametrize(
    "pattern",
    [
        "web/node_modules/**",
        "node_modules/top.js",
        "target/**",
        "crates/a/target/debug/lib.rlib",
        "**/*.pyc",
        ".git/HEAD",
        "**/dist/index.html",
    ],
)
def test_default_excludes_win_over_includes(tree: Path, pattern: str) -> None:
    assert FileHasher(tree).expand([pattern], DEFAULT_EXCLUDES) == []


@pytest.mark.parametrize("c_walk", [True, False])
def test_excluded_and_unmatched_directories_are_never_listed(
    tree: Path, monkeypatch: pytest.MonkeyPatch, c_walk: bool
) -> None:
    for i in range(20):
        write(tree, f"web/node_modules/dep{i}/lib/deep/index.js")
    listed: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        listed.append(Path(path).relative_to(tree.resolve()).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    if not c_walk:
        monkeypatch.setattr(statscan, "_c_walk_files", None)
    elif not statscan.ACCELERATED:
        pytest.skip("_speedups is not built")
    hasher = FileHasher(tree)
    assert hasher.expand(["web/**", "src/*.py"], ["**/sub/**", *DEFAULT_EXCLUDES]) == [
        "src/x.py",
        "src/y.py",
        "web/src/App.svelte",
    ]
    # Each glob is walked from its literal prefix: the root is never listed, only what the
    # globs can reach, and nothing excluded.
    assert hasher.counters.dirs_scanned == 3
    # "web/**" takes everything below web/: the C module lists that subtree itself.
    assert sorted(listed) == (["src"] if c_walk else ["src", "web", "web/src"])


@given(st.lists(st.sampled_from(["a", "b.c", ".", "..", "", "\\", "x\\y", " "]), max_size=6))
def test_normal_path_skips_the_split_only_when_it_changes_nothing(parts: list[str]) -> None:
    rel = "/".join(parts)
    split = "/".join(p for p in rel.replace("\\", "/").split("/") if p not in ("", "."))
    assert normal_path(rel) == split


def test_a_glob_is_walked_from_its_literal_prefix_only(tmp_path: Path) -> None:
    """Issue 17: with 1,000 packages, a step whose inputs are `packages/p0001/src/**` lists
    its own directories, never `packages/` with its 1,000 entries."""
    for i in range(50):
        write(tmp_path, f"packages/p{i:02d}/src/a.js")
        write(tmp_path, f"packages/p{i:02d}/src/deep/b.js")
    hasher = FileHasher(tmp_path)
    assert hasher.expand(["packages/p07/src/**"]) == [
        "packages/p07/src/a.js",
        "packages/p07/src/deep/b.js",
    ]
    assert hasher.counters.dirs_scanned <= 2  # src/ and src/deep/
    assert hasher.expand(["packages/*/src/a.js"]) == [
        f"packages/p{i:02d}/src/a.js" for i in range(50)
    ]
    assert hasher.expand(["packages/p07/src/a.js", "packages/p0/**"]) == [
        "packages/p07/src/a.js"
    ]  # a literal file, and a prefix that names nothing


def test_a_symlink_on_the_literal_prefix_is_never_followed(tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/src/secret.txt")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws/linked").symlink_to(tmp_path / "elsewhere")
    hasher = FileHasher(tmp_path / "ws")
    assert hasher.expand(["linked/src/**"]) == []  # the walk from the root never went in
    assert hasher.expand(["linked/**"]) == ["linked"]  # the link itself, as a file


@pytest.mark.parametrize("pattern", ["../outside/**", "src/../../x", "/etc/passwd", "C:/x"])
def test_patterns_leaving_the_workspace_are_rejected(tree: Path, pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        FileHasher(tree).expand([pattern])
    assert repr(pattern) in str(info.value)
    assert "relative to the workspace root" in str(info.value)


def test_symlinks_are_listed_and_hashed_as_links(tree: Path) -> None:
    (tree / "src" / "link.py").symlink_to("x.py")
    (tree / "linked-dir").symlink_to("src", target_is_directory=True)
    (tree / "dangling").symlink_to("nowhere")
    hasher = FileHasher(tree, clock=future_clock)
    files = hasher.expand(["src/link.py", "linked-dir/**", "linked-dir", "dangling"])
    assert files == ["dangling", "linked-dir", "src/link.py"]  # the directory is not followed
    hashes = hasher.hash_files(files)
    assert hashes == {
        "dangling": sha(b"nowhere"),
        "linked-dir": sha(b"src"),
        "src/link.py": sha(b"x.py"),
    }


# -- hashing ---------------------------------------------------------------------------------


def test_hashes_are_sha256_of_content_small_and_large(tmp_path: Path) -> None:
    big = [os.urandom(SMALL_FILE + 1 + i * 70_000) for i in range(4)]  # pool path, 1 MiB+ too
    big.append(os.urandom(3 << 20))
    for i, data in enumerate(big):
        write(tmp_path, f"big{i}.bin", data)
    write(tmp_path, "empty", b"")
    write(tmp_path, "small", b"hello")
    (tmp_path / "adir").mkdir()
    hasher = FileHasher(tmp_path, clock=future_clock)
    names = [f"big{i}.bin" for i in range(len(big))] + ["empty", "small", "adir", "gone"]
    result = hasher.hash_files(names)
    assert result == {
        **{f"big{i}.bin": sha(d) for i, d in enumerate(big)},
        "empty": sha(b""),
        "small": sha(b"hello"),
    }
    assert hasher.counters.files_hashed == len(big) + 2
    assert hasher.counters.bytes_hashed == sum(map(len, big)) + 5


def test_cache_is_reused_across_instances_and_saved_atomically(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "filehash.bin"
    first = FileHasher(tree, cache, clock=future_clock)
    files = first.expand(["**"])
    hashes = first.hash_files(files)
    assert first.counters.files_hashed == len(files)
    first.save()
    assert [p.name for p in cache.parent.iterdir()] == ["filehash.bin"]  # no temp file left

    second = FileHasher(tree, cache, clock=future_clock)
    assert second.hash_files(files) == hashes
    assert (second.counters.files_hashed, second.counters.files_reused) == (0, len(files))
    before = cache.stat()
    second.save()  # nothing changed: not rewritten
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_edited_file_is_rehashed(tree: Path) -> None:
    hasher = FileHasher(tree, clock=future_clock)
    hasher.hash_files(["a.txt", "b.toml"])
    write(tree, "a.txt", "a much longer content than before")
    assert hasher.hash_files(["a.txt", "b.toml"])["a.txt"] == sha(
        b"a much longer content than before"
    )
    assert (hasher.counters.files_hashed, hasher.counters.files_reused) == (3, 1)


def test_same_size_edit_with_restored_mtime_is_seen_through_ctime(tmp_path: Path) -> None:
    """`cp -p`, `touch -d` and `os.utime` can put the old mtime back, but no process can
    set ctime, and it is part of the cache key."""
    path = write(tmp_path, "f.txt", b"version-1")
    before = path.stat()
    hasher = FileHasher(tmp_path, clock=future_clock)
    assert hasher.hash_files(["f.txt"]) == {"f.txt": sha(b"version-1")}
    # Handshake with the filesystem clock, not a sleep: wait until a new write gets a
    # later ctime than the first one (timestamps advance in coarse ticks).
    probe = tmp_path / "probe"
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > before.st_ctime_ns:
            break
    with path.open("r+b") as f:  # in place: same inode
        f.write(b"version-2")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert hasher.hash_files(["f.txt"]) == {"f.txt": sha(b"version-2")}


def test_recently_changed_files_are_never_trusted(tmp_path: Path) -> None:
    """Racy git: a file written within RACY_WINDOW_NS of hashing may change again in the
    same timestamp tick with identical stat data, so it is hashed every time."""
    path = write(tmp_path, "fresh.txt", b"one")
    written = max(path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    cache = tmp_path / "cache.bin"
    hasher = FileHasher(tmp_path, cache, clock=lambda: written + RACY_WINDOW_NS // 2)
    hasher.hash_files(["fresh.txt"])
    hasher.hash_files(["fresh.txt"])
    assert (hasher.counters.files_hashed, hasher.counters.files_reused) == (2, 0)
    hasher.save()
    assert not cache.exists()  # nothing trustworthy to store

    aged = FileHasher(tmp_path, cache, clock=lambda: written + 2 * RACY_WINDOW_NS)
    aged.hash_files(["fresh.txt"])
    aged.hash_files(["fresh.txt"])
    assert (aged.counters.files_hashed, aged.counters.files_reused) == (1, 1)


def test_cached_entry_is_not_trusted_while_its_file_looks_recent(tmp_path: Path) -> None:
    """If the clock moved back since the entry was stored, the file counts as recent."""
    path = write(tmp_path, "f.txt", b"one")
    cache = tmp_path / "cache.bin"
    stored = FileHasher(tmp_path, cache, clock=future_clock)
    stored.hash_files(["f.txt"])
    stored.save()
    written = max(path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    recent = FileHasher(tmp_path, cache, clock=lambda: written + RACY_WINDOW_NS // 2)
    recent.hash_files(["f.txt"])
    assert (recent.counters.files_hashed, recent.counters.files_reused) == (1, 0)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        filehash._MAGIC,
        filehash._MAGIC + b"\0" * 16 + marshal.dumps({"a.txt": (1, 2, 3, 4, "0" * 64)}),
        filehash._MAGIC
        + hashlib.blake2b(marshal.dumps([1]), digest_size=16).digest()
        + marshal.dumps([1]),
        filehash._MAGIC + hashlib.blake2b(b"\xff", digest_size=16).digest() + b"\xff",
    ],
)
def test_corrupt_cache_means_starting_empty(tree: Path, tmp_path: Path, content: bytes) -> None:
    cache = tmp_path / "filehash.bin"
    cache.write_bytes(content)
    hasher = FileHasher(tree, cache, clock=future_clock)
    assert hasher.hash_files(["a.txt"]) == {"a.txt": sha(b"a.txt")}
    assert hasher.counters.files_hashed == 1
    hasher.save()
    again = FileHasher(tree, cache, clock=future_clock)
    again.hash_files(["a.txt"])
    assert again.counters.files_reused == 1


def test_truncated_cache_means_starting_empty(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "filehash.bin"
    hasher = FileHasher(tree, cache, clock=future_clock)
    hasher.hash_files(hasher.expand(["**"]))
    hasher.save()
    cache.write_bytes(cache.read_bytes()[:-7])
    again = FileHasher(tree, cache, clock=future_clock)
    again.hash_files(["a.txt"])
    assert (again.counters.files_hashed, again.counters.files_reused) == (1, 0)


def test_cache_path_that_is_a_directory_is_ignored_on_load(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache-dir"
    cache.mkdir()
    hasher = FileHasher(tree, cache, clock=future_clock)
    assert hasher.hash_files(["a.txt"]) == {"a.txt": sha(b"a.txt")}


def test_concurrent_callers_agree(tree: Path) -> None:
    for i in range(200):
        write(tree, f"many/f{i}.txt", str(i) * (i + 1))
    hasher = FileHasher(tree, clock=future_clock)
    files = hasher.expand(["many"])
    results: list[dict[str, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(hasher.hash_files(files))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"many/f{i}.txt": sha((str(i) * (i + 1)).encode()) for i in range(200)}
    assert results == [expected] * 4


def test_threads_hashing_while_a_file_changes_never_keep_a_stale_digest(tree: Path) -> None:
    """hash_files compares stats outside the hasher's lock, against a copy of the entries:
    while one file is replaced (size, ctime and inode change each time), every digest returned
    for it is of some content it held, every caller's count adds up, and once the writes
    stop the next call sees the last content, never a stale entry."""
    for i in range(50):
        write(tree, f"many/f{i}.txt", f"file {i}")
    hasher = FileHasher(tree, clock=future_clock)
    files = hasher.expand(["many"])
    contents = [f"version {n} " * (n + 1) for n in range(60)]
    written = {sha(c.encode()) for c in contents} | {sha(b"file 7")}
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                keys: dict[str, tuple[int, int, int, int]] = {}
                result = hasher.hash_files(files, keys)
                assert set(result) == set(files) == set(keys)
                seen.append(result["many/f7.txt"])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for text in contents:  # whole versions only (a rewrite in place has empty moments)
        (tree / "many/f7.tmp").write_text(text)
        (tree / "many/f7.tmp").replace(tree / "many/f7.txt")
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert seen and set(seen) <= written
    final = FileHasher(tree, clock=future_clock)
    assert hasher.hash_files(["many/f7.txt"]) == {"many/f7.txt": sha(contents[-1].encode())}
    assert final.hash_files(["many/f7.txt"]) == {"many/f7.txt": sha(contents[-1].encode())}
    counted = hasher.counters.files_hashed + hasher.counters.files_reused
    assert counted == len(files) * len(seen) + 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", "s")
    path.chmod(0)
    code = (
        "from buildlib.incremental.filehash import FileHasher, HashError\n"
        "try:\n"
        f"    FileHasher({str(tmp_path)!r}).hash_files(['secret.txt'])\n"
        "except HashError as exc:\n"
        "    print(exc.render())\n"
    )
    done = run_without_dac_override(code)  # as root too: setpriv drops DAC override
    assert done.returncode == 0, done.stderr
    assert re.search(r"cannot read .*secret\.txt.*\n  fix: .*exclude", done.stdout), done.stdout


def test_stat_snapshot(tmp_path: Path) -> None:
    path = write(tmp_path, "a", b"12345")
    snap = stat_snapshot(tmp_path, ["a", "missing"])
    assert snap == {"a": (5, path.stat().st_mtime_ns), "missing": (-1, -1)}
    keys = FileHasher(tmp_path).stat_keys(["a", "missing"])
    assert list(keys) == ["a"] and keys["a"][:2] == snap["a"]


def test_hash_files_reports_the_stat_keys_it_judged_by(tmp_path: Path) -> None:
    write(tmp_path, "a", b"12345")
    write(tmp_path, "b", b"678")
    hasher = FileHasher(tmp_path, clock=lambda: time.time_ns() + 10**12)
    keys: dict[str, tuple[int, int, int, int]] = {}
    hasher.hash_files(["a", "b", "missing"], keys)
    assert keys == hasher.stat_keys(["a", "b"])
    again: dict[str, tuple[int, int, int, int]] = {}
    hasher.hash_files(["a", "b"], again)  # reused from the stat cache this time
    assert hasher.counters.files_reused == 2 and again == keys


@given(
    st.lists(st.sampled_from(["a", "b", "**", "*", "*.ts", "[ab]", "."]), min_size=1, max_size=5)
)
def test_one_glob_starts_where_the_general_walk_plan_starts(segments: list[str]) -> None:
    # One include (most steps) takes a shortcut; the general plan for the same glob
    # twice must start from the same prefix in the same automaton states.
    glob = filehash.compile_glob("/".join(segments))
    general = filehash._walk_roots([glob, glob])
    assert filehash._walk_roots([glob]) == [(root, states[:1]) for root, states in general]


@given(
    st.lists(
        st.sampled_from(["a", "b", "**", "*", "*.ts", "[ab]", ".", "", " c", "d\\e"]),
        min_size=1,
        max_size=5,
    )
)
def test_the_literal_prefix_read_without_compiling_is_the_compiled_globs(
    segments: list[str],
) -> None:
    # The plan checks an output's literal part without compiling it; it must be the
    # part the glob dialect walks from.
    pattern = "/".join(segments)
    assume(not pattern.strip().startswith("/"))  # absolute: refused, no prefix to read
    assert literal_prefix(pattern) == filehash.compile_glob(pattern).prefix
