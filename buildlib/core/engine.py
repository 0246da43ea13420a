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

from buildlib import __version__

_PACKAGE = os.path.dirname(os.path.abspath(__file__)).rpartition(os.sep)[0]  # noqa: PTH100, PTH120
_SOURCES = (".py", ".c", ".so", ".pyd")


try:  # hashlib's blake2b itself, without importing its OpenSSL module (~4 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b


@functools.cache
def identity() -> str:
    """A digest of the engine's place, version and source files (stat data, not
    contents); "" when the sources cannot be listed (imported from a zip), and then
    nothing is remembered."""
    digest = blake2b(f"buildlib {__version__}\n{_PACKAGE}\n".encode(), digest_size=16)
    try:
        lines = sorted(_sources(_PACKAGE))
    except OSError:
        return ""
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def derived_key(*parts: bytes) -> str:
    """A name for what this engine derives from `parts` (each length-prefixed, so no two
    different lists of parts share a name)."""
    digest = blake2b(identity().encode(), digest_size=20)
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _sources(directory: str) -> list[str]:
    found: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    found.extend(_sources(entry.path))
            elif entry.name.endswith(_SOURCES):
                stat = entry.stat()
                rel = os.path.relpath(entry.path, _PACKAGE)
                found.append(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    return found
