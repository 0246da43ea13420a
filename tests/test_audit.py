"""`buildlib audit` end to end: temporary workspaces, real `python -m buildlib` processes,
real strace. Each problem is planted in a step, found, fixed by pasting the proposed
TOML into the manifest, and gone on the next audit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from buildlib.audit.fixes import toml_array, toml_string

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="needs strace: apt-get install strace"
)


class Workspace:
    """A workspace whose manifest is kept as data, so proposed TOML can be applied."""

    def __init__(
        self,
        root: Path,
        steps: list[dict[str, Any]],
        *,
        tools: dict[str, list[str]] | None = None,
        path: str | None = None,
    ) -> None:
        self.root = root
        self.steps = {s["name"]: dict(s) for s in steps}
        self.tools = {"python": [PY, "--version"], **(tools or {})}
        self.path = path  # PATH for the audit (default: the test's)
        root.mkdir(parents=True, exist_ok=True)
        self.write()

    def file(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def write(self) -> None:
        lines = ["[workspace]", 'name = "t"', 'default_mode = "development"', "", "[tools]"]
        lines.extend(toml_array(k, v) for k, v in self.tools.items())
        lines += ["", "[modes.development]", 'vars = { profile = "debug" }', ""]
        for step in self.steps.values():
            lines.append("[[step]]")
            for key, value in step.items():
                if isinstance(value, list):
                    lines.append(toml_array(key, value))
                elif isinstance(value, dict):
                    pairs = ", ".join(f"{k} = {toml_string(v)}" for k, v in value.items())
                    lines.append(f"{key} = {{ {pairs} }}")
                elif isinstance(value, bool):
                    lines.append(f"{key} = {'true' if value else 'false'}")
                else:
                    lines.append(f"{key} = {toml_string(value)}")
            lines.append("")
        (self.root / "build.toml").write_text("\n".join(lines))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.path is not None:
            env["PATH"] = self.path
        return subprocess.run(
            [PY, "-m", "buildlib", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def audit(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.run("audit", "--json", *args)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 1) and proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def apply(self, toml: str) -> None:
        """Paste the audit's proposed TOML into the manifest, as a user would."""
        for block in toml.split("\n\n"):
            header, _, body = block.partition("\n")
            values = tomllib.loads(body)
            if header.startswith("# [[step]]"):
                name = tomllib.loads(header[len("# [[step]] ") :].split(":")[0])["name"]
                self.steps[name].update(values)
            else:
                assert header.startswith("# [tools]"), header
                self.tools.update(values)
        self.write()


def step(name: str, script: str, **keys: Any) -> dict[str, Any]:
    """A step running `script` (a file of the workspace) with this interpreter."""
    return {"name": name, "command": [PY, script], "tools": ["python"], **keys}


def only_step(report: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = report["steps"]
    return found


# -- clean steps ---------------------------------------------------------------------------


def test_a_step_that_reads_only_declared_inputs_reports_nothing(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [step("copy", "copy.py", inputs=["copy.py", "src/**"], outputs=["out/copy.txt"])],
    )
    ws.file("src/a.txt", "a\n")
    ws.file(
        "copy.py",
        """\
        import os
        os.makedirs("out", exist_ok=True)
        open("out/copy.txt", "w").write(open("src/a.txt").read())
    """,
    )
    code, report = ws.audit("--twice")
    s = only_step(report)
    assert code == 0 and report["ok"], report
    assert s["status"] == "audited" and s["problems"] == 0
    for key in (
        "undeclared_inputs",
        "undeclared_outputs",
        "undeclared_tools",
        "nondeterministic_outputs",
        "unread_inputs",
    ):
        assert s[key] == [], key
    assert s["proposed"] is None and report["toml"] == ""
    text = ws.run("audit").stdout
    assert "copy (" in text and "clean" in text and "audit passed" in text


# -- each planted problem: found, fixed by the proposed TOML, gone -------------------------


def test_undeclared_input_is_found_and_the_proposed_glob_fixes_it(tmp_path: Path) -> None:
    # The build.rs case: the step reads a file beside the declared sources.
    ws = Workspace(
        tmp_path / "ws", [step("gen", "gen.py", inputs=["gen.py", "src/**"], outputs=["out.txt"])]
    )
    ws.file("src/main.txt", "main\n")
    ws.file("shared/config.json", '{"answer": 42}\n')
    ws.file(
        "gen.py",
        """\
        cfg = open("shared/config.json").read()
        open("out.txt", "w").write(open("src/main.txt").read() + cfg)
    """,
    )
    code, report = ws.audit()
    s = only_step(report)
    assert code == 1 and not report["ok"]
    assert s["undeclared_inputs"] == [
        {
            "path": "shared/config.json",
            "access": "read",
            "fix": "inputs",
            "producer": None,
            "detail": "",
        }
    ]
    assert s["undeclared_outputs"] == [] and s["undeclared_tools"] == []
    assert s["proposed"]["inputs"] == ["shared/config.json"]
    assert 'inputs = ["gen.py", "src/**", "shared/config.json"]' in report["toml"]
    ws.apply(report["toml"])
    code, report = ws.audit()
    assert code == 0 and report["ok"], report


def test_undeclared_output_is_found_and_the_proposed_output_fixes_it(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [
            step(
                "gen",
                "gen.py",
                inputs=["gen.py"],
                outputs=["out/{mode}/app.js"],
                env={"MODE": "{mode}"},
            )
        ],
    )
    ws.file(
        "gen.py",
        """\
        import os
        out = os.path.join("out", os.environ["MODE"])
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "app.js"), "w").write("app")
        open(os.path.join(out, "app.js.map"), "w").write("map")   # nobody declared this one
    """,
    )
    code, report = ws.audit()
    s = only_step(report)
    assert code == 1
    assert s["undeclared_outputs"] == [
        {"path": "out/development/app.js.map", "change": "written", "fixable": True, "detail": ""}
    ]
    assert s["undeclared_inputs"] == []
    # the mode's value comes back as its placeholder, so the line holds in every mode
    assert s["proposed"]["outputs"] == ["out/{mode}/app.js.map"]
    ws.apply(report["toml"])
    assert ws.steps["gen"]["outputs"] == ["out/{mode}/app.js", "out/{mode}/app.js.map"]
    code, report = ws.audit()
    assert code == 0 and report["ok"], report


def test_undeclared_tool_is_found_and_the_proposed_entry_fixes_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # outside the workspace, on PATH: an installed tool
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "mytool 1.2.3"; exit 0; fi\n'
        'tr a-z A-Z < "$1" > "$2"\n'
    )
    tool.chmod(0o755)
    ws = Workspace(
        tmp_path / "ws",
        [
            {
                "name": "upper",
                "command": ["mytool", "in.txt", "out.txt"],
                "inputs": ["in.txt"],
                "outputs": ["out.txt"],
            }
        ],
        path=f"{bin_dir}:{os.environ['PATH']}",
    )
    ws.file("in.txt", "hello\n")
    code, report = ws.audit()
    s = only_step(report)
    assert code == 1
    tools = s["undeclared_tools"]
    # tr is not plumbing: its version could change the output, so it is reported too
    assert [t["name"] for t in tools] == ["mytool", "tr"]
    assert tools[0] == {
        "program": str(tool),
        "name": "mytool",
        "existing": False,
        "version_command": ["mytool", "--version"],
        "version_checked": True,
        "launcher": None,
    }
    assert s["undeclared_inputs"] == [] and s["undeclared_outputs"] == []
    assert 'mytool = ["mytool", "--version"]' in report["toml"]
    assert 'tools = ["mytool", "tr"]' in report["toml"]
    ws.apply(report["toml"])
    assert ws.tools["tr"] == ["tr", "--version"]
    code, report = ws.audit()
    assert code == 0 and report["ok"], report
    # the fixed manifest builds: the new tool entries answer
    assert ws.run("build", "--plain").returncode == 0


def test_an_existing_tool_entry_is_proposed_for_the_step(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", [step("gen", "gen.py", inputs=["gen.py"], tools=[])])
    ws.file("gen.py", "print('hi')\n")
    code, report = ws.audit()
    (tool,) = only_step(report)["undeclared_tools"]
    assert code == 1 and tool["name"] == "python" and tool["existing"] is True
    assert report["toml"] == '# [[step]] name = "gen": replace these keys\ntools = ["python"]'


def test_nondeterministic_output_is_found_with_twice(tmp_path: Path) -> None:
    prefix = "bundle built at "
    ws = Workspace(
        tmp_path / "ws",
        [
            step("bundle", "bundle.py", inputs=["bundle.py"], outputs=["dist/bundle.js"]),
            step("same", "same.py", inputs=["same.py"], outputs=["dist/same.js"]),
        ],
    )
    ws.file(
        "bundle.py",
        f"""\
        import os, time
        os.makedirs("dist", exist_ok=True)
        open("dist/bundle.js", "w").write("{prefix}" + str(time.time_ns()) + "\\n")
    """,
    )
    ws.file(
        "same.py",
        """\
        import os
        os.makedirs("dist", exist_ok=True)
        open("dist/same.js", "w").write("same every time\\n")
    """,
    )
    code, report = ws.audit()  # without --twice nothing is wrong
    assert code == 0, report
    code, report = ws.audit("--twice")
    bundle, same = report["steps"]
    assert code == 1
    (diff,) = bundle["nondeterministic_outputs"]
    assert diff["path"] == "dist/bundle.js"
    assert diff["offset"] >= len(prefix)
    assert diff["first"] != diff["second"]
    assert bundle["proposed"] is None  # no declaration fixes this
    assert same["nondeterministic_outputs"] == [] and same["problems"] == 0
    text = ws.run("audit", "--twice").stdout
    assert "dist/bundle.js: first difference at byte" in text
    # the second run's outputs are left in place
    assert (ws.root / "dist/bundle.js").read_text().startswith(prefix)


def test_clean_traces_what_an_incremental_step_skips(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [step("inc", "inc.py", inputs=["inc.py"], outputs=["out.txt"], clean=["state"])],
    )
    ws.file("shared/extra.txt", "x\n")
    ws.file(
        "inc.py",
        """\
        import os
        if not os.path.exists("state/done"):  # the tool's own incremental state
            os.makedirs("state", exist_ok=True)
            open("state/done", "w").write(open("shared/extra.txt").read())
        open("out.txt", "w").write(open("state/done").read())
    """,
    )
    assert ws.run("build", "--plain").returncode == 0
    code, report = ws.audit()  # up to date in its own eyes: the read is skipped
    assert code == 0 and report["clean"] is False, report
    code, report = ws.audit("--clean")  # state/ removed first: a cold run
    assert code == 1 and report["clean"] is True
    assert [i["path"] for i in only_step(report)["undeclared_inputs"]] == ["shared/extra.txt"]


def test_files_looked_for_are_hints_until_an_input_glob_watches_them(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", [step("gen", "gen.py", inputs=["gen.py"], outputs=["out.txt"])])
    ws.file(
        "gen.py",
        """\
        import os
        local = os.path.isdir("conf") and os.path.exists("conf/local.ini")
        os.path.exists(".env")
        open("out.txt", "w").write(str(local))
    """,
    )
    code, report = ws.audit()
    assert code == 0, report  # hints never fail the audit
    assert only_step(report)["missing_probes"] == [".env", "conf"]
    assert ".env, conf" in ws.run("audit").stdout
    ws.steps["gen"]["inputs"] = ["gen.py", ".env", "conf/*.ini"]
    ws.write()
    code, report = ws.audit()
    assert code == 0 and only_step(report)["missing_probes"] == []


# -- proposals -----------------------------------------------------------------------------


def test_many_files_become_a_directory_glob(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws", [step("site", "site.py", inputs=["site.py"], outputs=["site/index.html"])]
    )
    for name in ("a", "b", "c"):
        ws.file(f"pages/{name}.md", f"# {name}\n")
    ws.file("pages/deep/d.md", "# d\n")
    ws.file("layout.html", "<main></main>\n")
    ws.file(
        "site.py",
        """\
        import os
        os.makedirs("site/assets", exist_ok=True)
        pages = [os.path.join(d, f) for d, _, fs in os.walk("pages") for f in fs]
        body = "".join(open(p).read() for p in sorted(pages))
        open("site/index.html", "w").write(open("layout.html").read() + body)
        for i in range(3):
            open(f"site/assets/{i}.css", "w").write("x")
    """,
    )
    code, report = ws.audit()
    s = only_step(report)
    assert code == 1
    assert s["proposed"]["inputs"] == ["layout.html", "pages/**"]
    assert s["proposed"]["outputs"] == ["site/assets"]  # a directory the step made
    ws.apply(report["toml"])
    code, report = ws.audit()
    assert code == 0 and report["ok"], report


def test_reading_another_steps_output_proposes_depends_on(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [
            step("make-lib", "lib.py", inputs=["lib.py"], outputs=["lib/out.txt"]),
            step("app", "app.py", inputs=["app.py"], outputs=["app.txt"]),
        ],
    )
    ws.file(
        "lib.py",
        "import os\nos.makedirs('lib', exist_ok=True)\nopen('lib/out.txt', 'w').write('lib')\n",
    )
    ws.file("app.py", "open('app.txt', 'w').write(open('lib/out.txt').read())\n")
    code, report = ws.audit()
    lib, app = report["steps"]
    assert code == 1 and lib["problems"] == 0
    assert app["undeclared_inputs"] == [
        {
            "path": "lib/out.txt",
            "access": "read",
            "fix": "depends_on",
            "producer": "make-lib",
            "detail": "made by step 'make-lib'",
        }
    ]
    assert app["proposed"]["depends_on"] == ["make-lib"]
    assert app["proposed"]["inputs"] == []
    ws.apply(report["toml"])
    assert ws.steps["app"]["depends_on"] == ["make-lib"]
    code, report = ws.audit()
    assert code == 0 and report["ok"], report


def test_dependencies_are_built_first_and_their_outputs_are_not_findings(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [
            step("make-lib", "lib.py", inputs=["lib.py"], outputs=["lib/out.txt"]),
            step("app", "app.py", inputs=["app.py"], outputs=["app.txt"], depends_on=["make-lib"]),
        ],
    )
    ws.file(
        "lib.py",
        "import os\nos.makedirs('lib', exist_ok=True)\nopen('lib/out.txt', 'w').write('lib')\n",
    )
    ws.file("app.py", "open('app.txt', 'w').write(open('lib/out.txt').read())\n")
    proc = ws.run("audit", "app")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "building the dependencies first: make-lib" in proc.stderr
    assert (ws.root / "lib/out.txt").read_text() == "lib"
    assert "audit of 1 step(s)" in proc.stdout and "app (" in proc.stdout


# -- failures and errors -------------------------------------------------------------------


def test_a_failing_step_is_reported_and_its_dependents_are_not_run(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [
            step("broken", "broken.py", inputs=["broken.py"]),
            step("after", "after.py", inputs=["after.py"], depends_on=["broken"]),
        ],
    )
    ws.file("broken.py", "import sys\nprint('boom')\nsys.exit(3)\n")
    ws.file("after.py", "open('ran', 'w')\n")
    code, report = ws.audit()
    broken, after = report["steps"]
    assert code == 1
    assert broken["status"] == "failed" and broken["exit_code"] == 3
    assert "boom" in Path(broken["log"]).read_text()
    assert after["status"] == "skipped" and "broken" in after["note"]
    assert not (ws.root / "ran").exists()


def test_a_step_whose_second_run_fails_does_not_pass_twice(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [step("once", "once.py", inputs=["once.py"], outputs=["out.txt"], clean=["state"])],
    )
    ws.file(
        "once.py",
        """\
        import os, sys
        if os.path.exists("state/ran"):
            sys.exit("ran before")
        os.makedirs("state", exist_ok=True)
        open("state/ran", "w").close()
        open("out.txt", "w").write("x")
    """,
    )
    code, report = ws.audit("--twice")
    s = only_step(report)
    assert code == 1 and s["status"] == "failed" and s["problems"] == 0
    assert "the second run failed (exit 1)" in s["note"]
    assert "once (" in ws.run("audit", "--twice", "--clean").stdout


def test_missing_strace_is_one_clear_error(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "ws",
        [step("gen", "gen.py", inputs=["gen.py"])],
        path=str(tmp_path / "empty-bin"),
    )
    ws.file("gen.py", "pass\n")
    proc = ws.run("audit")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "apt-get install strace" in proc.stderr
    assert proc.stderr.startswith("error: strace is needed")


def test_unknown_step_is_a_clear_error(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", [step("gen", "gen.py", inputs=["gen.py"])])
    proc = ws.run("audit", "gne")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "unknown step 'gne'" in proc.stderr and "did you mean 'gen'" in proc.stderr


def test_cache_false_steps_are_left_out_unless_named(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", [step("check", "check.py", cache=False)])
    ws.file("check.py", "open('check.py').read()\nopen('checked', 'w')\n")
    proc = ws.run("audit")
    assert proc.returncode == 0, proc.stderr
    assert "building" not in proc.stderr  # nothing audited depends on it: not built either
    assert not (ws.root / "checked").exists()
    code, report = ws.audit()
    assert code == 0 and report["steps"] == []
    assert [n["step"] for n in report["not_audited"]] == ["check"]
    code, report = ws.audit("check")
    assert code == 1
    assert [i["path"] for i in only_step(report)["undeclared_inputs"]] == ["check.py"]
