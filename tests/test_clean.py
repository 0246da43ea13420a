"""`clean` removes declared outputs only, never anything outside the workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, write_manifest

STEPS = """
[[step]]
name = "web-build"
group = "web"
command = ["true"]
outputs = ["web/dist"]

[[step]]
name = "rust-build"
group = "rust"
command = ["true"]
outputs = ["target/{profile}/app"]
clean = ["target/tmp-*"]
"""


def run_clean(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "buildlib", "clean", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def populate(root: Path) -> None:
    (root / "web" / "dist" / "assets").mkdir(parents=True)
    (root / "web" / "dist" / "assets" / "a.js").write_text("x" * 2048)
    (root / "web" / "src").mkdir(parents=True)
    (root / "web" / "src" / "main.ts").write_text("keep")
    for profile in ("debug", "release"):
        (root / "target" / profile).mkdir(parents=True)
        (root / "target" / profile / "app").write_text("bin")
    (root / "target" / "tmp-1").mkdir()


def test_dry_run_lists_with_sizes_and_removes_nothing(tmp_path: Path) -> None:
    write_manifest(tmp_path, STEPS)
    populate(tmp_path)
    proc = run_clean(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would remove web/dist (2.0 KiB)" in proc.stdout
    assert "would remove target/release/app" in proc.stdout
    assert "would remove target/tmp-1" in proc.stdout
    assert (tmp_path / "web" / "dist" / "assets" / "a.js").exists()


def test_clean_one_group(tmp_path: Path) -> None:
    write_manifest(tmp_path, STEPS)
    populate(tmp_path)
    assert run_clean(tmp_path, "web").returncode == 0
    assert not (tmp_path / "web" / "dist").exists()
    assert (tmp_path / "web" / "src" / "main.ts").exists()
    assert (tmp_path / "target" / "debug" / "app").exists()
    assert run_clean(tmp_path).returncode == 0
    assert not (tmp_path / "target" / "debug" / "app").exists()
    assert not (tmp_path / "target" / "tmp-1").exists()


def test_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    write_manifest(tmp_path, STEPS)
    proc = run_clean(tmp_path, "docs")
    assert proc.returncode == 1
    assert "groups: rust, web" in proc.stderr


def test_symlink_to_a_directory_outside_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "dist").mkdir(parents=True)
    (outside / "dist" / "precious.txt").write_text("do not delete")
    (outside / "precious.txt").write_text("do not delete")
    root = tmp_path / "ws"
    write_manifest(root, STEPS)
    # web -> outside: web/dist resolves outside the workspace and must be left alone.
    (root / "web").symlink_to(outside, target_is_directory=True)
    # target/release is a symlink to outside: the link goes, the directory it points to stays.
    (root / "target").mkdir()
    (root / "target" / "release").symlink_to(outside, target_is_directory=True)
    proc = run_clean(root)
    assert proc.returncode == 0, proc.stderr
    assert (outside / "dist" / "precious.txt").read_text() == "do not delete"
    assert (outside / "precious.txt").exists()
