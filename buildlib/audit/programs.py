"""Which programs a step ran whose versions its fingerprint does not cover (`tools`).

A step's fingerprint holds the version output of each `[tools]` entry it lists. The
audit maps every program the trace saw executed to those entries; what stays unmapped
is an undeclared tool, with the fix: add an existing `[tools]` entry to the step's
`tools`, or a new entry (`tsc = ["tsc", "--version"]`) whose version command was tried
here.

A program is covered by a tool when it is the file the tool's argv[0] resolves to on
the step's PATH (`shutil.which`, symlinks resolved), a sibling of that file in its
installation directory when that directory is not itself on PATH (npx beside npm's
npm-cli.js), or, for a rustup proxy (cargo, rustc), anything in a rustup toolchain.
Programs that are not on PATH under their own name (gcc's collect2, a toolchain's
internal binaries) belong to the program that launched them and are reported only when
that launcher is covered by nothing and is itself not on PATH. Shells and file
utilities whose version does not change what a step makes (`PLUMBING`) are never
reported. Programs inside the workspace are files, and the input check answers for
them.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from buildlib.audit.trace_result import Exec, TraceResult, under
from buildlib.core.records import record

# Programs a build runs whose version never changes its result in practice.
PLUMBING: frozenset[str] = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "env",
        "cat",
        "cp",
        "mv",
        "rm",
        "mkdir",
        "rmdir",
        "ln",
        "ls",
        "touch",
        "chmod",
        "true",
        "false",
        "test",
        "[",
        "echo",
        "printf",
        "uname",
        "dirname",
        "basename",
        "readlink",
        "realpath",
        "sleep",
        "tee",
        "head",
        "tail",
        "wc",
        "id",
        "which",
        "mktemp",
        "nproc",
        "getconf",
        "stat",
        "pwd",
    }
)
# How to ask a program its version, tried in order; the first that exits 0 with output wins.
VERSION_ARGS: tuple[tuple[str, ...], ...] = (("--version",), ("-V",), ("version",))
KNOWN_VERSION_ARGS: Mapping[str, tuple[str, ...]] = {"rustc": ("-vV",), "go": ("version",)}
VERSION_TIMEOUT = 10.0
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@record
class ToolFinding:
    """A program the step ran that no tool of its `tools` covers."""

    program: str  # absolute path as executed
    name: str  # the [tools] entry to add to the step's `tools`
    existing: bool  # the entry is already in [tools] (only the step's `tools` lacks it)
    version_command: tuple[str, ...]  # the entry's argv (existing or proposed)
    version_checked: bool  # the proposed command answered here
    launcher: str | None  # the program that ran it


@record
class _Tool:
    name: str
    found: str  # what argv[0] resolves to
    real: str
    rustup: bool


class ToolMap:
    """The `[tools]` entries resolved on one PATH, for `undeclared_tools`."""

    def __init__(
        self,
        tools: Mapping[str, Sequence[str]],
        *,
        path: str,
        cwd: Path,
        environ: Mapping[str, str],
    ) -> None:
        self.commands = tools
        self.path = path
        self.cwd = cwd
        self.environ = environ
        self.resolved: dict[str, _Tool] = {}
        for name, argv in tools.items():
            found = _which(argv[0], path, cwd)
            if found is not None:
                real = os.path.realpath(found)
                self.resolved[name] = _Tool(
                    name=name,
                    found=found,
                    real=real,
                    rustup=Path(real).name in ("rustup", "rustup.exe"),
                )
        self.path_dirs = {os.path.realpath(d) for d in path.split(os.pathsep) if d}
        home = environ.get("RUSTUP_HOME") or os.path.expanduser("~/.rustup")  # noqa: PTH111
        self.toolchains = os.path.realpath(os.path.join(home, "toolchains"))  # noqa: PTH118

    def covering(self, program: str, names: Iterable[str]) -> str | None:
        """The first of `names` whose tool covers `program`, or None."""
        real = os.path.realpath(program)
        for name in names:
            tool = self.resolved.get(name)
            if tool is None:
                continue
            if program == tool.found or real == tool.real:
                return name
            parent = posixpath.dirname(real)
            if parent == posixpath.dirname(tool.real) and parent not in self.path_dirs:
                return name
            if tool.rustup and under(real, self.toolchains):
                return name
        return None

    def on_path(self, program: str) -> bool:
        """Whether `program` is what its own name resolves to on PATH."""
        found = shutil.which(Path(program).name, path=self.path)
        return found is not None and os.path.realpath(found) == os.path.realpath(program)


def undeclared_tools(
    trace: TraceResult,
    *,
    tools: ToolMap,
    declared: Sequence[str],
    inside: Callable[[str], bool],
    probe: Callable[[str, Sequence[str]], bool] | None = None,
) -> list[ToolFinding]:
    """The programs `trace` (absolute paths) shows run that the step's `declared` tools do
    not cover, one finding per proposed entry. `inside(path)` says a program is a
    workspace file (left to the input check). `probe(program, args)` says whether a
    version command answers (default: run it, `VERSION_TIMEOUT` at most)."""
    probe = probe or _answers
    launchers = launchers_of(trace.execs)
    reported: dict[str, ToolFinding] = {}
    for program in sorted(trace.executed):
        if inside(program) or Path(program).name in PLUMBING:
            continue
        if tools.covering(program, declared) is not None:
            continue
        if not tools.on_path(program) and _has_launcher(program, launchers, inside):
            continue  # a helper of the program that ran it, which answers for it
        finding = _finding(program, tools, launchers.get(program), probe, reported)
        reported.setdefault(finding.name, finding)
    return sorted(reported.values(), key=lambda f: f.name)


def _has_launcher(
    program: str, launchers: Mapping[str, str | None], inside: Callable[[str], bool]
) -> bool:
    """Whether a program that is not on PATH was started by another program that is not
    plumbing: that one is covered or reported, and the helper goes with it."""
    launcher = launchers.get(program)
    seen = {program}
    while launcher is not None and launcher not in seen:
        if Path(launcher).name not in PLUMBING or inside(launcher):
            return True
        seen.add(launcher)
        launcher = launchers.get(launcher)
    return False


def _finding(
    program: str,
    tools: ToolMap,
    launcher: str | None,
    probe: Callable[[str, Sequence[str]], bool],
    reported: Mapping[str, ToolFinding],
) -> ToolFinding:
    existing = tools.covering(program, tools.commands)
    if existing is not None:
        return ToolFinding(
            program=program,
            name=existing,
            existing=True,
            version_command=tuple(tools.commands[existing]),
            version_checked=True,
            launcher=launcher,
        )
    base = Path(program).name
    called = base if tools.on_path(program) else program
    name = _free_name(base, tools.commands, reported, program)
    args = KNOWN_VERSION_ARGS.get(base)
    candidates = (args,) if args else VERSION_ARGS
    for option in candidates:
        if probe(program, option):
            return ToolFinding(
                program=program,
                name=name,
                existing=False,
                version_command=(called, *option),
                version_checked=True,
                launcher=launcher,
            )
    return ToolFinding(
        program=program,
        name=name,
        existing=False,
        version_command=(called, *candidates[0]),
        version_checked=False,
        launcher=launcher,
    )


def _free_name(
    base: str,
    commands: Mapping[str, Sequence[str]],
    reported: Mapping[str, ToolFinding],
    program: str,
) -> str:
    """A [tools] key for a new entry: the program's name, made unique."""
    stem = _TOOL_NAME.sub("-", base).strip("-") or "tool"
    name, n = stem, 1
    while name in commands or (name in reported and reported[name].program != program):
        n += 1
        name = f"{stem}-{n}"
    return name


def _which(program: str, path: str, cwd: Path) -> str | None:
    if "/" in program:
        candidate = Path(program) if Path(program).is_absolute() else cwd / program
        return str(candidate) if candidate.exists() else None
    return shutil.which(program, path=path)


def _answers(program: str, args: Sequence[str]) -> bool:
    from buildlib.core.bounded import run_bounded

    try:
        done = run_bounded([program, *args], cwd=None, timeout=VERSION_TIMEOUT)
    except OSError:
        return False
    return done.returncode == 0 and bool((done.stdout or done.stderr).strip())


def launchers_of(execs: Iterable[Exec]) -> dict[str, str | None]:
    """Program -> the program that first ran it."""
    found: dict[str, str | None] = {}
    for e in execs:
        found.setdefault(e.path, e.launcher)
    return found
