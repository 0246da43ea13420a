"""sha256 of short byte strings (fingerprints, cache keys) without loading OpenSSL.

`hashlib.sha256` comes from OpenSSL, and importing it costs ~4 ms, which every build
paid at start-up although a no-op build hashes only short strings. CPython's built-in
sha256 (HACL* since 3.12) loads in ~0.4 ms and is as fast on strings of a few hundred bytes (~1 us).
It is ~5x slower on large data, so file contents keep using `hashlib`, imported where
files are hashed. Both give the same digests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


def _builtin_sha256() -> Callable[[bytes], _Digest]:
    for module in ("_sha2", "_sha256"):  # CPython 3.12+, 3.11
        try:
            constructor: Callable[[bytes], _Digest] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return constructor
    from hashlib import sha256  # pragma: no cover - a Python built without its own

    return sha256  # pragma: no cover


_sha256 = _builtin_sha256()


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data` (meant for short data; see the module docstring)."""
    return _sha256(data).hexdigest()
