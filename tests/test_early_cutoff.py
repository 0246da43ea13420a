"""Early cutoff (issue 12): a step's fingerprint takes its dependencies' outputs, not theirs.

A dependency that runs again and makes byte-identical outputs (a comment edit) leaves
its dependents up to date, and --explain says so; a dependency without outputs counts
by its success alone. Real builds through the CLI.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from helpers import PY_TOML, Workspace, make_workspace, ok

STRIP = (
    "import pathlib; lines = pathlib.Path('src/a.txt').read_text().splitlines(); "
    "p = pathlib.Path('out'); p.mkdir(exist_ok=True); "
    "(p / 'code.txt').write_text(''.join(l + '\\n' for l in lines if not l.startswith('#'))); "
    "open('runs.log', 'a').write('strip\\n')"
)
USE = (
    "import pathlib; t = pathlib.Path('out/code.txt').read_text(); "
    "pathlib.Path('out/used.txt').write_text(t.upper()); open('runs.log', 'a').write('use\\n')"
)
CHECK = (
    "import pathlib; pathlib.Path('src/a.txt').read_text(); open('runs.log', 'a').write('check\\n')"
)


def workspace(tmp_path: Path) -> Workspace:
    ws = make_workspace(tmp_path)
    (ws.root / "src/a.txt").write_text("# a comment\ncode\n")
    (ws.root / "build.toml").write_text(
        textwrap.dedent(f"""
        [modes.development]

        [[step]]
        name = "strip"
        command = [{PY_TOML}, "-c", {json.dumps(STRIP)}]
        inputs = ["src/a.txt"]
        outputs = ["out/code.txt"]

        [[step]]
        name = "check"
        command = [{PY_TOML}, "-c", {json.dumps(CHECK)}]
        inputs = ["src/a.txt"]

        [[step]]
        name = "use"
        command = [{PY_TOML}, "-c", {json.dumps(USE)}]
        depends_on = ["strip", "check"]
        outputs = ["out/used.txt"]
        """)
    )
    ok(ws.build())
    return ws


def test_a_comment_edit_rebuilds_the_dependency_and_nothing_after_it(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (ws.root / "src/a.txt").write_text("# another comment\ncode\n")
    proc = ws.build("--explain")
    ok(proc)
    assert ws.ran() == ["check", "strip"]
    assert ws.outcomes()["use"] == "cached"
    why = proc.stdout.split("why steps ran:")[1]
    assert (
        "use: up to date (cached): dependency strip rebuilt, outputs unchanged; "
        "dependency check rebuilt, outputs unchanged" in why
    )


def test_a_real_change_reaches_the_dependents_and_explain_names_it(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (ws.root / "src/a.txt").write_text("# a comment\nother code\n")
    proc = ws.build("--explain")
    ok(proc)
    assert ws.ran() == ["check", "strip", "use"]
    assert (ws.root / "out/used.txt").read_text() == "OTHER CODE\n"
    assert "use: dependency strip rebuilt, its outputs changed" in proc.stdout


def test_cutoff_holds_through_a_restore_from_the_cache(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (ws.root / "src/a.txt").write_text("# edited\ncode\n")
    ok(ws.build())
    (ws.root / "src/a.txt").write_text("# a comment\ncode\n")  # back: strip is restored
    proc = ws.build("--explain")
    ok(proc)
    assert ws.outcomes() == {"strip": "restored", "check": "restored", "use": "cached"}
    assert "dependency strip restored from the cache, outputs unchanged" in proc.stdout
