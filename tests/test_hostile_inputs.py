"""Input a hostile tester wrote (stop 28): each gets one clear error naming the file, the
step or the variable and the fix, or is handled, never a traceback. The worst of them
lost files: an output covering the workspace let a cache restore delete the sources,
and two globs that overlap let a restore bring back another step's stale file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_bad_input import one_clear_error, run, step

V2 = "version = 2\n"


def manifest(root: Path, text: str) -> Path:
    (root / "build.toml").write_text(V2 + text)
    return root


# -- outputs that would delete what is not theirs -----------------------------------------------


@pytest.mark.parametrize(
    ("output", "reaches"),
    [
        (".", "the whole workspace"),
        ("//", "the whole workspace"),
        ("**", "build.toml"),
        ("*", "build.toml"),
        ("*.toml", "build.toml"),
        ("build.toml", "build.toml"),
        (".buildlib", ".buildlib"),
        (".buildlib/logs", ".buildlib"),
        (".git/**", ".git"),
        (".Git/hooks/x", ".Git"),  # `.git` on macOS and Windows
        ("{d}", "the whole workspace"),  # a template that fills to nothing
    ],
)
def test_an_output_reaching_the_sources_or_the_engine_is_refused(
    tmp_path: Path, output: str, reaches: str
) -> None:
    manifest(tmp_path, '[vars]\nd = ""\n' + step("a", f"outputs = [{json.dumps(output)}]"))
    one_clear_error(
        run(tmp_path, "build", "--dry-run"), f"output {output!r} reaches {reaches}", "step 'a'"
    )


def test_outputs_that_only_look_like_it_are_accepted(tmp_path: Path) -> None:
    outputs = ["dist", "**/dist", "out/*.toml", ".buildlib-x", "build.toml.d/x"]
    manifest(tmp_path, step("a", f"outputs = {json.dumps(outputs)}"))
    done = run(tmp_path, "build", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_globs_that_overlap_are_refused_before_a_restore_can_revert_a_file(
    tmp_path: Path,
) -> None:
    """The tester's case: `z` (dist/**) restored over `a`'s newer dist/a.js."""
    manifest(
        tmp_path,
        step("a", 'outputs = ["dist/*.js"]') + step("z", 'outputs = ["dist/**"]'),
    )
    one_clear_error(run(tmp_path, "build", "--dry-run"), "'a'", "'z'", "overlapping outputs")


# -- files and names ------------------------------------------------------------------------------


def test_an_input_file_named_in_no_encoding_builds_and_reports(tmp_path: Path) -> None:
    manifest(tmp_path, step("a", 'inputs = ["src/*"]'))
    (tmp_path / "src").mkdir()
    name = os.fsencode(tmp_path / "src") + b"/caf\xe9.txt"
    with open(name, "wb") as handle:
        handle.write(b"one\n")
    for content in (b"one\n", b"two\n"):
        with open(name, "wb") as handle:
            handle.write(content)
        done = run(tmp_path, "build", "--plain")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    report = json.loads((tmp_path / ".buildlib/reports/latest.json").read_text())
    assert report["ok"] is True


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("a" * 101, "invalid step name"),
        ("a\n", "invalid step name"),
    ],
)
def test_step_names_are_whole_and_short(tmp_path: Path, name: str, needle: str) -> None:
    text = step("x").replace('name = "x"', f"name = {json.dumps(name)}")
    manifest(tmp_path, text)
    one_clear_error(run(tmp_path, "build", "--dry-run"), needle, "at most 100 characters")


def test_a_hundred_character_step_name_builds(tmp_path: Path) -> None:
    manifest(tmp_path, step("a" * 100))
    done = run(tmp_path, "build", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_long_mode_name_is_refused(tmp_path: Path) -> None:
    manifest(tmp_path, f"[modes.{'m' * 65}]\n" + step("a"))
    one_clear_error(run(tmp_path, "build", "--dry-run"), "invalid mode name", "at most 64")


def test_a_nul_in_a_command_is_refused_when_the_manifest_loads(tmp_path: Path) -> None:
    manifest(tmp_path, '[[step]]\nname = "a"\ncommand = ["true", "a\\u0000b"]\n')
    one_clear_error(run(tmp_path, "build", "--dry-run"), "NUL", "key 'command'")


# -- the manifest itself ------------------------------------------------------------------------


def test_a_marker_that_cannot_be_compared_names_the_step(tmp_path: Path) -> None:
    manifest(tmp_path, step("a", "when = 'os_name ~= \"posix\"'"))
    one_clear_error(run(tmp_path, "plan"), "step 'a'", "key 'when'", "cannot be evaluated")


def test_toml_nested_too_deeply_is_a_clear_error(tmp_path: Path) -> None:
    depth = 3000
    manifest(tmp_path, "x = " + "[" * depth + "]" * depth + "\n" + step("a"))
    one_clear_error(run(tmp_path, "build", "--dry-run"), "nested too deeply")


def test_a_manifest_that_is_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    one_clear_error(run(tmp_path, "build", "--manifest", "dir"), "not a file")
    os.mkfifo(tmp_path / "fifo")  # would block a read for ever
    one_clear_error(run(tmp_path, "build", "--manifest", "fifo"), "not a file")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    text = one_clear_error(run(tmp_path, "build", "--manifest", "loop"))
    assert "loop" in text


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "inf", "nan", "-1", "0", "1e308"])
def test_a_remote_timeout_that_is_not_seconds_is_refused(tmp_path: Path, value: str) -> None:
    manifest(tmp_path, step("a"))
    one_clear_error(
        run(tmp_path, "build", BUILDLIB_REMOTE_TIMEOUT=value),
        f"BUILDLIB_REMOTE_TIMEOUT={value!r} is not a number of seconds",
    )


def test_sizes_and_jobs_out_of_any_range_are_refused(tmp_path: Path) -> None:
    manifest(tmp_path, step("a"))
    one_clear_error(run(tmp_path, "build", BUILDLIB_CACHE_MAX_SIZE="9" * 300 + "G"), "over 1 EiB")
    one_clear_error(run(tmp_path, "build", "-j", "9" * 30), "at most 4096")
    one_clear_error(run(tmp_path, "build", BUILDLIB_JOBS="0"), "BUILDLIB_JOBS=0")


# -- .buildlib as someone left it -----------------------------------------------------------------


def test_a_directory_where_the_engine_keeps_a_file_is_named(tmp_path: Path) -> None:
    manifest(tmp_path, step("a"))
    (tmp_path / ".buildlib/lock").mkdir(parents=True)
    one_clear_error(run(tmp_path, "build"), ".buildlib/lock is a directory", "rm -r")


def test_a_directory_where_a_log_goes_fails_that_step_with_the_fix(tmp_path: Path) -> None:
    manifest(tmp_path, step("a"))
    assert run(tmp_path, "build", "--plain").returncode == 0
    log = next((tmp_path / ".buildlib/logs").glob("*/a.log"))
    log.unlink()
    log.mkdir()
    done = run(tmp_path, "build", "--plain", "--force")
    assert done.returncode == 1
    text = done.stdout + done.stderr
    assert "a.log is a directory" in text and "rm -r" in text, text
    assert "Traceback" not in text and "internal error" not in text, text


@pytest.mark.parametrize("place", ["history.jsonl", "last_build.json", "reports/latest.html"])
def test_a_directory_where_a_report_goes_warns_and_the_build_stands(
    tmp_path: Path, place: str
) -> None:
    manifest(tmp_path, step("a"))
    assert run(tmp_path, "build", "--plain").returncode == 0
    target = tmp_path / ".buildlib" / place
    target.unlink()
    target.mkdir()
    done = run(tmp_path, "build", "--plain", "--force")
    text = done.stdout + done.stderr
    assert done.returncode == 0, text  # the steps ran and succeeded; a report is extra
    assert f"warning: could not write the build report: {target} is a directory" in text
    assert "Traceback" not in text and "internal error" not in text, text


# -- what a dry run shows ------------------------------------------------------------------------


def test_a_dry_run_shows_control_characters_as_escapes(tmp_path: Path) -> None:
    """A carriage return would hide `rm` behind what follows it on a terminal."""
    manifest(
        tmp_path,
        '[[step]]\nname = "a"\ndescription = "fine\\u001b[2J"\n'
        'command = ["sh", "-c", "rm -rf $HOME/x; \\rtrue"]\n',
    )
    done = run(tmp_path, "build", "--dry-run", "--no-cache")
    assert done.returncode == 0, done.stderr
    assert "rm -rf $HOME/x; \\rtrue" in done.stdout
    assert "fine\\x1b[2J" in done.stdout
    assert "\r" not in done.stdout and "\x1b[2J" not in done.stdout


def test_init_refuses_a_workspace_glob_that_leaves_the_project(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"name": "r", "workspaces": ["../../*"]}))
    (tmp_path / "package-lock.json").write_text("{}")
    done = run(tmp_path, "init", "--dry-run")
    assert done.returncode == 1
    assert "the workspace glob '../../*' leaves the project's directory" in done.stderr
    assert "Traceback" not in done.stderr


# -- more settings, the manifest's own text, clean ------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://a b/", "ftp://cache.example/", "http://host:port/"]
)
def test_a_remote_url_that_is_no_http_url_is_refused_before_any_step(
    tmp_path: Path, url: str
) -> None:
    manifest(tmp_path, step("a"))
    text = one_clear_error(
        run(tmp_path, "build", "--plain", BUILDLIB_REMOTE_CACHE=url), "is not an http(s) URL"
    )
    assert "ran" not in text and "FAILED" not in text  # no step started


def test_a_signing_key_that_is_no_key_is_refused_before_any_step(tmp_path: Path) -> None:
    manifest(tmp_path, step("a"))
    text = one_clear_error(
        run(tmp_path, "build", "--plain", BUILDLIB_CACHE_SIGNING_KEY="not a key"),
        "BUILDLIB_CACHE_SIGNING_KEY is not an Ed25519 private key",
    )
    assert "FAILED" not in text


def test_a_short_password_is_not_masked_all_over_the_text() -> None:
    from buildlib.cache.remote import HttpRemote

    remote = HttpRemote("http://u:p@cache.example:9/x", header=None, timeout=1.0)
    assert remote.display_url == "http://cache.example:9/x"
    assert "http" in remote._redact("http://cache.example:9/x: refused")


@pytest.mark.parametrize("argv", [["plan", "--shards", "1000000"], ["plan", "--shards", "0"]])
def test_shards_out_of_range_are_refused(tmp_path: Path, argv: list[str]) -> None:
    manifest(tmp_path, step("a"))
    one_clear_error(run(tmp_path, *argv), "--shards")


@pytest.mark.parametrize("poll", ["nan", "inf", "0", "-1"])
def test_watch_polls_every_so_many_seconds_or_says_why_not(tmp_path: Path, poll: str) -> None:
    manifest(tmp_path, step("a"))
    one_clear_error(run(tmp_path, "watch", "--poll", poll), f"--poll {float(poll)}")


def test_a_version_written_as_a_float_is_refused(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text("version = 2.0\n" + step("a"))
    one_clear_error(run(tmp_path, "build", "--dry-run"), "unknown manifest version 2.0")


def test_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_bytes(b"\xef\xbb\xbf" + (V2 + step("a")).encode())
    one_clear_error(run(tmp_path, "build", "--dry-run"), "byte order mark", "without a BOM")


@pytest.mark.parametrize("pattern", ["*", "build.*", ".git", ".buildlib/logs"])
def test_clean_never_deletes_the_manifest_or_the_engines_state(
    tmp_path: Path, pattern: str
) -> None:
    manifest(tmp_path, step("a", f"clean = [{json.dumps(pattern)}]"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".buildlib/logs").mkdir(parents=True)
    (tmp_path / "src.c").write_text("int main;\n")
    one_clear_error(run(tmp_path, "clean"), "key 'clean'", "clean would delete it")
    assert (tmp_path / "build.toml").exists() and (tmp_path / "src.c").exists()
    assert (tmp_path / ".git").is_dir() and (tmp_path / ".buildlib/logs").is_dir()


# -- what a wildcard or a symlink could reach ----------------------------------------------------


def test_a_wildcard_at_the_root_never_takes_the_engines_or_gits_files(tmp_path: Path) -> None:
    """`**/logs` once recorded .buildlib/logs/.../a.log as the step's output (and would
    take .git/logs in a checkout): a restore would replace them."""
    manifest(
        tmp_path,
        '[[step]]\nname = "a"\ncommand = ["sh", "-c", "mkdir -p out/logs && echo x > out/logs/l"]\n'
        'outputs = ["**/logs"]\n',
    )
    (tmp_path / ".git/logs").mkdir(parents=True)
    (tmp_path / ".git/logs/HEAD").write_text("reflog\n")
    done = run(tmp_path, "build", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    from buildlib.incremental.outputs import OutputScope, expand_outputs

    assert expand_outputs(tmp_path, ["**/logs"]) == ["out/logs/l"]
    assert OutputScope(["**/logs"]).owner(".git/logs/HEAD") is None
    assert OutputScope(["**/logs"]).owner(".buildlib/logs/x/a.log") is None
    assert OutputScope(["**/logs"]).owner(".GIT/logs/HEAD") is None  # any case
    assert OutputScope(["**/logs"]).owner("out/logs/l") == "**/logs"


@pytest.mark.parametrize(
    ("link", "to", "output", "reaches"),
    [
        ("g", ".git", "g/objects", ".git/objects"),
        ("self", ".", "self/build.toml", "build.toml"),
        ("self", ".", "self", "the workspace root"),
        ("b", ".buildlib", "b/logs/*.log", ".buildlib/logs"),
    ],
)
def test_an_output_through_a_symlink_is_judged_where_it_leads(
    tmp_path: Path, link: str, to: str, output: str, reaches: str
) -> None:
    manifest(tmp_path, step("a", f"outputs = [{json.dumps(output)}]"))
    (tmp_path / ".git/objects").mkdir(parents=True)
    (tmp_path / ".buildlib/logs").mkdir(parents=True)
    (tmp_path / link).symlink_to(to)
    one_clear_error(run(tmp_path, "build", "--dry-run"), f"resolves to {reaches} through a symlink")


def test_clean_judges_a_path_where_it_really_lies(tmp_path: Path) -> None:
    manifest(tmp_path, step("a", 'clean = ["g/objects"]'))
    (tmp_path / ".git/objects").mkdir(parents=True)
    (tmp_path / "g").symlink_to(".git")
    one_clear_error(run(tmp_path, "clean"), "matches .git/objects", "clean would delete it")
    assert (tmp_path / ".git/objects").is_dir()


def test_a_nul_through_a_variable_is_refused(tmp_path: Path) -> None:
    manifest(tmp_path, '[vars]\nx = "a\\u0000b"\n[[step]]\nname = "a"\ncommand = ["echo", "{x}"]\n')
    one_clear_error(run(tmp_path, "build", "--dry-run"), "NUL", "key 'command'")


def test_a_dry_run_shows_bidi_marks_and_outputs_as_escapes(tmp_path: Path) -> None:
    manifest(
        tmp_path,
        '[[step]]\nname = "a"\ncommand = ["echo", "\\u202emr"]\noutputs = ["out\\u0007"]\n',
    )
    done = run(tmp_path, "build", "--dry-run", "--no-cache")
    assert done.returncode == 0, done.stderr
    assert "\\u202emr" in done.stdout and "out\\x07" in done.stdout
    assert "\u202e" not in done.stdout and "\x07" not in done.stdout


def test_a_remote_url_with_a_space_in_its_path_is_refused(tmp_path: Path) -> None:
    manifest(tmp_path, step("a"))
    one_clear_error(
        run(tmp_path, "build", BUILDLIB_REMOTE_CACHE="http://cache.example/a b"),
        "is not an http(s) URL",
    )


def test_a_nul_through_a_variable_into_clean_is_refused(tmp_path: Path) -> None:
    manifest(tmp_path, '[vars]\nx = "a\\u0000b"\n' + step("a", 'clean = ["{x}/*"]'))
    one_clear_error(run(tmp_path, "clean"), "NUL", "key 'clean'")


def test_a_remote_url_ending_in_a_newline_is_read_as_written_without_it() -> None:
    from buildlib.cache.remote import check_url

    parts, port = check_url("http://cache.example:9/x\n")
    assert (parts.hostname, port, parts.path) == ("cache.example", 9, "/x")
