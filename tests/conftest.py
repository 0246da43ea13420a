"""Shared fixtures: every test gets its own cache directory.

The engine's default cache is the user's (~/.cache/buildlib). A test that forgot to
point its builds elsewhere would share results with every other test and every
earlier run (steps are fingerprinted by relative paths, so two runs of one test
produce the same keys): each test starts with BUILDLIB_CACHE_DIR set to a fresh
directory of its own, which the builds it spawns inherit.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDLIB_CACHE_DIR", str(tmp_path_factory.mktemp("buildlib-cache")))
