"""sha256 of short byte strings (fingerprints, cache keys) without loading OpenSSL.

`hashlib.sha256` comes from OpenSSL, and importing it costs ~4 ms, which every build
paid at start-up although a no-op build hashes only short strings. CPython's built-in
sha256 (HACL* since 3.12) loads in ~0.4 ms and is as fast on strings of a few hundred bytes (~1 us).
It is ~5x slower on large data, so file contents keep using `hashlib`, imported where
files are hashed. Both give the same digests.

Data is fed in pieces shorter than 2,048 bytes, the size from which CPython's hashes
release the GIL. For a fingerprint of a few kilobytes the release costs more than the
hash, and while the build's other job threads run Python, taking the GIL back waits
for one of them to let go: 20,000 hashes of 2,100 bytes took 0.35 s alone and 2.4 s
beside a busy thread; fed in pieces, 0.32 s and 0.65 s.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

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


_PIECE = 2047  # below HASHLIB_GIL_MINSIZE (2048): the hash keeps the GIL


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data` (meant for short data; see the module docstring)."""
    if len(data) <= _PIECE:
        return _sha256(data).hexdigest()
    digest = _sha256(b"")
    view = memoryview(data)
    for start in range(0, len(data), _PIECE):
        digest.update(view[start : start + _PIECE])
    return digest.hexdigest()
