"""`buildlib explain-miss STEP`: why the cache has no result for a step's fingerprint here.

The cache is keyed by fingerprint digest, so a miss alone says nothing. Each save
also records the step's newest entry per mode and target (`cache/latest.py`), and an
entry's meta keeps its fingerprint's components. This module computes the step's
fingerprint as a build would now (its dependencies as a build would leave them:
up to date, restored, or unknown when they would run first), fetches the newest
entry of the local cache and of the remote, and names what differs (`fpdiff.py`).
`cache_reasons` gives the same, shortened, to the `--explain` line of a miss.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from buildlib.cache.config import cache_location_options
from buildlib.cache.fpdiff import differences, first_differences
from buildlib.core.errors import UserError
from buildlib.core.fmt import some_names

if TYPE_CHECKING:
    from buildlib.cache.store import CacheEntry, StepCache

EXPLAIN_COUNT = 3  # differences named in an --explain line


def newest(entries: list[CacheEntry], skip: Collection[str] = ()) -> CacheEntry | None:
    """The most recently stored of `entries` whose key is not in `skip`."""
    kept = [e for e in entries if e.key not in skip]
    return max(kept, key=lambda e: e.created) if kept else None


def components_of(entry: CacheEntry) -> dict[str, str] | None:
    """The fingerprint components the entry's meta keeps (None: saved by an older
    buildlib, or not a mapping of strings)."""
    found = entry.meta.get("components")
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        return None
    return found


def cache_reasons(
    store: StepCache,
    step: str,
    *,
    mode: str,
    target: str,
    components: Mapping[str, str],
    skip: Collection[str],
) -> list[str]:
    """For a miss: the reason naming what differs from the cache's newest entry for the
    step on this mode and target, unless its key is in `skip` (already explained)."""
    entry = newest(store.newest_entries(step, mode, target), skip)
    if entry is None:
        return []
    theirs = components_of(entry)
    if theirs is None:
        return []
    found = first_differences(components, theirs, EXPLAIN_COUNT)
    if not found:
        return []
    return [
        f"the {entry.source} cache's newest entry for {step} ({entry.key[:12]}) differs: "
        + "; ".join(found)
    ]


def explain_miss_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("step", help="the step whose cache miss to explain")
    cache_location_options(parser)


def explain_miss(args: argparse.Namespace, context: Any) -> int:
    """Print what differs between the step's fingerprint here and the newest entry the
    cache holds for it; exit 1 when there is no entry to compare with."""
    from buildlib.cache.config import cache_config, engine_secrets
    from buildlib.incremental.fingerprint import compute_fingerprint
    from buildlib.incremental.toolversions import detect_tool_versions
    from buildlib.planning.plan import build_plan
    from buildlib.run.caching_gate import CachingGate

    manifest, mode, target = context.manifest, context.mode, context.target
    if args.step not in manifest.steps:
        raise UserError(
            f"explain-miss: unknown step '{args.step}' in {manifest.path}",
            fix="steps: " + some_names(manifest.steps),
        )
    environ = dict(os.environ)
    secrets = engine_secrets(manifest, environ)
    step_environ = {k: v for k, v in environ.items() if k not in secrets}
    plan = build_plan(manifest, mode=mode, target=target, requested=[args.step], environ=environ)
    if args.step not in plan.steps:
        raise UserError(
            f"explain-miss: step '{args.step}' is not part of mode '{mode}' for {target.triple}",
            fix="pass the --mode and --target it builds in",
        )
    if not plan.steps[args.step].cacheable:
        print(
            f"{args.step}: caching is off for this step (cache = false in "
            f"{manifest.path}): the cache never holds it, so it always runs"
        )
        return 1
    config = cache_config(
        manifest, environ, cache_dir=args.cache_dir, remote_url=args.remote_cache, read_only=True
    )

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    gate = CachingGate(
        plan,
        state_dir=context.build_dir.state(mode, target.triple),
        cache=config,
        forced=set(),
        environ=step_environ,
        warn=warn,
    )
    digests: dict[str, str | None] = {}
    for name, planned in plan.steps.items():  # in dependency order, as a --dry-run does
        if name != args.step:
            digests[name] = gate.predict(
                planned, {d: digests.get(d) for d in planned.depends_on}
            ).outputs_digest
    step = plan.steps[args.step]
    unknown = [d for d in step.depends_on if d in digests and digests[d] is None]
    tools = detect_tool_versions(
        plan.tool_commands, step.tools, context.build_dir.tool_versions, cwd=plan.root
    )
    fingerprint = compute_fingerprint(
        step,
        root=plan.root,
        hasher=gate.hasher,
        environ=step_environ,
        tool_versions=tools,
        dep_fingerprints={k: v for k, v in digests.items() if v is not None},
        mode=mode,
        target=target.triple,
        git=gate.git,
    )
    entries = gate.store.newest_entries(args.step, mode, target.triple)
    for message in gate.store.drain_warnings():
        warn(message)
    gate.hasher.save()
    print(f"{args.step} ({mode}, {target.triple}): fingerprint {fingerprint.digest[:12]} here")
    lines, code = _compare(
        fingerprint.digest, dict(fingerprint.components), entries, unknown, gate.store
    )
    print("\n".join(lines))
    return code


def _compare(
    digest: str,
    here: dict[str, str],
    entries: list[CacheEntry],
    unknown: list[str],
    store: StepCache,
) -> tuple[list[str], int]:
    """The lines after the first, and the exit code."""
    entry = newest(entries)
    if entry is None:
        where = f"the local cache ({store.local.root})"
        if store.remote is not None:
            where += f" nor the remote ({store.remote.display_url})"
        return [
            f"no entry for this step, mode and target in {where}: nothing to compare "
            "(none was saved here, or it was pruned)"
        ], 1
    stored = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.created))
    lines = [f"newest entry: fingerprint {entry.key[:12]}, {entry.source} cache, stored {stored}"]
    if entry.key == digest:
        return [*lines, "the same fingerprint: a build restores this entry (no miss)"], 0
    theirs = components_of(entry)
    if theirs is None:
        return [
            *lines,
            "the entry keeps no fingerprint components (saved by an older "
            "buildlib): only its key is known to differ",
        ], 1
    for name in unknown:  # its outputs are not known yet: compare the rest
        theirs.pop(f"dep:{name}", None)
    found = differences(here, theirs)
    found += [
        f"dependency {name} runs first (its own fingerprint differs): its outputs "
        f"are unknown until then; `buildlib explain-miss {name}` says why"
        for name in unknown
    ]
    if not found:
        found = [
            "no component differs, but the digests do: the entry was made by "
            "another fingerprint format (another buildlib version)"
        ]
    return [*lines, *(f"  {line}" for line in found)], 0
