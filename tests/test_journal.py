"""run/journal.py: compaction keeps every answer the journal gives.

A journal past its size limit is rewritten when the next build opens it. What it
answers must not change: `last_build` (what --resume continues) and `last_success` (the
steps `--only --no-cache` takes as done). Before this test, compaction kept the last
build alone, so a step that build did not touch lost its success. The generated
journals also hold what a real one can: a start line torn by a short write (its
build's lines then belong to no build), a build id seen twice, lines before any start.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildlib.run import journal as journal_module
from buildlib.run.journal import Journal

STEPS = ["rust", "native", "web", "electron", "verify"]
STATUSES = ["succeeded", "failed", "interrupted"]

Build = tuple[str, list[str], list[tuple[str, str]], bool]

_BUILD = st.tuples(
    st.sampled_from(["b1", "b2", "b3", "b4"]),  # a small pool: ids may repeat
    st.lists(st.sampled_from(STEPS), unique=True, max_size=5),  # the build's selection
    st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(STATUSES)), max_size=6),
    st.booleans(),  # its start line torn
)


def _write(path: Path, builds: list[Build]) -> Journal:
    for build_id, selected, finished, torn in builds:
        journal = Journal(path)
        journal.open(build_id, selected)
        if torn:  # keep a prefix of the start line just written, as a short write would
            data = path.read_bytes()
            cut = data.rstrip(b"\n").rfind(b"\n") + 1
            path.write_bytes(data[: cut + (len(data) - cut) // 2])
        for step, status in finished:
            journal.record(step, status)
        journal.close()
    return Journal(path)


@settings(max_examples=120, deadline=None)
@given(st.lists(_BUILD, min_size=1, max_size=6))
def test_compaction_keeps_what_the_journal_answers(builds: list[Build]) -> None:
    directory = Path(os.environ["BUILDLIB_TEST_JOURNALS"])
    path = directory / f"{len(list(directory.iterdir()))}.jsonl"
    journal = _write(path, builds)
    before = (journal.last_success(), journal.last_build())
    journal._compact()
    assert (journal.last_success(), journal.last_build()) == before


@pytest.fixture(autouse=True)
def _journals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDLIB_TEST_JOURNALS", str(tmp_path))


def test_a_large_journal_is_compacted_when_a_build_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dev.jsonl"
    full = ("full", STEPS, [(s, "succeeded") for s in STEPS], False)
    journal = _write(path, [full] * 8 + [("web", ["web"], [("web", "failed")], False)])
    size = path.stat().st_size
    monkeypatch.setattr(journal_module, "COMPACT_ABOVE", size - 1 - 1024 * 1)
    journal.open("next", ["web"])  # past the limit: rewritten before the new start line
    journal.close()
    assert path.stat().st_size < size / 3
    assert journal.last_success() == {"rust", "native", "electron", "verify"}
    last = journal.last_build()
    assert last is not None and last.build_id == "next" and last.selected == ("web",)
    compacted = path.stat().st_size
    journal.open("again", ["web"])  # well under the limit now: appended to, not rewritten
    journal.close()
    assert path.stat().st_size > compacted


def test_a_journal_still_large_once_compacted_is_appended_to_until_it_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compacted journal of many steps stays above the limit: builds of a few steps
    append to it, and it is rewritten only once it has doubled (one rewrite per
    doubling, not one per build), with the same answers."""
    path = tmp_path / "dev.jsonl"
    many = [f"s{i:04d}" for i in range(400)]
    journal = _write(path, [("full", many, [(s, "succeeded") for s in many], False)])
    monkeypatch.setattr(journal_module, "COMPACT_ABOVE", 1000)  # far below its size
    monkeypatch.setattr(journal_module, "_ROOM_PER_STEP", 0)
    inode, compacted, rewrites = path.stat().st_ino, 0, 0
    for build in range(30):
        size = path.stat().st_size
        journal.open(f"b{build:02d}", many[:40])
        for step in many[:40]:
            journal.record(step, "succeeded")
        journal.close()
        if path.stat().st_ino != inode:  # rewritten: only past twice its compacted size
            assert size > 2 * compacted
            rewrites += 1
            inode = path.stat().st_ino
            compacted = journal._compacted_size()
            assert 0 < compacted < size
        else:
            assert size <= 2 * compacted
    assert 2 <= rewrites <= 4, rewrites  # the first open, then once per doubling
    assert journal.last_success() == set(many)
    last = journal.last_build()
    assert last is not None and last.build_id == "b29" and last.unfinished == set()


def test_a_compacted_line_someone_else_wrote_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped journal claiming a huge compacted size (under another key) cannot stop
    compaction."""
    path = tmp_path / "dev.jsonl"
    full = ("full", STEPS, [(s, "succeeded") for s in STEPS], False)
    journal = _write(path, [full] * 8)
    forged = '{"build":"","event":"compacted","bytes":1000000000}'
    path.write_bytes(f"{forged} {'0' * 32}\n".encode() + path.read_bytes())
    assert journal._compacted_size() == 0
    monkeypatch.setattr(journal_module, "COMPACT_ABOVE", 100)
    size = path.stat().st_size
    journal.open("next", ["web"])
    journal.close()
    assert path.stat().st_size < size / 3
    assert journal.last_success() == set(STEPS)
