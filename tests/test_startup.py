"""Start-up rules, checked on a real no-op build rather than kept in comments.

A no-op build is what a developer runs most; its start-up is most of its time. It must
not import the modules ruff's TID253 bans at module level (pyproject.toml): rich, the
OpenSSL-backed hashlib, dataclasses, tomllib (and tomli), http.client, concurrent.futures and
packaging.markers, nor the cache store, the remote client, protobuf, cryptography or
platformdirs, which only a cache miss, a save or a remote needs; nor the error
parsers and HTML page (a failure's), nor another command's modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEVER_ON_A_NO_OP = (
    "rich",
    "_hashlib",
    "hashlib",
    "dataclasses",
    "tomllib",
    "tomli",
    "buildlib.core.toml",
    "buildlib.workspace.pieces",
    "http.client",
    "concurrent.futures",
    "packaging.markers",
    "buildlib.cache.store",
    "buildlib.cache.remote",
    "google.protobuf",
    "cryptography",
    "platformdirs",
    "ssl",
    # a build that fails nothing compiles no error parser and renders no page; the
    # parser declares only the options of the command that runs
    "buildlib.report.annotations",
    "buildlib.report.html",
    "html",
    "buildlib.watch",
    "buildlib.run.miss",
    "buildlib.report.diff",
    "tempfile",
)

PROBE = textwrap.dedent("""
    import json, runpy, sys
    sys.argv = ["buildlib", "build", "--plain"]
    try:
        runpy.run_module("buildlib", run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    with open("modules.json", "w") as f:
        json.dump({"code": code, "modules": sorted(sys.modules)}, f)
""")


def test_a_no_op_build_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello\n")
    # A declared tool's version is cached against its file (a script is its own
    # version): a no-op runs no version command (which would import
    # concurrent.futures and tempfile).
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool 1.0\n")
    tool.chmod(0o755)
    (tmp_path / "build.toml").write_text(
        textwrap.dedent(f"""
        [modes.development]

        [tools]
        mytool = [{json.dumps(str(tool))}]

        [[step]]
        name = "copy"
        command = ["sh", "-c", "mkdir -p out && cp in.txt out/copy.txt"]
        inputs = ["in.txt"]
        outputs = ["out/copy.txt"]
        tools = ["mytool"]
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "buildlib", "build", "--plain"]
    assert subprocess.run(run, cwd=tmp_path, env=env, capture_output=True).returncode == 0
    # Files changed within 2 s are hashed again (filehash.RACY_WINDOW_NS); once they are
    # older, one more build records them as trusted, and a no-op reads no content.
    time.sleep(2.1)
    subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, check=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    result = json.loads((tmp_path / "modules.json").read_text())
    assert result["code"] == 0, done.stdout + done.stderr
    assert done.stdout.startswith("nothing to do: 1 step up to date"), done.stdout
    loaded = set(result["modules"])
    assert sorted(m for m in NEVER_ON_A_NO_OP if m in loaded) == []
