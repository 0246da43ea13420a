"""How the glob dialect reads a pattern's segments, for code that answers without compiling.

`incremental.filehash.compile_glob` is the dialect (see its module docstring); the
plan's inside check and the output checks of a no-op read patterns through these
too, so none of them can split a pattern another way (a backslash, a space, `.`).
"""

from __future__ import annotations

import re

WILDCARD = re.compile(r"[*?\[]")
# Directories at the workspace root that no output or clean pattern reaches: the
# engine's state and git's. A wildcard never matches them there (`**/logs` is not
# `.buildlib/logs`), and a literal path into them is refused by the plan.
ENGINE_DIRS = (".buildlib", ".git")


def is_engine_dir(name: str) -> bool:
    """Whether a root-level name is one of ENGINE_DIRS, in any case: on macOS and
    Windows `.Git` is `.git`."""
    return name.casefold() in ENGINE_DIRS


def kept_in_reach(rel: str, manifest: str) -> str:
    """What replacing or deleting the root-relative path `rel` would take with it, of
    what no output or clean pattern may: "." for the root itself, the engine directory it
    is or lies in, or `manifest` (root-relative) when it is or holds it; else ""."""
    if rel in ("", "."):
        return "."
    first = rel.split("/", 1)[0]
    if is_engine_dir(first):
        return first
    return manifest if manifest == rel or manifest.startswith(rel + "/") else ""


def glob_parts(pattern: str) -> list[str]:
    """A glob's segments as the dialect reads them: surrounding space stripped, `\\` read
    as `/`, empty and `.` segments dropped (`compile_glob` refuses absolute globs and
    `..`)."""
    return [p for p in pattern.strip().replace("\\", "/").split("/") if p not in ("", ".")]


def normal_path(rel: str) -> str:
    """A relative path (a cwd, a literal prefix) with `\\` read as `/` and empty and `.`
    segments dropped ("" for the root). Most are written that way already, and are
    returned as they are without a split (the plan asks once per step)."""
    if "." in rel or "\\" in rel or "//" in rel or rel[:1] == "/" or rel[-1:] == "/":
        return "/".join(p for p in rel.replace("\\", "/").split("/") if p not in ("", "."))
    return rel


def literal_prefix(pattern: str) -> str:
    """The glob's leading segments without a wildcard, joined: the one path it names
    whole (all of it for a literal path, "" when it starts with a wildcard)."""
    parts = glob_parts(pattern)
    fixed = 0
    while fixed < len(parts) and WILDCARD.search(parts[fixed]) is None:
        fixed += 1
    return "/".join(parts[:fixed])
