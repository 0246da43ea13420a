"""Fingerprints over real temporary workspaces: every component moves the digest, and
`explain` says which one moved."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from buildlib.core import records
from buildlib.core.errors import UserError
from buildlib.incremental.filehash import FileHasher
from buildlib.incremental.fingerprint import (
    EXPLAIN_LIMIT,
    UNSET,
    Fingerprint,
    compute_fingerprint,
    digest_of,
    explain,
    inputs_changed_since,
)
from buildlib.planning.plan import PlannedStep


def future_clock() -> int:
    return time.time_ns() + 3600 * 10**9


def make_step(root: Path, **changes: Any) -> PlannedStep:
    fields: dict[str, Any] = {
        "name": "web-build",
        "description": "Build the web front end",
        "group": "web",
        "argv": ("npm", "run", "build"),
        "cwd": root / "web",
        "cwd_relative": "web",
        "env": {"NODE_ENV": "production"},
        "env_inputs": ("VITE_API",),
        "depends_on": ("svelte-check", "native"),
        "inputs": ("web/src/**", "web/package.json"),
        "exclude": ("**/*.md",),
        "outputs": ("web/dist/**",),
        "tools": ("node", "npm"),
        "retries": 0,
        "cacheable": True,
        "priority": 1.0,
        "estimate": 1.0,
    }
    fields.update(changes)
    return PlannedStep(**fields)


def workspace(root: Path) -> Path:
    for rel, text in {
        "web/src/App.svelte": "<h1>hi</h1>",
        "web/src/main.ts": "mount()",
        "web/src/README.md": "docs",
        "web/package.json": "{}",
        "web/node_modules/svelte/index.js": "lib",
        "web/dist/index.html": "old",
        "crates/lib.rs": "fn x() {}",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return workspace(tmp_path / "ws")


DEFAULTS: dict[str, Any] = {
    "environ": {"VITE_API": "https://api.example", "UNRELATED": "1"},
    "tool_versions": {"node": "v20.1.0", "npm": "10.2.0", "cargo": "cargo 1.80"},
    "dep_fingerprints": {"svelte-check": "a" * 64, "native": "b" * 64},
    "mode": "production",
    "target": "x86_64-unknown-linux-gnu",
}


def fingerprint(root: Path, step: PlannedStep | None = None, **changes: Any) -> Fingerprint:
    args = {**DEFAULTS, **changes}
    return compute_fingerprint(
        step or make_step(root), root=root, hasher=FileHasher(root, clock=future_clock), **args
    )


def test_components_are_named_and_complete(root: Path) -> None:
    fp = fingerprint(root)
    assert set(fp.components) == {
        "argv",
        "cwd",
        "mode",
        "target",
        "outputs",
        "env:NODE_ENV",
        "env:VITE_API",
        "tool:node",
        "tool:npm",
        "dep:svelte-check",
        "dep:native",
        "file:web/src/App.svelte",
        "file:web/src/main.ts",
        "file:web/package.json",
    }
    assert fp.components["argv"] == json.dumps(["npm", "run", "build"])
    assert fp.components["cwd"] == "web"
    assert fp.components["tool:node"] == "v20.1.0"
    assert fp.components["file:web/src/App.svelte"] == hashlib.sha256(b"<h1>hi</h1>").hexdigest()
    assert fp.input_files == ["web/package.json", "web/src/App.svelte", "web/src/main.ts"]
    assert fp.digest == digest_of(fp.components)
    assert len(fp.digest) == 64


def test_environment_values_are_not_stored_in_clear(root: Path) -> None:
    fp = fingerprint(root)
    assert "https://api.example" not in json.dumps(dict(fp.components))
    assert fp.components["env:VITE_API"].startswith("sha256:")
    unset = fingerprint(root, environ={})
    assert unset.components["env:VITE_API"] == UNSET
    assert fingerprint(root, environ={"VITE_API": ""}).digest != unset.digest


def test_same_inputs_same_digest_anywhere(root: Path, tmp_path: Path) -> None:
    first = fingerprint(root)
    assert fingerprint(root) == first
    reordered = make_step(root, env={"NODE_ENV": "production"}, tools=("npm", "node"))
    assert fingerprint(root, reordered).digest == first.digest
    elsewhere = workspace(tmp_path / "another" / "checkout")
    assert fingerprint(elsewhere).digest == first.digest


def test_unrelated_and_excluded_changes_keep_the_digest(root: Path) -> None:
    first = fingerprint(root)
    (root / "web/src/README.md").write_text("more docs")  # excluded by the step
    (root / "web/node_modules/svelte/index.js").write_text("new lib")  # default exclude
    (root / "web/dist/index.html").write_text("new output")  # default exclude
    (root / "crates/lib.rs").write_text("fn y() {}")  # not an input
    assert (
        fingerprint(
            root,
            environ={**DEFAULTS["environ"], "UNRELATED": "2"},
            tool_versions={**DEFAULTS["tool_versions"], "cargo": "cargo 1.81"},
        ).digest
        == first.digest
    )


def edit(root: Path, rel: str, text: str | None) -> None:
    path = root / rel
    if text is None:
        path.unlink()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        ({"step": {"argv": ("npm", "run", "build", "--", "--minify")}}, ["command changed"]),
        ({"step": {"cwd": "ROOT", "cwd_relative": "."}}, ["working directory changed"]),
        ({"step": {"outputs": ("web/dist/**", "web/stats.json")}}, ["declared outputs changed"]),
        ({"mode": "development"}, ["mode changed from production to development"]),
        (
            {"target": "aarch64-apple-darwin"},
            ["target changed from x86_64-unknown-linux-gnu to aarch64-apple-darwin"],
        ),
        ({"step": {"env": {"NODE_ENV": "development"}}}, ["environment variable NODE_ENV changed"]),
        (
            {"environ": {"VITE_API": "https://staging.example"}},
            ["environment variable VITE_API changed"],
        ),
        ({"environ": {}}, ["environment variable VITE_API changed"]),
        ({"step": {"env_inputs": ("VITE_API", "CI")}}, ["environment variable CI is now an input"]),
        ({"step": {"env": {}}}, ["environment variable NODE_ENV is no longer an input"]),
        (
            {"tool_versions": {"node": "v20.2.0", "npm": "10.2.0"}},
            ["tool version of node changed (v20.1.0 -> v20.2.0)"],
        ),
        ({"step": {"tools": ("node", "npm", "cargo")}}, ["tool cargo added to the step's tools"]),
        ({"step": {"tools": ("node",)}}, ["tool npm removed from the step's tools"]),
        (
            {"dep_fingerprints": {"svelte-check": "c" * 64, "native": "b" * 64}},
            ["outputs of dependency svelte-check changed"],
        ),
        (
            {
                "step": {"depends_on": ("svelte-check", "native", "icons")},
                "dep_fingerprints": {**DEFAULTS["dep_fingerprints"], "icons": "d" * 64},
            },
            ["new dependency icons"],
        ),
        ({"step": {"depends_on": ("svelte-check",)}}, ["dependency native removed"]),
        (
            {"files": {"web/src/App.svelte": "<h1>bye</h1>"}},
            ["input file web/src/App.svelte changed"],
        ),
        (
            {"files": {"web/src/lib/Button.svelte": "<button/>"}},
            ["input file web/src/lib/Button.svelte added"],
        ),
        ({"files": {"web/src/main.ts": None}}, ["input file web/src/main.ts removed"]),
        (
            {
                "step": {"argv": ("vite", "build")},
                "mode": "development",
                "files": {"web/package.json": '{"a": 1}'},
            },
            [
                "command changed",
                "mode changed from production to development",
                "input file web/package.json changed",
            ],
        ),
    ],
)
def test_each_component_changes_the_digest_and_is_explained(
    root: Path, change: dict[str, Any], reasons: list[str]
) -> None:
    before = fingerprint(root)
    step_changes = {k: (root if v == "ROOT" else v) for k, v in change.get("step", {}).items()}
    for rel, text in change.get("files", {}).items():
        edit(root, rel, text)
    args = {k: v for k, v in change.items() if k not in ("step", "files")}
    after = fingerprint(root, make_step(root, **step_changes), **args)
    assert after.digest != before.digest
    assert explain(before.components, after) == reasons


def test_explain_caps_long_file_lists(root: Path) -> None:
    before = fingerprint(root)
    for i in range(EXPLAIN_LIMIT + 7):
        edit(root, f"web/src/gen/f{i:02d}.ts", str(i))
    edit(root, "web/src/main.ts", None)
    after = fingerprint(root)
    assert explain(before.components, after) == [
        *(f"input file web/src/gen/f{i:02d}.ts added" for i in range(EXPLAIN_LIMIT)),
        "and 7 more input files added",
        "input file web/src/main.ts removed",
    ]


def test_explain_without_or_with_equal_history(root: Path) -> None:
    fp = fingerprint(root)
    assert explain(None, fp) == ["no earlier result"]
    assert explain(dict(fp.components), fp) == ["no input changed"]
    assert explain({**fp.components, "schema": "old"}, fp) == ["schema changed"]


def test_explain_reads_components_stored_as_json(root: Path) -> None:
    before = fingerprint(root)
    stored = json.loads(json.dumps(dict(before.components)))
    edit(root, "web/src/App.svelte", "<h1>changed</h1>")
    assert explain(stored, fingerprint(root)) == ["input file web/src/App.svelte changed"]


def test_glob_leaving_the_workspace_names_the_step(root: Path) -> None:
    with pytest.raises(
        UserError,
        match=r"step 'web-build', key 'inputs' or 'exclude': "
        r"glob '../secrets/\*\*'",
    ):
        fingerprint(root, make_step(root, inputs=("../secrets/**",)))


def test_missing_tool_version_is_a_bug_in_the_caller(root: Path) -> None:
    with pytest.raises(KeyError, match=r"internal error.*'npm'"):
        fingerprint(root, tool_versions={"node": "v20"})


def test_inputs_changed_while_running(root: Path) -> None:
    step = make_step(root)
    fp = fingerprint(root, step)
    hasher = FileHasher(root)
    assert inputs_changed_since(hasher, step, fp) == []
    edit(root, "web/src/App.svelte", "<h1>edited during the build</h1>")
    edit(root, "web/package.json", None)
    edit(root, "web/src/new.ts", "export {}")
    assert inputs_changed_since(hasher, step, fp) == [
        "web/package.json",
        "web/src/App.svelte",
        "web/src/new.ts",
    ]


def test_an_input_rewritten_with_the_same_bytes_has_not_changed(root: Path) -> None:
    """npm install rewrites package-lock.json identically on every run (issue 11, #14)."""
    step = make_step(root)
    fp = fingerprint(root, step)
    package = root / "web/package.json"
    text = package.read_bytes()
    package.write_bytes(text)  # new mtime and ctime, same content
    os.utime(package, ns=(package.stat().st_atime_ns, package.stat().st_mtime_ns + 10**9))
    assert inputs_changed_since(FileHasher(root), step, fp) == []


def test_an_edit_after_the_stat_keys_are_taken_is_seen_even_if_hashed_later(root: Path) -> None:
    """The keys are taken before the contents are read: an edit between the two leaves a
    key that no longer matches, so the file is read again and compared (issue 11, #5)."""
    step = make_step(root)
    fp = fingerprint(root, step)
    stale = Fingerprint(
        digest=fp.digest,
        components=fp.components,
        stat_keys={rel: (key[0], key[1] - 1, key[2], key[3]) for rel, key in fp.stat_keys.items()},
    )
    assert inputs_changed_since(FileHasher(root), step, stale) == []  # same content: fine
    edit(root, "web/src/main.ts", "console.log('edited between stat and hash')")
    assert inputs_changed_since(FileHasher(root), step, stale) == ["web/src/main.ts"]


def test_fingerprint_is_immutable(root: Path) -> None:
    fp = fingerprint(root)
    with pytest.raises(records.FrozenInstanceError):
        fp.digest = "x"  # type: ignore[misc]
    components: Mapping[str, str] = fp.components
    with pytest.raises(TypeError):
        components["argv"] = "[]"  # type: ignore[index]


def test_outputs_checked_with_the_inputs_are_read_only_when_the_cache_vouches(root: Path) -> None:
    # A step's recorded outputs are stat'ed in its inputs' pass. One the stat cache knows
    # unchanged gets its digest; any other is left unread (a step that reruns never
    # needs it), and an output that is also an input is hashed once, as an input.
    hasher = FileHasher(root, root / "stat.cache", clock=future_clock)
    step = make_step(root)
    fp = compute_fingerprint(
        step,
        root=root,
        hasher=hasher,
        also_hash=["web/dist/index.html", "web/main.gone"],
        **DEFAULTS,
    )
    assert fp.also_hashed == {}
    assert fp.also_stale == ("web/dist/index.html",)  # the missing one is in neither
    assert hasher.counters.files_hashed == 3  # the inputs only
    assert "web/dist/index.html" not in fp.stat_keys
    hasher.hash_files(["web/dist/index.html"])  # now the cache knows it
    again = compute_fingerprint(
        step,
        root=root,
        hasher=hasher,
        also_hash=["web/dist/index.html", "web/package.json"],
        **DEFAULTS,
    )
    expected = hashlib.sha256(b"old").hexdigest()
    assert again.also_hashed["web/dist/index.html"] == expected
    assert again.also_stale == ()
    assert again.also_hashed["web/package.json"] == again.components["file:web/package.json"]
    assert "web/package.json" in again.stat_keys  # an input keeps its key
    assert again.digest == fp.digest
