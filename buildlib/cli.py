"""The command line: `python -m buildlib <command>`; nox sessions call the same entry point.

The top level is a short pipeline: load manifest -> resolve -> plan -> execute ->
report. User errors print one message and exit 1 (or their own code); anything
unexpected prints "internal error" and exits 2.
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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, help="path to build.toml (default: search upward)")
    parser.add_argument("--mode", help="development, production, test ... (default: "
                        "$BUILDLIB_MODE or the manifest's default_mode)")
    parser.add_argument("--target", help="target triple (default: this host)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildlib", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    build = sub.add_parser("build", help="run the step graph (default command)")
    _common(build)
    build.add_argument("steps", nargs="*", help="steps to build with their dependencies "
                       "(default: every step of the mode)")
    build.add_argument("-j", "--jobs", type=int, help="steps at once (default: $BUILDLIB_JOBS "
                       "or the number of CPUs)")
    build.add_argument("-k", "--keep-going", action="store_true",
                       help="on a failure, build everything that does not depend on it")
    build.add_argument("-n", "--dry-run", action="store_true",
                       help="print the plan (commands, directories, environment) and run nothing")
    build.add_argument("--graph", action="store_true", help="print the selected graph as Mermaid")
    build.add_argument("-v", "--verbose", action="store_true",
                       help="stream every step's output, prefixed with its name")
    build.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    build.add_argument("--explain", action="store_true", help="say why each step ran")
    build.add_argument("--force", action="store_true", help="re-run every step, ignoring the cache")
    build.add_argument("--no-cache", action="store_true",
                       help="neither skip nor store anything (every step runs)")
    build.add_argument("--cache-dir", type=Path, help="local cache directory "
                       "(default: $BUILDLIB_CACHE_DIR or the user cache directory)")
    build.add_argument("--remote-cache", metavar="URL", help="Bazel HTTP cache URL "
                       "(default: $BUILDLIB_REMOTE_CACHE or the manifest's [cache].remote)")
    build.add_argument("--remote-read-only", action="store_true",
                       help="fetch from the remote cache, never upload")
    build.add_argument("--resume", action="store_true", help="re-run only what failed or was "
                       "interrupted in the last build of this mode and target, and its dependents")
    build.add_argument("--only", nargs="+", metavar="STEP", default=[],
                       help="run these steps; their dependencies come from the cache or are built")
    build.add_argument("--from", dest="from_step", metavar="STEP",
                       help="run this step and everything downstream of it")
    build.add_argument("--no-wait", action="store_true",
                       help="fail at once if another build holds the workspace")

    plan = sub.add_parser("plan", help="print the plan as JSON (used by nox and CI)")
    _common(plan)
    plan.add_argument("steps", nargs="*")

    verify = sub.add_parser("verify", help="check the declared artifacts of a mode and target")
    _common(verify)

    clean = sub.add_parser("clean", help="remove declared outputs (and optionally the cache)")
    _common(clean)
    clean.add_argument("groups", nargs="*", help="only these subsystems (step groups) or steps")
    clean.add_argument("--cache", action="store_true", help="also empty the cache")
    clean.add_argument("-n", "--dry-run", action="store_true",
                       help="list what would be removed, with sizes")
    clean.add_argument("--cache-dir", type=Path)

    prune = sub.add_parser("prune", help="shrink the local cache, least recently used first")
    prune.add_argument("--max-size", required=True, help="e.g. 500M, 2G")
    prune.add_argument("--cache-dir", type=Path)

    metrics = sub.add_parser("metrics", help="per-step timings over recent builds")
    _common(metrics)
    metrics.add_argument("--last", type=int, default=20)

    sub.add_parser("keygen", help="print a new key pair for signing cache entries")

    matrix = sub.add_parser("matrix", help="print the CI matrix (mode x target)")
    matrix.add_argument("--manifest", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in {"build", "plan", "verify", "clean", "prune",
                                             "metrics", "matrix", "keygen", "-h", "--help"}:
        args_list.insert(0, "build")
    parser = make_parser()
    if args_list[0] == "matrix":  # its own options go to ci_matrix's parser untouched
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
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "prune":
        from buildlib.commands import prune_command

        return prune_command(args)
    if args.command == "keygen":
        from buildlib.commands import keygen_command

        return keygen_command(args)
    # Only a real build writes the parsed-manifest cache: a dry run, a plan or nox
    # listing its sessions leaves the workspace as it was (they still read it).
    writes = args.command == "build" and not (args.dry_run or args.graph)
    manifest = load_manifest(args.manifest or find_manifest(Path.cwd()), remember=writes)
    if args.command == "matrix":
        from buildlib.integrations.ci_matrix import matrix_main

        rest = [a for a in args.rest if a != "--"]
        return matrix_main(rest, manifest_modes=list(manifest.modes))
    mode = choose_mode(manifest, getattr(args, "mode", None), os.environ)
    host = get_target(host_triple())
    target = get_target(args.target) if getattr(args, "target", None) else host
    from buildlib.commands import COMMANDS

    return COMMANDS[args.command](args, manifest, mode=mode, target=target, host=host)


def choose_mode(manifest: Manifest, requested: str | None, environ: Mapping[str, str]) -> str:
    mode = requested or environ.get("BUILDLIB_MODE") or manifest.default_mode
    if mode not in manifest.modes:
        raise UserError(f"unknown mode '{mode}'", fix="use one of: " + ", ".join(manifest.modes))
    return mode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
