"""What the engine remembers in `.buildlib/` to plan faster (issue 17), and why a file
found there is believed.

Two properties, each tested on generated input:
- a plan made with what was remembered equals the plan made from scratch, whatever
  changed on disk in between (directories become files, symlinks lead out of the
  workspace, a cwd disappears), whatever the environment's variables and the build
  history say: errors included, message for message;
- a `.buildlib/` this user's engine did not write (shipped in a repository, written
  under another key) changes nothing: the plan is the one build.toml says.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
from helpers import PY_TOML, ROOT, run_buildlib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildlib.core import marshalfile
from buildlib.core.engine import derived_key, derived_keys, identity
from buildlib.core.errors import ManifestError, UserError
from buildlib.core.layout import BuildDir
from buildlib.core.localkey import user_key
from buildlib.planning import plan as plan_module
from buildlib.planning import remembered
from buildlib.planning.plan import build_plan
from buildlib.workspace import manifest as manifest_module
from buildlib.workspace import pieces
from buildlib.workspace.manifest import load_manifest
from buildlib.workspace.targets import get_target, host_triple

HOST = get_target(host_triple())


# --- generated workspaces ------------------------------------------------------------

DIRS = ("a", "a/b", "c", "a/dist", "out")
STATES = ("dir", "missing", "file", "link-inside", "link-outside")


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """A manifest of 2-6 steps drawing on what planning fills and checks: templates in
    commands, env, cwd and outputs; mode and target overrides; `modes` and `when`;
    version 1 and 2 paths; outputs as directories, files and globs."""
    version = draw(st.sampled_from([1, 2]))
    lines = [f"version = {version}", "", "[vars]", f'dir = "{draw(st.sampled_from(["a", "c"]))}"']
    lines += ["", "[modes.development]", 'env = { KIND = "dev-{mode}" }', "", "[modes.production]"]
    count = draw(st.integers(2, 6))
    for index in range(count):
        name = f"s{index}"
        cwd = draw(st.sampled_from([".", "a", "a/b", "c", "{dir}"]))
        output = draw(
            st.sampled_from(["out/{name}.txt", "a/dist", "a/dist/**", "{dir}/gen-{name}", "c/*.o"])
        ).replace("{name}", name)
        if version == 2 and cwd != "." and not output.startswith("{"):
            output = "//" + output
        deps = draw(st.lists(st.sampled_from([f"s{i}" for i in range(index)] or ["-"]), max_size=2))
        run = (
            'script = "build-{mode}"'
            if draw(st.integers(0, 4)) == 0
            else f'command = [{PY_TOML}, "-c", "pass", "{{mode}}", "{{node_platform}}", "{{dir}}"]'
        )
        lines += [
            "",
            "[[step]]",
            f'name = "{name}"',
            run,
            f'cwd = "{cwd}"',
            f"depends_on = {json.dumps(sorted({d for d in deps if d != '-'}))}",
            f"outputs = {json.dumps([output])}",
            f'env = {{ WHERE = "{{root}}/{name}" }}',
        ]
        if index and draw(st.booleans()):  # s0 applies everywhere: it may be requested
            lines.append(
                'when = "sys_platform == \\"linux\\""'
                if draw(st.booleans())
                else 'when = "sys_platform == \\"win32\\""'
            )
        if index and draw(st.booleans()):
            lines.append('modes = ["production"]')
        if index and index == count - 1 and draw(st.integers(0, 3)) == 0:  # nothing after it
            lines.remove(f"outputs = {json.dumps([output])}")
            lines += ["service = true", 'restart_on = ["c/**"]']
        if draw(st.booleans()):
            lines += ["[step.mode.development]", 'args = ["--dev", "{dir}"]']
        if draw(st.integers(0, 3)) == 0:
            lines += ['[step.target."aarch64-apple-darwin"]', 'args = ["--mac"]']
    return "\n".join(lines) + "\n"


def shape(root: Path, outside: Path, states: dict[str, str]) -> None:
    """Make each of DIRS a directory, nothing, a file, or a symlink inside or outside;
    and the root's npm lockfile (the package manager of `script` steps) there or not."""
    lockfile = root / "package-lock.json"
    if states.get("lockfile", "there") == "there":
        lockfile.write_text("{}")
    else:
        lockfile.unlink(missing_ok=True)
    for rel in sorted(DIRS, key=len, reverse=True):
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for rel in sorted(DIRS, key=len):
        path = root / rel
        state = states.get(rel, "dir")
        if not path.parent.is_dir() or path.parent.is_symlink():
            continue
        if state == "dir":
            path.mkdir()
        elif state == "file":
            path.write_text("not a directory")
        elif state == "link-inside":
            (root / "elsewhere").mkdir(exist_ok=True)
            path.symlink_to(root / "elsewhere")
        elif state == "link-outside":
            path.symlink_to(outside)


def outcome(
    root: Path,
    *,
    environ: dict[str, str],
    estimates: dict[str, float],
    mode: str,
    target: str = HOST.triple,
    requested: tuple[str, ...] = (),
    services: bool = False,
) -> object:
    """The plan's steps, or the error planning raises, as comparable data."""
    try:
        manifest = load_manifest(root / "build.toml", remember=True)
        plan = build_plan(
            manifest,
            mode=mode,
            target=get_target(target),
            requested=requested,
            environ=environ,
            estimates=estimates,
            services=services,
        )
    except (ManifestError, UserError) as exc:
        return (type(exc).__name__, str(exc))
    return {name: vars(step) for name, step in plan.steps.items()}


@contextlib.contextmanager
def nothing_remembered(root: Path) -> Iterator[None]:
    """.buildlib/ moved aside, so planning starts from scratch."""
    build_dir = root / ".buildlib"
    aside = root / ".buildlib-aside"
    if build_dir.exists():
        build_dir.rename(aside)
    try:
        yield
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir)
        if aside.exists():
            aside.rename(build_dir)


states = st.fixed_dictionaries(
    {
        **{rel: st.sampled_from(STATES) for rel in DIRS},
        "lockfile": st.sampled_from(["there", "gone"]),
    }
)
estimates = st.dictionaries(st.sampled_from([f"s{i}" for i in range(6)]), st.floats(0.1, 100))


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two runs: the first on a tree of plain directories (so it plans, and leaves a plan
    behind), the second on a reshaped tree with new estimates, and with the same mode,
    variables, target and steps asked for (so it plans from what the first left), or with
    one of them changed (so it must not)."""

    def selection() -> dict[str, Any]:
        return {
            "mode": draw(st.sampled_from(["development", "production"])),
            "dir_var": draw(st.sampled_from(["", "a", "c"])),
            "target": draw(st.sampled_from([HOST.triple, "aarch64-apple-darwin"])),
            "requested": draw(st.sampled_from([(), ("s0",)])),
            "services": draw(st.booleans()),
        }

    chosen = selection()
    first = {"states": {}, "estimates": draw(estimates), **chosen}
    changed = draw(st.sampled_from([None, None, *chosen]))  # one of them, or none
    if changed is not None:
        chosen[changed] = selection()[changed]
    second = {"states": draw(states), "estimates": draw(estimates), **chosen}
    return first, second


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=manifests(), both=runs())
def test_a_remembered_plan_is_the_plan_made_from_scratch(
    tmp_path_factory: pytest.TempPathFactory,
    text: str,
    both: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    first, second = both
    base = tmp_path_factory.mktemp("ws")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "build.toml").write_text(text)
    recalled: list[list[bool]] = []
    real_recall = remembered.recall

    def spy(at: Path, key: str) -> remembered.Remembered | None:
        found = real_recall(at, key)
        recalled[-1].append(found is not None)
        return found

    outcomes = []
    for run in (first, second):
        shape(root, outside, run["states"])
        environ = {"BUILDLIB_VAR_DIR": run["dir_var"]} if run["dir_var"] else {}
        kwargs = {
            "environ": environ,
            "estimates": run["estimates"],
            **{k: run[k] for k in ("mode", "target", "requested", "services")},
        }
        with nothing_remembered(root):
            fresh = outcome(root, **kwargs)
        recalled.append([])
        plan_module.remembered.recall = spy  # type: ignore[attr-defined]
        try:
            again = outcome(root, **kwargs)
        finally:
            plan_module.remembered.recall = real_recall  # type: ignore[attr-defined]
        assert again == fresh
        outcomes.append(again)
    # A plan made by the first run is what the second plans from, when its key is the
    # same (mode, variables, target, steps asked for) and the second gets as far.
    same_key = all(
        first[k] == second[k] for k in ("mode", "dir_var", "target", "requested", "services")
    )
    if same_key and isinstance(outcomes[0], dict) and recalled[1]:
        assert recalled[1] == [True]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=manifests(), shaped=states, mode=st.sampled_from(["development", "production"]))
def test_plans_are_the_same_whether_directories_are_listed_or_asked_entry_by_entry(
    tmp_path_factory: pytest.TempPathFactory, text: str, shaped: dict[str, str], mode: str
) -> None:
    """Each cwd and output checked through one listing of its directory (core/
    entrykinds.py, a crowded one) gives the plan, or the error, that an lstat of each
    gives, on trees whose directories are links (inside and outside), files, or gone."""
    from buildlib.core import entrykinds

    base = tmp_path_factory.mktemp("ws")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "build.toml").write_text(text)
    shape(root, outside, shaped)
    kwargs: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": mode}
    found = []
    original = entrykinds.LIST_AFTER
    try:
        for list_after in (10**9, 0):  # entry by entry, then every directory listed
            entrykinds.LIST_AFTER = list_after
            with nothing_remembered(root):
                found.append(outcome(root, **kwargs))
    finally:
        entrykinds.LIST_AFTER = original
    assert found[0] == found[1]


def test_remembered_results_are_used_and_survive_only_their_inputs(tmp_path: Path) -> None:
    """The validated manifest and the plan are read back on the next run (one file each),
    and a changed manifest, variable or mode plans anew."""
    root = tmp_path / "ws"
    (root / "a").mkdir(parents=True)
    (root / "build.toml").write_text(
        textwrap.dedent(f"""
            [[step]]
            name = "one"
            command = [{PY_TOML}, "-c", "pass", "{{greeting}}"]
            cwd = "a"
            outputs = ["a/out"]
            [vars]
            greeting = "hello"
        """)
    )
    manifest = load_manifest(root / "build.toml", remember=True)
    build_plan(manifest, mode=manifest.default_mode, target=HOST, environ={})
    plans = list((root / ".buildlib/plans").iterdir())
    assert len(plans) == 1
    assert (root / ".buildlib/validated-manifest.marshal").is_file()

    seen: list[bool] = []
    real_recall = remembered.recall

    def spy(at: Path, key: str) -> remembered.Remembered | None:
        found = real_recall(at, key)
        seen.append(found is not None)
        return found

    plan_module.remembered.recall = spy  # type: ignore[attr-defined]
    try:
        again = load_manifest(root / "build.toml")
        plan = build_plan(again, mode=again.default_mode, target=HOST, environ={})
        assert seen == [True]
        assert plan.steps["one"].argv[-1] == "hello"
        plan = build_plan(
            again, mode=again.default_mode, target=HOST, environ={"BUILDLIB_VAR_GREETING": "hi"}
        )
        assert seen == [True, False]
        assert plan.steps["one"].argv[-1] == "hi"
        (root / "build.toml").write_text((root / "build.toml").read_text().replace("hello", "bye"))
        edited = load_manifest(root / "build.toml")
        plan = build_plan(edited, mode=edited.default_mode, target=HOST, environ={})
        assert seen == [True, False, False]
        assert plan.steps["one"].argv[-1] == "bye"
    finally:
        plan_module.remembered.recall = real_recall  # type: ignore[attr-defined]


EDITS = (
    "env",
    "only on windows",
    "remove",
    "swap",
    "variable",
    "version",
    "mode env",
    "exclude",
    "outputs",
)


def edit_manifest(text: str, edit: str, at: int) -> str:
    """`text` (from `manifests`) with one edit made to its step `at` (modulo the count)."""
    head, *tables = text.split("\n\n[[step]]\n")
    at %= len(tables)
    name = f"s{at}"
    if edit == "env":
        tables[at] = tables[at].replace(f'/{name}"', f'/{name}-edited"')
    elif edit == "only on windows" and "when = " not in tables[at]:
        tables[at] = tables[at].replace(
            "\nenv = ", "\nwhen = \"sys_platform == 'win32'\"\nenv = ", 1
        )
    elif edit == "remove":
        del tables[at]
    elif edit == "swap":
        tables[0], tables[at] = tables[at], tables[0]
    elif edit == "variable":
        head = head.replace('dir = "a"', 'dir = "c"') if 'dir = "a"' in head else head + "\n"
    elif edit == "version":
        head = head.replace("version = 1", "version = 2", 1)
    elif edit == "mode env":
        head = head.replace('KIND = "dev-{mode}"', 'KIND = "development-{mode}"')
    elif edit == "exclude":
        head += '\n[workspace]\nexclude = ["**/tmp/**"]\n'
    elif edit == "outputs":  # another step's outputs: overlapping where the cwd is the same
        other = [line for line in tables[0].splitlines() if line.startswith("outputs")]
        tables[at] = "\n".join(
            other[0] if line.startswith("outputs") and other else line
            for line in tables[at].splitlines()
        )
    return "\n\n[[step]]\n".join([head, *tables])


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=manifests(), data=st.data())
def test_a_plan_after_an_edit_is_the_plan_made_from_scratch(
    tmp_path_factory: pytest.TempPathFactory, text: str, data: st.DataObject
) -> None:
    """An edit of build.toml plans again, lent the filled steps of the plan before it
    whose [[step]] tables are unchanged, and whose dependencies in the new plan are
    the same (another step's edit can drop one: `modes`, `when`, or removed)."""
    root = tmp_path_factory.mktemp("ws") / "root"
    root.mkdir()
    shape(root, root.parent, {})
    (root / "build.toml").write_text(text)
    edit = data.draw(st.sampled_from(EDITS))
    # s0 (which any step may depend on), gone from the plan: the steps after it are lent,
    # with a dependency less. In production, the steps limited to it are there too.
    at = 0 if edit == "only on windows" else data.draw(st.integers(0, 9))
    mode = "production" if at == 0 else data.draw(st.sampled_from(["development", "production"]))
    kwargs: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": mode}
    first = outcome(root, **kwargs)
    (root / "build.toml").write_text(edit_manifest(text, edit, at))
    with nothing_remembered(root):
        fresh = outcome(root, **kwargs)
    filled: list[str] = []
    real_fill = plan_module._fill_step

    def counting(manifest: Any, spec: Any, **kwargs: Any) -> dict[str, Any]:
        filled.append(spec.name)
        return real_fill(manifest, spec, **kwargs)

    plan_module._fill_step = counting
    try:
        again = outcome(root, **kwargs)
    finally:
        plan_module._fill_step = real_fill
    assert again == fresh
    if edit == "env" and isinstance(first, dict) and isinstance(again, dict):
        assert len(filled) <= 1  # the edited step alone


def test_an_edit_that_makes_outputs_overlap_is_refused(tmp_path: Path) -> None:
    """The overlap check is skipped for a plan whose steps all kept the outputs of the
    plan stored before (which passed it): an edit of one step's outputs is checked."""
    steps = [f'[[step]]\nname = "{n}"\ncommand = ["true"]\noutputs = ["out/{n}"]\n' for n in "ab"]
    (tmp_path / "build.toml").write_text("\n".join(steps))
    kwargs: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": "default"}
    assert isinstance(outcome(tmp_path, **kwargs), dict)
    (tmp_path / "build.toml").write_text("\n".join(steps).replace('"out/b"', '"out/a/inner"'))
    refused = outcome(tmp_path, **kwargs)
    assert isinstance(refused, tuple) and "overlapping outputs" in refused[1], refused


def test_an_edit_that_keeps_every_steps_outputs_skips_the_overlap_check(tmp_path: Path) -> None:
    """The skip happens (marshal keeps the outputs' tuples, so they compare equal)."""
    steps = [f'[[step]]\nname = "{n}"\ncommand = ["true"]\noutputs = ["out/{n}"]\n' for n in "ab"]
    (tmp_path / "build.toml").write_text("\n".join(steps))
    kwargs: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": "default"}
    assert isinstance(outcome(tmp_path, **kwargs), dict)
    (tmp_path / "build.toml").write_text("\n".join(steps).replace('["true"]', '["true", "1"]'))
    checked: list[object] = []
    real_check = plan_module._check_overlap
    plan_module._check_overlap = lambda *args: checked.append(args)
    try:
        assert isinstance(outcome(tmp_path, **kwargs), dict)
    finally:
        plan_module._check_overlap = real_check
    assert checked == []


@given(parts=st.lists(st.binary(max_size=40), max_size=4), lasts=st.lists(st.binary(), min_size=1))
def test_keys_with_common_parts_hashed_once_are_the_same_keys(
    parts: list[bytes], lasts: list[bytes]
) -> None:
    """The origins of pieces (`derived_keys`) are `derived_key`'s names: what stored
    steps are filed under does not depend on which of the two computed them."""
    key = derived_keys(*parts)
    assert [key(last) for last in lasts] == [derived_key(*parts, last) for last in lasts]


def test_a_plan_key_tells_a_variables_name_from_its_value(tmp_path: Path) -> None:
    """`a = "b=c"` and `"a=b" = "c"` are different variables: a plan of the one lends
    nothing to the other (whose step names an undefined {a})."""
    path = tmp_path / "build.toml"
    step = f'[[step]]\nname = "s"\ncommand = [{PY_TOML}, "-c", "pass", "{{a}}"]\n'
    path.write_text('[vars]\na = "b=c"\n\n' + step)
    kwargs: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": "default"}
    assert isinstance(outcome(tmp_path, **kwargs), dict)
    path.write_text('[vars]\n"a=b" = "c"\n\n' + step)
    with nothing_remembered(tmp_path):
        fresh = outcome(tmp_path, **kwargs)
    assert outcome(tmp_path, **kwargs) == fresh
    assert "{a}" in str(fresh)


SELECTING = textwrap.dedent(f"""
    [modes.development]
    [modes.production]
    [[step]]
    name = "first"
    command = [{PY_TOML}, "-c", "pass", "{{mode}}", "{{rust_target}}", "{{who}}"]
    [[step]]
    name = "second"
    command = [{PY_TOML}, "-c", "pass"]
    depends_on = ["first"]
    [[step]]
    name = "server"
    command = [{PY_TOML}, "-m", "http.server"]
    depends_on = ["second"]
    service = true
    [vars]
    who = "me"
""")


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "production"},
        {"target": "aarch64-apple-darwin"},
        {"requested": ("first",)},
        {"services": True},
        {"environ": {"BUILDLIB_VAR_WHO": "you"}},
        {"estimates": {"first": 50.0}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_thing_a_plan_is_made_from_is_in_its_key(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    """One plan remembered, then one thing changed: the plan is made anew (or, for the
    estimates, which are not in the key, re-prioritised), equal to one from scratch."""
    (tmp_path / "build.toml").write_text(SELECTING)
    base: dict[str, Any] = {"environ": {}, "estimates": {}, "mode": "development"}
    first = outcome(tmp_path, **base)
    assert isinstance(first, dict) and list(first) == ["first", "second"]
    with nothing_remembered(tmp_path):
        fresh = outcome(tmp_path, **{**base, **change})
    again = outcome(tmp_path, **{**base, **change})
    assert again == fresh != first


def test_only_the_newest_plans_are_kept(tmp_path: Path) -> None:
    for index in range(remembered.KEEP + 3):
        remembered.remember(
            tmp_path, f"key{index:02d}", remembered.Remembered(manifest="", steps={}, origins={})
        )
        path = remembered.plan_file(tmp_path, f"key{index:02d}")
        os.utime(path, ns=(index * 10**9, index * 10**9))
    kept = sorted(p.stem for p in (tmp_path / ".buildlib/plans").iterdir())
    assert kept == [f"key{index:02d}" for index in range(3, remembered.KEEP + 3)]
    assert remembered.recall(tmp_path, f"key{remembered.KEEP + 2:02d}") == remembered.Remembered(
        manifest="", steps={}, origins={}
    )


def test_a_plans_directory_that_leads_elsewhere_is_left_alone(tmp_path: Path) -> None:
    """A shipped `.buildlib/plans` symlink: nothing is written or pruned through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for index in range(remembered.KEEP + 2):
        (elsewhere / f"precious{index}.marshal").write_text("keep me")
    root = tmp_path / "ws"
    (root / ".buildlib").mkdir(parents=True)
    (root / ".buildlib/plans").symlink_to(elsewhere)
    remembered.remember(root, "key", remembered.Remembered(manifest="", steps={}, origins={}))
    assert sorted(p.name for p in elsewhere.iterdir()) == sorted(
        f"precious{index}.marshal" for index in range(remembered.KEEP + 2)
    )


def test_remembered_files_are_regular_files_read_without_following_links(tmp_path: Path) -> None:
    """A shipped `.buildlib/validated-manifest.marshal` that is a FIFO or a link to a
    device would hang or fill memory: neither is read."""
    root = tmp_path / "ws"
    (root / ".buildlib").mkdir(parents=True)
    (root / "build.toml").write_text(BENIGN)
    for plant in (
        os.mkfifo,
        lambda at: at.symlink_to("/dev/zero"),
    ):
        at = root / ".buildlib/validated-manifest.marshal"
        at.unlink(missing_ok=True)
        plant(at)
        planned = run_buildlib(root, "plan")
        assert planned.returncode == 0 and "benign" in planned.stdout


RICH = textwrap.dedent(f"""
    version = 2
    [workspace]
    name = "rich"
    default_mode = "production"
    exclude = ["**/tmp/**"]
    package_manager = "npm"
    [vars]
    flavour = "plain"
    [tools]
    python = [{PY_TOML}, "--version"]
    [modes.development]
    vars = {{ level = "0" }}
    env = {{ KIND = "dev" }}
    [modes.production]
    [cache]
    remote = "http://127.0.0.1:9/cache"
    remote_read_only = true
    [[step]]
    name = "gen"
    description = "generate"
    command = [{PY_TOML}, "-c", "pass"]
    cwd = "a"
    inputs = ["src/**"]
    exclude = ["src/skip/**"]
    outputs = ["out", {{ path = "deps", store = "archive" }}]
    clean = ["tmp"]
    tools = ["python"]
    env_inputs = ["HOME"]
    retries = 2
    cache = false
    when = "os_name == 'posix' and python_version >= '3'"
    modes = ["production", "development"]
    [step.mode.development]
    args = ["--dev"]
    env = {{ LEVEL = "{{level}}" }}
    [step.target."aarch64-apple-darwin"]
    args = ["--mac"]
    tools = ["python"]
    [[step]]
    name = "serve"
    command = [{PY_TOML}, "-m", "http.server"]
    depends_on = ["gen"]
    service = true
    restart_on = ["out/**"]
    restart_on_deps = true
    [[artifact]]
    path = "a/out/app.txt"
    step = "gen"
    kind = "exists"
    modes = ["production"]
""")


def test_the_validated_manifest_round_trips(tmp_path: Path) -> None:
    """Every field, including those planning never reads (artifacts, [cache], clean,
    tools, default_mode), comes back equal and in order."""
    from buildlib.workspace import manifest as manifest_module

    (tmp_path / "a").mkdir()
    (tmp_path / "build.toml").write_text(RICH)
    manifest = load_manifest(tmp_path / "build.toml")
    decoded = manifest_module._decode(
        marshal.loads(marshal.dumps(manifest_module._encode(manifest))), manifest.path
    )
    assert decoded == manifest
    assert vars(decoded.cache) == vars(manifest.cache) and decoded.artifacts == manifest.artifacts
    assert list(decoded.steps) == list(manifest.steps) == ["gen", "serve"]
    gen = decoded.steps["gen"]
    assert gen.when_text == manifest.steps["gen"].when_text and gen.when is not None
    assert gen.mode_overrides == manifest.steps["gen"].mode_overrides != {}
    assert (gen.clean, gen.store, gen.tools) == (("tmp",), {"deps": "archive"}, ("python",))


def test_a_remembered_marker_todays_packaging_refuses_is_validated_again(tmp_path: Path) -> None:
    """The `when` text is remembered as written and parsed again at each load; one that
    no longer parses sends the manifest through validation, which names the problem."""
    from buildlib.workspace import manifest as manifest_module

    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN + "when = \"os_name == 'posix'\"\n")
    load_manifest(root / "build.toml", remember=True)
    cache = BuildDir(root).validated_manifest
    key = user_key()
    stored: Any = marshalfile.read(cache, manifest_module._VALIDATED_HEADER, key=key)
    source, validated_by, encoded = stored

    def remembered_when(text: str) -> None:
        encoded[5][0]["when_text"] = text
        marshalfile.write(
            cache, manifest_module._VALIDATED_HEADER, (source, validated_by, encoded), key=key
        )

    remembered_when("os_name == 'nt'")  # what is remembered is what is used...
    assert str(load_manifest(root / "build.toml").steps["hello"].when) == 'os_name == "nt"'
    remembered_when("os_name ==")  # ...unless today's packaging refuses it
    assert str(load_manifest(root / "build.toml").steps["hello"].when) == 'os_name == "posix"'


def test_a_workspace_at_the_root_of_the_file_system_plans_relative_paths() -> None:
    resolver = plan_module._Resolver(Path("/"))
    assert resolver.resolve("tmp") == os.path.realpath("/tmp")
    assert resolver.relative("usr") == os.path.realpath("/usr").lstrip("/")
    assert resolver.relative("") == "."
    assert resolver.inside("usr")


# --- what a stranger's .buildlib/ can do ---------------------------------------------

BENIGN = textwrap.dedent(f"""
    [[step]]
    name = "hello"
    command = [{PY_TOML}, "-c", "print('benign')"]
""")
EVIL = BENIGN.replace("print('benign')", "print('evil')")


def forge(root: Path, key: bytes, *, by_piece: bool = False) -> None:
    """Write every file the engine would remember for EVIL, under build.toml's text
    (which is BENIGN), signed with `key`: the validated manifest and the plan.
    `by_piece`: the validated manifest of another text instead, whose step is filed
    under the origin of BENIGN's [[step]] table (what an edit of build.toml reuses)."""

    def sign(path: Path, header: bytes, value: Any) -> None:
        payload = marshal.dumps(value)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header + blake2b(payload, digest_size=16, key=key).digest() + payload)

    def stored(path: Path) -> tuple[bytes, Any]:
        data = path.read_bytes()
        header = data.split(b"\n", 1)[0] + b"\n"
        return header, marshal.loads(data[len(header) + 16 :])

    other = root.parent / "evil-source"
    other.mkdir()
    (other / "build.toml").write_text(EVIL)
    assert run_buildlib(other, "build", "--plain").returncode == 0
    source = (root / "build.toml").read_bytes()
    header, (_, _, validated) = stored(other / ".buildlib/validated-manifest.marshal")
    # The engine as the next command will see it: installing the engine's environment
    # (another test, through nox) rebuilds _speedups.so in the checkout, which renames
    # the engine; this process's name for it would be stale.
    identity.cache_clear()
    engine_id = identity()
    path = str((root / "build.toml").resolve())
    if by_piece:
        (piece,) = pieces.cut(BENIGN)[1]
        origin = derived_key(b"step", manifest_module._step_context({}), piece.text.encode())
        validated = (*validated[:5], ({**validated[5][0], "origin": origin},), *validated[6:])
        source = b"# an earlier text\n" + source
    sign(
        root / ".buildlib/validated-manifest.marshal",
        header,
        (source, (engine_id, path), validated),
    )
    if by_piece:
        return
    # The plan, under the key the benign manifest's plan has.
    manifest = load_manifest(root / "build.toml", remember=False)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDLIB_"))}
    key_name = plan_module._plan_key(
        manifest,
        mode=manifest.default_mode,
        target=HOST,
        requested=(),
        services=False,
        variables=plan_module.template_variables(manifest, manifest.default_mode, HOST, environ),
        markers={},
    )
    (plan_file,) = (other / ".buildlib/plans").iterdir()
    header, (_, _, steps, origins) = stored(plan_file)
    plan = (key_name, manifest.remembered_as, steps, origins)
    sign(remembered.plan_file(root, key_name), header, plan)


@pytest.mark.parametrize("by_piece", [False, True], ids=["whole", "by piece"])
@pytest.mark.parametrize("signer", ["another user", "no key (a plain checksum)"])
def test_a_shipped_buildlib_is_not_believed(tmp_path: Path, signer: str, by_piece: bool) -> None:
    """The hole this closes: a repository shipping `.buildlib/manifest.marshal` made
    `buildlib build` run commands its build.toml does not show (the parsed document was
    believed on a checksum anyone can compute). The steps an edit reuses by piece are
    in the same signed file."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    forge(root, os.urandom(32) if signer == "another user" else b"", by_piece=by_piece)
    plan = run_buildlib(root, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "benign" in plan.stdout and "evil" not in plan.stdout
    built = run_buildlib(root, "build", "--plain")
    assert built.returncode == 0, built.stderr
    logs = "".join(p.read_text() for p in (root / ".buildlib/logs").rglob("*.log"))
    assert "benign" in logs and "evil" not in logs


@pytest.mark.parametrize("by_piece", [False, True], ids=["whole", "by piece"])
def test_the_forgery_works_when_signed_with_the_users_key(tmp_path: Path, by_piece: bool) -> None:
    """The test above has teeth: the same files signed with this user's key are believed
    (only this user's engine, or someone holding the key, can write them)."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    forge(root, user_key(), by_piece=by_piece)
    plan = run_buildlib(root, "plan")
    assert "evil" in plan.stdout


@pytest.mark.parametrize("planted", ["lock", "log", "journal", "history"])
def test_a_shipped_symlink_in_buildlib_is_never_written_through(
    tmp_path: Path, planted: str
) -> None:
    """The lock, a step's log and the journal: a symlink a repository left at their
    place is replaced by a file of the engine's own, and what it named is untouched."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    tag = f"default-{HOST.triple}"
    at = {
        "lock": ".buildlib/lock",
        "log": f".buildlib/logs/{tag}/hello.log",
        "journal": f".buildlib/journal/{tag}.jsonl",
        "history": ".buildlib/history.jsonl",
    }[planted]
    (root / at).parent.mkdir(parents=True, exist_ok=True)
    (root / at).symlink_to(victim)
    built = run_buildlib(root, "build", "--plain")
    assert built.returncode == 0, built.stderr
    assert victim.read_text() == "precious"
    assert (root / at).is_file() and not (root / at).is_symlink()


TWO_STEPS = textwrap.dedent(f"""
    [[step]]
    name = "ok"
    command = [{PY_TOML}, "-c", "import pathlib; pathlib.Path('out.txt').write_text('built')"]
    outputs = ["out.txt"]

    [[step]]
    name = "bad"
    command = [{PY_TOML}, "-c", "raise SystemExit(3)"]
""")
# The engine's directories below .buildlib, and what the engine would write or remove
# in each by name: a writer or a pruner going through a link would touch these.
ENGINE_DIRS = {
    "logs": (),
    "logs/{tag}": ("ok.log", "bad.log"),
    "state": (),
    "state/{tag}": ("ok.json", "bad.json", "index.marshal"),
    "journal": ("{tag}.jsonl",),
    "reports": ("latest.json", "latest.html", "20200101T000000-abcdef.json"),
    "plans": (),
    "watch": (),
    "artifacts": (),
    "audit": (),
    "audit/{tag}": ("ok",),
}
BUILT_DIRS = ("logs", "logs/{tag}", "state", "state/{tag}", "journal", "reports", "plans")


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    links=st.dictionaries(
        st.sampled_from(sorted(ENGINE_DIRS)), st.sampled_from(["directory", "dangling"]), min_size=1
    )
)
def test_shipped_symlinked_directories_in_buildlib_are_never_gone_through(
    tmp_path_factory: pytest.TempPathFactory, links: dict[str, str]
) -> None:
    """Symlinks a repository shipped at the places of the engine's directories (logs,
    state, journal, reports, plans), aimed at directories holding files of the names the
    engine writes and removes there: two builds (one step fails, so its record is erased)
    leave everything outside the workspace as it was, and the engine's directories are
    its own."""
    base = tmp_path_factory.mktemp("shipped")
    root, outside = base / "ws", base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "build.toml").write_text(TWO_STEPS)
    tag = f"default-{HOST.triple}"
    for place, kind in sorted(links.items()):
        at = root / ".buildlib" / place.format(tag=tag)
        if at.parent.is_symlink() or (at.parent.exists() and not at.parent.is_dir()):
            continue  # below a link planted already
        at.parent.mkdir(parents=True, exist_ok=True)
        target = outside / place.replace("/", "-").format(tag=tag)
        if kind == "directory":
            target.mkdir()
            for name in ENGINE_DIRS[place]:
                (target / name.format(tag=tag)).write_text("precious")
        at.symlink_to(target)
    before = sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in outside.rglob("*"))
    for _ in range(2):
        built = run_buildlib(root, "build", "--plain", "-k")
        assert built.returncode == 1, built.stderr
        assert "Traceback" not in built.stderr
    after = sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in outside.rglob("*"))
    assert after == before
    for place in ENGINE_DIRS:
        at = root / ".buildlib" / place.format(tag=tag)
        assert not at.is_symlink() and (at.is_dir() or place not in BUILT_DIRS), place
    assert (root / ".buildlib" / "logs" / tag / "bad.log").is_file()


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace: apt-get install strace")
@pytest.mark.parametrize("place", ["audit", "audit/{tag}", "audit/{tag}/hello"])
def test_audit_never_goes_through_a_shipped_symlink(tmp_path: Path, place: str) -> None:
    """`audit` empties each step's directory below `.buildlib/audit/` before tracing it
    there: a shipped symlink on the way would have had it delete what it named."""
    root, victims = tmp_path / "ws", tmp_path / "victims"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    tag = f"default-{HOST.triple}"
    for rel in ("precious.txt", f"{tag}/hello/output.log", "hello/precious.txt"):
        (victims / rel).parent.mkdir(parents=True, exist_ok=True)
        (victims / rel).write_text("precious")
    at = root / ".buildlib" / place.format(tag=tag)
    at.parent.mkdir(parents=True)
    at.symlink_to(victims)
    before = sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in victims.rglob("*"))
    audited = run_buildlib(root, "audit", "hello")
    assert "Traceback" not in audited.stderr, audited.stderr
    assert (root / ".buildlib" / "audit" / tag / "hello").is_dir()
    after = sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in victims.rglob("*"))
    assert after == before


TOOLED = textwrap.dedent(f"""
    [tools]
    python = [{PY_TOML}, "--version"]

    [[step]]
    name = "hello"
    command = [{PY_TOML}, "-c", "print('benign')"]
    tools = ["python"]
""")


@pytest.mark.parametrize("at", ["tools.json", "last_build.json"])
def test_a_shipped_fifo_at_the_place_of_a_file_does_not_hang(tmp_path: Path, at: str) -> None:
    """Opening a FIFO for reading blocks until a writer comes: read as a regular file
    only (`read_own`), the tool versions' cache and the last build's mode are ignored."""
    root = tmp_path / "ws"
    (root / ".buildlib").mkdir(parents=True)
    (root / "build.toml").write_text(TOOLED)
    os.mkfifo(root / ".buildlib" / at)
    for args in (("build", "--dry-run"), ("build", "--plain"), ("metrics",)):
        done = run_buildlib(root, *args)  # a hang ends in the helper's timeout: a failure
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_commands_without_the_lock_never_write_through_a_shipped_buildlib_link(
    tmp_path: Path,
) -> None:
    """A build refuses a symlinked `.buildlib`; the commands that only read (a dry run,
    explain-miss, plan) leave it alone, including the caches they would otherwise save."""
    root, outside = tmp_path / "ws", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "build.toml").write_text(TOOLED)
    (root / ".buildlib").symlink_to(outside)
    for args in (("build", "--dry-run"), ("explain-miss", "hello"), ("plan",)):
        done = run_buildlib(root, *args)
        assert "Traceback" not in done.stderr, (args, done.stderr)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("dangling", [False, True])
def test_a_shipped_buildlib_symlink_is_refused(tmp_path: Path, dangling: bool) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.mkdir()
    (root / ".buildlib").symlink_to(elsewhere)
    built = run_buildlib(root, "build", "--plain")
    assert built.returncode != 0
    assert ".buildlib is a symlink" in built.stderr and "remove it" in built.stderr
    assert "Traceback" not in built.stderr
    assert list(elsewhere.iterdir()) == [] if not dangling else not elsewhere.exists()


MAKE_OUT = textwrap.dedent(f"""
    [[step]]
    name = "make"
    command = [{PY_TOML}, "-c", "import pathlib; pathlib.Path('out').mkdir(exist_ok=True); pathlib.Path('out/result.txt').write_text('built')"]
    inputs = ["src.txt"]
    outputs = ["out/result.txt"]
""")


def ship_with_a_forged_index(tmp_path: Path, key: bytes) -> Path:
    """Build, then swap the output for a trojan and rewrite the steps' index to say the
    trojan is what the step made, signed with `key`; then ship it all to a new place."""
    import hashlib

    built = tmp_path / "built"
    built.mkdir()
    (built / "build.toml").write_text(MAKE_OUT)
    (built / "src.txt").write_text("source")
    assert run_buildlib(built, "build", "--plain").returncode == 0
    (built / "out/result.txt").write_text("trojan")
    (index,) = (built / ".buildlib/state").rglob("index.marshal")
    data = index.read_bytes()
    header = data.split(b"\n", 1)[0] + b"\n"
    records = marshal.loads(data[len(header) + 16 :])
    digest, outputs = records["make"]
    outputs = {path: hashlib.sha256(b"trojan").hexdigest() for path in outputs}
    payload = marshal.dumps({"make": (digest, outputs)})
    index.write_bytes(header + blake2b(payload, digest_size=16, key=key).digest() + payload)
    shipped = tmp_path / "shipped"
    shutil.copytree(built, shipped, symlinks=True)
    return shipped


def test_a_shipped_index_cannot_declare_shipped_outputs_up_to_date(tmp_path: Path) -> None:
    shipped = ship_with_a_forged_index(tmp_path, b"")
    built = run_buildlib(shipped, "build", "--plain")
    assert built.returncode == 0, built.stderr
    assert (shipped / "out/result.txt").read_text() == "built"


def test_the_index_forgery_works_when_signed_with_the_users_key(tmp_path: Path) -> None:
    """The test above has teeth: the same index signed with this user's key is believed."""
    shipped = ship_with_a_forged_index(tmp_path, user_key())
    built = run_buildlib(shipped, "build", "--plain")
    assert "nothing to do" in built.stdout
    assert (shipped / "out/result.txt").read_text() == "trojan"


LIB_APP = textwrap.dedent(f"""
    [[step]]
    name = "lib"
    command = [{PY_TOML}, "-c", "import pathlib; pathlib.Path('lib.txt').write_text('clean lib')"]
    outputs = ["lib.txt"]
    [[step]]
    name = "app"
    command = [{PY_TOML}, "-c", "import pathlib; pathlib.Path('app.txt').write_text('linked with ' + pathlib.Path('lib.txt').read_text())"]
    depends_on = ["lib"]
    outputs = ["app.txt"]
""")


def ship_with_a_journal(tmp_path: Path, key: bytes | None) -> Path:
    """A trojan lib.txt and a journal saying `lib` succeeded: lines signed with `key`,
    or (None) written as journals were before they were signed."""
    root = tmp_path / "shipped"
    root.mkdir()
    (root / "build.toml").write_text(LIB_APP)
    (root / "lib.txt").write_text("TROJAN lib")
    lines = [
        '{"build":"x","event":"start","steps":["lib"]}',
        '{"build":"x","step":"lib","status":"succeeded"}',
    ]
    journal = root / f".buildlib/journal/default-{HOST.triple}.jsonl"
    if key is not None:  # as the engine signs: its key, over the journal's path and the line
        lines = [
            f"{line} " + blake2b(f"{journal}\0{line}".encode(), digest_size=16, key=key).hexdigest()
            for line in lines
        ]
    journal.parent.mkdir(parents=True)
    journal.write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("signer", ["unsigned", "another user"])
def test_a_shipped_journal_does_not_say_what_succeeded(tmp_path: Path, signer: str) -> None:
    root = ship_with_a_journal(tmp_path, None if signer == "unsigned" else os.urandom(32))
    built = run_buildlib(root, "build", "--plain", "--only", "app", "--no-cache")
    assert built.returncode == 0, built.stderr
    assert (root / "app.txt").read_text() == "linked with clean lib"


def test_the_journal_forgery_works_when_signed_with_the_users_key(tmp_path: Path) -> None:
    root = ship_with_a_journal(tmp_path, user_key())
    built = run_buildlib(root, "build", "--plain", "--only", "app", "--no-cache")
    assert built.returncode == 0, built.stderr
    assert (root / "app.txt").read_text() == "linked with TROJAN lib"


def test_a_journal_of_another_workspace_is_not_believed(tmp_path: Path) -> None:
    """The user's own journal of another workspace (signed with the user's key), reached
    through a shipped symlink: its lines name another journal, so none is believed."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "build.toml").write_text(LIB_APP)
    assert run_buildlib(other, "build", "--plain").returncode == 0
    root = tmp_path / "shipped"
    root.mkdir()
    (root / "build.toml").write_text(LIB_APP)
    (root / "lib.txt").write_text("TROJAN lib")
    journal = f".buildlib/journal/default-{HOST.triple}.jsonl"
    (root / journal).parent.mkdir(parents=True)
    (root / journal).symlink_to(other / journal)
    built = run_buildlib(root, "build", "--plain", "--only", "app", "--no-cache")
    assert built.returncode == 0, built.stderr
    assert (root / "app.txt").read_text() == "linked with clean lib"


def test_a_fifo_at_a_log_or_history_place_does_not_hang_the_build(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    log = root / f".buildlib/logs/default-{HOST.triple}/hello.log"
    log.parent.mkdir(parents=True)
    os.mkfifo(log)
    os.mkfifo(root / ".buildlib/history.jsonl")
    built = run_buildlib(root, "build", "--plain")
    assert built.returncode == 0, built.stderr
    assert log.is_file() and "benign" in log.read_text()


def test_without_a_key_nothing_is_remembered_and_builds_still_skip(tmp_path: Path) -> None:
    """No state directory can be made (here a file stands where it would be): the
    manifest is parsed and validated every time, and the steps' own records still work."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "build.toml").write_text(BENIGN)
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    first = run_buildlib(root, "build", "--plain", XDG_STATE_HOME=str(blocker))
    assert first.returncode == 0, first.stderr
    second = run_buildlib(root, "build", "--plain", XDG_STATE_HOME=str(blocker))
    assert second.returncode == 0 and "nothing to do" in second.stdout
    names = {p.name for p in (root / ".buildlib").iterdir()}
    assert "validated-manifest.marshal" not in names and "manifest.marshal" not in names
    assert "plans" not in names


# --- the key and the engine's name ---------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="spelled out on Linux only")
@pytest.mark.parametrize("xdg", [None, "/somewhere/state"])
def test_the_state_directory_is_platformdirs_answer(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    import platformdirs

    from buildlib.core.localkey import state_directory

    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert state_directory() == Path(platformdirs.user_state_dir("buildlib"))


def test_the_key_is_made_once_private_and_shared_by_racing_processes(tmp_path: Path) -> None:
    code = "from buildlib.core.localkey import user_key; print(user_key().hex())"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    made = (tmp_path / "buildlib/workspace-files.key").read_bytes()
    # A process that read the file while its maker was writing it has no key for that run
    # (nothing remembered), never another one.
    assert keys - {""} == {made.hex()}
    assert len(made) == 32
    assert (tmp_path / "buildlib/workspace-files.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "buildlib").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("flaw", ["open to others", "a symlink", "the wrong size"])
def test_a_key_file_that_is_not_private_is_not_used(tmp_path: Path, flaw: str) -> None:
    directory = tmp_path / "buildlib"
    directory.mkdir(mode=0o700)
    path = directory / "workspace-files.key"
    if flaw == "a symlink":
        (tmp_path / "planted").write_bytes(b"k" * 32)
        (tmp_path / "planted").chmod(0o600)
        path.symlink_to(tmp_path / "planted")
    else:
        path.write_bytes(b"k" * (32 if flaw == "open to others" else 31))
        path.chmod(0o644 if flaw == "open to others" else 0o600)
    code = "from buildlib.core.localkey import user_key; print(repr(user_key()))"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "b''", out.stderr


def test_no_home_directory_means_no_key_and_no_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    code = (
        "import pwd, os; from buildlib.core import localkey; "
        "pwd.getpwuid = lambda uid: (_ for _ in ()).throw(KeyError(uid)); "
        "print(repr(localkey.user_key()))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "b''", out.stderr


def test_the_engines_name_changes_with_any_source_file(tmp_path: Path) -> None:
    """An edited or reinstalled buildlib never reads what other code validated or planned."""
    copy = tmp_path / "buildlib"
    shutil.copytree(ROOT / "buildlib", copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = "from buildlib.core.engine import identity; print(identity())"

    def name() -> str:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    before = name()
    assert before and before == name()
    edited = copy / "workspace/targets.py"
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert name() != before
