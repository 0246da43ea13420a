"""The step cache on a real local store: round trips, corruption, unsafe entries, LRU, ENOSPC."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY1, KEY2, KEY3, SCOPE, digest_of, make_output_tree

from buildlib.cache.cas import Area, LocalStore
from buildlib.cache.config import DEFAULT_MAX_SIZE, CacheConfig, resolve_cache_dir
from buildlib.cache.entries import FileKind, OutputFile, UnsafeEntryError
from buildlib.cache.store import (
    FORMAT,
    CacheEntry,
    CacheSource,
    StepCache,
    seal,
    unseal,
)
from buildlib.core.errors import UserError


def make_cache(directory: Path, *, max_size: int = DEFAULT_MAX_SIZE) -> StepCache:
    return StepCache(CacheConfig(local_dir=directory, max_size=max_size))


def hasher(root: Path) -> Callable[[str], str | None]:
    def hash_file(rel: str) -> str | None:
        path = root / rel
        return digest_of(path) if path.is_file() else None

    return hash_file


def save(cache: StepCache, root: Path, key: str, paths: list[str], step: str = "app") -> str | None:
    return cache.save(
        step, key, root, paths, root / "logs/step.log", {"mode": "development"}, scope=SCOPE
    )


def test_round_trip_restores_content_modes_symlinks_and_log(tmp_path: Path) -> None:
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    paths = make_output_tree(ws1)
    cache = make_cache(tmp_path / "cache")
    assert save(cache, ws1, KEY1, paths) is None
    entry = cache.lookup("app", KEY1)
    assert entry is not None
    assert entry.source is CacheSource.LOCAL
    assert entry.meta == {"mode": "development"}
    assert {f.path: f.kind for f in entry.files} == {
        "out/app": FileKind.SYMLINK,
        "out/bin/app": FileKind.FILE,
        "out/current": FileKind.SYMLINK,
        "out/share/data.txt": FileKind.FILE,
    }
    assert cache.restore(entry, ws2, SCOPE)
    for rel in ("out/bin/app", "out/share/data.txt"):
        assert digest_of(ws2 / rel) == digest_of(ws1 / rel)
        assert stat.S_IMODE((ws2 / rel).stat().st_mode) == stat.S_IMODE((ws1 / rel).stat().st_mode)
    assert os.readlink(ws2 / "out/app") == "bin/app"
    assert os.readlink(ws2 / "out/current") == "share"
    assert (
        subprocess.run([str(ws2 / "out/app")], capture_output=True, text=True, check=True).stdout
        == "app\n"
    )
    assert cache.log_text(entry) == "compiling \ndone\n"
    assert cache.warnings == []


def test_layout_is_ac_by_key_and_cas_by_sha256(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, paths)
    assert (tmp_path / "cache/ac" / KEY1).is_file()
    blob = tmp_path / "cache/cas" / digest_of(ws / "out/bin/app")
    assert blob.read_bytes() == (ws / "out/bin/app").read_bytes()
    for path in (tmp_path / "cache/cas").iterdir():
        assert path.name == digest_of(path)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_miss_for_unknown_key(tmp_path: Path) -> None:
    assert make_cache(tmp_path / "cache").lookup("app", KEY1) is None
    with pytest.raises(ValueError, match="sha256"):
        make_cache(tmp_path / "cache").lookup("app", "not-a-digest")


def test_corrupt_blob_is_discarded_and_never_restored(tmp_path: Path) -> None:
    ws, fresh = tmp_path / "ws", tmp_path / "fresh"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, paths)
    blob = tmp_path / "cache/cas" / digest_of(ws / "out/share/data.txt")
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF  # same size, one flipped bit
    blob.write_bytes(bytes(data))
    entry = cache.lookup("app", KEY1)
    assert entry is not None  # a size check cannot see it; the restore's hash does
    assert not cache.restore(entry, fresh, SCOPE)
    assert len(cache.warnings) == 1 and "corrupt" in cache.warnings[0]
    assert not (fresh / "out/share/data.txt").exists()
    assert not (fresh / "out/bin/app").exists()  # all or nothing
    assert not blob.exists()
    assert cache.lookup("app", KEY1) is None  # the entry went with it: a miss from now on


def test_truncated_blob_is_a_miss_with_one_warning(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, paths)
    save(cache, ws, KEY2, paths)
    blob = tmp_path / "cache/cas" / digest_of(ws / "out/share/data.txt")
    blob.write_bytes(blob.read_bytes()[:50])
    assert cache.lookup("app", KEY1) is None
    assert cache.lookup("app", KEY2) is None  # same blob; its entry is now incomplete
    assert len(cache.warnings) == 1
    assert "truncated" in cache.warnings[0]
    assert not (tmp_path / "cache/ac" / KEY1).exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "other key", "empty"])
def test_damaged_entry_is_a_miss_with_one_warning(tmp_path: Path, damage: str) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, paths)
    save(cache, ws, KEY2, paths)
    ac = tmp_path / "cache/ac" / KEY1
    data = ac.read_bytes()
    if damage == "truncate":
        ac.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ac.write_bytes(b"\x00\xff" * 40)
    elif damage == "tamper":  # valid JSON, an output redirected, seal not recomputed
        document = json.loads(data)
        document["body"]["files"][1]["sha256"] = "0" * 64
        ac.write_text(json.dumps(document))
    elif damage == "other key":
        ac.write_bytes((tmp_path / "cache/ac" / KEY2).read_bytes())
    else:
        ac.write_bytes(b"")
    assert cache.lookup("app", KEY1) is None
    assert len(cache.warnings) == 1 and "corrupt" in cache.warnings[0]
    assert not ac.exists()
    assert cache.lookup("app", KEY2) is not None  # the other entry is untouched


def sealed(files: list[dict[str, object]], key: str = KEY1) -> bytes:
    """A correctly sealed entry with arbitrary file records, as an attacker could write."""
    log = hashlib.sha256(b"").hexdigest()
    body = {
        "step": "app",
        "key": key,
        "created": 1.0,
        "files": files,
        "log": {"sha256": log, "size": 0},
        "meta": {},
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps(
        {"format": FORMAT, "sha256": hashlib.sha256(canonical).hexdigest(), "body": body}
    ).encode()


EVIL = b"evil\n"
EVIL_SHA = hashlib.sha256(EVIL).hexdigest()
MALICIOUS: dict[str, dict[str, Any]] = {
    "absolute path": {
        "path": "/tmp/evil",
        "kind": "file",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": 0o644,
    },
    "dotdot": {
        "path": "out/../../evil",
        "kind": "file",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": 0o644,
    },
    "symlink outside": {
        "path": "out/link",
        "kind": "symlink",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": 0o777,
        "target": "../../../etc",
    },
    "symlink absolute": {
        "path": "out/link",
        "kind": "symlink",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": 0o777,
        "target": "/etc",
    },
    "hard link": {
        "path": "out/h",
        "kind": "hardlink",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": 0o644,
        "target": "/etc/passwd",
    },
    "device": {"path": "out/dev", "kind": "chardev", "sha256": EVIL_SHA, "size": 5, "mode": 0o644},
    "device mode bits": {
        "path": "out/dev",
        "kind": "file",
        "sha256": EVIL_SHA,
        "size": 5,
        "mode": stat.S_IFBLK | 0o644,
    },
    "fifo": {"path": "out/fifo", "kind": "fifo", "sha256": EVIL_SHA, "size": 5, "mode": 0o644},
    "setuid": {"path": "out/suid", "kind": "file", "sha256": EVIL_SHA, "size": 5, "mode": 0o4755},
    "setgid": {"path": "out/sgid", "kind": "file", "sha256": EVIL_SHA, "size": 5, "mode": 0o2755},
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_entry_is_refused(tmp_path: Path, case: str) -> None:
    store = LocalStore(tmp_path / "cache")
    store.add_bytes(EVIL)
    store.add_bytes(b"")
    store.write_entry(KEY1, sealed([MALICIOUS[case]]))
    cache = make_cache(tmp_path / "cache")
    root = tmp_path / "a" / "b" / "ws"
    root.mkdir(parents=True)
    assert cache.lookup("app", KEY1) is None
    assert len(cache.warnings) == 1 and "refused" in cache.warnings[0]
    assert not (tmp_path / "cache/ac" / KEY1).exists()
    with pytest.raises(UnsafeEntryError):
        unseal(sealed([MALICIOUS[case]]), KEY1)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a/evil").exists()


@pytest.mark.parametrize("case", ["absolute path", "dotdot", "symlink outside", "setuid"])
def test_restore_refuses_a_malicious_entry_object(tmp_path: Path, case: str) -> None:
    """Even an entry built in memory (never unsealed) is checked before anything is written."""
    store = LocalStore(tmp_path / "cache")
    store.add_bytes(EVIL)
    record = MALICIOUS[case]
    entry = CacheEntry(
        step="app",
        key=KEY1,
        files=(
            OutputFile(
                path=str(record["path"]),
                kind=FileKind(record["kind"]),
                sha256=EVIL_SHA,
                size=5,
                mode=int(record["mode"]),
                target=record.get("target"),
            ),
        ),
        log_sha256=EVIL_SHA,
        log_size=5,
        created=0.0,
    )
    root = tmp_path / "a/b/ws"
    root.mkdir(parents=True)
    cache = make_cache(tmp_path / "cache")
    assert not cache.restore(entry, root, SCOPE)
    assert len(cache.warnings) == 1 and "refused" in cache.warnings[0]
    assert list(root.iterdir()) == []
    assert not (tmp_path / "a/evil").exists() and not (tmp_path / "evil").exists()


def test_seal_round_trip(tmp_path: Path) -> None:
    entry = CacheEntry(
        step="s",
        key=KEY1,
        files=(OutputFile(path="a", kind=FileKind.FILE, sha256=EVIL_SHA, size=5, mode=0o755),),
        log_sha256=EVIL_SHA,
        log_size=5,
        created=12.5,
        meta={"mode": "release", "n": [1, 2]},
    )
    assert unseal(seal(entry), KEY1) == entry


def test_symlink_leaving_the_workspace_is_not_stored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    (ws / "out/escape").symlink_to("../../elsewhere")
    cache = make_cache(tmp_path / "cache")
    warning = save(cache, ws, KEY1, [*paths, "out/escape"])
    assert warning is not None and "leads outside" in warning
    assert cache.lookup("app", KEY1) is None
    os.mkfifo(ws / "out/fifo")
    warning = save(cache, ws, KEY2, [*paths, "out/fifo"])  # each entry's problem is said
    assert warning is not None and "out/fifo: not a regular file" in warning
    assert cache.lookup("app", KEY2) is None
    assert cache.problem_counts() == {"not stored": 2}


def set_last_use(cache_dir: Path, key: str, when: float) -> None:
    os.utime(cache_dir / "ac" / key, (when, when))


def test_prune_drops_least_recently_used_entries_and_unshared_blobs(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = make_cache(cache_dir)
    roots = {}
    for key, seed in ((KEY1, "1"), (KEY2, "2"), (KEY3, "3")):
        roots[key] = tmp_path / seed
        paths = make_output_tree(roots[key], seed=seed)
        save(cache, roots[key], key, paths)
    for age, key in enumerate((KEY3, KEY1, KEY2)):  # KEY2 oldest, then KEY1, KEY3 newest
        set_last_use(cache_dir, key, 1_000_000 + (3 - age) * 1000)
    assert cache.lookup("app", KEY2) is not None  # using it makes it the most recent
    total = cache.size()
    result = cache.prune(total - 1)
    assert result.removed_entries == 1 and result.after <= total - 1
    assert cache.lookup("app", KEY1) is None
    assert cache.lookup("app", KEY2) is not None and cache.lookup("app", KEY3) is not None
    assert not (cache_dir / "cas" / digest_of(roots[KEY1] / "out/share/data.txt")).exists()
    assert result.before == total and result.after == cache.size()
    assert "pruned 1 entries" in str(result)
    assert cache.prune(0).after == 0
    assert list((cache_dir / "cas").iterdir()) == []


def test_prune_keeps_blobs_still_used_by_another_entry(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = make_cache(cache_dir)
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    save(cache, ws, KEY1, paths)
    save(cache, ws, KEY2, paths)  # the same outputs under another key: shared blobs
    set_last_use(cache_dir, KEY1, 1_000_000)
    cache.prune(cache.size() - 1)
    entry = cache.lookup("app", KEY2)
    assert entry is not None
    assert cache.restore(entry, tmp_path / "fresh", SCOPE)
    assert digest_of(tmp_path / "fresh/out/bin/app") == digest_of(ws / "out/bin/app")


def test_prune_removes_orphans_and_stale_temp_files_but_not_fresh_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "cache")
    old_orphan = store.add_bytes(b"orphan from a crashed save")
    new_orphan = store.add_bytes(b"blob of a save in progress")
    os.utime(store.path(Area.CAS, old_orphan), (1_000_000, 1_000_000))
    stale_tmp = tmp_path / "cache/cas/.tmp-1-abc"
    stale_tmp.write_bytes(b"partial")
    os.utime(stale_tmp, (1_000_000, 1_000_000))
    fresh_tmp = tmp_path / "cache/cas/.tmp-2-def"
    fresh_tmp.write_bytes(b"partial")
    cache = make_cache(tmp_path / "cache")
    cache.prune(10**9)
    assert not store.path(Area.CAS, old_orphan).exists() and not stale_tmp.exists()
    assert store.path(Area.CAS, new_orphan).exists() and fresh_tmp.exists()


def test_save_prunes_when_the_store_outgrows_its_limit(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = make_cache(cache_dir, max_size=8000)
    for i in range(6):
        ws = tmp_path / f"ws{i}"
        paths = make_output_tree(ws, seed=str(i))
        key = hashlib.sha256(str(i).encode()).hexdigest()
        assert save(cache, ws, key, paths) is None
        assert cache.size() <= 8000
    last = hashlib.sha256(b"5").hexdigest()
    assert cache.lookup("app", last) is not None
    assert cache.lookup("app", KEY1) is None


def test_the_first_save_of_a_build_is_counted_once(tmp_path: Path) -> None:
    """Five 1 MB entries fit a 5.5 MB limit: none is pruned. The size is measured at the
    first save of each build (a new StepCache); it already holds that save's bytes, which
    were counted a second time, so the fifth save pruned an entry that fitted."""
    cache_dir = tmp_path / "cache"
    keys = [hashlib.sha256(f"big{i}".encode()).hexdigest() for i in range(5)]
    for i, key in enumerate(keys):
        cache = make_cache(cache_dir, max_size=5_500_000)  # one build per save
        ws = tmp_path / f"ws{i}"
        (ws / "out").mkdir(parents=True)
        (ws / "out" / "blob.bin").write_bytes(os.urandom(1_000_000))
        (ws / "logs").mkdir()
        (ws / "logs" / "step.log").write_text(f"run {i}\n")
        assert save(cache, ws, key, ["out/blob.bin"]) is None
    assert [cache.lookup("app", key) is not None for key in keys] == [True] * 5, cache.size()
    assert cache.size() <= 5_500_000


def test_clear_empties_the_store(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, make_output_tree(ws))
    cache.clear()
    assert cache.size() == 0 and cache.lookup("app", KEY1) is None
    cache.clear()  # nothing there: still fine


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_cache_dir(None, {"BUILDLIB_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert resolve_cache_dir(None, {}).name == "buildlib"
    assert resolve_cache_dir(tmp_path / "flag", {"BUILDLIB_CACHE_DIR": "x"}) == tmp_path / "flag"
    monkeypatch.setenv("BUILDLIB_CACHE_DIR", str(tmp_path / "env"))
    assert StepCache(CacheConfig()).local.root == tmp_path / "env"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tiny real tmpfs (256 KiB), so ENOSPC and EROFS come from the kernel."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_gives_a_warning_not_an_error(tmp_path: Path, tmpfs: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    (ws / "out/big.bin").write_bytes(os.urandom(1024 * 1024))
    cache = make_cache(tmpfs / "cache")
    warning = save(cache, ws, KEY1, [*paths, "out/big.bin"])
    assert warning is not None and "No space left on device" in warning
    assert "not writable" in warning
    assert cache.lookup("app", KEY1) is None
    assert not list(tmpfs.rglob(".tmp-*"))  # the partial blob was removed
    assert save(cache, ws, KEY2, paths) is None  # said once; writes are off for this build
    assert cache.lookup("app", KEY2) is None


def test_read_only_cache_dir_gives_a_warning_and_still_serves_hits(
    tmp_path: Path, tmpfs: Path
) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    assert save(make_cache(tmpfs / "cache"), ws, KEY1, paths) is None
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    cache = make_cache(tmpfs / "cache")
    warning = save(cache, ws, KEY2, paths)
    assert warning is not None and "Read-only file system" in warning
    entry = cache.lookup("app", KEY1)
    assert entry is not None
    assert cache.restore(entry, tmp_path / "fresh", SCOPE)
    assert digest_of(tmp_path / "fresh/out/bin/app") == digest_of(ws / "out/bin/app")
    with pytest.raises(UserError, match="cannot prune the cache") as pruning:
        cache.prune(0)
    assert "Read-only file system" in str(pruning.value) and pruning.value.fix
    with pytest.raises(UserError, match="cannot empty the cache"):
        cache.clear()
    assert cache.lookup("app", KEY1) is not None


def test_unreadable_output_is_not_stored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    warning = save(cache, ws, KEY1, [*paths, "out/missing"])
    assert warning is not None and "out/missing" in warning
    assert cache.lookup("app", KEY1) is None


def test_missing_log_stores_an_empty_one(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    (ws / "logs/step.log").unlink()
    cache = make_cache(tmp_path / "cache")
    assert save(cache, ws, KEY1, paths) is None
    entry = cache.lookup("app", KEY1)
    assert entry is not None and cache.log_text(entry) == ""


def test_corrupt_log_is_dropped_with_a_warning(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cache = make_cache(tmp_path / "cache")
    save(cache, ws, KEY1, make_output_tree(ws))
    entry = cache.lookup("app", KEY1)
    assert entry is not None
    log_blob = tmp_path / "cache/cas" / entry.log_sha256
    log_blob.write_text("COMPILING\nDONE\n")  # same size, other text
    assert cache.log_text(entry) == ""
    assert len(cache.warnings) == 1 and "log" in cache.warnings[0]


def test_concurrent_saves_and_lookups_from_threads(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = make_cache(tmp_path / "cache")
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(16)]
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            assert save(cache, ws, key, paths) is None
            entry = cache.lookup("app", key)
            assert entry is not None
            assert cache.restore(entry, tmp_path / f"r-{key[:8]}", SCOPE)
        except BaseException as exc:  # reported below, with the thread's traceback lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.warnings == []


def test_concurrent_saves_from_processes_share_blobs_safely(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    (ws / "out/big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    script = (
        "import sys, hashlib; from pathlib import Path; from buildlib.cache.store import *\n"
        "from buildlib.incremental.outputs import OutputScope\n"
        "ws = Path(sys.argv[2]); cache = StepCache(CacheConfig(local_dir=Path(sys.argv[1])))\n"
        "for i in range(5):\n"
        "    key = hashlib.sha256(f'{sys.argv[3]}-{i}'.encode()).hexdigest()\n"
        "    assert cache.save('app', key, ws, sys.argv[4:], ws / 'logs/step.log', {},\n"
        "                      scope=OutputScope(['out'])) is None\n"
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                str(tmp_path / "cache"),
                str(ws),
                f"p{n}",
                *paths,
                "out/big.bin",
            ]
        )
        for n in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    for path in (tmp_path / "cache/cas").iterdir():
        assert path.name == digest_of(path)
    cache = make_cache(tmp_path / "cache")
    entry = cache.lookup("app", hashlib.sha256(b"p2-4").hexdigest())
    assert entry is not None
    assert cache.restore(entry, tmp_path / "fresh", SCOPE)
    assert digest_of(tmp_path / "fresh/out/big.bin") == digest_of(ws / "out/big.bin")
