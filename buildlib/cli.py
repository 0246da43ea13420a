"""The command line: `python -m buildlib <command>`; nox sessions call the same entry point.

The top level is a short pipeline: load manifest -> resolve -> plan -> execute ->
report. The commands, their options and whether they read the manifest come from one
table (`commands.COMMANDS`). User errors print one message and exit 1 (or their own
code); a bad command line exits 2 (argparse); anything unexpected prints "internal
error" and exits 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildlib.core.errors import UserError
from buildlib.workspace.manifest import Manifest, find_manifest, load_manifest
from buildlib.workspace.targets import get_target, host_triple

INTERNAL_ERROR = 3


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, help="path to build.toml (default: search upward)")
    parser.add_argument("--mode", help="development, production, test ... (default: "
                        "$BUILDLIB_MODE or the manifest's default_mode)")
    parser.add_argument("--target", help="target triple (default: this host)")


def make_parser() -> argparse.ArgumentParser:
    from buildlib.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="buildlib", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    for name, command in COMMANDS.items():
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
            return [arg, *args[:index], *args[index + 1:]]
        if arg == "--":
            break
    return ["build", *args]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from buildlib.commands import COMMANDS

    args_list = command_first(sys.argv[1:] if argv is None else argv, list(COMMANDS))
    parser = make_parser()
    command = COMMANDS.get(args_list[0]) if args_list else None
    if command is not None and command.passthrough:
        args, rest = parser.parse_known_args(args_list)
        args.rest = rest
    else:
        args = parser.parse_args(args_list)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # the one place bugs become an exit code
        import traceback

        traceback.print_exc()
        print("internal error: this is a bug in buildlib, please report it with the "
              "traceback above", file=sys.stderr)
        return INTERNAL_ERROR


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
    target = get_target(args.target) if getattr(args, "target", None) else host
    return command.run(args, Context(manifest=manifest, mode=mode, target=target, host=host))


def choose_mode(manifest: Manifest, requested: str | None, environ: Mapping[str, str]) -> str:
    mode = requested or environ.get("BUILDLIB_MODE") or manifest.default_mode
    if mode not in manifest.modes:
        raise UserError(f"unknown mode '{mode}'", fix="use one of: " + ", ".join(manifest.modes))
    return mode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
