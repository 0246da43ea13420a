"""Which engine computed a remembered result.

The validated manifest and the plans are remembered in `.buildlib/` and used again
while their inputs are the same. The code that computed them is one of those inputs:
an upgraded buildlib, or a checkout someone is editing, must not read what other code
validated or planned. `identity` names the code by its place, its version and the size and
modification time of every source file of the package (~130 files, about 2 ms), so
any edit or reinstall changes it (a store that sets every mtime to the same value, as
Nix does, puts each build at its own place).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from buildlib import __version__
from buildlib.core.localkey import MAC_SIZE, mac

try:  # as core/localkey.py: blake2b without importing hashlib's OpenSSL module (~4 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

_PACKAGE = os.path.dirname(os.path.abspath(__file__)).rpartition(os.sep)[0]  # noqa: PTH100, PTH120
_SOURCES = (".py", ".c", ".so", ".pyd")


@functools.cache
def identity() -> str:
    """A digest of the engine's place, version and source files (stat data, not
    contents); "" when the sources cannot be listed (imported from a zip), and then
    nothing is remembered."""
    try:
        lines = sorted(_sources(_PACKAGE))
    except OSError:
        return ""
    text = f"buildlib {__version__}\n{_PACKAGE}\n" + "".join(lines)
    return mac(text.encode("utf-8", "surrogateescape"), b"").hex()


def derived_key(*parts: bytes) -> str:
    """A name for what this engine derives from `parts` (each length-prefixed, so no two
    different lists of parts share a name)."""
    return mac(identity().encode() + _framed(parts), b"").hex()


def derived_keys(*parts: bytes) -> Callable[[bytes], str]:
    """`derived_key(*parts, last)` for many a `last`, with `parts` hashed once: the
    origins of 10,000 [[step]] pieces share their first parts (the same digest, a
    third of the cost)."""
    common = blake2b(identity().encode() + _framed(parts), digest_size=MAC_SIZE)

    def key(last: bytes) -> str:
        digest = common.copy()
        digest.update(_framed((last,)))
        return digest.hexdigest()

    return key


def _framed(parts: tuple[bytes, ...]) -> bytes:
    return b"".join(len(part).to_bytes(8, "little") + part for part in parts)


def _sources(directory: str) -> list[str]:
    found: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    found.extend(_sources(entry.path))
            elif entry.name.endswith(_SOURCES):
                stat = entry.stat()
                rel = entry.path[len(_PACKAGE) + 1 :]  # entry.path starts with _PACKAGE/
                found.append(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    return found
