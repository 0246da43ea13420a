"""A step's fingerprint: everything that decides its outputs, hashed into one digest.

The caching gate (`run/caching_gate.py`) calls `compute_fingerprint` before running a step.
If the digest equals the one recorded at the step's last success, the step is up to
date. Otherwise the cache may still hold a result for the digest. Failing both, the
step runs, and `explain` compares the recorded components with the new ones to say why.

Components are named so that a diff can be read:

| key            | value                                                         |
|----------------|---------------------------------------------------------------|
| `argv`         | the command, JSON                                             |
| `cwd`          | the working directory, relative to the workspace root        |
| `env:NAME`     | sha256 of the value, or `unset`: the step's `env` and `env_inputs` |
| `tool:NAME`    | the tool's version text (`toolversions.py`)                   |
| `dep:NAME`     | the digest of a dependency's outputs (`outputs_digest`)       |
| `file:PATH`    | sha256 of an input file (`filehash.py`)                       |
| `mode`, `target` | the build's mode and target triple                          |
| `outputs`      | the declared output patterns, JSON                            |

Environment values are stored hashed: fingerprints are written to state files and
cache entries, and an `env_inputs` variable may hold a secret.
The digest depends on the workspace only through relative paths (a command's own
mentions of the workspace's path are written `{root}`). So two checkouts of the same
sources at different places share cache entries.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from buildlib.core.errors import UserError
from buildlib.core.records import field, record
from buildlib.core.smallhash import sha256_hex
from buildlib.incremental.filehash import FileHasher, PatternError
from buildlib.incremental.gitfiles import GitFiles
from buildlib.incremental.outputs import OutputScope
from buildlib.planning.plan import PlannedStep

__all__ = [
    "Fingerprint",
    "compute_fingerprint",
    "explain",
    "inputs_changed_since",
]

FORMAT = b"buildlib-fingerprint-v2\n"  # bump when components change meaning
# A dependency without outputs contributes its success, which is all it can give.
NO_OUTPUTS = "succeeded"
UNSET = "unset"
EXPLAIN_LIMIT = 5  # input files named per kind of change before "and N more"


@record
class Fingerprint:
    """`digest` is sha256 over the sorted `components`; equality is equality of digests.

    `stat_keys` holds each input file's stat key as it was before its content was
    hashed, for `inputs_changed_since`."""

    digest: str
    components: Mapping[str, str] = field(compare=False)
    stat_keys: Mapping[str, tuple[int, int, int, int]] = field(compare=False, default_factory=dict)
    # The digests of `compute_fingerprint`'s `also_hash` files as they are now (missing
    # ones left out); not part of the fingerprint.
    also_hashed: Mapping[str, str] = field(compare=False, default_factory=dict)
    # Those of them that exist but whose stat moved since they were hashed: not read yet.
    also_stale: tuple[str, ...] = field(compare=False, default=())

    @property
    def input_files(self) -> list[str]:
        """The input files hashed into this fingerprint, as relative POSIX paths."""
        return [key[5:] for key in self.components if key.startswith("file:")]


def compute_fingerprint(
    step: PlannedStep,
    *,
    root: Path,
    hasher: FileHasher,
    environ: Mapping[str, str],
    tool_versions: Mapping[str, str],
    dep_fingerprints: Mapping[str, str],
    mode: str,
    target: str,
    git: GitFiles | None = None,
    also_hash: Sequence[str] = (),
) -> Fingerprint:
    """Hash everything that can change `step`'s outputs; and stat the files `also_hash`
    names in the same pass (the outputs recorded at the step's last success, which must
    be intact for it to be up to date: a no-op build needs both): `also_hashed` has the
    digests the stat cache vouches for, `also_stale` the files to read if needed.

    `tool_versions` must hold every tool in `step.tools` (a missing one is a bug in the
    caller). `dep_fingerprints` holds, for each dependency, the digest of its outputs
    (`outputs_digest`), not of its fingerprint: a dependency that ran again and made
    byte-identical outputs leaves this step up to date (early cutoff).
    Raises UserError naming the step if an input glob leaves the workspace.
    """
    try:
        files = select_inputs(step, hasher=hasher, git=git)
    except PatternError as exc:
        raise UserError(
            f"step '{step.name}', key 'inputs' or 'exclude': {exc.message}", fix=exc.fix
        ) from exc
    components: dict[str, str] = {
        "argv": json.dumps(_portable_argv(step.argv, root)),
        "cwd": step.cwd_relative,
        "mode": mode,
        "target": target,
        "outputs": json.dumps(list(step.outputs)),
    }
    for name in step.env_inputs:
        components[f"env:{name}"] = _env_value(environ.get(name))
    for name, value in step.env.items():  # the step's own value wins, as it does at spawn
        components[f"env:{name}"] = _env_value(value)
    for name in step.tools:
        if name not in tool_versions:
            raise KeyError(
                f"internal error: no version detected for tool '{name}' of step '{step.name}'"
            )
        components[f"tool:{name}"] = tool_versions[name]
    for name in step.depends_on:
        if name in dep_fingerprints:
            components[f"dep:{name}"] = dep_fingerprints[name]
    keys: dict[str, tuple[int, int, int, int]] = {}
    hashed, also_hashed, also_stale = _hash_files(hasher, files, also_hash, keys)
    for rel, digest in hashed.items():
        components[f"file:{rel}"] = digest
    return Fingerprint(
        digest=digest_of(components),
        components=MappingProxyType(components),
        stat_keys=keys,
        also_hashed=also_hashed,
        also_stale=also_stale,
    )


def _hash_files(
    hasher: FileHasher,
    files: list[str],
    also_hash: Sequence[str],
    keys: dict[str, tuple[int, int, int, int]],
) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """The digests of `files`; of `also_hash`, stat'ed in the same pass but read only
    when they are inputs too (the others whose stat moved are returned unread: a step
    that reruns never needs them). `keys` receives the stat keys of `files` only (the
    changed-while-it-ran check is about inputs)."""
    if not also_hash:
        return hasher.hash_files(files, keys), {}, ()
    inputs = set(files)
    extra = [rel for rel in also_hash if rel not in inputs]
    stale: list[str] = []
    digests = hasher.hash_files([*files, *extra], keys, unread=set(extra), stale=stale)
    for rel in extra:
        keys.pop(rel, None)
    return (
        {rel: digests[rel] for rel in files if rel in digests},
        {rel: digests[rel] for rel in also_hash if rel in digests},
        tuple(stale),
    )


def outputs_digest(outputs: Mapping[str, str]) -> str:
    """What a step's dependents see of it: the sha256 of its outputs' paths and contents
    (NO_OUTPUTS for a step that has none)."""
    if not outputs:
        return NO_OUTPUTS
    canonical = json.dumps(sorted(outputs.items()), ensure_ascii=True, separators=(",", ":"))
    return sha256_hex(b"buildlib-outputs-v1\n" + canonical.encode("ascii"))


def digest_of(components: Mapping[str, str]) -> str:
    """sha256 of the canonical form: FORMAT, then the sorted pairs as ASCII-only JSON."""
    canonical = json.dumps(sorted(components.items()), ensure_ascii=True, separators=(",", ":"))
    return sha256_hex(FORMAT + canonical.encode("ascii"))


def _env_value(value: str | None) -> str:
    if value is None:
        return UNSET
    return "sha256:" + sha256_hex(value.encode("utf-8", "surrogateescape"))


def _portable_argv(argv: Sequence[str], root: Path) -> list[str]:
    """`argv` with the workspace's own path written `{root}`: a command that names a file
    of the checkout (`{python}` is the engine environment in `.nox/`, `{root}/tool.sh`)
    keeps one fingerprint wherever the checkout lies, so checkouts share cache entries."""
    prefixes = {os.fspath(root), _resolved(os.fspath(root))}

    def portable(arg: str) -> str:
        for prefix in prefixes:
            if arg == prefix:
                return "{root}"
            arg = arg.replace(prefix + os.sep, "{root}/")
        return arg

    return [portable(arg) for arg in argv]


@functools.lru_cache(maxsize=16)
def _resolved(root: str) -> str:
    return os.path.realpath(root).rstrip(os.sep) or os.sep


# -- explain -----------------------------------------------------------------------------


def explain(previous: Mapping[str, str] | None, current: Fingerprint) -> list[str]:
    """Why `current` differs from the `previous` components, as short human sentences.

    In a fixed order: command, cwd, mode, target, outputs, environment, tools,
    dependencies, then input files, at most EXPLAIN_LIMIT named per kind of change.
    """
    if previous is None:
        return ["no earlier result"]
    now = current.components
    reasons: list[str] = []
    for key, label in (
        ("argv", "command"),
        ("cwd", "working directory"),
        ("outputs", "declared outputs"),
    ):
        if previous.get(key) != now.get(key):
            reasons.append(f"{label} changed")
    for key in ("mode", "target"):
        if previous.get(key) != now.get(key):
            reasons.append(
                f"{key} changed from {previous.get(key, '(none)')} to {now.get(key, '(none)')}"
            )
    reasons += _explain_env(*_diff(previous, now, "env:"))
    reasons += _explain_tools(*_diff(previous, now, "tool:"), previous, now)
    changed, added, removed = _diff(previous, now, "dep:")
    reasons += [f"outputs of dependency {n} changed" for n in changed]
    reasons += [f"new dependency {n}" for n in added]
    reasons += [f"dependency {n} removed" for n in removed]
    changed, added, removed = _diff(previous, now, "file:")
    reasons += _capped(changed, "changed")
    reasons += _capped(added, "added")
    reasons += _capped(removed, "removed")
    known = ("argv", "cwd", "outputs", "mode", "target", "env:", "tool:", "dep:", "file:")
    reasons += [
        f"{key} changed"
        for key in sorted(set(previous) | set(now))
        if not key.startswith(known) and previous.get(key) != now.get(key)
    ]
    return reasons or ["no input changed"]


def _diff(
    previous: Mapping[str, str], now: Mapping[str, str], prefix: str
) -> tuple[list[str], list[str], list[str]]:
    """Names (prefix stripped) under `prefix` that changed, were added, were removed."""
    before = {k[len(prefix) :]: v for k, v in previous.items() if k.startswith(prefix)}
    after = {k[len(prefix) :]: v for k, v in now.items() if k.startswith(prefix)}
    changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    return changed, sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())


def _explain_env(changed: list[str], added: list[str], removed: list[str]) -> list[str]:
    return (
        [f"environment variable {n} changed" for n in changed]
        + [f"environment variable {n} is now an input" for n in added]
        + [f"environment variable {n} is no longer an input" for n in removed]
    )


def _explain_tools(
    changed: list[str],
    added: list[str],
    removed: list[str],
    previous: Mapping[str, str],
    now: Mapping[str, str],
) -> list[str]:
    reasons = []
    for name in changed:
        old, new = (_first_line(m[f"tool:{name}"]) for m in (previous, now))
        reasons.append(
            f"tool version of {name} changed" + (f" ({old} -> {new})" if old != new else "")
        )
    reasons += [f"tool {name} added to the step's tools" for name in added]
    reasons += [f"tool {name} removed from the step's tools" for name in removed]
    return reasons


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(empty)"


def _capped(paths: list[str], verb: str) -> list[str]:
    lines = [f"input file {p} {verb}" for p in paths[:EXPLAIN_LIMIT]]
    if len(paths) > EXPLAIN_LIMIT:
        lines.append(f"and {len(paths) - EXPLAIN_LIMIT} more input files {verb}")
    return lines


# -- change while running -------------------------------------------------------------------


def select_inputs(step: PlannedStep, *, hasher: FileHasher, git: GitFiles | None) -> list[str]:
    """The step's input files: its `inputs` globs, or (`inputs_from_git`: a version 2 step
    that declares none) what git knows under its cwd; minus its excludes, and in the
    second case minus its outputs. Outside git, every file under the cwd."""
    if not step.inputs_from_git:
        return hasher.expand(step.inputs, step.exclude)
    cwd = step.cwd_relative
    listed = git.under(cwd) if git is not None else None
    if listed is None:
        files = hasher.expand(["**" if cwd == "." else f"{cwd}/**"], step.exclude)
    else:
        files = hasher.keep(listed, step.exclude)
    if step.outputs:
        scope = OutputScope(step.outputs)
        files = [f for f in files if scope.owner(f) is None]
    return files


def inputs_changed_since(
    hasher: FileHasher, step: PlannedStep, fingerprint: Fingerprint, git: GitFiles | None = None
) -> list[str]:
    """Inputs of `step` whose content differs from what `fingerprint` hashed, or that
    appeared or vanished since: a step's result is stored only when this is empty.

    The stat keys were taken before the contents were hashed, so an edit at any moment
    after that (during a slow cache lookup, or while the step ran) is seen. Only a file
    whose key moved is read again, and it counts as changed only if its content did:
    a tool that rewrites a file with the same bytes (`npm install` and
    package-lock.json) changes nothing.
    """
    if git is not None:
        git.forget()  # the step has run: list again
    try:
        files = select_inputs(step, hasher=hasher, git=git)
    except PatternError:
        return ["(inputs cannot be listed)"]
    before = fingerprint.stat_keys
    now = hasher.stat_keys(files)
    moved = [rel for rel in files if now.get(rel) != before.get(rel)]
    gone = sorted(set(before) - set(files))
    if not moved:
        return gone
    digests = hasher.hash_files(moved)
    components = fingerprint.components
    changed = [rel for rel in moved if digests.get(rel) != components.get(f"file:{rel}")]
    return sorted(changed + gone)
