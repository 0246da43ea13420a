"""`buildlib watch`: its options, and the pipeline that sets up the loop.

load manifest (the CLI) -> plan with services -> check the target builds here -> one
`watch` per mode and target (a lock) -> `loop.WatchLoop.run` -> exit 0 never (it runs
until stopped), 130/143/129 after SIGINT/SIGTERM/SIGHUP, 1 when the watcher can no
longer see every change (the inotify limit) or the input is invalid. See docs/watch.md.

Only argparse is imported at module level: the CLI builds every command's options on
every start, a no-op build included.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from buildlib.cache.config import cache_location_options

MAX_POLL = 3600.0  # seconds between polls: beyond an hour, a watch that never looks


def watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "steps",
        nargs="*",
        help="steps and services to watch, with what they "
        "need (default: every step and service of the mode)",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        help="steps at once (default: $BUILDLIB_JOBS or the number of CPUs)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream every step's output, prefixed with its name",
    )
    parser.add_argument(
        "--no-services", action="store_true", help="rebuild on change but start no service step"
    )
    parser.add_argument(
        "--debounce",
        type=float,
        default=None,
        metavar="SECONDS",
        help="quiet time that ends a burst of changes (default 0.1)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        nargs="?",
        const=0.5,
        default=None,
        metavar="SECONDS",
        help="poll for changes every SECONDS (default 0.5) "
        "instead of inotify: for file systems without it (network mounts)",
    )
    parser.add_argument(
        "--max-watches",
        type=int,
        default=None,
        metavar="N",
        help="refuse to watch directories that would take more than N "
        "inotify watches (default 10000)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither skip nor store anything (every selected step runs)",
    )
    cache_location_options(parser)
    parser.add_argument(
        "--remote-read-only", action="store_true", help="fetch from the remote cache, never upload"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail a rebuild at once if another build holds the workspace",
    )


def run_watch(args: argparse.Namespace, context: Any) -> int:
    """The `watch` command (`context` is `commands.Context`)."""
    from buildlib.cache.config import engine_secrets
    from buildlib.commands import default_jobs
    from buildlib.core.errors import UserError
    from buildlib.core.layout import BuildDir
    from buildlib.planning.plan import build_plan
    from buildlib.watch.builds import Builder, BuildOptions
    from buildlib.watch.loop import LoopOptions, WatchLoop, watch_lock
    from buildlib.watch.view import WatchView
    from buildlib.watch.watcher import DEFAULT_DEBOUNCE, DEFAULT_MAX_WATCHES
    from buildlib.workspace.targets import check_buildable

    if sys.platform != "linux" and args.poll is None:
        raise UserError(
            "watching uses inotify, which only Linux has",
            fix="pass --poll to poll for changes instead",
        )
    if args.debounce is not None and not 0 <= args.debounce <= 10:
        raise UserError(
            f"--debounce {args.debounce}: expected 0 to 10 seconds", fix="e.g. --debounce 0.2"
        )
    if args.poll is not None and not 0 < args.poll <= MAX_POLL:  # nan and inf too
        raise UserError(
            f"--poll {args.poll}: expected a number of seconds above 0, up to {MAX_POLL:g}",
            fix="e.g. --poll 0.5",
        )
    manifest, mode, target = context.manifest, context.mode, context.target
    environ = dict(os.environ)
    secrets = engine_secrets(manifest, environ)
    step_environ = {name: value for name, value in environ.items() if name not in secrets}
    plan = build_plan(
        manifest, mode=mode, target=target, requested=args.steps, environ=environ, services=True
    )
    check_buildable(target, context.host, {t for s in plan.steps.values() for t in s.tools})
    build_dir = BuildDir(manifest.root)
    build_dir.own()  # its lock, status and services' logs are written outside the build's lock
    view = WatchView(
        sys.stdout, status_path=build_dir.watch_status(mode, target.triple), build_dir=build_dir
    )
    builder = Builder(
        manifest,
        mode=mode,
        target=target,
        view=view,
        environ=environ,
        step_environ=step_environ,
        options=BuildOptions(
            jobs=default_jobs(args.jobs, environ),
            verbose=args.verbose,
            no_cache=args.no_cache,
            cache_dir=args.cache_dir,
            remote_cache=args.remote_cache,
            remote_read_only=args.remote_read_only,
            no_wait=args.no_wait,
        ),
    )
    options = LoopOptions(
        requested=tuple(args.steps),
        services=not args.no_services,
        debounce=DEFAULT_DEBOUNCE if args.debounce is None else args.debounce,
        max_watches=DEFAULT_MAX_WATCHES if args.max_watches is None else args.max_watches,
        poll=args.poll,
    )
    with watch_lock(build_dir.watch_lock(mode, target.triple)):
        loop = WatchLoop(
            manifest,
            mode=mode,
            target=target,
            builder=builder,
            view=view,
            options=options,
            environ=environ,
            step_environ=step_environ,
        )
        return loop.run()
