"""TOML parsing, in one place: tomli where it is installed, else the standard tomllib.

tomllib is tomli's code, pure Python; tomli's wheels for common platforms are compiled
with mypyc and parse ~1.9x faster (a 10,000-step build.toml: 0.6 s instead of 1.15 s,
paid again after each edit of it; Cargo.lock files are parsed here too). tomli is a
dependency below 2.4, the versions that read TOML 1.0 as tomllib does (2.4 on read 1.1),
so a document means the same with either; tomllib serves a checkout run without it.
Import this module only where TOML is read, never at start-up.
"""

from __future__ import annotations

from typing import Any

try:
    from tomli import TOMLDecodeError
    from tomli import loads as _loads
except ImportError:  # pragma: no cover - tomli is a dependency; a bare checkout still works
    from tomllib import TOMLDecodeError  # type: ignore[assignment]
    from tomllib import loads as _loads

__all__ = ["TOMLDecodeError", "loads"]


def loads(text: str) -> dict[str, Any]:
    """The document in `text`; raises TOMLDecodeError (a ValueError) when it is not TOML."""
    return _loads(text)
