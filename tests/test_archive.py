"""Output records and their safe restore: what is refused, what is written, all or nothing."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from buildlib.cache import entries as archive
from buildlib.cache.entries import (
    CorruptBlobError,
    CorruptEntryError,
    FileKind,
    OutputFile,
    UnsafeEntryError,
    check_safe,
    materialize,
    symlink_record,
)
from buildlib.incremental.outputs import OutputScope


def blob_dir_with(tmp_path: Path, *contents: bytes) -> tuple[Path, list[str]]:
    blobs = tmp_path / "blobs"
    blobs.mkdir(exist_ok=True)
    digests = []
    for data in contents:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        digests.append(digest)
    return blobs, digests


def scope_of(records: list[OutputFile]) -> OutputScope:
    """A scope declaring each record's top-level directory (or file) as an output."""
    tops = {f.path.split("/")[0] for f in records}
    return OutputScope(sorted(t for t in tops if t not in ("", ".", "..")) or ["out"])


def file_record(path: str, data: bytes, mode: int = 0o644) -> OutputFile:
    return OutputFile(
        path=path,
        kind=FileKind.FILE,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mode=mode,
    )


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under root: path -> (kind, content or target), for before/after checks."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file():
            found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            found[rel] = ("dir", "")
    return found


DATA = b"payload\n"
GOOD = hashlib.sha256(DATA).hexdigest()

UNSAFE_RECORDS = {
    "absolute path": [OutputFile(path="/etc/evil", kind=FileKind.FILE, sha256=GOOD, size=8)],
    "dotdot path": [OutputFile(path="out/../../evil", kind=FileKind.FILE, sha256=GOOD, size=8)],
    "leading dotdot": [OutputFile(path="../evil", kind=FileKind.FILE, sha256=GOOD, size=8)],
    "symlink to absolute path": [symlink_record("out/link", "/etc")],
    "symlink climbing out": [symlink_record("out/link", "../../outside")],
    "path through own symlink": [
        symlink_record("out/dir", "real"),
        OutputFile(path="out/dir/x", kind=FileKind.FILE, sha256=GOOD, size=8),
    ],
    "hard link (file with a target)": [
        OutputFile(path="out/h", kind=FileKind.FILE, sha256=GOOD, size=8, target="out/other")
    ],
    "character device mode": [
        OutputFile(
            path="out/dev", kind=FileKind.FILE, sha256=GOOD, size=8, mode=stat.S_IFCHR | 0o644
        )
    ],
    "fifo mode": [
        OutputFile(
            path="out/fifo", kind=FileKind.FILE, sha256=GOOD, size=8, mode=stat.S_IFIFO | 0o644
        )
    ],
    "setuid": [OutputFile(path="out/suid", kind=FileKind.FILE, sha256=GOOD, size=8, mode=0o4755)],
    "setgid": [OutputFile(path="out/sgid", kind=FileKind.FILE, sha256=GOOD, size=8, mode=0o2755)],
    "duplicate path": [file_record("out/a", DATA), file_record("out/a", DATA)],
    "empty component": [OutputFile(path="out//a", kind=FileKind.FILE, sha256=GOOD, size=8)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE_RECORDS))
def test_unsafe_records_are_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    blobs, _ = blob_dir_with(tmp_path, DATA)
    root = tmp_path / "deep" / "er" / "ws"
    root.mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(UnsafeEntryError) as caught:
        materialize(UNSAFE_RECORDS[case], root, lambda d: blobs / d, scope_of(UNSAFE_RECORDS[case]))
    assert caught.value.problems
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("hardlink", "hard links"),
        ("chardev", "device"),
        ("blockdev", "device"),
        ("fifo", "FIFO"),
        ("socket", "socket"),
        ("weird", "unknown kind"),
    ],
)
def test_records_of_refused_kinds_do_not_parse(kind: str, words: str) -> None:
    record = {
        "path": "out/x",
        "kind": kind,
        "sha256": GOOD,
        "size": 8,
        "mode": 0o644,
        "target": "out/y",
    }
    with pytest.raises(UnsafeEntryError, match=words):
        OutputFile.from_json(record)


@pytest.mark.parametrize(
    "record",
    [
        "not an object",
        {"kind": "file"},
        {"path": "a", "kind": "file", "size": 1, "mode": 420},
        {"path": "a", "kind": "file", "sha256": GOOD, "size": True, "mode": 420},
        {"path": "a", "kind": "file", "sha256": GOOD, "size": 1},
        {"path": "a", "kind": "symlink", "sha256": GOOD, "size": 1, "mode": 511, "target": 3},
    ],
)
def test_malformed_records_are_corrupt(record: object) -> None:
    with pytest.raises(CorruptEntryError):
        OutputFile.from_json(record)


def test_check_safe_reports_every_problem_at_once() -> None:
    with pytest.raises(UnsafeEntryError) as caught:
        check_safe(
            [
                *UNSAFE_RECORDS["absolute path"],
                *UNSAFE_RECORDS["setuid"],
                *UNSAFE_RECORDS["symlink to absolute path"],
            ]
        )
    assert len(caught.value.problems) == 3


def test_in_tree_symlinks_are_accepted() -> None:
    check_safe(
        [
            symlink_record("out/bin/tool", "../lib/tool"),
            symlink_record("out/self", "."),
            symlink_record("top", "out/bin"),
        ]
    )


def test_restore_round_trip_keeps_modes_and_symlinks(tmp_path: Path) -> None:
    tool, lib = b"#!/bin/sh\necho hi\n", b"library"
    blobs, _ = blob_dir_with(tmp_path, tool, lib)
    records = [
        file_record("out/bin/tool", tool, 0o755),
        file_record("out/lib/lib.so", lib, 0o600),
        symlink_record("out/current", "bin"),
        symlink_record("out/bin/lib", "../lib/lib.so"),
    ]
    root = tmp_path / "ws"
    materialize(records, root, lambda d: blobs / d, scope_of(records))
    assert stat.S_IMODE((root / "out/bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "out/lib/lib.so").stat().st_mode) == 0o600
    assert os.readlink(root / "out/current") == "bin"
    assert (root / "out/bin/lib").read_bytes() == lib
    assert (root / "out/current/tool").read_bytes() == tool
    assert not [p for p in root.rglob("*") if ".restoring" in p.name]


def test_restore_ignores_the_umask(tmp_path: Path) -> None:
    blobs, _ = blob_dir_with(tmp_path, DATA)
    old = os.umask(0o077)
    try:
        materialize(
            [file_record("x", DATA, 0o755)],
            tmp_path / "ws",
            lambda d: blobs / d,
            OutputScope(["x"]),
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ws/x").stat().st_mode) == 0o755


@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024])  # the inline path and the thread pool
def test_corrupt_blob_is_never_restored(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "PARALLEL_MIN", 1024)  # send the large case through the pool
    good, bad = os.urandom(size), os.urandom(size)
    blobs, digests = blob_dir_with(tmp_path, good, DATA)
    (blobs / digests[0]).write_bytes(bad)  # same size, other content
    root = tmp_path / "ws"
    (root / "out").mkdir(parents=True)
    (root / "out/old").write_bytes(b"previous build")
    before = tree(root)
    records = [
        file_record("out/data.bin", good),
        file_record("out/other", DATA),
        file_record("out/old", DATA),
    ]
    with pytest.raises(CorruptBlobError) as caught:
        materialize(records, root, lambda d: blobs / d, scope_of(records))
    assert caught.value.path == "out/data.bin"
    assert tree(root) == before  # nothing half-restored, no temp files left


def test_truncated_blob_is_never_restored(tmp_path: Path) -> None:
    data = os.urandom(5000)
    blobs, digests = blob_dir_with(tmp_path, data)
    (blobs / digests[0]).write_bytes(data[:4000])
    with pytest.raises(CorruptBlobError):
        materialize(
            [file_record("f", data)], tmp_path / "ws", lambda d: blobs / d, OutputScope(["f"])
        )
    assert not (tmp_path / "ws/f").exists()


def test_large_outputs_restore_through_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "PARALLEL_MIN", 1024)
    contents = [os.urandom(n) for n in (0, 10, 300 * 1024, 1024 * 1024 + 7)]
    blobs, _ = blob_dir_with(tmp_path, *contents)
    records = [file_record(f"out/f{i}", data, 0o700 + i) for i, data in enumerate(contents)]
    materialize(records, tmp_path / "ws", lambda d: blobs / d, scope_of(records))
    for i, data in enumerate(contents):
        path = tmp_path / "ws" / f"out/f{i}"
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == 0o700 + i


@pytest.mark.parametrize("target", ["outside", "ws/src"])
def test_a_symlink_above_the_outputs_is_never_written_through(tmp_path: Path, target: str) -> None:
    (tmp_path / "ws/src").mkdir(parents=True)
    elsewhere = tmp_path / target
    elsewhere.mkdir(exist_ok=True)
    root = tmp_path / "ws"
    (root / "out").symlink_to(elsewhere)  # planted in the workspace, not in the entry
    blobs, _ = blob_dir_with(tmp_path, DATA)
    records = [file_record("out/new/file", DATA)]
    with pytest.raises(UnsafeEntryError, match="reached through a symlink"):
        materialize(records, root, lambda d: blobs / d, OutputScope(["out/new"]))
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_standing_for_a_directory_output_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ws"
    root.mkdir()
    (root / "out").symlink_to(outside)  # a stale or planted link where the output goes
    blobs, _ = blob_dir_with(tmp_path, DATA)
    materialize(
        [file_record("out/new/file", DATA)], root, lambda d: blobs / d, OutputScope(["out"])
    )
    assert list(outside.iterdir()) == []
    assert not (root / "out").is_symlink()
    assert (root / "out/new/file").read_bytes() == DATA


def test_existing_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "out.txt").symlink_to(outside)
    blobs, _ = blob_dir_with(tmp_path, DATA)
    materialize([file_record("out.txt", DATA)], root, lambda d: blobs / d, OutputScope(["out.txt"]))
    assert outside.read_bytes() == b"keep me"
    assert not (root / "out.txt").is_symlink()
    assert (root / "out.txt").read_bytes() == DATA


def test_copy_fd_falls_back_when_the_kernel_copy_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(70_000)
    (tmp_path / "src").write_bytes(data)

    def refuse(*_args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    with (tmp_path / "src").open("rb") as src, (tmp_path / "dst").open("wb") as dst:
        archive.copy_fd(src.fileno(), dst.fileno())
    assert (tmp_path / "dst").read_bytes() == data


@pytest.mark.parametrize("max_pending", [0, 1000])  # every batch inline / on the pool
@pytest.mark.parametrize("corrupt", [None, 0, 17, 39])
def test_small_files_hashed_on_the_pool_or_inline_are_all_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: int | None, max_pending: int
) -> None:
    monkeypatch.setattr(archive, "PARALLEL_MIN", 1024)  # the pool, for the large blob
    monkeypatch.setattr(archive, "HASH_BATCH", 1)  # one file per batch
    monkeypatch.setattr(archive, "MAX_PENDING", max_pending)
    small = [os.urandom(100 + i) for i in range(40)]
    large = os.urandom(3 * 1024 * 1024)
    blobs, digests = blob_dir_with(tmp_path, large, *small)
    if corrupt is not None:
        (blobs / digests[1 + corrupt]).write_bytes(os.urandom(100 + corrupt))
    records = [file_record("out/big.bin", large)]
    records += [file_record(f"out/s{i:02d}", data) for i, data in enumerate(small)]
    root = tmp_path / "ws"
    root.mkdir()
    if corrupt is None:
        materialize(records, root, lambda d: blobs / d, scope_of(records))
        assert (root / "out/big.bin").read_bytes() == large
        assert [(root / f"out/s{i:02d}").read_bytes() for i in range(40)] == small
    else:
        with pytest.raises(CorruptBlobError) as caught:
            materialize(records, root, lambda d: blobs / d, scope_of(records))
        assert caught.value.path == f"out/s{corrupt:02d}"
        assert tree(root) == {"out": ("dir", "")}  # no file placed, no temp file left


@pytest.mark.parametrize("missing", ["O_NOFOLLOW", "O_CLOEXEC"])
def test_an_archived_output_unpacks_where_os_lacks_a_posix_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """Windows' os module has no O_NOFOLLOW: an archive still unpacks there (each file
    made with O_EXCL in a directory of its own, so nothing found there is written through)."""
    from buildlib.cache import archives

    root = tmp_path / "ws"
    (root / "out/sub").mkdir(parents=True)
    (root / "out/sub/a.txt").write_bytes(DATA)
    chunks: list[bytes] = []
    archives.pack(str(root), "out", ["out/sub/a.txt"], chunks.append)
    blob = tmp_path / "blob"
    blob.write_bytes(b"".join(chunks))
    monkeypatch.delattr(os, missing)
    staging = tmp_path / "staging"
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    records = archives.extract(str(blob), digest, "out", str(staging))
    assert [r.path for r in records if r.kind is FileKind.FILE] == ["out/sub/a.txt"]
    assert (staging / "sub/a.txt").read_bytes() == DATA
