"""Declared outputs in the one glob dialect: scope, expansion, matches for clean, overlaps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildlib.incremental import statscan
from buildlib.incremental.outputs import (
    OutputScope,
    expand_outputs,
    matching_paths,
    missing_patterns,
    overlap,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in (
        "web/dist/index.html",
        "web/dist/assets/a.js",
        "web/src/App.svelte",
        "crates/a/x.node",
        "crates/b/y.node",
        "crates/b/index.js",
        "packages/p1/dist/out.js",
        "packages/p2/dist/out.js",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / "web/dist/link").symlink_to("index.html")
    return tmp_path


@pytest.mark.parametrize(
    ("pattern", "path", "owner"),
    [
        ("web/dist", "web/dist/assets/a.js", True),
        ("web/dist", "web/distx/a.js", False),
        ("web/dist", "web", False),
        ("crates/*/*.node", "crates/a/x.node", True),
        ("crates/*/*.node", "crates/a/index.js", False),
        ("packages/*/dist", "packages/p1/dist/deep/f.js", True),
        ("**/dist", "a/b/dist/c", True),
        ("./web/dist/", "web/dist/x", True),
    ],
)
def test_a_path_is_covered_by_a_pattern_or_a_directory_it_names(
    pattern: str, path: str, owner: bool
) -> None:
    assert (OutputScope([pattern]).owner(path) == pattern) is owner


def test_expand_lists_files_and_links_under_what_the_patterns_name(tree: Path) -> None:
    assert expand_outputs(tree, ["web/dist", "crates/*/*.node"]) == [
        "crates/a/x.node",
        "crates/b/y.node",
        "web/dist/assets/a.js",
        "web/dist/index.html",
        "web/dist/link",
    ]
    assert expand_outputs(tree, ["packages/*/dist"]) == [
        "packages/p1/dist/out.js",
        "packages/p2/dist/out.js",
    ]
    assert missing_patterns(["web/dist", "web/typo"], expand_outputs(tree, ["web/dist"])) == [
        "web/typo"
    ]


_SEGMENT = st.sampled_from(["a", "b", "dist", ".", "*", "b*", "**"])


@given(
    patterns=st.lists(
        st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join), min_size=1, max_size=3
    ),
    paths=st.lists(
        st.lists(st.sampled_from(["a", "b", "dist", "bx"]), min_size=1, max_size=4).map("/".join),
        max_size=6,
    ),
)
def test_missing_patterns_agrees_with_the_glob_dialect(
    patterns: list[str], paths: list[str]
) -> None:
    # Literal patterns and `dir/**` are answered with string prefixes; whatever the
    # shortcut, a pattern is missing exactly when the dialect's matcher covers no path.
    covered = {p for p in patterns if any(OutputScope([p]).owner(path) == p for path in paths)}
    assert missing_patterns(patterns, paths) == [p for p in patterns if p not in covered]


def test_matching_paths_names_the_matches_themselves_for_clean(tree: Path) -> None:
    assert matching_paths(tree, "packages/*/dist") == ["packages/p1/dist", "packages/p2/dist"]
    assert matching_paths(tree, "web/dist") == ["web/dist"]
    assert matching_paths(tree, "web/missing") == []
    assert matching_paths(tree, "**/dist") == ["packages/p1/dist", "packages/p2/dist", "web/dist"]


@pytest.mark.parametrize(
    ("outputs", "found"),
    [
        ({"a": ["web/dist"], "b": ["web/dist"]}, ("a", "web/dist", "b", "web/dist")),
        ({"a": ["web/dist"], "b": ["web/dist/x.js"]}, ("a", "web/dist", "b", "web/dist/x.js")),
        (
            {"a": ["crates/*/*.node"], "b": ["crates/n/i.node"]},
            ("a", "crates/*/*.node", "b", "crates/n/i.node"),
        ),
        ({"a": ["web/dist"], "b": ["web/node_modules"]}, None),
        ({"a": ["crates/*/*.node"], "b": ["crates/n/index.js"]}, None),
        ({"a": ["out/a", "out/b"]}, None),  # one step's own outputs may sit side by side
        # Two globs (stop 28: `z` restored `dist/**` over `a`'s newer dist/a.js).
        ({"a": ["dist/*.js"], "z": ["dist/**"]}, ("a", "dist/*.js", "z", "dist/**")),
        ({"a": ["dist/*.js"], "z": ["dist/*.css"]}, None),
        ({"a": ["*/dist"], "z": ["web/*"]}, ("a", "*/dist", "z", "web/*")),
        ({"a": ["web/*/dist"], "z": ["web/app/src/**"]}, None),
        ({"a": ["**/*.o"], "z": ["build/obj/*.o"]}, ("a", "**/*.o", "z", "build/obj/*.o")),
        ({"a": ["lib/a*"], "z": ["lib/*b"]}, ("a", "lib/a*", "z", "lib/*b")),  # lib/ab
        # The root holds everything.
        ({"a": ["."], "z": ["dist"]}, ("a", ".", "z", "dist")),
        # A third step's `dist.zip` sorts between `dist` and `dist/x.js`.
        (
            {"a": ["dist/*.js"], "b": ["dist/x.js"], "c": ["dist.zip"]},
            ("a", "dist/*.js", "b", "dist/x.js"),
        ),
        ({"a": ["[^a]"], "b": ["b"]}, ("a", "[^a]", "b", "b")),  # `[^a]` is `[!a]`
        ({"a": ["out/x"], "b": ["out/x "]}, ("a", "out/x", "b", "out/x ")),  # as read
        ({"a": ["dist/pkg1-*.tgz"], "b": ["dist/pkg10-*.tgz"]}, None),
        ({"a": ["[[^]"], "b": ["^"]}, ("a", "[[^]", "b", "^")),  # the class {[, ^}
        (
            {"a": ["dist/pkg1*.tgz"], "b": ["dist/pkg10-*.tgz"]},
            ("a", "dist/pkg1*.tgz", "b", "dist/pkg10-*.tgz"),
        ),
    ],
)
def test_overlapping_outputs_of_two_steps_are_found(
    outputs: dict[str, list[str]], found: tuple[str, str, str, str] | None
) -> None:
    assert overlap(outputs) == found


def test_an_output_below_a_symlink_inside_the_workspace_lists_its_files_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dist` -> `build/dist` resolves inside, so the plan accepts `dist/sub`; both walks
    # list its regular files and symlinks (never a FIFO).
    (tmp_path / "build/dist/sub/deep").mkdir(parents=True)
    (tmp_path / "build/dist/sub/a.txt").write_text("a")
    (tmp_path / "build/dist/sub/deep/b.txt").write_text("b")
    os.mkfifo(tmp_path / "build/dist/sub/fifo")
    (tmp_path / "dist").symlink_to("build/dist")
    wanted = ["dist/sub/a.txt", "dist/sub/deep/b.txt"]
    assert expand_outputs(tmp_path, ["dist/sub"]) == wanted
    monkeypatch.setattr(statscan, "_c_walk_files", None)
    assert expand_outputs(tmp_path, ["dist/sub"]) == wanted


@pytest.mark.parametrize("pattern", [" out/**", "out\\b/**", "./out/**", " out/a"])
def test_missing_patterns_reads_patterns_as_the_glob_dialect_does(pattern: str) -> None:
    assert missing_patterns([pattern], ["out/a", "out/b/c"]) == []


@pytest.mark.parametrize("c_walk", [True, False])
def test_an_output_naming_the_root_lists_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, c_walk: bool
) -> None:
    (tmp_path / "out/sub").mkdir(parents=True)
    (tmp_path / "out/sub/a").write_text("a")
    (tmp_path / "top").write_text("t")
    (tmp_path / "out/ln").symlink_to("sub")
    if not c_walk:
        monkeypatch.setattr(statscan, "_c_walk_files", None)
    assert expand_outputs(tmp_path, ["."]) == ["out/ln", "out/sub/a", "top"]


def test_root_and_backslash_dir_globs_cover_what_they_expand_to() -> None:
    # `./**` is everything in the workspace; `out\**` is `out/**`: below out, not out.
    assert missing_patterns(["./**", "."], ["out/a"]) == []
    assert OutputScope(["./**"]).owner("out/a") == "./**"
    scope = OutputScope(["out\\**"])
    assert scope.owner("out/a") == "out\\**"
    assert scope.owner("out") is None


_GLOB_SEGMENTS = st.sampled_from(
    ["a", "b", "ab", "*", "a*", "*b", "?", "**", "[ab]", "[^a]", "[!b]", "*.js", "a.js"]
)
_PATH_SEGMENTS = st.sampled_from(["a", "b", "ab", "ba", "x.js", "aab"])


@given(
    first=st.lists(_GLOB_SEGMENTS, min_size=1, max_size=3).map("/".join),
    second=st.lists(_GLOB_SEGMENTS, min_size=1, max_size=3).map("/".join),
    paths=st.lists(st.lists(_PATH_SEGMENTS, min_size=1, max_size=4).map("/".join), max_size=20),
)
def test_no_overlap_of_two_outputs_is_missed(first: str, second: str, paths: list[str]) -> None:
    """Whenever some path is covered by both steps' outputs (the dialect's own `owner`),
    the plan's check finds the pair: a restore of one could delete the other's files.
    Other steps' outputs beside them (paths that sort in between) change nothing."""
    shared = [
        path
        for path in paths
        if OutputScope([first]).owner(path) is not None
        and OutputScope([second]).owner(path) is not None
    ]
    if shared:
        assert overlap({"one": [first], "two": [second]}) is not None, shared
        others = {f"other{i}": [f"{path}.zip"] for i, path in enumerate(paths)}
        found = overlap({"one": [first], "two": [second], **others})
        assert found is not None, (shared, others)


def test_a_thousand_steps_on_one_glob_are_refused_at_the_first_pair() -> None:
    """An overlapping manifest costs what the first pair costs, not every pair."""
    outputs = {f"s{i}": ["dist/**"] for i in range(3000)}
    assert overlap(outputs) == ("s0", "dist/**", "s1", "dist/**")
