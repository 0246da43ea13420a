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
