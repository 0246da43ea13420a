"""What differs between two fingerprints' components, in words a person can act on.

Shared by `explain-miss` (the fingerprint here against the cache's newest entry), the
`--explain` line of a miss, and `diff` (two builds' reports). The components are
those of `incremental/fingerprint.py`. Environment values are hashes there already;
these sentences never print them either, only the variable's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from buildlib.core.records import record

FILES_NAMED = 5  # files named per kind of difference before "and N more"
SHOWN = 40  # characters of an argument or version quoted


@record
class Sides:
    """How the two sides are called: "here" / "in the entry", "in A" / "in B"."""

    here: str = "here"
    there: str = "in the entry"


def differences(
    here: Mapping[str, str], there: Mapping[str, str], sides: Sides | None = None
) -> list[str]:
    """Every difference, in a fixed order: tools, environment, command, directory, mode,
    target, declared outputs, dependencies, files (FILES_NAMED per kind), then any other
    component; empty when the components are equal."""
    sides = sides or Sides()
    lines: list[str] = []
    lines += _tools(here, there, sides)
    lines += _env(here, there, sides)
    lines += _argv(here.get("argv"), there.get("argv"), sides)
    for key, label in (("cwd", "working directory"), ("mode", "mode"), ("target", "target")):
        if here.get(key) != there.get(key):
            lines.append(
                f"{label}: {_shown(here.get(key))} {sides.here}, "
                f"{_shown(there.get(key))} {sides.there}"
            )
    if here.get("outputs") != there.get("outputs"):
        lines.append("declared outputs differ")
    changed, only_here, only_there = _split(here, there, "dep:")
    lines += [f"dependency {n}'s outputs differ" for n in changed]
    lines += [f"dependency {n} only {sides.here}" for n in only_here]
    lines += [f"dependency {n} only {sides.there}" for n in only_there]
    changed, only_here, only_there = _split(here, there, "file:")
    lines += _capped(changed, "differs", "differ")
    lines += _capped(only_here, f"only {sides.here}", f"only {sides.here}")
    lines += _capped(only_there, f"only {sides.there}", f"only {sides.there}")
    known = ("argv", "cwd", "mode", "target", "outputs", "tool:", "env:", "dep:", "file:")
    lines += [
        f"{key} differs"
        for key in sorted(set(here) | set(there))
        if not key.startswith(known) and here.get(key) != there.get(key)
    ]
    return lines


def first_differences(
    here: Mapping[str, str], there: Mapping[str, str], count: int, sides: Sides | None = None
) -> list[str]:
    """The first `count` differences, and "N more" for the rest (for one explain line)."""
    lines = differences(here, there, sides)
    if len(lines) > count:
        return [*lines[:count], f"{len(lines) - count} more"]
    return lines


def _tools(here: Mapping[str, str], there: Mapping[str, str], sides: Sides) -> list[str]:
    changed, only_here, only_there = _split(here, there, "tool:")
    lines = []
    for name in changed:
        mine, theirs = _version(here[f"tool:{name}"]), _version(there[f"tool:{name}"])
        if mine == theirs:  # the first lines agree: the difference is further down
            lines.append(f"tool {name}: its version text differs after the first line ({mine!r})")
            continue
        lines.append(f"tool {name}: {mine} {sides.here}, {theirs} {sides.there}")
    lines += [f"tool {n} only {sides.here}" for n in only_here]
    lines += [f"tool {n} only {sides.there}" for n in only_there]
    return lines


def _env(here: Mapping[str, str], there: Mapping[str, str], sides: Sides) -> list[str]:
    changed, only_here, only_there = _split(here, there, "env:")
    lines = []
    for name in changed:
        unset = [
            side
            for side, values in ((sides.here, here), (sides.there, there))
            if values[f"env:{name}"] == "unset"
        ]
        lines.append(f"env {name} differs" + (f" (unset {unset[0]})" if unset else ""))
    lines += [f"env {n} is an input only {sides.here}" for n in only_here]
    lines += [f"env {n} is an input only {sides.there}" for n in only_there]
    return lines


def _argv(here: str | None, there: str | None, sides: Sides) -> list[str]:
    if here == there:
        return []
    mine, theirs = _as_list(here), _as_list(there)
    if mine is None or theirs is None:
        return ["argv differs"]
    at = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
        min(len(mine), len(theirs)),
    )
    if at < len(mine) and at < len(theirs):
        return [
            f"argv differs at position {at}: {_shown(mine[at])} {sides.here}, "
            f"{_shown(theirs[at])} {sides.there}"
        ]
    return [
        f"argv differs at position {at}: {len(mine)} arguments {sides.here}, "
        f"{len(theirs)} {sides.there}"
    ]


def _as_list(text: str | None) -> list[str] | None:
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def _split(
    here: Mapping[str, str], there: Mapping[str, str], prefix: str
) -> tuple[list[str], list[str], list[str]]:
    """Names under `prefix` that differ, are only here, are only there (sorted)."""
    mine = {k[len(prefix) :]: v for k, v in here.items() if k.startswith(prefix)}
    theirs = {k[len(prefix) :]: v for k, v in there.items() if k.startswith(prefix)}
    changed = sorted(n for n in mine.keys() & theirs.keys() if mine[n] != theirs[n])
    return changed, sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())


def _capped(paths: list[str], verb: str, plural: str) -> list[str]:
    lines = [f"file {p} {verb}" for p in paths[:FILES_NAMED]]
    if len(paths) > FILES_NAMED:
        lines.append(f"and {len(paths) - FILES_NAMED} more files {plural}")
    return lines


def _version(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty)"
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"


def _shown(value: str | None) -> str:
    if value is None:
        return "(none)"
    text = value if len(value) <= SHOWN else value[: SHOWN - 1] + "…"
    return repr(text)
