"""Where a failed step's tools say the error is: file, line and column from its log.

The GitHub reporter turns these into `::error file=...` annotations so a failure
shows on the offending line of the pull request. Parsers are registered in
`PARSERS` (`register_parser` adds one, tried before the built-in ones): rustc/cargo,
tsc (plain and `--pretty`), svelte-check (human, `machine` and `machine-verbose`),
and the generic `file:line:col: error: msg` of gcc/clang and
`rustc --error-format=short`. Only errors are reported, never warnings; a log with
none yields an empty list (the caller then falls back to a location-less annotation).
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from buildlib.core.records import record
from buildlib.report.ansi import strip_ansi


class Tool(enum.Enum):
    """Which tool's format a location was read from."""

    RUSTC = "rustc"
    TSC = "tsc"
    SVELTE_CHECK = "svelte-check"
    GENERIC = "generic"  # gcc/clang style `file:line:col: error: msg`


@record
class Location:
    """One error a tool reported. `line` and `col` are 1-based; `col` is None when unknown.

    `file` is relative to the workspace root when it lies inside it, else as printed
    (or absolute, when it was resolved against the step's directory).
    """

    file: str
    line: int
    col: int | None
    message: str
    tool: Tool
    code: str | None = None  # E0308, TS2322, ...

    @property
    def title(self) -> str:
        """The message with its code in front, as an annotation shows it."""
        return f"{self.code}: {self.message}" if self.code else self.message


_RUSTC_HEADER = re.compile(r"^error(?:\[(?P<code>E\d{4})\])?: (?P<msg>.+)$")
_RUSTC_ARROW = re.compile(r"^\s*--> (?P<file>.+?):(?P<line>\d+):(?P<col>\d+)\s*$")
_TSC = re.compile(
    r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<msg>.*)$"
)
_TSC_PRETTY = re.compile(
    r"^(?P<file>\S.*?):(?P<line>\d+):(?P<col>\d+) - error (?P<code>TS\d+): (?P<msg>.*)$"
)
_SVELTE_WHERE = re.compile(r"^(?P<file>\S.*?):(?P<line>\d+):(?P<col>\d+)\s*$")
# The human form ends its message with the diagnostic's source, e.g. "(ts)"; dropped so the
# same error read from another output form compares equal.
_SVELTE_ERROR = re.compile(r"^Error: (?P<msg>.*?)(?:\s+\([a-z]+\))?\s*$")
_SVELTE_START = re.compile(r'^\d+ START (?P<dir>".*")\s*$')
_SVELTE_WORKSPACE = re.compile(r"^Loading svelte-check in workspace: (?P<dir>.+?)\s*$")
_SVELTE_MACHINE = re.compile(
    r'^\d+ ERROR (?P<file>"(?:[^"\\]|\\.)*") (?P<line>\d+):(?P<col>\d+) (?P<msg>".*")\s*$'
)
_SVELTE_MACHINE_VERBOSE = re.compile(r"^\d+ (?P<json>\{.*\})\s*$")
_GENERIC = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? (?:fatal )?"
    r"error(?:\[(?P<code>E\d{4})\])?: (?P<msg>.*)$"
)


@record
class _Raw:
    """A location as printed, before its path is normalised."""

    file: str
    line: int
    col: int | None
    message: str
    tool: Tool
    code: str | None
    base: str | None = None  # a directory the tool said its relative paths start from
    lines: int = 1  # how many lines, from the one it was read at, say where and what


def find_locations(log_text: str, root: Path | None, *, cwd: Path | None = None) -> list[Location]:
    """Every error location in `log_text`, in log order, each reported once.

    Relative paths are resolved against `cwd` (the step's directory) when given, then
    made relative to `root` when inside it. Escape sequences in the log are ignored.
    """
    seen: set[Location] = set()
    found: list[Location] = []
    for _, raw in _scan(strip_ansi(log_text).splitlines()):
        location = _location(raw, root, cwd)
        if location not in seen:
            seen.add(location)
            found.append(location)
    return found


def _location(raw: _Raw, root: Path | None, cwd: Path | None) -> Location:
    return Location(
        file=_normalise(raw.file, root=root, cwd=Path(raw.base) if raw.base else cwd),
        line=raw.line,
        col=raw.col,
        message=raw.message.strip(),
        tool=raw.tool,
        code=raw.code,
    )


# -- the first error, in full -----------------------------------------------------------------

MAX_BLOCK_LINES = 30
# Lines that start something else: a warning, svelte-check's closing rule, gcc's next
# "x.c: In function 'f':" (notes and help lines belong to the error before them).
_OTHER_START = re.compile(r"^(?:warning|Warn|Hint)\b|^={10,}|^\S.*: warning\b|^[^\s:][^:]*: In ")


@record
class ErrorBlock:
    """The first error of a log as the tool printed it: its location (relative to the
    root), and its lines (header, source excerpt, notes), with paths made relative to the
    root so a terminal can open them."""

    location: Location
    lines: tuple[str, ...]
    start: int  # the index of its first line among the log's lines


def first_error(log_text: str, root: Path | None, *, cwd: Path | None = None) -> ErrorBlock | None:
    """The first error location in `log_text` with the lines that belong to it: its
    header, then what follows until a blank line, the next diagnostic or
    `MAX_BLOCK_LINES` (a blank line right after the header, as tsc --pretty and
    svelte-check print, is kept)."""
    lines = strip_ansi(log_text).splitlines()
    for index, raw in _scan(lines):
        location = _location(raw, root, cwd)
        end = index + raw.lines
        if end < len(lines) and not lines[end].strip():
            end += 1  # the blank line between a header and its excerpt
        while (
            end < len(lines)
            and end - index < MAX_BLOCK_LINES
            and lines[end].strip()
            and not starts_diagnostic(lines, end)
        ):
            end += 1
        block = [line.rstrip() for line in lines[index:end]]
        while block and not block[-1]:
            block.pop()
        return ErrorBlock(
            location=location, lines=tuple(relative_paths(block, root, cwd=cwd)), start=index
        )
    return None


def starts_diagnostic(lines: list[str], index: int) -> bool:
    """Whether `lines[index]` begins an error, a warning or another tool's section."""
    line = lines[index]
    if _OTHER_START.match(line):
        return True
    following = lines[index + 1] if index + 1 < len(lines) else ""
    state = ScanState()
    return any(parser.parse(line, following, state) is not None for parser in PARSERS)


def relative_paths(lines: list[str], root: Path | None, *, cwd: Path | None = None) -> list[str]:
    """`lines` with each error location's file written relative to the root (tsc prints
    paths relative to its project, svelte-check absolute ones), so a terminal opens them."""
    result = list(lines)
    for index, raw in _scan(result):
        wanted = _location(raw, root, cwd).file
        if wanted == raw.file:
            continue
        for at in range(index, min(index + raw.lines, len(result))):
            if raw.file in result[at]:
                result[at] = result[at].replace(raw.file, wanted, 1)
                break
    return result


class ScanState:
    """What earlier lines of a log said that later ones need (a parser may set it)."""

    def __init__(self) -> None:
        self.svelte_base: str | None = None  # where svelte-check's relative paths start


class Parser(Protocol):
    """One tool's error format. `parse` sees a line and the one after it (for two-line
    formats) and returns the error they report, or None."""

    def parse(self, line: str, following: str, state: ScanState) -> _Raw | None: ...


class TscParser:
    def parse(self, line: str, following: str, state: ScanState) -> _Raw | None:
        if m := _TSC.match(line) or _TSC_PRETTY.match(line):
            return _Raw(
                file=m["file"],
                line=int(m["line"]),
                col=int(m["col"]),
                message=m["msg"],
                tool=Tool.TSC,
                code=m["code"],
            )
        return None


class SvelteCheckParser:
    def parse(self, line: str, following: str, state: ScanState) -> _Raw | None:
        if start := _SVELTE_START.match(line):
            state.svelte_base = _json_str(start["dir"])
        elif workspace := _SVELTE_WORKSPACE.match(line):
            state.svelte_base = workspace["dir"]
        elif m := _SVELTE_MACHINE.match(line):
            file, message = _json_str(m["file"]), _json_str(m["msg"])
            if file is not None and message is not None:
                return _Raw(
                    file=file,
                    line=int(m["line"]),
                    col=int(m["col"]),
                    message=message,
                    tool=Tool.SVELTE_CHECK,
                    code=None,
                    base=state.svelte_base,
                )
        elif m := _SVELTE_MACHINE_VERBOSE.match(line):
            return _svelte_verbose(m["json"], state.svelte_base)
        elif (where := _SVELTE_WHERE.match(line)) and (error := _SVELTE_ERROR.match(following)):
            return _Raw(
                file=where["file"],
                line=int(where["line"]),
                col=int(where["col"]),
                message=error["msg"],
                tool=Tool.SVELTE_CHECK,
                code=None,
                base=state.svelte_base,
                lines=2,
            )
        return None


class RustcParser:
    def parse(self, line: str, following: str, state: ScanState) -> _Raw | None:
        if (head := _RUSTC_HEADER.match(line)) and (arrow := _RUSTC_ARROW.match(following)):
            return _Raw(
                file=arrow["file"],
                line=int(arrow["line"]),
                col=int(arrow["col"]),
                message=head["msg"],
                tool=Tool.RUSTC,
                code=head["code"],
                lines=2,
            )
        return None


class GenericParser:
    """gcc/clang and `rustc --error-format=short`: `file:line:col: error: msg`."""

    def parse(self, line: str, following: str, state: ScanState) -> _Raw | None:
        if m := _GENERIC.match(line):
            code = m["code"]
            return _Raw(
                file=m["file"],
                line=int(m["line"]),
                col=int(m["col"]) if m["col"] else None,
                message=m["msg"],
                tool=Tool.RUSTC if code else Tool.GENERIC,
                code=code,
            )
        return None


# Tried in order; the first to recognise a line wins.
PARSERS: list[Parser] = [TscParser(), SvelteCheckParser(), GenericParser(), RustcParser()]


def register_parser(parser: Parser) -> None:
    """Add a tool's format, tried before the built-in ones."""
    PARSERS.insert(0, parser)


def _scan(lines: list[str]) -> Iterator[tuple[int, _Raw]]:
    """One pass over the log: (line index, error) for each error; two-line formats look at
    the line after their first."""
    state = ScanState()
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        for parser in PARSERS:
            raw = parser.parse(line, following, state)
            if raw is not None:
                yield index, raw
                break


def _svelte_verbose(text: str, base: str | None) -> _Raw | None:
    """svelte-check `--output machine-verbose`: JSON with 0-based line and character."""
    try:
        data = json.loads(text)
        if data.get("type") != "ERROR":
            return None
        start = data["start"]
        code = data.get("code")
        if code is not None:
            code = f"TS{code}" if data.get("source") == "ts" else str(code)
        return _Raw(
            file=str(data["filename"]),
            line=int(start["line"]) + 1,
            col=int(start["character"]) + 1,
            message=str(data["message"]),
            tool=Tool.SVELTE_CHECK,
            code=code,
            base=base,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _json_str(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _normalise(file: str, *, root: Path | None, cwd: Path | None) -> str:
    path = Path(file)
    if not path.is_absolute():
        # cargo prints paths relative to its workspace root, not to the directory it was
        # started in, so a relative path that is not under `cwd` is tried under `root`.
        bases = [b for b in (cwd, root) if b is not None]
        existing = [b / path for b in bases if (b / path).exists()]
        if not bases:
            return path.as_posix()
        path = existing[0] if existing else bases[0] / path
    path = Path(os.path.normpath(path))
    if root is not None:
        for candidate, base in (
            (path, Path(os.path.normpath(root))),
            (path.resolve(), root.resolve()),
        ):
            if candidate.is_relative_to(base):
                return candidate.relative_to(base).as_posix()
    return path.as_posix()
