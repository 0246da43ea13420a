"""The command line: `python -m buildlib <command>`; nox sessions call the same entry point.

The top level is a short pipeline: load manifest -> resolve -> plan -> execute ->
report. The commands, their options and whether they read the manifest come from one
table (`commands.COMMANDS`). User errors print one message and exit 1 (or their own
code); a bad command line exits 2 (argparse, with "did you mean" for a misspelt
option); a full or read-only disk under the engine's own files is a user error naming
the path; a reader that goes away (`| head`) ends the command quietly with 141, as a
SIGPIPE does; anything unexpected prints "internal error" and exits 3.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from buildlib.core.errors import TargetError, UserError
from buildlib.core.layout import DIRECTORY
from buildlib.workspace.manifest import Manifest, find_manifest, load_manifest
from buildlib.workspace.targets import TARGETS, Target, get_target, host_triple

INTERNAL_ERROR = 3
USAGE_ERROR = 2
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `git log | head`
# The engine's own writes (.buildlib, logs, reports) failing for these reasons are the
# machine's problem, not a bug: one message naming the path and the fix.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely meant: the only one it begins (`prod` ->
    `production`), else the closest spelling (`--targt` -> `--target`), else None."""
    options = list(choices)
    starting = [c for c in options if c.startswith(word)] if word else []
    if len(starting) == 1:
        return starting[0]
    import difflib  # error paths only

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return close[0] if close else None


class _Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a misspelt option and one `error:` line."""

    chosen: str | None = None  # the command named, whose options a suggestion comes from

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix) :].split()
            unknown = next((w for w in words if w.startswith("-")), words[0] if words else "")
            name = unknown.split("=", 1)[0]
            options = [
                o
                for action in self._all_actions()
                for o in action.option_strings
                if o.startswith("--")
            ]
            close = suggest(name, options) if name.startswith("-") else None
            what = "option" if name.startswith("-") else "argument"
            fix = f"did you mean '{close}'? " if close else ""
            prog = f"{self.prog} {self.chosen}" if self.chosen else self.prog
            self.exit(
                USAGE_ERROR,
                f"error: unknown {what} '{unknown}' for '{prog}'\n"
                f"  fix: {fix}'{prog} --help' lists the options\n",
            )
        self.exit(
            USAGE_ERROR,
            f"error: {self.prog}: {message}\n  fix: '{self.prog} --help' lists the options\n",
        )

    def _all_actions(self) -> list[argparse.Action]:
        """This parser's options and, once a command is named, that command's too."""
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and self.chosen in action.choices:
                actions += action.choices[self.chosen]._actions
        return actions


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, help="path to build.toml (default: search upward)")
    parser.add_argument(
        "--mode",
        help="development, production, test ... (default: "
        "$BUILDLIB_MODE or the manifest's default_mode)",
    )
    parser.add_argument("--target", help="target triple (default: this host)")


def make_parser(chosen: str | None = None) -> _Parser:
    """The parser of `chosen` alone, or every command with its help and options when it
    is None (`--help`, or no known command: the error lists them all). A start pays for
    the command it runs: declaring every command would import the modules that define
    their options (watch, explain-miss, diff...) and build a parser for each."""
    from buildlib.commands import COMMANDS

    parser = _Parser(prog="buildlib", description=__doc__)
    parser.chosen = chosen
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, command in COMMANDS.items():
        if chosen is not None and name != chosen:
            continue
        child = sub.add_parser(name, help=command.help)
        if command.common:
            _common(child)
        command.options(child)
    return parser


def command_first(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """`args` with the command in front: options given before it (`--manifest X build`)
    follow it instead, and no command at all means `build`."""
    args = list(args)
    if args and args[0] in ("-h", "--help"):
        return args
    for index, arg in enumerate(args):
        if arg in names:
            return [arg, *args[:index], *args[index + 1 :]]
        if arg == "--":
            break
    return ["build", *args]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from buildlib.commands import COMMANDS

    args_list = command_first(sys.argv[1:] if argv is None else argv, list(COMMANDS))
    command = COMMANDS.get(args_list[0]) if args_list else None
    parser = make_parser(args_list[0] if command is not None else None)
    if command is not None and command.passthrough:
        args, rest = parser.parse_known_args(args_list)
        args.rest = rest
    else:
        args = parser.parse_args(args_list)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command line: the one place errors become exit codes."""
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:  # the one place bugs become an exit code
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            print(f"error: {disk_error(exc, args).render()}", file=sys.stderr)
            return 1
        return _internal_error()


def _internal_error() -> int:
    import traceback

    traceback.print_exc()
    print(
        "internal error: this is a bug in buildlib, please report it with the traceback above",
        file=sys.stderr,
    )
    return INTERNAL_ERROR


def _reader_gone() -> int:
    """stdout's reader went away (`buildlib plan | head`): stop quietly, as `git log | head`
    does. stdout now points at /dev/null, so the interpreter's last flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE


def disk_error(exc: OSError, args: argparse.Namespace) -> UserError:
    """A write of the engine's own files refused by the disk: the path and what frees it."""
    path = exc.filename
    if path is None:  # os.write and friends name no file: it was the build directory's
        try:
            manifest = args.manifest or find_manifest(Path.cwd())
            path = str(Path(manifest).resolve().parent / DIRECTORY)
        except (UserError, OSError):
            path = DIRECTORY
    path = os.fsdecode(path)
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = (
            f"free space on the file system holding {path} (`df -h {path}` shows it): "
            "`nox -s clean` removes build outputs, `nox -s prune -- --max-size 1G` "
            f"shrinks the cache, and {DIRECTORY}/reports and {DIRECTORY}/logs may be "
            "deleted"
        )
    elif exc.errno == errno.EROFS:
        fix = "build in a writable checkout (the workspace is on a read-only file system)"
    else:
        fix = f"make {path} writable by this user (`ls -ld {path}`), or remove it"
    return UserError(f"cannot write {path}: {reason}", fix=fix)


def _dispatch(args: argparse.Namespace) -> int:
    from buildlib.commands import COMMANDS, Context

    command = COMMANDS[args.command]
    if not command.manifest:
        return command.run(args, None)
    # Only a real build writes the parsed-manifest cache: a dry run, a plan or nox
    # listing its sessions leaves the workspace as it was (they still read it).
    writes = args.command == "build" and not (args.dry_run or args.graph)
    manifest = load_manifest(args.manifest or find_manifest(Path.cwd()), remember=writes)
    mode = choose_mode(manifest, getattr(args, "mode", None), os.environ)
    host = get_target(host_triple())
    target = choose_target(args.target) if getattr(args, "target", None) else host
    return command.run(args, Context(manifest=manifest, mode=mode, target=target, host=host))


def choose_mode(manifest: Manifest, requested: str | None, environ: Mapping[str, str]) -> str:
    mode = requested or environ.get("BUILDLIB_MODE") or manifest.default_mode
    if mode not in manifest.modes:
        source = (
            ""
            if requested
            else (
                " (from $BUILDLIB_MODE)"
                if environ.get("BUILDLIB_MODE")
                else f" (the default_mode of {manifest.path})"
            )
        )
        close = suggest(mode, manifest.modes)
        hint = f"did you mean '{close}'? " if close else ""
        raise UserError(
            f"unknown mode '{mode}'{source}", fix=f"{hint}modes: " + ", ".join(manifest.modes)
        )
    return mode


def choose_target(triple: str) -> Target:
    """The target `--target` names, with "did you mean" for a near miss."""
    try:
        return get_target(triple)
    except TargetError:
        close = suggest(triple, TARGETS)
        hint = f"did you mean '{close}'? " if close else ""
        raise TargetError(
            f"unknown target triple '{triple}'", fix=f"{hint}targets: " + ", ".join(TARGETS)
        ) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
