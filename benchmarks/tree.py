"""Seeded file trees for the cache benchmarks: a source tree of many small files, build outputs.

Contents are pseudo-random bytes from a fixed seed, so every run hashes the same
data and no compression or deduplication can flatter a tool.
"""

from __future__ import annotations

import random
from pathlib import Path


def source_tree(root: Path, *, files: int, seed: int = 1) -> int:
    """`files` files of log-normal sizes (median ~1.8 KB, 64 B..64 KB), 50 per directory,
    two directory levels deep; returns the total size in bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        directory = root / f"pkg{i // 1000:02d}" / f"mod{(i // 50) % 20:02d}"
        if i % 50 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        size = min(65536, max(64, int(rng.lognormvariate(7.5, 1.0))))
        (directory / f"file{i:05d}.src").write_bytes(rng.randbytes(size))
        total += size
    return total


def output_tree(
    root: Path, *, large: int, large_size: int, small: int, small_size: int, seed: int = 2
) -> list[str]:
    """Build-output-like files: `large` big binaries and `small` small assets; returns
    their relative POSIX paths."""
    rng = random.Random(seed)
    paths: list[str] = []
    (root / "bin").mkdir(parents=True, exist_ok=True)
    for i in range(large):
        rel = f"bin/app{i}.bin"
        (root / rel).write_bytes(rng.randbytes(large_size))
        paths.append(rel)
    for i in range(small):
        rel = f"assets/chunk{i // 100:02d}/asset{i:05d}.js"
        if i % 100 == 0:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rng.randbytes(small_size))
        paths.append(rel)
    return paths
