"""Outputs stored as one archive (`store = "archive"`): the same trust boundary as files.

The invariant of tests/test_restore_invariant.py, on generated archives: a restore
writes only the step's declared outputs, never outside the workspace, and leaves an
archived output holding exactly the archive's files and links; an archive holding a
path that climbs out, an absolute path, a member through a link, a hard link, a device,
a setuid file or a link leading out of its output is refused whole, before anything
takes the output's place.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest
from helpers import PY_TOML, Workspace, ok
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_restore_invariant import (
    Snapshot,
    _assert_outside_scope_unchanged,
    build,
    link_targets,
    snapshot,
    workspaces,
)

from buildlib.cache.cas import Area
from buildlib.cache.config import CacheConfig
from buildlib.cache.entries import (
    CorruptBlobError,
    FileKind,
    OutputFile,
    UnsafeEntryError,
    materialize,
)
from buildlib.cache.store import StepCache
from buildlib.incremental.outputs import OutputScope, expand_outputs

MEMBER_NAMES = ["a", "b", "s", "bin", ".bin"]
ARCHIVED = ["out", "dist", "a/dist", "b"]  # literal outputs an archive may stand for
# (kind, name, payload, mode)
Member = tuple[str, str, str, int]


def member_names() -> st.SearchStrategy[str]:
    plain = st.lists(st.sampled_from(MEMBER_NAMES), min_size=1, max_size=3).map("/".join)
    hostile = st.sampled_from(["../x", "a/../../x", "/etc/x", "./a", "a//b", "", "a/."])
    return st.one_of(plain, plain, plain, hostile)


@st.composite
def archive_members(draw: st.DrawFn) -> list[Member]:
    members: list[Member] = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["file", "file", "link", "dir", "hardlink", "fifo", "chardev"]))
        payload = (
            draw(link_targets())
            if kind in ("link", "hardlink")
            else draw(st.sampled_from(["one", "two", ""]))
        )
        mode = draw(st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2755]))
        members.append((kind, draw(member_names()), payload, mode))
    return members


TYPES = {
    "file": tarfile.REGTYPE,
    "link": tarfile.SYMTYPE,
    "dir": tarfile.DIRTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
}


def make_archive(members: list[Member], *, outside: Path, root: Path) -> bytes:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for kind, name, payload, mode in members:
            info = tarfile.TarInfo(name)
            info.type = TYPES[kind]
            info.mode = mode
            if kind in ("link", "hardlink"):
                info.linkname = payload.format(outside=outside, root=root)
                tar.addfile(info)
            elif kind == "file":
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return raw.getvalue()


def archive_record(output: str, data: bytes) -> OutputFile:
    return OutputFile(
        path=output,
        kind=FileKind.ARCHIVE,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mode=0o755,
    )


def check_archive_restore(
    items: list[tuple[str, str, str]], output: str, members: list[Member], extra: list[str]
) -> bool:
    """Restore an entry holding one archive for `output` (one of the step's declared
    outputs, beside `extra` ones that get a plain file each); True when accepted."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside, blobs = base / "ws", base / "outside", base / "blobs"
        for directory in (root, outside, blobs):
            directory.mkdir()
        (outside / "secret").write_text("keep")
        data = make_archive(members, outside=outside, root=root)
        record = archive_record(output, data)
        (blobs / record.sha256).write_bytes(data)
        plain = []
        for other in extra:
            content = b"plain"
            (blobs / hashlib.sha256(content).hexdigest()).write_bytes(content)
            plain.append(
                OutputFile(
                    path=f"{other}/f",
                    kind=FileKind.FILE,
                    sha256=hashlib.sha256(content).hexdigest(),
                    size=5,
                )
            )
        records = [record, *plain]
        build(root, outside, items)
        scope = OutputScope([output, *extra])
        before, outside_before = snapshot(root), snapshot(outside)
        refused = False
        try:
            materialize(records, root, lambda digest: blobs / digest, scope)
        except UnsafeEntryError:
            refused = True
        after = snapshot(root)
        assert snapshot(outside) == outside_before, "a restore wrote outside the workspace"
        assert not any(".restoring" in rel or rel.endswith(".old") for rel in after), (
            "a staging directory was left behind"
        )
        if refused:
            assert after == before, "a refused archive changed the workspace"
            return False
        _assert_outside_scope_unchanged(before, after, scope, records)
        _assert_output_is_exactly_the_archive(root, after, output, members)
        _assert_links_stay_in(root, output, after)
        return True


def _assert_output_is_exactly_the_archive(
    root: Path, after: Snapshot, output: str, members: list[Member]
) -> None:
    expected = {
        f"{output}/{name}": (kind, payload, mode)
        for kind, name, payload, mode in members
        if kind in ("file", "link")
    }
    listed = set(expand_outputs(root, [output]))
    assert listed == set(expected)
    for rel, (kind, payload, mode) in expected.items():
        got_kind, got_payload, got_mode = after[rel]
        if kind == "link":
            assert (got_kind, got_payload) == ("link", payload)
        else:
            assert (got_kind, got_payload, got_mode) == (
                "file",
                hashlib.sha256(payload.encode()).hexdigest(),
                mode,
            )
            assert not mode & 0o6000, "a setuid or setgid file was restored"


def _assert_links_stay_in(root: Path, output: str, after: Snapshot) -> None:
    real_output = os.path.realpath(root / output)
    for rel, (kind, _payload, _mode) in after.items():
        if kind == "link" and rel.startswith(output + "/"):
            where = os.path.realpath(root / rel)
            assert where == real_output or where.startswith(real_output + "/"), (
                f"{rel} resolves outside its output ({where})"
            )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workspaces(),
    st.sampled_from(ARCHIVED),
    archive_members(),
    st.lists(st.sampled_from(["c", "out/x"]), max_size=1),
)
def test_an_archive_restore_writes_only_its_output(
    items: list[tuple[str, str, str]], output: str, members: list[Member], extra: list[str]
) -> None:
    if any(e == output or e.startswith(output + "/") or output.startswith(e + "/") for e in extra):
        extra = []
    check_archive_restore(items, output, members, extra)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workspaces(),
    st.sampled_from(ARCHIVED),
    st.lists(
        st.tuples(st.sampled_from(MEMBER_NAMES), st.sampled_from(["one", "two"])),
        min_size=1,
        max_size=4,
        unique_by=lambda m: m[0],
    ),
)
# Found by the property: `out -> .` makes `out/a` the file `a`, on the way to `a/dist`.
@example(
    items=[("out", "link", "."), ("out/a", "file", "x"), ("a/a", "file", "x")],
    output="a/dist",
    files=[("a", "one")],
)
def test_well_formed_archives_are_accepted(
    items: list[tuple[str, str, str]], output: str, files: list[tuple[str, str]]
) -> None:
    """The checks are not vacuous: an archive of plain files and an in-output link is
    restored unless the workspace itself blocks the output (a link or file on its way)."""
    members: list[Member] = [("file", name, payload, 0o644) for name, payload in files]
    members.append(("link", "self-link", files[0][0], 0o777))
    accepted = check_archive_restore(items, output, members, [])
    assert accepted or _blocked(items, output)


def _blocked(items: list[tuple[str, str, str]], output: str) -> bool:
    """Whether the workspace `items` build has a file or a link at `output` or on its way,
    in the tree as built: an item written through a link (`out -> .`, then `out/a`)
    lands elsewhere than its name says."""
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "ws", Path(tmp) / "outside"
        root.mkdir()
        outside.mkdir()
        build(root, outside, items)
        parts = output.split("/")
        for end in range(1, len(parts) + 1):
            try:
                mode = os.lstat(root.joinpath(*parts[:end])).st_mode
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(mode):
                return True
        return False


# -- examples ------------------------------------------------------------------------------


def test_a_member_climbing_out_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root, blobs = tmp_path / "ws", tmp_path / "blobs"
    (root / "web/node_modules/kept").mkdir(parents=True)
    blobs.mkdir()
    data = make_archive(
        [("file", "ok.js", "x", 0o644), ("file", "../../evil.sh", "x", 0o755)],
        outside=tmp_path,
        root=root,
    )
    record = archive_record("web/node_modules", data)
    (blobs / record.sha256).write_bytes(data)
    with pytest.raises(UnsafeEntryError, match=r"'\.\.' component"):
        materialize([record], root, lambda d: blobs / d, OutputScope(["web/node_modules"]))
    assert sorted(p.name for p in (root / "web").iterdir()) == ["node_modules"]
    assert (root / "web/node_modules/kept").is_dir()
    assert not (tmp_path / "evil.sh").exists()


def test_a_tampered_archive_is_corrupt_and_the_output_is_kept(tmp_path: Path) -> None:
    root, blobs = tmp_path / "ws", tmp_path / "blobs"
    (root / "out").mkdir(parents=True)
    (root / "out/old").write_text("old")
    blobs.mkdir()
    good = make_archive([("file", "new", "new", 0o644)], outside=tmp_path, root=root)
    evil = make_archive([("file", "new", "evil", 0o644)], outside=tmp_path, root=root)
    record = archive_record("out", good)
    (blobs / record.sha256).write_bytes(evil)  # same name, other bytes
    with pytest.raises(CorruptBlobError):
        materialize([record], root, lambda d: blobs / d, OutputScope(["out"]))
    assert [p.name for p in (root / "out").iterdir()] == ["old"]
    assert sorted(p.name for p in root.iterdir()) == ["out"]


def test_an_archive_must_stand_for_a_whole_declared_output(tmp_path: Path) -> None:
    root, blobs = tmp_path / "ws", tmp_path / "blobs"
    root.mkdir()
    blobs.mkdir()
    data = make_archive([("file", "x", "x", 0o644)], outside=tmp_path, root=root)
    record = archive_record("out/sub", data)
    (blobs / record.sha256).write_bytes(data)
    with pytest.raises(UnsafeEntryError, match="whole declared output"):
        materialize([record], root, lambda d: blobs / d, OutputScope(["out"]))


# -- through the store ---------------------------------------------------------------------


def node_modules(root: Path, version: str, count: int = 300) -> list[str]:
    """A package tree like npm's: many small files, nested packages, .bin links."""
    base = root / "web/node_modules"
    for i in range(count):
        package = base / f"pkg{i % 30}" / ("lib" if i % 2 else "dist")
        package.mkdir(parents=True, exist_ok=True)
        (package / f"m{i}.js").write_text(f"// {version}\nmodule.exports = {i};\n" * 20)
    (base / ".bin").mkdir(exist_ok=True)
    if not (base / ".bin/tool").is_symlink():
        (base / ".bin/tool").symlink_to("../pkg1/lib/m1.js")
    (base / "pkg1/lib/m1.js").chmod(0o755)
    return expand_outputs(root, ["web/node_modules"])


def store_with(tmp_path: Path) -> StepCache:
    return StepCache(CacheConfig(local_dir=tmp_path / "cache"))


def test_an_archived_output_round_trips_as_one_blob(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    files = node_modules(root, "v1")
    log = tmp_path / "log"
    log.write_text("added 300 packages\n")
    cache = store_with(tmp_path)
    scope = OutputScope(["web/node_modules"])
    key = "a" * 64
    assert (
        cache.save(
            "web-install", key, root, files, log, {}, scope=scope, archives=["web/node_modules"]
        )
        is None
    )
    entry = cache.lookup("web-install", key)
    assert entry is not None
    assert [(f.path, f.kind) for f in entry.files] == [("web/node_modules", FileKind.ARCHIVE)]
    blobs = list((cache.local.root / Area.CAS.value).iterdir())
    assert len(blobs) == 2  # the archive and the log, not one blob per file
    before = snapshot(root)
    (root / "web/node_modules/pkg3/lib/m3.js").write_text("edited")
    (root / "web/node_modules/stray").write_text("not in the entry")
    assert cache.restore(entry, root, scope)
    assert snapshot(root) == before
    # The same tree packs to the same blob: a second save adds nothing.
    cache.save(
        "web-install", "b" * 64, root, files, log, {}, scope=scope, archives=["web/node_modules"]
    )
    assert len(list((cache.local.root / Area.CAS.value).iterdir())) == 2


def test_an_archived_output_that_is_a_file_is_not_stored_and_says_why(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "dist.txt").write_text("one file")
    log = tmp_path / "log"
    log.write_text("")
    cache = store_with(tmp_path)
    scope = OutputScope(["dist.txt"])
    files = expand_outputs(root, ["dist.txt"])
    reason = cache.save("one", "a" * 64, root, files, log, {}, scope=scope, archives=["dist.txt"])
    assert reason is not None
    assert 'store = "archive" packs a directory, and this is a file or a symlink' in reason
    assert cache.lookup("one", "a" * 64) is None


def test_a_corrupt_archive_in_the_store_is_discarded_and_the_step_runs(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    files = node_modules(root, "v1", count=20)
    log = tmp_path / "log"
    log.write_text("")
    cache = store_with(tmp_path)
    scope = OutputScope(["web/node_modules"])
    cache.save(
        "install", "c" * 64, root, files, log, {}, scope=scope, archives=["web/node_modules"]
    )
    entry = cache.lookup("install", "c" * 64)
    assert entry is not None
    blob = cache.local.path(Area.CAS, entry.files[0].sha256)
    blob.write_bytes(blob.read_bytes()[:-40])  # truncated on disk
    assert not cache.restore(entry, root, scope)
    assert "corrupt" in " ".join(cache.drain_warnings())
    assert cache.lookup("install", "c" * 64) is None


def test_prune_drops_whole_lockfile_versions_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    log = tmp_path / "log"
    log.write_text("")
    cache = store_with(tmp_path)
    scope = OutputScope(["web/node_modules"])
    sizes = []
    for version in range(4):
        files = node_modules(root, f"v{version}", count=200)
        cache.save(
            "install",
            f"{version:064x}",
            root,
            files,
            log,
            {},
            scope=scope,
            archives=["web/node_modules"],
        )
        entry = cache.lookup("install", f"{version:064x}")
        assert entry is not None
        sizes.append(entry.files[0].size)
        os.utime(cache.local.path(Area.AC, f"{version:064x}"), (1000 + version,) * 2)
        os.utime(cache.local.path(Area.CAS, entry.files[0].sha256), (1000 + version,) * 2)
    limit = cache.size() - sizes[0] - sizes[1] // 2  # room for the newest two and a half
    cache.prune(limit)
    kept = [v for v in range(4) if cache.lookup("install", f"{v:064x}") is not None]
    assert kept == [2, 3]  # whole versions, the oldest first; every kept one restorable
    entry = cache.lookup("install", f"{3:064x}")
    assert entry is not None and cache.restore(entry, root, scope)


# -- through the CLI: a local cache, and bazel-remote with its default settings ------------

INSTALL = """
import os, sys
lock = open("lock.txt").read().strip()
for i in range(400):
    d = f"node_modules/pkg{i % 40}/lib"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/m{i}.js", "w") as f:
        f.write(f"// {lock}\\n" * 30)
os.makedirs("node_modules/.bin", exist_ok=True)
if not os.path.islink("node_modules/.bin/tool"):
    os.symlink("../pkg1/lib/m1.js", "node_modules/.bin/tool")
open("runs.log", "a").write("install\\n")
"""
BUNDLE = """
import os
os.makedirs("dist", exist_ok=True)
text = open("node_modules/.bin/tool").read()
open("dist/bundle.js", "w").write(text.upper())
open("runs.log", "a").write("bundle\\n")
"""
SIGN = """
import os
os.makedirs("signed", exist_ok=True)
open("signed/app.sig", "w").write("signed with this machine's key\\n")
open("runs.log", "a").write("sign\\n")
"""


def archive_workspace(base: Path, name: str, cache: str) -> Workspace:
    root = base / name
    root.mkdir(parents=True)
    for file, text in (("install.py", INSTALL), ("bundle.py", BUNDLE), ("sign.py", SIGN)):
        (root / file).write_text(text)
    (root / "lock.txt").write_text("lock v1\n")
    (root / "build.toml").write_text(f"""
version = 2

[[step]]
name = "install"
command = [{PY_TOML}, "install.py"]
inputs = ["lock.txt", "install.py"]
outputs = [{{ path = "node_modules", store = "archive" }}]

[[step]]
name = "bundle"
command = [{PY_TOML}, "bundle.py"]
depends_on = ["install"]
inputs = ["bundle.py"]
outputs = ["dist"]

[[step]]
name = "sign"
command = [{PY_TOML}, "sign.py"]
depends_on = ["bundle"]
inputs = ["sign.py"]
outputs = [{{ path = "signed", store = "local" }}]
""")
    return Workspace(root, base / cache, base / "bin")


def test_an_archived_install_is_restored_and_its_dependents_stay_cut_off(tmp_path: Path) -> None:
    ws = archive_workspace(tmp_path, "ws", "cache")
    ok(ws.build())
    assert ws.ran() == ["bundle", "install", "sign"]
    tree = snapshot(ws.root / "node_modules")
    shutil.rmtree(ws.root / "node_modules")
    ok(ws.build())
    assert ws.ran() == []
    assert ws.outcomes()["install"] == "restored"
    assert snapshot(ws.root / "node_modules") == tree
    assert ws.outcomes()["bundle"] == "cached"  # same outputs digest as when it was built
    entries = list((ws.cache / "ac").iterdir())
    assert entries, "nothing was stored"
    (ws.root / "lock.txt").write_text("lock v2\n")
    ok(ws.build())
    assert ws.ran() == ["bundle", "install", "sign"]


@pytest.mark.bazel_remote
def test_archives_go_through_bazel_remote_and_local_outputs_stay_home(tmp_path: Path) -> None:
    from bazel_remote_server import running_bazel_remote

    with running_bazel_remote(tmp_path / "bazel-remote") as server:
        first = archive_workspace(tmp_path, "one", "cache1")
        second = archive_workspace(tmp_path, "two", "cache2")
        proc = first.build("--remote-cache", server.url)
        ok(proc)
        assert [line for line in proc.stdout.splitlines() if line.startswith("warning:")] == []
        proc = second.build("--remote-cache", server.url, "--remote-read-only")
        ok(proc)
        assert second.ran() == ["sign"]  # kept out of the shared cache: it runs here
        assert second.outcomes()["install"] == "restored"
        assert snapshot(second.root / "node_modules") == snapshot(first.root / "node_modules")
        assert (second.root / "dist/bundle.js").read_bytes() == (
            first.root / "dist/bundle.js"
        ).read_bytes()
        stored = {path.name.split("-")[0] for path in (server.data / "ac.v2").rglob("*-*")}
        assert str(first.report_step("install")["fingerprint"]) in stored
        assert str(first.report_step("sign")["fingerprint"]) not in stored
        assert server.errors() == []
