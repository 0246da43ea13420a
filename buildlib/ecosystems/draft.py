"""A manifest `buildlib init` proposes, and its text.

The inference (node_steps, cargo_steps) produces `DraftStep`s with the reasons behind
them; this module writes them as a version 2 build.toml (docs/manifest.md) that is as
short as the repository allows: keys equal to their defaults are left out (cwd ".",
inputs when git's files under the cwd are the right ones), and nothing is written that
the engine can work out itself. What init could not infer is a commented line in the
step, so the user sees it where it matters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildlib.core.records import field, record

HEADER = ("# Written by `buildlib init`: review it, then commit it (docs/adopting.md).",)
WIDTH = 100  # longer arrays wrap, aligned after the opening bracket
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@record
class Output:
    path: str  # relative to the step's cwd; "//x" from the root
    store: str = ""  # "archive" | "local" | "" (the cache's default)


@record
class DraftStep:
    name: str
    cwd: str = "."
    command: tuple[str, ...] = ()
    script: str = ""  # a package.json script, instead of `command`
    env: Mapping[str, str] = field(default_factory=dict)
    env_inputs: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    inputs: tuple[str, ...] | None = None  # None: git's files under cwd (the default)
    outputs: tuple[Output, ...] = ()
    placeholder: str = ""  # a commented line standing for outputs init could not name
    tools: tuple[str, ...] = ()
    why: tuple[str, ...] = ()  # init's reasons, printed (never written)
    runs: str = ""  # the command as a person would type it, for the explanation

    @property
    def shown(self) -> str:
        return self.runs or " ".join(self.command)


@record
class Draft:
    root: Path
    tools: Mapping[str, tuple[str, ...]]
    steps: tuple[DraftStep, ...]
    found: tuple[str, ...] = ()  # what init recognised, printed
    skipped: tuple[str, ...] = ()  # scripts and files without a step, and why
    review: tuple[str, ...] = ()  # what the user has to check or finish


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL, which JSON leaves raw."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else toml_string(name)


def _value(value: str | Output | Mapping[str, str]) -> str:
    if isinstance(value, Output):
        if not value.store:
            return toml_string(value.path)
        return f"{{ path = {toml_string(value.path)}, store = {toml_string(value.store)} }}"
    if isinstance(value, str):
        return toml_string(value)
    return "{ " + ", ".join(f"{_key(k)} = {toml_string(v)}" for k, v in value.items()) + " }"


def _array(key: str, items: Sequence[str | Output]) -> list[str]:
    """`key = [...]` on one line, or wrapped at WIDTH with items aligned."""
    values = [_value(i) for i in items]
    line = f"{key} = [{', '.join(values)}]"
    if len(line) <= WIDTH:
        return [line]
    lines: list[str] = []
    current = f"{key} = ["
    indent = " " * len(current)
    for index, value in enumerate(values):
        piece = value + ("]" if index == len(values) - 1 else ",")
        if current.strip() not in ("", f"{key} = [") and len(current) + 1 + len(piece) > WIDTH:
            lines.append(current.rstrip())
            current = indent
        current += ("" if current.endswith(("[", " ")) else " ") + piece
    lines.append(current)
    return lines


def render_step(step: DraftStep) -> list[str]:
    lines = ["[[step]]", f"name = {toml_string(step.name)}"]
    if step.cwd != ".":
        lines.append(f"cwd = {toml_string(step.cwd)}")
    if step.script:
        lines.append(f"script = {toml_string(step.script)}")
    else:
        lines += _array("command", step.command)
    if step.env:
        lines.append(f"env = {_value(step.env)}")
    if step.env_inputs:
        lines += _array("env_inputs", step.env_inputs)
    if step.depends_on:
        lines += _array("depends_on", step.depends_on)
    if step.inputs is not None:
        lines += _array("inputs", step.inputs)
    if step.outputs:
        lines += _array("outputs", step.outputs)
    if step.placeholder:
        lines.append(f"# {step.placeholder}")
    if step.tools:
        lines += _array("tools", step.tools)
    return lines


def render_manifest(draft: Draft) -> str:
    """The build.toml text of `draft`."""
    lines = [*HEADER, "version = 2", ""]
    if draft.tools:
        lines.append("[tools]")
        lines += [
            f"{_key(name)} = [{', '.join(map(toml_string, argv))}]"
            for name, argv in draft.tools.items()
        ]
        lines.append("")
    for step in draft.steps:
        lines += [*render_step(step), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


NOXFILE = '''"""This repository's build as nox sessions, generated from build.toml by buildlib.

    nox -l              # the sessions: build, one per step, verify, clean, ...
    nox -s build        # every step, skipping what is up to date (-- --explain says why)
"""

from pathlib import Path

import nox
from buildlib.integrations.nox_sessions import register

ROOT = Path(__file__).resolve().parent
register(nox, ROOT / "build.toml")
nox.options.sessions = ["build"]
'''


def render_noxfile() -> str:
    """The noxfile.py init writes: the sessions all come from build.toml."""
    return NOXFILE
