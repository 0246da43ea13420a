"""End to end (issue 11): two clones of this repository share one bazel-remote.

Clone A builds the real app (development mode, the cheapest full graph) with a fresh
bazel-remote as its remote cache, started with its default settings on loopback (it
validates every /ac/ upload as a REAPI ActionResult); clone B, with its own empty local
cache, builds the same commit reading that remote. Clone B must run nothing: every step
is a remote hit, and `verify` finds the same artifacts, byte for byte, in both clones.

Cost: one cold development build (clone A) and one restore (clone B). The engine runs
from each clone's own sources (PYTHONPATH) in the test interpreter rather than through
nox, so neither clone pays for creating its nox engine environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bazel_remote_server import running_bazel_remote

ROOT = Path(__file__).resolve().parent.parent
TRIPLE = "x86_64-unknown-linux-gnu"
MODE = "development"

pytestmark = [pytest.mark.e2e, pytest.mark.bazel_remote, pytest.mark.timeout(1800)]


class Clone:
    """A clean clone of this repository with its own local cache, built by its own buildlib."""

    def __init__(self, base: Path, name: str) -> None:
        self.path = base / name
        subprocess.run(
            ["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(self.path)], check=True
        )
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "BUILDLIB_", "PYTEST_", "NOX_", "VIRTUAL_ENV"))
        }
        self.env.update(
            {
                "BUILDLIB_CACHE_DIR": str(base / f"{name}-cache"),
                "ELECTRON_SKIP_BINARY_DOWNLOAD": "1",
                "PYTHONPATH": str(self.path),
            }
        )

    def engine(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "buildlib", *args],
            cwd=self.path,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=1500,
        )

    def build(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.engine("build", "--mode", MODE, "--plain", *args)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
        return proc

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(
            (self.path / ".buildlib/reports/latest.json").read_text()
        )
        return report

    def artifacts(self) -> dict[str, str]:
        """What `verify` checked, path -> sha256 (files only)."""
        proc = self.engine("verify", "--mode", MODE)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
        manifest = json.loads((self.path / f".buildlib/artifacts/{MODE}-{TRIPLE}.json").read_text())
        return {a["path"]: a["sha256"] for a in manifest["artifacts"] if a["sha256"]}


def tree_digests(root: Path) -> dict[str, str]:
    """Every file and symlink under `root` but .git, .buildlib and the engine's own
    __pycache__ (it holds source mtimes): path -> sha256 or link target."""
    found: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        skip = {"__pycache__"} | ({".git", ".buildlib"} if dirpath == str(root) else set())
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as stream:
                    found[rel] = hashlib.file_digest(stream, "sha256").hexdigest()
    return found


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("warning:")
    ]


def test_a_second_clone_of_the_app_is_all_remote_hits_from_bazel_remote(tmp_path: Path) -> None:
    with running_bazel_remote(tmp_path / "bazel-remote", max_size_gib=4) as server:
        first, second = Clone(tmp_path, "a"), Clone(tmp_path, "b")
        proc = first.build("--remote-cache", server.url)
        assert warnings_of(proc) == [], proc.stdout  # every upload accepted
        cold = first.report()
        assert {s["outcome"] for s in cold["steps"]} == {"built"}
        proc = second.build("--remote-cache", server.url, "--remote-read-only")
        assert warnings_of(proc) == [], proc.stdout
        report = second.report()
        sources = {s["name"]: (s["outcome"], s["cache_source"]) for s in report["steps"]}
        assert set(sources.values()) == {("restored", "remote")}, sources
        assert report["cache_hit_rate"] == 1.0
        assert server.errors() == []
    built, restored = first.artifacts(), second.artifacts()
    assert f"target/{TRIPLE}/debug/tachikoma" in built
    assert restored == built
    # Beyond verify's artifacts: every file clone B holds (sources and restored outputs,
    # node_modules included) is byte for byte clone A's.
    a, b = tree_digests(first.path), tree_digests(second.path)
    assert {rel: (a.get(rel), digest) for rel, digest in b.items() if a.get(rel) != digest} == {}
    print(
        f"\nclone A (cold, uploading): {cold['wall']:.1f} s; clone B (all remote hits): "
        f"{report['wall']:.1f} s; {len(built)} artifacts and {len(b)} files equal"
    )
