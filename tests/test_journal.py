"""run/journal.py: compaction keeps every answer the journal gives.

A journal past COMPACT_ABOVE is rewritten when the next build opens it. What it answers
must not change: `last_build` (what --resume continues) and `last_success` (the steps
`--only --no-cache` takes as done). Before this test, compaction kept the last build
alone, so a step that build did not touch lost its success.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildlib.run import journal as journal_module
from buildlib.run.journal import Journal

STEPS = ["rust", "native", "web", "electron", "verify"]
STATUSES = ["succeeded", "failed", "interrupted"]

_BUILD = st.tuples(
    st.lists(st.sampled_from(STEPS), unique=True, max_size=5),  # the build's selection
    st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(STATUSES)), max_size=6),
)
_ids = itertools.count()


def _write(path: Path, builds: list[tuple[list[str], list[tuple[str, str]]]]) -> Journal:
    for selected, finished in builds:
        journal = Journal(path)
        journal.open(f"b{next(_ids)}", selected)
        for step, status in finished:
            journal.record(step, status)
        journal.close()
    return Journal(path)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_BUILD, min_size=1, max_size=6))
def test_compaction_keeps_what_the_journal_answers(
    tmp_path_factory: pytest.TempPathFactory, builds: list[tuple[list[str], list[tuple[str, str]]]]
) -> None:
    path = tmp_path_factory.mktemp("journal") / "dev.jsonl"
    journal = _write(path, builds)
    before = (journal.last_success(), journal.last_build())
    size = path.stat().st_size
    journal._compact()
    assert (journal.last_success(), journal.last_build()) == before
    assert path.stat().st_size <= size


def test_a_large_journal_is_compacted_when_a_build_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dev.jsonl"
    builds = [(STEPS, [(s, "succeeded") for s in STEPS])] * 8 + [(["web"], [("web", "failed")])]
    journal = _write(path, builds)
    size = path.stat().st_size
    monkeypatch.setattr(journal_module, "COMPACT_ABOVE", size - 1)
    journal.open("next", ["web"])  # past the limit: rewritten before the new start line
    journal.close()
    assert path.stat().st_size < size / 3
    assert journal.last_success() == {"rust", "native", "electron", "verify"}
    last = journal.last_build()
    assert last is not None and last.build_id == "next" and last.selected == ("web",)
