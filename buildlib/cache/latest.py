"""Which cache entry is the newest for a step on a mode and target: the index explain-miss reads.

The cache is keyed by fingerprint, so "the entry this step had last time" cannot be
found from the step's name. Each save therefore also records its key under a name
derived from (step, mode, target):

- locally, `<cache>/latest/<name>`: the key, one line, replaced atomically;
- remotely, `ac/<name>`: a copy of the entry's own ActionResult (a Bazel HTTP cache
  only takes ActionResults under ac/; bazel-remote checks they name blobs it has,
  which the entry's do), so reading it leads to the sealed entry like the real key.

Both are hints for explanations only: nothing is ever restored through them, and a
pointer whose entry was pruned is simply "no entry".
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from buildlib.core.atomicfile import write_text_atomic
from buildlib.core.smallhash import sha256_hex

DIRECTORY = "latest"
_CONTEXT = "buildlib-latest-entry/1"


def pointer_name(step: str, mode: str, target: str) -> str:
    """sha256 hex of the triple: a file name, and a key no fingerprint can collide with
    (fingerprints hash another prefix)."""
    return sha256_hex("\0".join((_CONTEXT, step, mode, target)).encode("utf-8", "surrogateescape"))


def record_local(cache_root: Path, step: str, mode: str, target: str, key: str) -> None:
    """Remember `key` as the step's newest entry; a store that cannot be written keeps
    its old pointer (the save itself already succeeded or was reported)."""
    with contextlib.suppress(OSError):
        write_text_atomic(cache_root / DIRECTORY / pointer_name(step, mode, target), key + "\n")


def read_local(cache_root: Path, step: str, mode: str, target: str) -> str | None:
    """The key recorded by the newest local save of the step, or None."""
    try:
        text = (
            (cache_root / DIRECTORY / pointer_name(step, mode, target))
            .read_text(encoding="ascii")
            .strip()
        )
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None
