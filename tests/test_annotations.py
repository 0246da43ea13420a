"""Error locations read from the real output of rustc, cargo, tsc, svelte-check and gcc."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import BAD_RS, ts_project

from buildlib.report.annotations import (
    Location,
    Tool,
    find_locations,
    first_error,
    relative_paths,
)
from buildlib.report.ansi import strip_ansi


def run(argv: list[str | Path], cwd: Path, *, check_fails: bool = True) -> str:
    """Run a real tool and return its combined output; it must fail when `check_fails`."""
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if check_fails:
        assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def places(locations: list[Location]) -> list[tuple[str, int, int | None]]:
    return [(loc.file, loc.line, loc.col) for loc in locations]


# -- rustc and cargo ----------------------------------------------------------------------------


@pytest.fixture
def bad_rust(tmp_path: Path) -> Path:
    if shutil.which("rustc") is None:
        pytest.skip("rustc is not installed")
    (tmp_path / "bad.rs").write_text(BAD_RS)
    return tmp_path


@pytest.mark.parametrize("color", ["never", "always"])
def test_rustc_errors_point_at_their_line_and_column(bad_rust: Path, color: str) -> None:
    log = run(["rustc", "--color", color, "bad.rs", "-o", "bad"], bad_rust)
    found = find_locations(log, bad_rust)
    assert sorted(places(found)) == [("bad.rs", 2, 18), ("bad.rs", 3, 20)]
    mismatch = next(loc for loc in found if loc.line == 2)
    assert (mismatch.tool, mismatch.code, mismatch.message) == (
        Tool.RUSTC,
        "E0308",
        "mismatched types",
    )
    assert mismatch.title == "E0308: mismatched types"


def test_rustc_short_format_is_read_too(bad_rust: Path) -> None:
    log = run(["rustc", "--error-format=short", "bad.rs", "-o", "bad"], bad_rust)
    found = find_locations(log, bad_rust)
    assert sorted(places(found)) == [("bad.rs", 2, 18), ("bad.rs", 3, 20)]
    assert {loc.code for loc in found} == {"E0308", "E0425"}


def test_rustc_warnings_are_not_errors(bad_rust: Path) -> None:
    (bad_rust / "warn.rs").write_text("fn main() {\n    let unused = 1;\n}\n")
    log = run(["rustc", "warn.rs", "-o", "warn"], bad_rust, check_fails=False)
    assert "--> warn.rs:2:9" in log  # the warning has a location...
    assert find_locations(log, bad_rust) == []  # ...but it is no error


def test_cargo_paths_from_a_member_directory_resolve_under_the_workspace_root(
    tmp_path: Path,
) -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    (tmp_path / "Cargo.toml").write_text('[workspace]\nmembers = ["crates/core"]\nresolver = "2"\n')
    member = tmp_path / "crates" / "core"
    (member / "src").mkdir(parents=True)
    (member / "Cargo.toml").write_text(
        '[package]\nname = "core-x"\nversion = "0.1.0"\nedition = "2021"\n'
    )
    (member / "src" / "lib.rs").write_text('pub fn f() -> i32 {\n    "nope"\n}\n')
    log = subprocess.run(
        ["cargo", "check", "--offline", "--color", "always"],
        cwd=member,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")},
    ).stderr
    # cargo prints the path relative to its workspace root, not to where it was started.
    assert "crates/core/src/lib.rs:2:5" in strip_ansi(log)
    found = find_locations(log, tmp_path, cwd=member)
    assert places(found) == [("crates/core/src/lib.rs", 2, 5)]
    assert found[0].code == "E0308"


# -- tsc ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pretty", ["false", "true"])
def test_tsc_errors_in_both_output_forms(tsc: Path, tmp_path: Path, pretty: str) -> None:
    app = ts_project(tmp_path)
    log = run([tsc, "-p", ".", "--pretty", pretty], app)
    if pretty == "true":
        assert "\x1b[" in log  # the coloured form really is what is parsed
    found = find_locations(log, tmp_path, cwd=app)
    assert places(found) == [("app/src/x.ts", 1, 7), ("app/src/x.ts", 3, 3)]
    assert {(loc.tool, loc.code) for loc in found} == {(Tool.TSC, "TS2322")}
    assert found[0].message == "Type 'string' is not assignable to type 'number'."


def test_tsc_paths_stay_as_printed_without_a_step_directory(tsc: Path, tmp_path: Path) -> None:
    app = ts_project(tmp_path)
    log = run([tsc, "-p", "."], app)
    assert places(find_locations(log, None)) == [("src/x.ts", 1, 7), ("src/x.ts", 3, 3)]


# -- svelte-check ----------------------------------------------------------------------------------

SVELTE_EXPECTED = [
    ("app/src/App.svelte", 2, 7),
    ("app/src/App.svelte", 5, 6),
    ("app/src/x.ts", 1, 7),
    ("app/src/x.ts", 3, 3),
]


@pytest.mark.parametrize("output", ["human", "machine", "machine-verbose"])
def test_svelte_check_errors_in_every_output_form(
    svelte_check: Path, tmp_path: Path, output: str
) -> None:
    app = ts_project(tmp_path)
    log = run([svelte_check, "--workspace", ".", "--output", output], app)
    # No step directory is given: svelte-check names its workspace itself.
    found = find_locations(log, tmp_path)
    assert sorted(places(found)) == SVELTE_EXPECTED
    assert {loc.tool for loc in found} == {Tool.SVELTE_CHECK}
    missing = next(loc for loc in found if loc.line == 5)
    assert missing.message == "Cannot find name 'missing'."


# -- gcc and the generic form ------------------------------------------------------------------


def test_gcc_errors_with_and_without_a_column(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "bad.c").write_text("int main(void) {\n    return nope;\n}\n")
    log = run(["gcc", "-c", "bad.c", "-o", "bad.o"], tmp_path)
    found = find_locations(log, tmp_path)
    assert places(found) == [("bad.c", 2, 12)]
    assert found[0].tool is Tool.GENERIC
    assert "nope" in found[0].message
    no_column = find_locations("lib/x.c:7: error: expected ';'\n", None)
    assert places(no_column) == [("lib/x.c", 7, None)]


def test_absolute_paths_inside_the_root_become_relative_and_outside_stay(tmp_path: Path) -> None:
    inside = tmp_path / "src" / "a.c"
    log = f"{inside}:1:2: error: one\n/elsewhere/b.c:3:4: error: two\n"
    assert places(find_locations(log, tmp_path)) == [("src/a.c", 1, 2), ("/elsewhere/b.c", 3, 4)]


def test_a_log_without_errors_has_no_locations() -> None:
    log = "   Compiling x v0.1.0\nwarning: unused variable\n  --> src/lib.rs:1:1\nFinished\n"
    assert find_locations(log, None) == []


def test_the_same_error_reported_twice_is_listed_once() -> None:
    log = "a.c:1:2: error: same\na.c:1:2: error: same\na.c:1:2: error: other\n"
    assert [loc.message for loc in find_locations(log, None)] == ["same", "other"]


# -- escape sequences ------------------------------------------------------------------------------


def test_strip_ansi_removes_colours_links_and_stray_escapes() -> None:
    text = (
        "\x1b[1m\x1b[31merror\x1b[0m: x "
        "\x1b]8;;file:///a.rs\x1b\\a.rs\x1b]8;;\x1b\\ \x1b(B\x1b[?25l stray\x1b"
    )
    assert strip_ansi(text) == "error: x a.rs  stray"


def test_strip_ansi_keeps_what_a_carriage_return_leaves_visible() -> None:
    assert strip_ansi("10%\r50%\r100% done\nnext") == "100% done\nnext"


def test_strip_ansi_can_keep_colours_but_nothing_that_moves_the_cursor() -> None:
    text = "\x1b[2K\x1b[1;31mred\x1b[0m \x1b[1Aup\x1b\nplain"
    assert strip_ansi(text, keep_colours=True) == "\x1b[1;31mred\x1b[0m up\x1b[0m\nplain"


# -- the first error, whole (issue 13 item 5) ------------------------------------------------


def test_the_first_rustc_error_is_its_whole_block(bad_rust: Path) -> None:
    log = run(["rustc", "bad.rs", "-o", "bad"], bad_rust)
    block = first_error(log, bad_rust)
    assert block is not None
    assert (block.location.file, block.location.line) in (("bad.rs", 2), ("bad.rs", 3))
    assert block.lines[0].startswith("error[E0")
    assert block.lines[1].strip().startswith("--> bad.rs:")
    assert any(line.lstrip().startswith(("2 |", "3 |")) for line in block.lines)  # the source
    assert "error: aborting" not in "\n".join(block.lines)  # the next diagnostic is not in it
    assert block.lines[-1].strip()  # no trailing blank line


def test_the_first_tsc_error_is_rewritten_relative_to_the_root(tsc: Path, tmp_path: Path) -> None:
    """tsc prints paths relative to its project; a terminal opens them from the root."""
    app = ts_project(tmp_path)
    for pretty in ("false", "true"):
        block = first_error(run([tsc, "-p", ".", "--pretty", pretty], app), tmp_path, cwd=app)
        assert block is not None
        assert block.lines[0].startswith(
            ("app/src/x.ts(1,7): error TS2322", "app/src/x.ts:1:7 - error TS2322")
        )
        if pretty == "true":  # the source excerpt under the header belongs to it
            assert any('const x: number = "s";' in line for line in block.lines)
            assert not any("x.ts:3:3" in line for line in block.lines)


def test_the_first_svelte_check_error_keeps_its_excerpt(svelte_check: Path, tmp_path: Path) -> None:
    app = ts_project(tmp_path)
    log = run([svelte_check, "--workspace", "."], app)
    block = first_error(log, tmp_path)
    assert block is not None
    assert block.lines[:2] == (
        "app/src/App.svelte:2:7",  # was absolute
        "Error: Type 'string' is not assignable to type 'number'. (ts)",
    )
    assert '  let count: number = "zero";' in block.lines
    assert "Cannot find name" not in "\n".join(block.lines)  # the second error is another


def test_gcc_notes_belong_to_their_error_and_the_next_function_does_not(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "bad.c").write_text("int main(void) {\n  return a;\n}\nint f(void) { return b; }\n")
    block = first_error(run(["gcc", "-c", "bad.c"], tmp_path), tmp_path)
    assert block is not None and block.location.line == 2
    text = "\n".join(block.lines)
    assert "note:" in text and "In function" not in text and "'b'" not in text


def test_relative_paths_leave_other_lines_alone(tmp_path: Path) -> None:
    lines = [f"{tmp_path}/web/App.svelte:3:4", "Error: bad (ts)", f"see {tmp_path}/other"]
    assert relative_paths(lines, tmp_path) == [
        "web/App.svelte:3:4",
        "Error: bad (ts)",
        f"see {tmp_path}/other",
    ]
