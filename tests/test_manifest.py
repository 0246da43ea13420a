"""Every manifest error of issue 2 point 3 stops before anything runs, naming file, step, key, fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import MODES, ROOT

from buildlib.core.errors import CycleError, ManifestError
from buildlib.core.layout import BuildDir
from buildlib.workspace.manifest import load_manifest

GOOD_STEP = """
[[step]]
name = "a"
command = ["echo", "a"]
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "build.toml"
    path.write_text(MODES + textwrap.dedent(body))
    return path


def error_of(tmp_path: Path, body: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, body))
    return info.value


def test_valid_manifest_loads(tmp_path: Path) -> None:
    manifest = load_manifest(
        write(
            tmp_path,
            GOOD_STEP
            + """
        [[step]]
        name = "b"
        command = ["echo", "{mode}"]
        depends_on = ["a"]
        when = 'sys_platform == "win32"'
        [step.mode.production]
        args = ["--release"]
    """,
        )
    )
    assert list(manifest.steps) == ["a", "b"]
    assert manifest.steps["b"].mode_overrides["production"].args == ("--release",)


@pytest.mark.parametrize(
    ("body", "step", "key", "fix_words"),
    [
        (GOOD_STEP + 'colour = "red"\n', "a", "colour", "remove it"),
        (GOOD_STEP.replace('["echo", "a"]', '"echo a"'), "a", "command", "argv list"),
        (GOOD_STEP + GOOD_STEP, "a", "name", "rename"),
        (GOOD_STEP + 'depends_on = ["nope"]\n', "a", "depends_on", "declare that step"),
        (
            GOOD_STEP + 'outputs = ["../elsewhere/out"]\n',
            "a",
            "outputs",
            "relative to the workspace",
        ),
        (GOOD_STEP + 'outputs = ["/etc/passwd"]\n', "a", "outputs", "relative to the workspace"),
        (GOOD_STEP + 'exclude = ["**/a\\u0000b/**"]\n', "a", "exclude", "remove the NUL"),
        (GOOD_STEP.replace('["echo", "a"]', "[]"), "a", "command", "program and its arguments"),
        (GOOD_STEP + "retries = -1\n", "a", "retries", "retries = 2"),
        (GOOD_STEP + 'retries = "two"\n', "a", "retries", "retries = 2"),
        (GOOD_STEP + "when = 'sys_platform === 1'\n", "a", "when", "when ="),
        (GOOD_STEP + 'modes = ["staging"]\n', "a", "modes", "development"),
        (GOOD_STEP + 'tools = ["cargo"]\n', "a", "tools", "[tools]"),
        (GOOD_STEP + "env = { N = 1 }\n", "a", "env.N", "quote it"),
        (
            GOOD_STEP + '[step.target.sparc-sun-solaris]\nargs = ["x"]\n',
            "a",
            "target.sparc-sun-solaris",
            "x86_64-unknown-linux-gnu",
        ),
        (GOOD_STEP.replace('["echo", "a"]', '["echo", "{nope"]'), "a", "command", "literal brace"),
    ],
)
def test_errors_name_file_step_key_and_fix(
    tmp_path: Path, body: str, step: str, key: str, fix_words: str
) -> None:
    error = error_of(tmp_path, body)
    assert error.file == str(tmp_path / "build.toml")
    assert error.step == step
    assert error.key == key
    assert fix_words in error.fix
    assert str(tmp_path / "build.toml") in error.render()


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD_STEP + 'depend_on = ["a"]\n')
    assert "did you mean 'depends_on'" in error.fix


def test_keys_under_a_missing_header_name_the_table_they_belong_to(tmp_path: Path) -> None:
    # The [workspace] header left out: its keys are the manifest's own (top level).
    path = tmp_path / "build.toml"
    path.write_text('name = "w"\ndefault_mode = "development"\n' + MODES + GOOD_STEP)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.key == "name"
    assert "a key of [workspace] or [[step]] found in the manifest" in str(info.value)
    assert "is the [workspace] header missing on the line above it?" in info.value.fix
    # A [[step]] header left out after a mode: the step's keys land in the mode's table.
    error = error_of(tmp_path, '[modes.staging]\nname = "b"\ncommand = ["true"]\n')
    assert "found in [modes.staging]" in str(error)
    assert "is the [[step]] header missing on the line above it?" in error.fix


def test_cycle_names_every_step_in_order(tmp_path: Path) -> None:
    body = "".join(
        f"""
        [[step]]
        name = "{n}"
        command = ["true"]
        depends_on = ["{d}"]
    """
        for n, d in (("a", "c"), ("b", "a"), ("c", "b"))
    )
    error = error_of(tmp_path, body)
    assert isinstance(error, CycleError)
    assert error.cycle == ("a", "c", "b", "a")
    assert "a -> c -> b -> a" in error.render()


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD_STEP + 'depends_on = ["a"]\n')
    assert isinstance(error, CycleError)


def test_invalid_toml_points_at_the_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD_STEP + "name = \n")
    assert "invalid TOML" in error.message
    assert "line" in error.message


def test_cli_prints_one_message_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path, GOOD_STEP + 'depends_on = ["nope"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "buildlib", "build"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "step 'a', key 'depends_on'" in proc.stderr
    assert "fix:" in proc.stderr
    assert not (tmp_path / ".buildlib" / "logs").exists()  # nothing ran


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_validated_manifest_is_remembered_only_when_asked_and_only_for_the_same_text(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, GOOD_STEP)
    cache = BuildDir(tmp_path).validated_manifest
    load_manifest(path)
    assert not cache.exists()  # nox listing sessions, dry runs: nothing written
    first = load_manifest(path, remember=True)
    assert cache.is_file()
    assert load_manifest(path) == first
    # A different text is validated again, never served from the cache.
    path.write_text(path.read_text().replace('name = "a"', 'name = "renamed"'))
    assert list(load_manifest(path).steps) == ["renamed"]


def test_a_damaged_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_STEP)
    load_manifest(path, remember=True)
    build_dir = BuildDir(tmp_path)
    cache = build_dir.validated_manifest
    data = bytearray(cache.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte fails the checksum
    cache.write_bytes(bytes(data))
    assert list(load_manifest(path).steps) == ["a"]
    cache.write_bytes(b"something else entirely")
    assert list(load_manifest(path).steps) == ["a"]


def test_toml_dates_are_parsed_every_time(tmp_path: Path) -> None:
    """marshal has no datetime: such a manifest is not cached, and still loads."""
    path = write(tmp_path, GOOD_STEP + "[vars]\nreleased = 2025-01-01\n")
    with pytest.raises(ManifestError):  # vars must be strings: the check still runs
        load_manifest(path, remember=True)
    assert not (BuildDir(tmp_path).validated_manifest).exists()


def test_a_manifest_that_is_not_utf8_gets_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_STEP)
    path.write_bytes(path.read_bytes().replace(b'"a"', b'"\xff"', 1))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = info.value.render()
    assert "not UTF-8" in message and "save the file as UTF-8" in message
    assert str(path) in message


@pytest.mark.parametrize("name", ["../../../notes.txt/x", "a/b", "..", ".hidden", "", "dev\n"])
def test_a_mode_name_that_could_leave_buildlib_is_refused(tmp_path: Path, name: str) -> None:
    """A mode names directories under .buildlib/ (`logs/<mode>-<target>/`): a separator or
    a leading dot would lead writers, and `clean`'s removals, out of it."""
    path = tmp_path / "build.toml"
    path.write_text(f'[modes."{name.encode("unicode_escape").decode()}"]\n' + GOOD_STEP)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert "invalid mode name" in info.value.message and "letters, digits" in info.value.fix


@pytest.mark.parametrize("name", ["dev", "Prod_2", "release.1", "x-y"])
def test_mode_names_of_letters_digits_dots_and_dashes_load(tmp_path: Path, name: str) -> None:
    path = tmp_path / "build.toml"
    path.write_text(f'[modes."{name}"]\n' + GOOD_STEP)
    assert list(load_manifest(path).modes) == [name]


def test_the_parsed_manifest_older_engines_kept_is_removed(tmp_path: Path) -> None:
    """`.buildlib/manifest.marshal` (the parsed text, read by no engine now) goes when
    the manifest is next remembered."""
    path = write(tmp_path, GOOD_STEP)
    stale = BuildDir(tmp_path).path / "manifest.marshal"
    stale.parent.mkdir()
    stale.write_bytes(b"parsed by an older engine")
    load_manifest(path)
    assert stale.exists()  # only a remembering load tidies up
    load_manifest(path, remember=True)
    assert not stale.exists()
