"""The smallest globs that cover the paths a step touched, written as a user would.

The audit proposes `inputs` and `outputs` additions with these. A directory is taken
whole (`dir/**` for inputs, `dir` for outputs) when the step touched every file that
pattern would select and there are at least two, or (inputs only) when it touched at
least `MIN_FILES` files directly in one directory and at least half of what `dir/**`
selects; anything else is listed by its own path. The caller says which directories
must never be taken whole (`blocked`: the root, or a directory holding another step's
outputs). Paths that hold glob wildcards are escaped (`[*]`), so each proposal
selects exactly what it says.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping

MIN_FILES = 3

_WILDCARD = re.compile(r"[*?\[]")


def escape(path: str) -> str:
    """A literal path as a glob of the engine's dialect."""
    return _WILDCARD.sub(lambda m: f"[{m.group()}]", path)


def ancestors(path: str) -> list[str]:
    """The parent directories of a relative path, shallowest first (not the root)."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def cover_inputs(
    paths: Iterable[str],
    *,
    selects: Callable[[str], frozenset[str]],
    blocked: Callable[[str], bool],
) -> list[str]:
    """Input globs covering `paths`; `selects(dir)` is what `dir/**` would make inputs."""
    remaining = set(paths)
    touched = frozenset(remaining)
    found: list[str] = []
    for directory in _candidates(remaining):
        inside = {p for p in remaining if p.startswith(directory + "/")}
        if len(inside) < 2 or blocked(directory):
            continue
        if selects(directory) <= touched:
            found.append(escape(directory) + "/**")
            remaining -= inside
    for directory, inside in _by_parent(remaining).items():
        if len(inside) < MIN_FILES or blocked(directory):
            continue
        selected = selects(directory)
        if len(selected) <= 2 * len(selected & touched):
            found.append(escape(directory) + "/**")
            remaining -= inside
    found.extend(escape(p) for p in remaining)
    return sorted(found)


def cover_outputs(
    paths: Iterable[str],
    *,
    holds: Callable[[str], frozenset[str]],
    owned: Callable[[str], bool],
    created: frozenset[str],
    blocked: Callable[[str], bool],
) -> list[str]:
    """Output patterns covering `paths`: a directory (topmost first) when every file it
    `holds` now is `owned` by the step (an undeclared or declared output) and the step
    created the directory or wrote at least `MIN_FILES` files directly in it."""
    remaining = set(paths)
    found: list[str] = []
    by_parent = _by_parent(remaining)
    for directory in _candidates(remaining):
        inside = {p for p in remaining if p.startswith(directory + "/")}
        if not inside or blocked(directory):
            continue
        wrote_here = len(by_parent.get(directory, ()))
        if directory not in created and wrote_here < MIN_FILES:
            continue
        if all(owned(p) for p in holds(directory)):
            found.append(escape(directory))
            remaining -= inside
    found.extend(escape(p) for p in remaining)
    return sorted(found)


def _candidates(paths: Iterable[str]) -> list[str]:
    """Every ancestor directory of `paths`, shallowest first."""
    dirs = {d for p in paths for d in ancestors(p)}
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _by_parent(paths: Iterable[str]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for p in paths:
        parent = posixpath.dirname(p)
        if parent:
            groups.setdefault(parent, set()).add(p)
    return groups


# -- templates -------------------------------------------------------------------------------

# Variables whose values differ by mode or target, most specific first: a proposed path
# that holds one of their values gets the placeholder back, so the line holds in every
# mode and target.
TEMPLATED = (
    "rust_target",
    "node_triple",
    "target",
    "mode",
    "profile",
    "cargo_profile",
    "vite_mode",
)
_LONG_ENOUGH = 6  # shorter values ("debug", "dev") only right after a replaced segment
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}")


def templatize(pattern: str, variables: Mapping[str, str]) -> str:
    """`pattern` with literal braces doubled and the values of mode- or target-specific
    variables replaced by their `{name}`: a long value (a target triple, `production`)
    wherever it stands as a word, a short one (`debug`) only as the whole segment after
    a replaced one (cargo's `target/{rust_target}/{profile}`). Filling the result gives
    `pattern` back, or the result is `pattern` with its braces doubled."""
    values = [
        (name, variables[name])
        for name in TEMPLATED
        if variables.get(name) and not set("{}") & set(variables[name])
    ]
    parts: list[str] = []
    previous = False
    for segment in pattern.split("/"):
        text = segment.replace("{", "{{").replace("}", "}}")
        replaced = False
        for name, value in values:
            if len(value) >= _LONG_ENOUGH:
                word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])")
                text, count = word.subn("{" + name + "}", text)
                replaced = replaced or count > 0
            elif previous and segment == value:
                text, replaced = "{" + name + "}", True
                break
        parts.append(text)
        previous = replaced
    result = "/".join(parts)
    if _fill(result, variables) != pattern:
        return pattern.replace("{", "{{").replace("}", "}}")
    return result


def _fill(text: str, variables: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return variables.get(match.group(1), token)

    return _PLACEHOLDER.sub(one, text)
