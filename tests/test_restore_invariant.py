"""The cache's trust boundary, as a property: a restore writes only the step's outputs.

The invariant (buildlib/cache/entries.py): restoring an entry for a step whose declared
outputs are a scope S into a workspace W
- changes nothing in W outside S, except creating missing parent directories of S's paths;
- changes nothing outside W at all;
- when the entry is accepted, leaves every path S covers holding exactly the entry's
  files (content, permission bits, link targets), and every restored symlink resolving,
  through the real file system, to a path inside W under the same output;
- when the entry is refused, changes nothing at all.

Hypothesis generates the workspace (files, directories, relative, absolute and chained
symlinks, some leading outside), the declared outputs (literal paths and globs) and the
entry (files with any mode, symlinks with any target, chained through each other),
and the real kernel resolves the links afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildlib.cache.entries import (
    FileKind,
    OutputFile,
    UnsafeEntryError,
    materialize,
    scope_problems,
    symlink_record,
)
from buildlib.incremental.outputs import OutputScope, expand_outputs

NAMES = ["a", "b", "out", "dist", "s"]
PATTERNS = ["out", "out/a", "dist", "a/dist", "a/*.js", "out/**", "*/dist", "b"]
Snapshot = dict[str, tuple[str, str, int]]


def rel_paths(max_depth: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(NAMES), min_size=1, max_size=max_depth).map("/".join)


def link_targets() -> st.SearchStrategy[str]:
    relative = st.lists(st.sampled_from([*NAMES, "..", "."]), min_size=1, max_size=5).map("/".join)
    absolute = st.sampled_from(
        ["/etc", "/tmp", "{outside}", "{outside}/x", "{root}", "{root}/out", "{root}/a/../.."]
    )
    return st.one_of(relative, relative, absolute)


@st.composite
def workspaces(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """(path, kind, payload) to create before the restore; later items may fail to
    be created (a parent is a file): they are simply skipped."""
    items = []
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["file", "dir", "link"]))
        payload = draw(link_targets()) if kind == "link" else draw(st.sampled_from(["x", "y"]))
        items.append((draw(rel_paths(3)), kind, payload))
    return items


@st.composite
def entries(draw: st.DrawFn) -> list[OutputFile]:
    records: dict[str, OutputFile] = {}
    for _ in range(draw(st.integers(0, 6))):
        path = draw(rel_paths(4))
        if draw(st.booleans()):
            data = draw(st.sampled_from([b"one", b"two", b""]))
            mode = draw(st.sampled_from([0o644, 0o755, 0o600, 0o4755]))
            records[path] = OutputFile(
                path=path,
                kind=FileKind.FILE,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                mode=mode,
            )
        else:
            records[path] = symlink_record(path, draw(link_targets()))
    return list(records.values())


def build(root: Path, outside: Path, items: list[tuple[str, str, str]]) -> None:
    for rel, kind, payload in items:
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "file":
                path.write_text(payload)
            elif kind == "dir":
                path.mkdir()
            else:
                path.symlink_to(payload.format(outside=outside, root=root))
        except OSError:
            continue


def snapshot(top: Path) -> Snapshot:
    """Every entry under `top`, symlinks not followed: path -> (kind, content, mode)."""
    found: Snapshot = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = path.relative_to(top).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path), 0)
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", "", 0)
            else:
                found[rel] = (
                    "file",
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                    stat.S_IMODE(info.st_mode),
                )
    return found


def check_restore(
    items: list[tuple[str, str, str]], patterns: list[str], records: list[OutputFile]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside, blobs = base / "ws", base / "outside", base / "blobs"
        for directory in (root, outside, blobs):
            directory.mkdir()
        (outside / "secret").write_text("keep")
        for data in (b"one", b"two", b""):
            (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        build(root, outside, items)
        scope = OutputScope(patterns)
        before, outside_before = snapshot(root), snapshot(outside)
        refused = failed = False
        try:
            materialize(records, root, lambda digest: blobs / digest, scope)
        except UnsafeEntryError:
            refused = True
        except OSError:  # the file system said no (none is expected here): the outputs
            failed = True  # may be half replaced, but nothing else may have changed
        accepted = not (refused or failed)
        after = snapshot(root)

        assert snapshot(outside) == outside_before, "a restore wrote outside the workspace"
        if refused:
            assert after == before, "a refused entry changed the workspace"
        _assert_outside_scope_unchanged(before, after, scope, records)
        if accepted:
            _assert_outputs_are_exactly_the_entry(root, after, scope, records)
            _assert_links_stay_in_their_output(root, scope, records)
            # What was restored could be saved again: the same rule holds at save time.
            assert scope_problems(records, scope, root) == []


def _assert_outside_scope_unchanged(
    before: Snapshot, after: Snapshot, scope: OutputScope, records: list[OutputFile]
) -> None:
    parents = {
        "/".join(f.path.split("/")[:i]) for f in records for i in range(1, f.path.count("/") + 1)
    }
    for rel in set(before) | set(after):
        if scope.owner(rel) is not None:
            continue
        if rel not in before:
            assert after[rel][0] == "dir" and rel in parents, f"{rel} created outside the outputs"
            continue
        assert after.get(rel) == before[rel], f"{rel} changed outside the outputs"


def _assert_outputs_are_exactly_the_entry(
    root: Path, after: Snapshot, scope: OutputScope, records: list[OutputFile]
) -> None:
    covered = set(expand_outputs(root, scope.patterns))
    assert covered == {f.path for f in records}
    for f in records:
        kind, payload, mode = after[f.path]
        if f.kind is FileKind.SYMLINK:
            assert (kind, payload) == ("link", f.target)
        else:
            assert (kind, payload, mode) == ("file", f.sha256, f.mode)


def _assert_links_stay_in_their_output(
    root: Path, scope: OutputScope, records: list[OutputFile]
) -> None:
    real_root = os.path.realpath(root)
    for f in records:
        if f.kind is not FileKind.SYMLINK:
            continue
        where = os.path.realpath(root / f.path)
        assert where == real_root or where.startswith(real_root + "/"), (
            f"{f.path} -> {f.target} resolves outside the workspace ({where})"
        )
        rel = os.path.relpath(where, real_root).replace(os.sep, "/")
        owner = scope.owner(f.path)
        assert owner is not None and scope.covers(owner, "" if rel == "." else rel), (
            f"{f.path} -> {f.target} resolves to {rel}, outside its output {owner}"
        )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workspaces(),
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
    entries(),
)
def test_a_restore_writes_only_the_declared_outputs(
    items: list[tuple[str, str, str]], patterns: list[str], records: list[OutputFile]
) -> None:
    check_restore(items, patterns, records)


@settings(max_examples=300, deadline=None)
@given(
    workspaces(),
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True),
    st.data(),
)
def test_entries_made_of_the_outputs_paths_are_mostly_accepted(
    items: list[tuple[str, str, str]], patterns: list[str], data: st.DataObject
) -> None:
    """Entries whose paths all lie under the outputs, with in-output links: the property
    holds, and such entries are not refused for no reason (the checks are not vacuous)."""
    scope = OutputScope(patterns)
    literal = [p for p in patterns if "*" not in p]
    if not literal:
        return
    records: list[OutputFile] = []
    for pattern in literal:
        name = data.draw(st.sampled_from(["f", "g/h"]))
        blob = b"one"
        records.append(
            OutputFile(
                path=f"{pattern}/{name}",
                kind=FileKind.FILE,
                sha256=hashlib.sha256(blob).hexdigest(),
                size=3,
                mode=0o644,
            )
        )
        records.append(symlink_record(f"{pattern}/link", name))
    check_restore(items, patterns, records)
    if not any(scope.owner(rel) is None and kind == "link" for rel, kind, _ in items) and len(
        literal
    ) == len(patterns):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            assert scope_problems(records, scope, root) == [] or any(
                a.startswith(b + "/") for a in literal for b in literal if a != b
            )


# -- the attacks of issue 11, as examples ---------------------------------------------------


def blobs_with(tmp_path: Path, *contents: bytes) -> Path:
    blobs = tmp_path / "blobs"
    blobs.mkdir(exist_ok=True)
    for data in contents:
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return blobs


def file_record(path: str, data: bytes, mode: int = 0o644) -> OutputFile:
    return OutputFile(
        path=path,
        kind=FileKind.FILE,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mode=mode,
    )


def test_an_entry_holding_a_script_beside_its_output_is_refused_whole(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts/verify-electron.cjs").write_text("// the real check\n")
    before = snapshot(root)
    evil = b"require('child_process').execSync('touch /tmp/pwned')\n"
    blobs = blobs_with(tmp_path, b"<html>", evil)
    records = [
        file_record("web/dist/index.html", b"<html>"),
        file_record("scripts/verify-electron.cjs", evil),
        file_record(".git/hooks/pre-commit", evil, 0o755),
    ]
    with pytest.raises(UnsafeEntryError, match="not under any declared output") as caught:
        materialize(records, root, lambda d: blobs / d, OutputScope(["web/dist"]))
    assert "scripts/verify-electron.cjs" in str(caught.value)
    assert ".git/hooks/pre-commit" in str(caught.value)
    assert snapshot(root) == before


def test_chained_symlinks_that_leave_the_output_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    records = [
        symlink_record("web/dist/s", "../.."),
        symlink_record("web/dist/index.html", "s/../../../etc/passwd"),
    ]
    with pytest.raises(UnsafeEntryError) as caught:
        materialize(records, root, lambda d: tmp_path / d, OutputScope(["web/dist"]))
    message = str(caught.value)
    assert "web/dist/s -> ../..: leads to ., outside its output 'web/dist'" in message
    assert "web/dist/index.html" in message and "outside" in message
    assert not (root / "web").exists()


def test_a_chain_through_an_existing_workspace_link_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "web/dist").mkdir(parents=True)
    (root / "web/up").symlink_to("../..")  # the workspace's own link, outside the output
    records = [symlink_record("web/dist/x", "../up/etc")]
    with pytest.raises(UnsafeEntryError, match="outside the workspace"):
        materialize(records, root, lambda d: tmp_path / d, OutputScope(["web/dist"]))


def test_links_inside_their_output_are_restored(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    blobs = blobs_with(tmp_path, b"tool")
    records = [
        file_record("node_modules/vite/bin/vite.js", b"tool", 0o755),
        symlink_record("node_modules/.bin/vite", "../vite/bin/vite.js"),
        symlink_record("node_modules/.bin/self", "."),
    ]
    materialize(records, root, lambda d: blobs / d, OutputScope(["node_modules"]))
    assert (root / "node_modules/.bin/vite").read_bytes() == b"tool"


def test_a_directory_output_holds_exactly_the_entry_after_a_restore(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "web/dist/assets").mkdir(parents=True)
    (root / "web/dist/assets/index-OLD.js").write_text("old bundle")
    (root / "web/dist/old-dir/deep").mkdir(parents=True)
    (root / "web/dist/old-dir/deep/x").write_text("old")
    (root / "web/dist/index.html").mkdir()  # a directory where the entry has a file
    (root / "web/dist/index.html/stale").write_text("old")
    (root / "web/src").mkdir(parents=True)
    (root / "web/src/App.svelte").write_text("<h1/>")
    blobs = blobs_with(tmp_path, b"new bundle", b"<html>")
    records = [
        file_record("web/dist/assets/index-NEW.js", b"new bundle"),
        file_record("web/dist/index.html", b"<html>"),
    ]
    materialize(records, root, lambda d: blobs / d, OutputScope(["web/dist"]))
    assert expand_outputs(root, ["web/dist"]) == [
        "web/dist/assets/index-NEW.js",
        "web/dist/index.html",
    ]
    assert not (root / "web/dist/old-dir").exists()
    assert (root / "web/src/App.svelte").read_text() == "<h1/>"


def test_an_entry_lacking_a_declared_output_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    blobs = blobs_with(tmp_path, b"x")
    with pytest.raises(UnsafeEntryError, match="no file for the declared output 'out/b'"):
        materialize(
            [file_record("out/a", b"x")], root, lambda d: blobs / d, OutputScope(["out/a", "out/b"])
        )


def test_a_directory_glob_covers_what_is_inside_never_the_directory_itself(
    tmp_path: Path,
) -> None:
    """`out/**` is what lies inside out/: an entry holding a file named `out` is refused
    (found by hypothesis: the scope took it, but expanding `out/**` never lists it, so it
    would have been nobody's output)."""
    root = tmp_path / "ws"
    root.mkdir()
    blobs = blobs_with(tmp_path, b"abc")
    scope = OutputScope(["out/**"])
    assert scope.owner("out") is None and scope.owner("out/a/b") == "out/**"
    with pytest.raises(UnsafeEntryError, match="out: not under any declared output"):
        materialize([file_record("out", b"abc")], root, lambda d: blobs / d, scope)
    assert list(root.iterdir()) == []
    materialize([file_record("out/a", b"abc")], root, lambda d: blobs / d, scope)
    assert expand_outputs(root, ["out/**"]) == ["out/a"]


def test_a_glob_output_covers_what_it_matches_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "crates/n").mkdir(parents=True)
    (root / "crates/n/old.node").write_text("old")
    (root / "crates/n/index.js").write_text("keep")
    blobs = blobs_with(tmp_path, b"native")
    scope = OutputScope(["crates/n/*.node"])
    with pytest.raises(UnsafeEntryError, match=r"index\.js: not under any declared output"):
        materialize(
            [
                file_record("crates/n/x.node", b"native"),
                file_record("crates/n/index.js", b"native"),
            ],
            root,
            lambda d: blobs / d,
            scope,
        )
    materialize([file_record("crates/n/x.node", b"native")], root, lambda d: blobs / d, scope)
    assert sorted(p.name for p in (root / "crates/n").iterdir()) == ["index.js", "x.node"]
    shutil.rmtree(root)
