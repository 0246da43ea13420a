"""Shared fixtures: every test gets its own cache directory; tsc and svelte-check on request.

The engine's default cache is the user's (~/.cache/buildlib). A test that forgot to
point its builds elsewhere would share results with every other test and every
earlier run (steps are fingerprinted by relative paths, so two runs of one test
produce the same keys): each test starts with BUILDLIB_CACHE_DIR set to a fresh
directory of its own, which the builds it spawns inherit. Likewise the key that signs
what the engine remembers in `.buildlib/` (buildlib/core/localkey.py): a state directory
of the session's (XDG_STATE_HOME), not the user's ~/.local/state.

Shared helpers that are not fixtures are in helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import node_tool


@pytest.fixture(autouse=True, scope="session")
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from buildlib.core.localkey import user_key

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        user_key.cache_clear()
        yield
    user_key.cache_clear()


@pytest.fixture(autouse=True)
def _own_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDLIB_CACHE_DIR", str(tmp_path_factory.mktemp("buildlib-cache")))


@pytest.fixture(scope="session")
def tsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript compiler (skips the test when it cannot be installed)."""
    return node_tool("tsc", tmp_path_factory)


@pytest.fixture(scope="session")
def svelte_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """svelte-check (skips the test when it cannot be installed)."""
    return node_tool("svelte-check", tmp_path_factory)
