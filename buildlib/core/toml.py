"""TOML parsing, in one place: tomli's compiled wheels where installed, else tomllib.

tomllib is tomli's code, pure Python; tomli's wheels for common platforms are compiled
with mypyc and parse in about half the time (a 10,000-step build.toml: 0.61 s against
1.02-1.20 s here, paid again after each edit of it; Cargo.lock files are parsed here
too). From 2.4 on, tomli reads TOML 1.1, which tomllib refuses, so only an older tomli
is used (pyproject.toml asks for one; an engine run from a checkout or another
interpreter may find a newer one, and then takes tomllib): a document means the same
whichever parser reads it (tests/test_toml.py). Callers use only what both error
classes share: they are ValueErrors, and `str(exc)` names the line and column.
Import this module only where TOML is read, never at start-up.
"""

from __future__ import annotations

from typing import Any


def _tomli_reads_toml_1_0() -> bool:
    """Whether an installed tomli reads TOML 1.0 only, as tomllib does (before 2.4)."""
    try:
        import tomli
    except ImportError:
        return False
    try:
        major, minor = (int(part) for part in tomli.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return False
    return (major, minor) < (2, 4)


if _tomli_reads_toml_1_0():
    from tomli import TOMLDecodeError
    from tomli import loads as _loads
else:  # pragma: no cover - tomli is a dependency; a bare checkout still works
    from tomllib import TOMLDecodeError  # type: ignore[assignment]
    from tomllib import loads as _loads

__all__ = ["TOMLDecodeError", "loads"]


def loads(text: str) -> dict[str, Any]:
    """The document in `text`; raises TOMLDecodeError (a ValueError) when it is not TOML."""
    return _loads(text)
