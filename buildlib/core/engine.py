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
from buildlib.core.localkey import mac

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
    framed = b"".join(len(part).to_bytes(8, "little") + part for part in parts)
    return mac(identity().encode() + framed, b"").hex()


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
