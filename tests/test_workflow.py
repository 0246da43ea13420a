"""The GitHub Actions workflow: linted by actionlint (with shellcheck) and GitHub's JSON schema,
checked against the real matrix, and kept byte-identical in .github/workflows/.

The linters are real binaries: `bash ci/install-tools.sh` installs them (.ci/run does);
a test skips, naming the tool, only when it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from buildlib.integrations.ci_matrix import build_matrix
from buildlib.workspace.targets import TARGETS

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the workflow")

ROOT = Path(__file__).resolve().parents[1]
CANONICAL = ROOT / "ci" / "workflows" / "build.yml"
GITHUB_COPY = ROOT / ".github" / "workflows" / "build.yml"
SYNC = ROOT / "ci" / "sync-workflow.sh"
MATRIX_EXPR = "${{ fromJSON(needs.plan.outputs.matrix) }}"
CI_MODES = ["production", "development"]
INSTALL_HINT = "run `bash ci/install-tools.sh`"


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found:
        return found
    in_gopath = Path.home() / "go" / "bin" / "actionlint"
    return str(in_gopath) if in_gopath.is_file() else None


def _check_jsonschema() -> list[str] | None:
    if importlib.util.find_spec("check_jsonschema") is not None:
        return [sys.executable, "-m", "check_jsonschema"]
    found = shutil.which("check-jsonschema")
    return [found] if found else None


ACTIONLINT = _actionlint()
CHECK_JSONSCHEMA = _check_jsonschema()
SHELLCHECK = shutil.which("shellcheck")
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None, reason=f"actionlint is not installed; {INSTALL_HINT}"
)
needs_check_jsonschema = pytest.mark.skipif(
    CHECK_JSONSCHEMA is None, reason=f"check-jsonschema is not installed; {INSTALL_HINT}"
)
needs_shellcheck = pytest.mark.skipif(
    SHELLCHECK is None, reason=f"shellcheck is not installed; {INSTALL_HINT}"
)


def run(
    argv: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=timeout,
    )


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on one file; shellcheck is passed explicitly so its absence is visible."""
    assert ACTIONLINT is not None
    return run(
        [ACTIONLINT, "-no-color", "-shellcheck", SHELLCHECK or "", "-pyflakes", "", str(path)]
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True: keys are not all str.
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict)
    return value


def step(
    job: dict[str, Any], *, uses: str = "", run_contains: str = "", step_id: str = ""
) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        s
        for s in job["steps"]
        if (uses and s.get("uses", "").startswith(uses + "@"))
        or (run_contains and run_contains in s.get("run", ""))
        or (step_id and s.get("id") == step_id)
    ]
    assert len(found) == 1, f"expected one step matching {uses or run_contains or step_id}"
    return found[0]


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load(CANONICAL)


# --- the copy GitHub reads ----------------------------------------------------------------


def test_github_copy_is_byte_identical_to_the_canonical_workflow() -> None:
    assert GITHUB_COPY.is_file(), "missing .github/workflows/build.yml: run ci/sync-workflow.sh"
    assert GITHUB_COPY.read_bytes() == CANONICAL.read_bytes(), (
        ".github/workflows/build.yml differs from ci/workflows/build.yml: "
        "edit the latter, then run ci/sync-workflow.sh"
    )


def test_sync_script_check_passes_on_the_repo() -> None:
    proc = run(["bash", str(SYNC), "--check"])

    assert proc.returncode == 0, proc.stderr


def test_sync_script_detects_drift_and_repairs_it(tmp_path: Path) -> None:
    (tmp_path / "ci" / "workflows").mkdir(parents=True)
    shutil.copy(SYNC, tmp_path / "ci" / "sync-workflow.sh")
    source = tmp_path / "ci" / "workflows" / "build.yml"
    source.write_bytes(b"name: x\r\n# no trailing newline")
    script = str(tmp_path / "ci" / "sync-workflow.sh")
    copy = tmp_path / ".github" / "workflows" / "build.yml"

    missing = run(["bash", script, "--check"], cwd=tmp_path)
    assert missing.returncode == 1
    assert "fix: run ci/sync-workflow.sh" in missing.stderr

    assert run(["bash", script], cwd=tmp_path).returncode == 0
    assert copy.read_bytes() == source.read_bytes()
    assert run(["bash", script, "--check"], cwd=tmp_path).returncode == 0

    source.write_bytes(b"name: y\n")
    assert run(["bash", script, "--check"], cwd=tmp_path).returncode == 1
    assert copy.read_bytes() == b"name: x\r\n# no trailing newline", "--check must not write"
    assert run(["bash", script, "bogus"], cwd=tmp_path).returncode == 2


# --- linters -------------------------------------------------------------------------------


@needs_actionlint
@pytest.mark.parametrize("path", [CANONICAL, GITHUB_COPY], ids=["canonical", "github"])
def test_actionlint_accepts_the_workflow(path: Path) -> None:
    proc = actionlint(path)

    assert proc.returncode == 0, proc.stdout + proc.stderr


def inline_matrix(matrix: dict[str, Any], tmp_path: Path) -> Path:
    """The workflow with the plan job's output replaced by `matrix` (JSON is YAML), so
    actionlint type-checks every `matrix.<key>` and every runner label against it."""
    text = CANONICAL.read_text(encoding="utf-8")
    assert text.count(MATRIX_EXPR) == 1, "the build job's matrix expression changed"
    path = tmp_path / "build.yml"
    path.write_text(text.replace(MATRIX_EXPR, json.dumps(matrix)), encoding="utf-8")
    return path


RETIRED_RUNNERS = {"macos-13"}  # GitHub retired the image in December 2025


@needs_actionlint
@pytest.mark.parametrize(
    "triple",
    [
        pytest.param(
            triple,
            marks=pytest.mark.xfail(
                TARGETS[triple].runner in RETIRED_RUNNERS,
                strict=True,
                reason=f"buildlib/workspace/targets.py still maps {triple} to the retired runner "
                f"'{TARGETS[triple].runner}'; the Intel macOS runner is now 'macos-15-intel'",
            ),
        )
        for triple in TARGETS
    ],
)
def test_actionlint_accepts_the_workflow_with_the_real_matrix(triple: str, tmp_path: Path) -> None:
    matrix = build_matrix(modes=CI_MODES, targets=[triple])

    proc = actionlint(inline_matrix(matrix, tmp_path))

    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_actionlint
def test_inlined_matrix_check_catches_a_key_the_workflow_reads_but_the_matrix_lacks(
    tmp_path: Path,
) -> None:
    matrix = build_matrix(modes=["production"], targets=["x86_64-unknown-linux-gnu"])
    for row in matrix["include"]:
        del row["verify_session"]

    proc = actionlint(inline_matrix(matrix, tmp_path))

    assert proc.returncode == 1
    assert 'property "verify_session" is not defined' in proc.stdout


@needs_actionlint
@needs_shellcheck
def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo $UNQUOTED\n",
        encoding="utf-8",
    )

    proc = actionlint(bad)

    assert proc.returncode == 1
    assert "SC2086" in proc.stdout


@needs_check_jsonschema
@pytest.mark.parametrize("path", [CANONICAL, GITHUB_COPY], ids=["canonical", "github"])
def test_github_workflow_schema_accepts_the_workflow(path: Path) -> None:
    assert CHECK_JSONSCHEMA is not None
    proc = run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(path)])

    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_check_jsonschema
def test_github_workflow_schema_rejects_a_misspelled_key(tmp_path: Path) -> None:
    assert CHECK_JSONSCHEMA is not None
    text = CANONICAL.read_text(encoding="utf-8").replace("runs-on:", "run-on:", 1)
    bad = tmp_path / "build.yml"
    bad.write_text(text, encoding="utf-8")

    proc = run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(bad)])

    assert proc.returncode == 1


@needs_shellcheck
def test_ci_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in (ROOT / "ci").glob("*.sh"))
    assert scripts

    proc = run([str(SHELLCHECK), *scripts])

    assert proc.returncode == 0, proc.stdout


# --- what the jobs rely on ----------------------------------------------------------------


def test_triggers_are_push_pull_request_and_manual(workflow: dict[str, Any]) -> None:
    assert set(triggers(workflow)) == {"push", "pull_request", "workflow_dispatch"}


def test_every_action_is_pinned_to_a_major_version(workflow: dict[str, Any]) -> None:
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]

    assert uses
    assert [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u)] == []


def test_build_job_fans_out_over_the_plan_jobs_matrix(workflow: dict[str, Any]) -> None:
    build = workflow["jobs"]["build"]

    assert build["needs"] == "plan"
    assert build["strategy"] == {"fail-fast": False, "matrix": MATRIX_EXPR}
    assert build["runs-on"] == "${{ matrix.runner }}"
    assert workflow["jobs"]["plan"]["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert (
        "--modes production development --json"
        in step(workflow["jobs"]["plan"], step_id="matrix")["run"]
    )


def test_build_job_runs_the_matrix_sessions(workflow: dict[str, Any]) -> None:
    build = workflow["jobs"]["build"]
    env = build["env"]

    assert env["BUILD_SESSION"] == "${{ matrix.session }}"
    assert env["VERIFY_SESSION"] == "${{ matrix.verify_session }}"
    names = [s.get("run", "") for s in build["steps"]]
    built = next(i for i, r in enumerate(names) if r.startswith('nox -s "$BUILD_SESSION"'))
    verified = next(i for i, r in enumerate(names) if "nox -s verify -- " in r)
    assert built < verified
    assert env["MODE"] == "${{ matrix.mode }}"
    assert 'rustup target add "$TARGET"' in step(build, run_contains="rustup target add")["run"]
    assert env["TARGET"] == "${{ matrix.target }}"


def test_build_job_toolchains(workflow: dict[str, Any]) -> None:
    build = workflow["jobs"]["build"]

    python = step(build, uses="actions/setup-python")["with"]["python-version"].split()
    assert python == ["3.11", "3.12"]
    node = step(build, uses="actions/setup-node")["with"]
    assert (str(node["node-version"]), node["cache"]) == ("20", "npm")
    assert node["cache-dependency-path"].split() == [
        "web/package-lock.json",
        "electron/package-lock.json",
        "crates/tachikoma-native/package-lock.json",
    ]
    assert build["defaults"]["run"]["shell"] == "bash", "the run: scripts are bash, on Windows too"


def test_npm_cache_keys_on_every_lockfile_in_the_workspace(workflow: dict[str, Any]) -> None:
    committed = run(
        [
            "git",
            "ls-files",
            "--",
            "package.json",
            "*/package.json",
            "package-lock.json",
            "*/package-lock.json",
        ]
    )
    if committed.returncode != 0:
        pytest.skip(f"not a git checkout: {committed.stderr.strip()}")
    files = set(committed.stdout.split())
    if not files:
        pytest.skip("the app's npm packages are not committed yet")
    listed = step(workflow["jobs"]["build"], uses="actions/setup-node")["with"][
        "cache-dependency-path"
    ].split()

    locks = {f for f in files if f.endswith("/package-lock.json") or f == "package-lock.json"}
    assert sorted(locks - set(listed)) == [], "add these to setup-node's cache-dependency-path"
    packages_without_lock = [
        lock
        for lock in listed
        if lock not in locks and lock.replace("package-lock.json", "package.json") in files
    ]
    assert packages_without_lock == [], "npm ci needs these lockfiles committed"


def test_remote_cache_comes_from_secrets_and_is_read_only_for_forks(
    workflow: dict[str, Any],
) -> None:
    env = workflow["jobs"]["build"]["env"]

    assert env["ELECTRON_SKIP_BINARY_DOWNLOAD"] == "1"
    assert env["BUILDLIB_REMOTE_CACHE"] == "${{ secrets.BUILDLIB_CACHE_URL }}"
    assert "secrets.BUILDLIB_CACHE_TOKEN" in env["BUILDLIB_REMOTE_HEADER"]
    assert "Authorization: Bearer" in env["BUILDLIB_REMOTE_HEADER"]
    read_only = env["BUILDLIB_REMOTE_READ_ONLY"]
    assert "github.event_name == 'pull_request'" in read_only
    assert "github.event.pull_request.head.repo.fork" in read_only


def test_reports_are_uploaded_even_when_the_build_fails(workflow: dict[str, Any]) -> None:
    uploads = [
        s
        for s in workflow["jobs"]["build"]["steps"]
        if s.get("uses", "").startswith("actions/upload-artifact@")
    ]
    by_path = {u["with"]["path"].strip(): u for u in uploads}

    reports = by_path[".buildlib/reports/"]
    assert reports["if"] == "always()"
    assert reports["with"]["name"] == "${{ matrix.artifact_name }}-reports"
    outputs = next(u for u in uploads if u is not reports)
    assert outputs["with"]["name"] == "${{ matrix.artifact_name }}"
    for wanted in (
        "target/${{ matrix.target }}/",
        "web/dist/",
        "electron/dist/",
        ".node",
        ".buildlib/artifacts/",
    ):
        assert wanted in outputs["with"]["path"]
    # upload-artifact skips dot-directories such as .buildlib/ unless told otherwise.
    assert all(u["with"]["include-hidden-files"] is True for u in uploads)


def test_tests_job_installs_the_linters_then_runs_nox(workflow: dict[str, Any]) -> None:
    runs = [s.get("run", "") for s in workflow["jobs"]["tests"]["steps"]]

    assert runs.index("bash ci/install-tools.sh") < runs.index("nox -s tests")


# --- the plan job's script, for real --------------------------------------------------------


def _nox_matrix_session_missing() -> str:
    """Why the plan step cannot run here yet, or "" when the noxfile has a `matrix` session."""
    if shutil.which("nox") is None:
        return "nox is not installed"
    if not (ROOT / "noxfile.py").is_file():
        return "noxfile.py is not in this checkout yet"
    # `--list --json` shows only the selected sessions; select every session to see them all.
    listed = run(["nox", "--list", "--json", "--sessions", "matrix"], timeout=120)
    if listed.returncode != 0:
        return f"`nox --list` fails: {listed.stderr.strip()[-300:]}"
    sessions = {entry["session"] for entry in json.loads(listed.stdout)}
    return "" if "matrix" in sessions else "the noxfile has no `matrix` session yet"


@pytest.mark.timeout(600)
def test_plan_step_writes_a_matrix_github_can_read(
    workflow: dict[str, Any],
    tmp_path: Path,
) -> None:
    missing = _nox_matrix_session_missing()
    if missing:
        pytest.skip(missing)
    plan = step(workflow["jobs"]["plan"], step_id="matrix")["run"]
    assert plan.count("nox -s matrix") == 1
    nox_dir = tmp_path / "nox"  # nox keeps its virtualenvs out of the shared checkout
    script = tmp_path / "plan.sh"
    script.write_text(
        plan.replace("nox -s matrix", f"nox --envdir '{nox_dir}' -s matrix"), encoding="utf-8"
    )
    output = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output)}

    # The same flags as GitHub's `shell: bash`.
    proc = run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=env, timeout=580
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = output.read_text().splitlines()
    key, _, value = line.partition("=")
    assert key == "matrix"
    assert json.loads(value) == build_matrix(modes=CI_MODES)


# --- pull requests: --affected; the shard layout -------------------------------------------

SHARD_JOBS = ("wave1", "wave2", "wave3")


def _script(job: dict[str, Any], *, name_starts: str) -> str:
    (found,) = [s["run"] for s in job["steps"] if s.get("name", "").startswith(name_starts)]
    assert isinstance(found, str)
    return found


def _argv_of_nox(script: str, env: dict[str, str]) -> list[list[str]]:
    """The nox command lines `script` runs under GitHub's bash flags, nox itself replaced by
    a shell function that prints its arguments: what the job would run, without the build."""
    shown = "nox() { printf '%s\\0' \"$@\"; printf '\\n'; }\n" + script
    proc = run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", shown],
        env={"PATH": os.environ["PATH"], **env},
    )
    assert proc.returncode == 0, proc.stderr
    return [line.rstrip("\0").split("\0") for line in proc.stdout.splitlines()]


def test_pull_requests_build_only_what_they_affect_and_pushes_build_everything(
    workflow: dict[str, Any],
) -> None:
    affected = "${{ github.event_name == 'pull_request' && '--affected' || '' }}"
    assert workflow["env"]["AFFECTED"] == affected
    build = workflow["jobs"]["build"]
    session = {
        "BUILD_SESSION": "build-3.12(mode='production')",
        "MODE": "production",
        "TARGET": "x86_64-unknown-linux-gnu",
    }
    build_script = _script(build, name_starts="build (")
    verify_script = _script(build, name_starts="verify (")

    on_pr = {**session, "AFFECTED": "--affected"}
    assert _argv_of_nox(build_script, on_pr) == [
        ["-s", "build-3.12(mode='production')", "--", "--affected"]
    ]
    assert _argv_of_nox(verify_script, on_pr) == [
        [
            "-s",
            "verify",
            "--",
            "--mode",
            "production",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--built-only",
        ]
    ]
    on_push = {**session, "AFFECTED": ""}
    assert _argv_of_nox(build_script, on_push) == [["-s", "build-3.12(mode='production')", "--"]]
    assert _argv_of_nox(verify_script, on_push) == [
        ["-s", "verify", "--", "--mode", "production", "--target", "x86_64-unknown-linux-gnu"]
    ]
    # The engine deepens checkout's one-commit clone itself: no fetch-depth is set anywhere.
    checkouts = [
        s
        for job in workflow["jobs"].values()
        for s in job["steps"]
        if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts and all("with" not in s for s in checkouts)
    # A pull request that affects no artifact's step uploads nothing, and that is fine.
    outputs = next(s for s in build["steps"] if s.get("name") == "upload build outputs")
    assert "'pull_request' && 'warn' || 'error'" in outputs["with"]["if-no-files-found"]


def test_the_shard_layout_is_an_option_that_replaces_the_matrix(
    workflow: dict[str, Any],
) -> None:
    dispatch = triggers(workflow)["workflow_dispatch"]["inputs"]
    assert (dispatch["shards"]["type"], dispatch["shards"]["default"]) == ("number", 0)
    assert set(dispatch["shard_mode"]["options"]) == set(CI_MODES)
    assert "vars.BUILDLIB_SHARDS" in workflow["env"]["SHARDS"]
    jobs = workflow["jobs"]
    plan = jobs["plan"]
    assert step(plan, step_id="matrix")["if"] == "env.SHARDS == '0'"
    shards = step(plan, step_id="shards")
    assert shards["if"] == "env.SHARDS != '0'"
    assert f"--waves {len(SHARD_JOBS)} --github-output" in shards["run"]
    for key in ("sharded", "waves", *SHARD_JOBS, "verify"):
        assert f"steps.shards.outputs.{key}" in plan["outputs"][key]
    assert jobs["build"]["if"] == "needs.plan.outputs.sharded != 'true'"


def test_shard_waves_wait_for_each_other_and_verify_waits_for_every_wave(
    workflow: dict[str, Any],
) -> None:
    jobs = workflow["jobs"]
    previous = ["plan"]
    for number, name in enumerate(SHARD_JOBS, 1):
        job = jobs[name]
        needs = [job["needs"]] if isinstance(job["needs"], str) else job["needs"]
        assert needs == previous
        assert job["if"] == (
            "needs.plan.outputs.sharded == 'true' && "
            f"fromJSON(needs.plan.outputs.waves) >= {number}"
        )
        assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{name}) }}}}"
        assert job["env"]["STEPS"] == "${{ matrix.steps }}"
        assert job["env"]["BUILDLIB_REMOTE_CACHE"] == "${{ secrets.BUILDLIB_CACHE_URL }}"
        previous = ["plan", name]
    verify = jobs["verify"]
    assert verify["needs"] == ["plan", *SHARD_JOBS]
    # A skipped (unused) wave must not skip verify; a failed one must.
    assert (
        verify["if"] == "${{ !cancelled() && !failure() && needs.plan.outputs.sharded == 'true' }}"
    )
    runs = [s.get("run", "") for s in verify["steps"]]
    assert any(r.startswith('nox -s "$BUILD_SESSION"') for r in runs)
    assert any("nox -s verify -- " in r for r in runs)


def test_a_shard_job_builds_exactly_its_rows_steps(workflow: dict[str, Any]) -> None:
    script = _script(workflow["jobs"]["wave2"], name_starts="build ")

    argv = _argv_of_nox(
        script,
        {"BUILD_SESSION": "build-3.12(mode='production')", "STEPS": "web-build native-build"},
    )

    assert argv == [["-s", "build-3.12(mode='production')", "--", "web-build", "native-build"]]


def _real_shard_outputs(waves: int) -> dict[str, Any]:
    from buildlib.integrations.ci_matrix import MatrixEntry, shard_outputs
    from buildlib.planning.shards import plan_shards

    order = ["fetch", "a", "b", "a-test", "package", "smoke"]
    deps = {
        "a": ["fetch"],
        "b": ["fetch"],
        "a-test": ["a"],
        "package": ["a", "b"],
        "smoke": ["package"],
    }
    durations = {"fetch": 2, "a": 4, "b": 3, "a-test": 2, "package": 1, "smoke": 0.5}
    layout = plan_shards(
        order, deps, durations, shards=2, overhead=0, cacheable={"smoke": False}, max_waves=waves
    )
    assert layout.waves == waves
    entry = MatrixEntry(mode="production", target=TARGETS["x86_64-unknown-linux-gnu"])
    return shard_outputs(layout, entry, waves=waves)


@needs_actionlint
def test_actionlint_accepts_the_shard_jobs_with_real_layout_outputs_inlined(
    tmp_path: Path,
) -> None:
    outputs = _real_shard_outputs(len(SHARD_JOBS))
    text = CANONICAL.read_text(encoding="utf-8")
    for key in (*SHARD_JOBS, "verify"):
        expression = f"${{{{ fromJSON(needs.plan.outputs.{key}) }}}}"
        assert text.count(expression) == 1, key
        text = text.replace(expression, json.dumps(outputs[key]))
    path = tmp_path / "build.yml"
    path.write_text(text, encoding="utf-8")

    proc = actionlint(path)

    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_plan_steps_shard_layout_writes_every_output_the_shard_jobs_read(
    workflow: dict[str, Any],
    tmp_path: Path,
) -> None:
    missing = _nox_matrix_session_missing()
    if missing:
        pytest.skip(missing)
    plan = step(workflow["jobs"]["plan"], step_id="shards")["run"]
    nox_dir = tmp_path / "nox"
    script = tmp_path / "shards.sh"
    script.write_text(
        plan.replace("nox -s matrix", f"nox --envdir '{nox_dir}' -s matrix"), encoding="utf-8"
    )
    output = tmp_path / "github_output"
    env = {
        **os.environ,
        "GITHUB_OUTPUT": str(output),
        "SHARDS": "2",
        "SHARD_MODE": "production",
        "AFFECTED": "",
    }

    proc = run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=env, timeout=580
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert set(values) == {"sharded", "waves", *SHARD_JOBS, "verify"}
    assert values["sharded"] == "true" and 1 <= int(values["waves"]) <= len(SHARD_JOBS)
    read = {"runner", "target", "mode", "session", "verify_session", "steps", "id", "artifact_name"}
    for wave in range(1, int(values["waves"]) + 1):
        rows = json.loads(values[f"wave{wave}"])["include"]
        assert rows and all(read <= set(r) and r["steps"] for r in rows)
        assert len(rows) <= 2
    (final,) = json.loads(values["verify"])["include"]
    assert read <= set(final) and final["artifact_name"].endswith("-verify")
