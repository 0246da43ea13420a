"""Issue 11 through the CLI: the cache as a trust boundary, each defect as a real build.

Each test builds temporary workspaces with real `python -m buildlib` processes against
real servers: Debian's nginx for the shared cache (a hostile party rewrites its files),
and small HTTP servers written here for the hostile behaviours nginx cannot show (one
that edits the workspace while it answers, one that trickles a byte at a time).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import PY_TOML, ROOT, Workspace, make_workspace, ok
from nginx_server import Nginx, running_nginx

from buildlib.cache.entries import FileKind, OutputFile, symlink_record
from buildlib.cache.reapi import decode_action_result, encode_action_result
from buildlib.cache.signing import Signer, generate
from buildlib.cache.store import FORMAT, signed_message
from buildlib.run.step_state import StepState


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with running_nginx(tmp_path / "nginx") as server:
        yield server


def step_key(ws: Workspace, step: str) -> str:
    return str(ws.report_step(step)["fingerprint"])


def reseal(body: dict[str, object]) -> bytes:
    """What an attacker who can write the cache does: a correctly sealed entry."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return json.dumps(
        {"format": FORMAT, "sha256": hashlib.sha256(canonical.encode()).hexdigest(), "body": body},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def plant(
    nginx: Nginx,
    key: str,
    extra: dict[str, bytes],
    *,
    signer: Signer | None = None,
    links: dict[str, str] | None = None,
) -> None:
    """Rewrite the remote's entry for `key` so that it also holds `extra` files and `links`
    (path -> target) symlinks."""
    result = decode_action_result((nginx.data / "ac" / key).read_bytes())
    body = json.loads((nginx.data / "cas" / result.meta_sha256).read_bytes())["body"]
    for path, data in extra.items():
        digest = hashlib.sha256(data).hexdigest()
        (nginx.data / "cas" / digest).write_bytes(data)
        body["files"].append(
            {"path": path, "kind": "file", "sha256": digest, "size": len(data), "mode": 0o755}
        )
    for path, target in (links or {}).items():
        body["files"].append(symlink_record(path, target).to_json())
    sealed = reseal(body)
    meta = hashlib.sha256(sealed).hexdigest()
    (nginx.data / "cas" / meta).write_bytes(sealed)
    files = [
        OutputFile(
            path=f["path"],
            kind=FileKind(f["kind"]),
            sha256=f["sha256"],
            size=f["size"],
            mode=f["mode"],
            target=f.get("target"),
        )
        for f in body["files"]
    ]
    signature = None if signer is None else signer.sign(signed_message(key, meta))
    (nginx.data / "ac" / key).write_bytes(
        encode_action_result(
            files,
            log_sha256=body["log"]["sha256"],
            log_size=body["log"]["size"],
            meta_sha256=meta,
            meta_size=len(sealed),
            signature=signature,
        )
    )


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("warning:")
    ]


# -- 1, 13: an entry that holds more than the step's outputs ---------------------------------


def test_a_remote_entry_planting_a_script_is_refused_and_the_step_runs(
    tmp_path: Path, nginx: Nginx
) -> None:
    ci = make_workspace(tmp_path, "ci", cache="cache-ci")
    ok(ci.build("--remote-cache", nginx.url))
    evil = b"#!/bin/sh\ntouch pwned\n"
    for step in ("gen", "pack"):
        plant(nginx, step_key(ci, step), {"scripts/check.sh": evil, ".git/hooks/pre-commit": evil})

    dev = make_workspace(tmp_path, "dev", cache="cache-dev")
    proc = dev.build("--remote-cache", nginx.url, "--remote-read-only")
    ok(proc)
    assert not (dev.root / "scripts").exists() and not (dev.root / ".git").exists()
    assert dev.ran() == ["gen", "pack"]  # refused, so they ran; `other` came from the remote
    refused = [w for w in warnings_of(proc) if "refused" in w]
    assert len(refused) == 2, proc.stdout  # every refused entry is named, not only the first
    assert all("scripts/check.sh: not under any declared output" in w for w in refused)
    assert "cache: 2 entries not used or not stored (2 refused)" in proc.stdout
    assert dev.report()["extra"] == {"cache_problems": {"refused": 2}}


def test_every_corrupt_entry_is_reported_and_counted(tmp_path: Path) -> None:
    first = make_workspace(tmp_path, "one", cache="shared")
    ok(first.build())
    for entry in (first.cache / "ac").iterdir():  # each step's entry, cut in half
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    second = make_workspace(tmp_path, "two", cache="shared")
    proc = second.build()
    ok(proc)
    assert second.ran() == ["gen", "other", "pack"]
    corrupt = [w for w in warnings_of(proc) if "cache entry corrupt for" in w]
    assert sorted(w.split("corrupt for ")[1].split()[0] for w in corrupt) == [
        "gen",
        "other",
        "pack",
    ], proc.stdout  # one warning per entry, not one per kind
    assert "cache: 3 entries not used or not stored (3 corrupt)" in proc.stdout
    assert second.report()["extra"] == {"cache_problems": {"corrupt": 3}}


def test_an_output_link_leaving_its_output_is_never_stored(tmp_path: Path) -> None:
    """The save side of the rule: an entry another clone could not accept is not made."""
    step = f"""
        [[step]]
        name = "site"
        command = [{PY_TOML}, "-c", "import os, pathlib; d = pathlib.Path('dist'); d.mkdir(exist_ok=True); (d / 'index.html').write_text('<p>'); os.path.lexists('dist/up') or os.symlink('..', 'dist/up'); open('runs.log', 'a').write('site\\\\n')"]
        outputs = ["dist"]
        """
    first = make_workspace(tmp_path, "one", cache="shared")
    second = make_workspace(tmp_path, "two", cache="shared")
    for ws in (first, second):
        ws.add_steps(step)
    proc = first.build()
    ok(proc)
    assert "not cached: site: dist/up -> ..: leads to ., outside its output 'dist'" in "\n".join(
        warnings_of(proc)
    ), proc.stdout
    ok(second.build())
    assert second.ran() == ["site"]  # nothing was stored for it; the other steps were


# -- 2: chained links ----------------------------------------------------------------------


def test_planted_links_chaining_out_of_a_directory_output_are_refused(
    tmp_path: Path, nginx: Nginx
) -> None:
    """dist/s -> .. and dist/esc -> s/.. each look inside the workspace; together, a step
    that writes into dist/esc would write beside the workspace."""
    steps = f"""
        [[step]]
        name = "site"
        command = [{PY_TOML}, "-c", "import pathlib; d = pathlib.Path('dist'); d.mkdir(exist_ok=True); (d / 'index.html').write_text('<p>'); open('runs.log', 'a').write('site\\\\n')"]
        outputs = ["dist"]

        [[step]]
        name = "emit"
        command = [{PY_TOML}, "-c", "import os; os.makedirs('dist/esc', exist_ok=True); open('dist/esc/escaped.txt', 'w').write('x')"]
        depends_on = ["site"]
        cache = false
        """
    ci = make_workspace(tmp_path, "ci", cache="cache-ci")
    dev = make_workspace(tmp_path, "dev", cache="cache-dev")
    for ws in (ci, dev):
        ws.add_steps(steps)
    ok(ci.build("--remote-cache", nginx.url))
    plant(nginx, step_key(ci, "site"), {}, links={"dist/s": "..", "dist/esc": "s/.."})
    proc = dev.build("--remote-cache", nginx.url, "--remote-read-only")
    ok(proc)
    assert not (tmp_path / "escaped.txt").exists()
    assert (dev.root / "dist/esc/escaped.txt").is_file()
    assert not (dev.root / "dist/esc").is_symlink() and not (dev.root / "dist/s").exists()
    assert dev.ran() == ["site"]  # refused, so it ran; the other steps came from the remote
    assert "dist/s -> ..: leads to ., outside its output 'dist'" in "\n".join(warnings_of(proc)), (
        proc.stdout
    )


# -- 3: the credentials are the engine's -----------------------------------------------------


def test_no_step_sees_the_cache_credentials(tmp_path: Path, nginx: Nginx) -> None:
    ws = make_workspace(tmp_path)
    manifest = ws.root / "build.toml"
    manifest.write_text(
        manifest.read_text().replace(
            "[tools]", '[cache]\nremote_header_env = "CI_CACHE_TOKEN"\n\n[tools]', 1
        )
        + textwrap.dedent(f"""
        [[step]]
        name = "dump-env"
        command = [{PY_TOML}, "-c", "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))"]
        outputs = ["env.json"]
        """)
    )
    private, _public = generate()
    secret = "Authorization: Bearer top-secret-token"
    # The URL comes from the environment, as in CI: a step inherits the variable otherwise.
    proc = ws.build(
        BUILDLIB_REMOTE_CACHE=nginx.url.replace("http://", "http://ci:pw-in-url@"),
        BUILDLIB_REMOTE_HEADER=secret,
        CI_CACHE_TOKEN="named-token",
        BUILDLIB_CACHE_SIGNING_KEY=private,
    )
    ok(proc)
    assert any((nginx.data / "ac").iterdir())  # the remote was used
    seen = json.loads((ws.root / "env.json").read_text())
    for name in (
        "BUILDLIB_REMOTE_HEADER",
        "CI_CACHE_TOKEN",
        "BUILDLIB_CACHE_SIGNING_KEY",
        "BUILDLIB_REMOTE_CACHE",
    ):
        assert name not in seen
    text = json.dumps(seen)
    for value in ("top-secret-token", "named-token", "pw-in-url", private):
        assert value not in text
    assert seen["PATH"]  # the rest of the environment is there


# -- 4: signatures -----------------------------------------------------------------------------


def trust(ws: Workspace, public: str) -> None:
    manifest = ws.root / "build.toml"
    manifest.write_text(f'[cache]\ntrusted_keys = ["{public}"]\n\n' + manifest.read_text())


def test_signed_entries_are_trusted_and_anything_else_is_a_miss(
    tmp_path: Path, nginx: Nginx
) -> None:
    private, public = generate()
    _other_private, other_public = generate()
    ci = make_workspace(tmp_path, "ci", cache="cache-ci")
    trust(ci, public)
    ok(ci.build("--remote-cache", nginx.url, BUILDLIB_CACHE_SIGNING_KEY=private))

    reader = make_workspace(tmp_path, "pr", cache="cache-pr")  # a pull request: no key
    trust(reader, public)
    ok(reader.build("--remote-cache", nginx.url, "--remote-read-only"))
    assert reader.ran() == [] and set(reader.outcomes().values()) == {"restored"}

    # Re-signed by someone else's key, tampered without the key, and unsigned:
    plant(
        nginx, step_key(ci, "gen"), {"out/extra.txt": b"x"}, signer=Signer.from_text(_other_private)
    )
    plant(nginx, step_key(ci, "pack"), {"out/extra.txt": b"x"}, signer=None)
    other = make_workspace(tmp_path, "other", cache="cache-other")
    trust(other, public)
    proc = other.build("--remote-cache", nginx.url, "--remote-read-only")
    ok(proc)
    assert other.ran() == ["gen", "pack"]
    text = "\n".join(warnings_of(proc))
    assert f"signed by {other_public}, not a trusted key" in text
    assert "it is not signed" in text

    # The signature covers the entry's content: a changed body under a valid-looking
    # signature does not verify.
    key = step_key(ci, "gen")
    result = decode_action_result((nginx.data / "ac" / key).read_bytes())
    signer = Signer.from_text(private)
    good = signer.sign(signed_message(key, result.meta_sha256))
    bad_body = b"{}"
    (nginx.data / "ac" / key).write_bytes(
        encode_action_result(
            [],
            log_sha256=result.log_sha256,
            log_size=0,
            meta_sha256=hashlib.sha256(bad_body).hexdigest(),
            meta_size=2,
            signature=good,
        )
    )
    third = make_workspace(tmp_path, "third", cache="cache-third")
    trust(third, public)
    proc = third.build("--remote-cache", nginx.url, "--remote-read-only")
    ok(proc)
    assert "its signature does not match its content" in "\n".join(warnings_of(proc))
    assert "gen" in third.ran()


def test_a_malformed_trusted_key_is_a_manifest_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    trust(ws, "ed25519:bm90IGEga2V5")
    proc = ws.build()
    assert proc.returncode == 1
    assert "key 'cache.trusted_keys'" in proc.stderr and "buildlib keygen" in proc.stderr


def test_keygen_prints_a_pair_that_signs_and_verifies(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "buildlib", "keygen"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("#")]
    private, public = lines
    from buildlib.cache.signing import Verifier

    assert Verifier([public]).problem(b"m", Signer.from_text(private).sign(b"m")) is None


# -- 5: an edit while the cache is asked --------------------------------------------------------


class HostileServer:
    """An HTTP server whose GET handler is given by the test; answers 404 to the rest."""

    def __init__(self, on_get: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                on_get(self)

            def do_HEAD(self) -> None:
                self._not_found()

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._not_found()

            def _not_found(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def not_found(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(404)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def test_an_input_edited_while_the_remote_answers_is_never_cached_under_the_old_key(
    tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    source = ws.root / "src/a.txt"
    original = source.read_text()

    def edit_then_miss(handler: http.server.BaseHTTPRequestHandler) -> None:
        if "/ac/" in handler.path and source.read_text() == original:
            time.sleep(0.05)
            source.write_text("edited while the remote answered\n")
        not_found(handler)

    # Only gen asks the remote first: the edit lands after gen's fingerprint, during its
    # own lookup (were `other` to ask first, the edit could come before gen is hashed).
    manifest = ws.root / "build.toml"
    manifest.write_text(
        manifest.read_text().replace(
            'env_inputs = ["GREETING"]', 'env_inputs = ["GREETING"]\ncache = false'
        )
    )
    server = HostileServer(edit_then_miss)
    try:
        ok(ws.build("--remote-cache", server.url))
    finally:
        server.close()
    assert "EDITED WHILE" in (ws.root / "out/gen.txt").read_text()  # the step saw the edit
    source.write_text(original)  # back to the content the fingerprint was taken of
    ok(ws.build())
    assert (ws.root / "out/gen.txt").read_text() == (original + "beta\n").upper()
    assert "gen" in ws.ran()  # nothing was stored for the original content: it ran


# -- 6: a remote that trickles -------------------------------------------------------------------


def trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Announce 10 bytes, then send one every 2 s."""
    handler.send_response(200)
    handler.send_header("Content-Length", "10")
    handler.end_headers()
    try:
        for _ in range(10):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(2)
    except OSError:
        return


def test_a_trickling_remote_costs_one_deadline(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    server = HostileServer(trickle)
    try:
        started = time.monotonic()
        proc = ws.build("--remote-cache", server.url, BUILDLIB_REMOTE_TIMEOUT="1")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    ok(proc)
    assert ws.ran() == ["gen", "other", "pack"]
    assert elapsed < 8, elapsed  # one deadline (1 s plus its body's allowance), then off
    assert "no complete answer within 1s" in proc.stdout


def steady_trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Announce 60 bytes, then send one every 0.5 s: no read ever waits 1 s."""
    handler.send_response(200)
    handler.send_header("Content-Length", "60")
    handler.end_headers()
    try:
        for _ in range(60):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.5)
    except OSError:
        return


def test_a_remote_trickling_faster_than_its_timeout_still_costs_one_deadline(
    tmp_path: Path,
) -> None:
    """The issue's hang: a per-read timeout never fires on a byte every 0.5 s (30 s per
    request, one request per step); the total deadline does, once for the build."""
    ws = make_workspace(tmp_path)
    server = HostileServer(steady_trickle)
    try:
        started = time.monotonic()
        proc = ws.build("--remote-cache", server.url, BUILDLIB_REMOTE_TIMEOUT="1")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    ok(proc)
    assert ws.ran() == ["gen", "other", "pack"]
    assert elapsed < 8, elapsed
    assert "no complete answer within 1s" in proc.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_build_waiting_on_a_trickling_remote_at_once(
    tmp_path: Path, signum: int
) -> None:
    ws = make_workspace(tmp_path)
    server = HostileServer(trickle)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDLIB_", "GITHUB_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "BUILDLIB_CACHE_DIR": str(ws.cache),
            "BUILDLIB_REMOTE_TIMEOUT": "600",
            "PATH": f"{ws.bin_dir}{os.pathsep}{os.environ['PATH']}",
        }
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "buildlib", "build", "--plain", "--remote-cache", server.url],
            cwd=ws.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(2.0)  # well into the trickle
        sent = time.monotonic()
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        server.close()
    assert proc.returncode == 128 + signum, output
    assert stopped < 2.0, (stopped, output)
    assert ws.ran() == []


# -- 7: --resume re-checks what it takes as done ------------------------------------------------


def test_resume_runs_a_done_step_that_went_stale(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.add_steps(f"""
        [[step]]
        name = "flaky"
        command = [{PY_TOML}, "-c", "import pathlib, sys; sys.exit(0 if pathlib.Path('ok').exists() else 1)"]
        depends_on = ["pack"]
        """)
    assert ws.build().returncode == 1
    (ws.root / "src/a.txt").write_text("edited after the failure\n")
    (ws.root / "ok").touch()
    proc = ws.build("--resume", "--explain")
    ok(proc)
    assert ws.ran() == ["gen", "pack"]  # stale since the failed build: not taken as done
    assert "gen: stale since the build --resume continues" in proc.stdout
    assert "EDITED AFTER" in (ws.root / "out/gen.txt").read_text()
    assert ws.outcomes()["other"] == "cached"


# -- 8: a declared output that matches nothing ------------------------------------------------


def test_a_mistyped_output_fails_the_step_and_is_never_up_to_date(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    manifest = ws.root / "build.toml"
    manifest.write_text(
        manifest.read_text().replace('outputs = ["other.txt"]', 'outputs = ["othr.txt"]')
    )
    proc = ws.build("--keep-going")
    assert proc.returncode == 1
    assert (
        "step 'other' succeeded but its declared output 'othr.txt' matches no file" in proc.stdout
    )
    assert "fix: correct the path in the step's `outputs`" in proc.stdout
    assert ws.outcomes()["other"] == "failed"
    assert ws.build("--keep-going").returncode == 1  # not recorded or cached: it fails again
    assert ws.ran() == ["other"]


def test_a_record_without_its_outputs_is_never_up_to_date(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ok(ws.build())
    state = StepState(next((ws.root / ".buildlib/state").iterdir()))
    recorded = state.get("gen")
    assert recorded is not None
    # What an older buildlib recorded for an output pattern that matched nothing:
    state.record("gen", recorded[0], {}, {}, "")
    state.save()
    proc = ws.build("--explain")
    ok(proc)
    assert ws.outcomes()["gen"] != "cached"


# -- 9: a restored directory holds exactly the entry ---------------------------------------


def test_a_restored_directory_output_holds_no_stale_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    ws.add_steps(f"""
        [[step]]
        name = "bundle"
        command = [{PY_TOML}, "-c", "import hashlib, pathlib; t = pathlib.Path('src/a.txt').read_bytes(); d = pathlib.Path('dist'); d.mkdir(exist_ok=True); (d / ('app-' + hashlib.sha256(t).hexdigest()[:8] + '.js')).write_bytes(t)"]
        inputs = ["src/a.txt"]
        outputs = ["dist"]
        """)
    ok(ws.build())
    first = sorted(p.name for p in (ws.root / "dist").iterdir())
    (ws.root / "src/a.txt").write_text("second version\n")
    ok(ws.build())  # vite-like: the tool itself leaves the old bundle in place
    assert len(list((ws.root / "dist").iterdir())) == 2
    (ws.root / "src/a.txt").write_text("alpha\n")
    ok(ws.build())
    assert ws.outcomes()["bundle"] == "restored"
    assert sorted(p.name for p in (ws.root / "dist").iterdir()) == first


# -- 12: steps without outputs are cached by their log ---------------------------------------


def test_a_check_without_outputs_is_cached_and_its_log_replayed(
    tmp_path: Path, nginx: Nginx
) -> None:
    step = f"""
        [[step]]
        name = "check"
        command = [{PY_TOML}, "-c", "import pathlib; print('checked', len(pathlib.Path('src/a.txt').read_text())); open('runs.log', 'a').write('check\\\\n')"]
        inputs = ["src/*.txt"]
        """
    first = make_workspace(tmp_path, "one", cache="cache1")
    second = make_workspace(tmp_path, "two", cache="cache2")
    for ws in (first, second):
        ws.add_steps(step)
    ok(first.build("--remote-cache", nginx.url))
    proc = second.build("--remote-cache", nginx.url, "--verbose")
    ok(proc)
    assert second.ran() == []
    assert second.outcomes()["check"] == "restored"
    log = next((second.root / ".buildlib/logs").glob("*/check.log")).read_text()
    assert "checked 6" in log


# -- 14: a tool that rewrites an input with the same bytes -------------------------------------


def test_an_install_rewriting_its_lockfile_identically_is_recorded(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    (ws.root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    ws.add_steps(f"""
        [[step]]
        name = "install"
        command = [{PY_TOML}, "-c", "import pathlib, time; p = pathlib.Path('package-lock.json'); t = p.read_bytes(); time.sleep(0.05); p.write_bytes(t); pathlib.Path('installed').write_text('ok'); open('runs.log', 'a').write('install\\\\n')"]
        inputs = ["package-lock.json"]
        outputs = ["installed"]
        """)
    proc = ws.build()
    ok(proc)
    assert "changed while it ran" not in proc.stdout
    ok(ws.build())
    assert ws.ran() == []  # recorded: the next build is a no-op


# -- 10, 11: bazel-remote with its default settings -----------------------------------------


@pytest.mark.bazel_remote
def test_two_clones_share_one_bazel_remote_with_default_settings(tmp_path: Path) -> None:
    from bazel_remote_server import running_bazel_remote

    with running_bazel_remote(tmp_path / "bazel-remote") as server:
        first = make_workspace(tmp_path, "one", cache="cache1")
        second = make_workspace(tmp_path, "two", cache="cache2")
        proc = first.build("--remote-cache", server.url)
        ok(proc)
        assert warnings_of(proc) == []  # every upload accepted
        proc = second.build("--remote-cache", server.url, "--remote-read-only")
        ok(proc)
        assert second.ran() == []
        steps = second.report_steps()
        assert {(s["outcome"], s["cache_source"]) for s in steps} == {("restored", "remote")}
        for rel in ("out/gen.txt", "out/pack.txt", "out/run.sh", "other.txt"):
            a, b = (first.root / rel).read_bytes(), (second.root / rel).read_bytes()
            assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
        assert os.access(second.root / "out/run.sh", os.X_OK)
        assert server.errors() == []


@pytest.mark.bazel_remote
def test_an_action_cache_body_bazel_remote_refuses_gets_a_warning_naming_it(tmp_path: Path) -> None:
    from bazel_remote_server import running_bazel_remote

    from buildlib.cache.config import CacheConfig
    from buildlib.cache.store import StepCache
    from buildlib.incremental.outputs import OutputScope

    with running_bazel_remote(tmp_path / "bazel-remote") as server:
        ws = tmp_path / "ws"
        (ws / "out").mkdir(parents=True)
        (ws / "out/a").write_text("a")
        (ws / "log").write_text("log")
        cache = StepCache(CacheConfig(local_dir=tmp_path / "cache", remote_url=server.url))
        import buildlib.cache.reapi

        real = buildlib.cache.reapi.encode_action_result
        buildlib.cache.reapi.encode_action_result = lambda *a, **k: b'{"format": "old"}'
        try:
            key = hashlib.sha256(b"k").hexdigest()
            cache.save("app", key, ws, ["out/a"], ws / "log", {}, scope=OutputScope(["out"]))
        finally:
            buildlib.cache.reapi.encode_action_result = real
        text = "\n".join(cache.warnings)
        assert "remote cache rejected the entry of app" in text
        assert "HTTP 400 on PUT /ac/" in text and "invalid wire-format data" in text
        assert "ActionResult" in text
