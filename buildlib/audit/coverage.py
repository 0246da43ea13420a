"""`buildlib check`: what the manifest's inputs leave out, found without running anything.

The static half of the audit (`buildlib audit` watches what steps really read, under
strace; this only compares the manifest with the files git knows). Two findings:

- a file git knows (tracked, or untracked and not ignored) that no step takes as an
  input, is not excluded, and is no step's output: editing it rebuilds nothing. It is
  listed under the step with the deepest `cwd` holding it (the step most likely to
  need it), and a directory none of whose files is read is listed once, as a directory;
- a declared input pattern that matches no file: a typo, or a file that moved. A
  pattern that names another step's outputs may match nothing before that step has
  built; it is reported apart, as pending, and is not a problem.

A step without `inputs` (version 2) takes every file under its cwd, so nothing under
its cwd is ever uncovered.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from buildlib.core.records import record
from buildlib.incremental.filehash import FileHasher, compile_glob
from buildlib.incremental.fingerprint import select_inputs
from buildlib.incremental.gitfiles import GitFiles
from buildlib.incremental.outputs import OutputScope
from buildlib.planning.plan import Plan, PlannedStep


@record
class Unread:
    """Files no step reads: one file, or a whole directory (`files` > 1 or a '/' end)."""

    path: str  # a file, or a directory ending in '/'
    files: int


@record
class StepCoverage:
    step: str
    cwd: str  # relative to the root, "." for the root
    unread: tuple[Unread, ...]  # under this step's cwd, attributed to this step
    empty_patterns: tuple[str, ...]  # declared inputs matching no file
    pending_patterns: tuple[tuple[str, str], ...]  # (pattern, the step whose outputs it names)


@record
class Coverage:
    in_git: bool
    steps: tuple[StepCoverage, ...]

    @property
    def problems(self) -> int:
        return sum(len(s.unread) + len(s.empty_patterns) for s in self.steps)


def check_coverage(plan: Plan) -> Coverage:
    """Compare every step's inputs with the files git knows in `plan.root`."""
    root = plan.root
    git = GitFiles(root)
    hasher = FileHasher(root)
    steps = [s for s in plan.steps.values() if not s.service]
    cwds = {s.name: _relative(s.cwd, root) for s in steps}
    read: set[str] = set()
    for step in steps:
        read.update(select_inputs(step, hasher=hasher, git=git))
    scopes = {s.name: OutputScope(s.outputs) for s in steps if s.outputs}
    known = git.under(".")
    in_git = known is not None
    unread_by_step: dict[str, list[str]] = {s.name: [] for s in steps}
    if known is not None:
        excluded_everywhere = set(known) - set(hasher.keep(known, _common_excludes(steps)))
        for path in known:
            if path in read or path in excluded_everywhere or _owned(path, scopes):
                continue
            holder = _deepest_holder(path, steps, cwds)
            if holder is not None and path in hasher.keep([path], holder.exclude):
                unread_by_step[holder.name].append(path)
    report = []
    for step in steps:
        empty, pending = _unmatched_patterns(step, hasher, scopes)
        unread = _collapse(unread_by_step[step.name], known or [], cwds[step.name])
        report.append(
            StepCoverage(
                step=step.name,
                cwd=cwds[step.name],
                unread=unread,
                empty_patterns=tuple(empty),
                pending_patterns=tuple(pending),
            )
        )
    return Coverage(in_git=in_git, steps=tuple(report))


def _relative(path: Path, root: Path) -> str:
    try:
        text = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
    return text or "."


def _common_excludes(steps: Iterable[PlannedStep]) -> list[str]:
    """The patterns every step excludes: the manifest's `[workspace] exclude` (and the
    defaults, `.git/**`, `.buildlib/**`...), appended to each step's own."""
    lists = [set(s.exclude) for s in steps]
    return sorted(set.intersection(*lists)) if lists else []


def _owned(path: str, scopes: Mapping[str, OutputScope]) -> bool:
    return any(scope.owner(path) is not None for scope in scopes.values())


def _deepest_holder(
    path: str, steps: Iterable[PlannedStep], cwds: Mapping[str, str]
) -> PlannedStep | None:
    """The step with declared inputs whose cwd holds `path` most closely (ties: the
    first in build order); None when only steps taking all of their cwd hold it."""
    best: PlannedStep | None = None
    depth = -1
    for step in steps:
        cwd = cwds[step.name]
        inside = cwd == "." or path.startswith(cwd + "/")
        if not inside:
            continue
        level = 0 if cwd == "." else cwd.count("/") + 1
        if level > depth:
            best, depth = step, level
    if best is None or best.inputs_from_git:
        return None
    return best


def _unmatched_patterns(
    step: PlannedStep, hasher: FileHasher, scopes: Mapping[str, OutputScope]
) -> tuple[list[str], list[tuple[str, str]]]:
    empty: list[str] = []
    pending: list[tuple[str, str]] = []
    if step.inputs_from_git:
        return empty, pending
    for pattern in step.inputs:
        if hasher.expand([pattern], step.exclude):
            continue
        producer = next(
            (
                name
                for name, scope in scopes.items()
                if name != step.name and _names_outputs(pattern, scope)
            ),
            None,
        )
        if producer is not None:
            pending.append((pattern, producer))
        else:
            empty.append(pattern)
    return empty, pending


def _names_outputs(pattern: str, scope: OutputScope) -> bool:
    """Whether input `pattern` looks inside one of `scope`'s outputs: its literal start
    lies in an output (`web/dist/**` and output `web/dist`), or it would match a file
    inside an output below its start (`web/**/*.js` and output `web/dist`)."""
    prefix = _literal_prefix(pattern)
    if prefix and scope.owner(prefix) is not None:
        return True
    match = re.compile(compile_glob(pattern).regex).fullmatch
    return any(
        match(f"/{_literal_prefix(output)}/{PROBE_NAME}") is not None
        for output in scope.patterns
        if _literal_prefix(output).startswith(prefix + "/" if prefix else "")
    )


PROBE_NAME = "any-file"  # a file name a `**` or `*` glob matches: stands for "some file"


def _literal_prefix(pattern: str) -> str:
    """The directories (or file) a glob starts from: `web/src/**/*.ts` -> `web/src`."""
    parts: list[str] = []
    for segment in compile_glob(pattern).segments:
        if not isinstance(segment, str):
            break
        parts.append(segment)
    return "/".join(parts)


def _collapse(unread: list[str], known: list[str], cwd: str) -> tuple[Unread, ...]:
    """Unread files, a directory at a time where no file below it is read."""
    if not unread:
        return ()
    total: Counter[str] = Counter()
    for path in known:
        for parent in _parents(path, cwd):
            total[parent] += 1
    missing: Counter[str] = Counter()
    for path in unread:
        for parent in _parents(path, cwd):
            missing[parent] += 1
    shown: list[Unread] = []
    done: set[str] = set()
    for path in unread:
        whole = next((d for d in _parents(path, cwd) if missing[d] == total[d]), None)
        if whole is None:
            shown.append(Unread(path=path, files=1))
        elif whole not in done:
            done.add(whole)
            shown.append(Unread(path=whole + "/", files=missing[whole]))
    return tuple(shown)


def _parents(path: str, cwd: str) -> list[str]:
    """The directories above `path` below `cwd`, deepest last: `a/b/c.txt` -> [a, a/b]."""
    parts = path.split("/")[:-1]
    start = 0 if cwd == "." else cwd.count("/") + 1
    return ["/".join(parts[:end]) for end in range(start + 1, len(parts) + 1)]


# -- what `buildlib check` prints ------------------------------------------------------------

SHOWN_PER_STEP = 12  # unread entries printed per step; --json has them all

FIX = (
    "fix: add each file to the `inputs` of the step that reads it, or, if no step does, "
    "to `[workspace] exclude` (or the step's `exclude`); correct or remove an input "
    "pattern that matches no file"
)


def render_coverage(coverage: Coverage) -> list[str]:
    """The report as lines: one block per step with findings, then the count and the fix."""
    lines: list[str] = []
    if not coverage.in_git:
        lines.append(
            "not a git repository: the files git knows cannot be listed, so only "
            "the input patterns are checked"
        )
    for step in coverage.steps:
        where = "the root" if step.cwd == "." else step.cwd
        if step.unread:
            count = sum(u.files for u in step.unread)
            lines.append(
                f"{step.step} (cwd {where}): {count} file{'s' * (count != 1)} no step reads"
            )
            for unread in step.unread[:SHOWN_PER_STEP]:
                more = (
                    f" ({unread.files} file{'s' * (unread.files != 1)})"
                    if unread.path.endswith("/")
                    else ""
                )
                lines.append(f"    {unread.path}{more}")
            if len(step.unread) > SHOWN_PER_STEP:
                lines.append(
                    f"    ... and {len(step.unread) - SHOWN_PER_STEP} more (--json lists all)"
                )
        lines += [
            f"{step.step}: input {pattern!r} matches no file" for pattern in step.empty_patterns
        ]
        lines += [
            f"{step.step}: input {pattern!r} matches nothing yet: it names {producer}'s "
            "outputs (fine before a build)"
            for pattern, producer in step.pending_patterns
        ]
    problems = coverage.problems
    if problems:
        lines += [
            f"{problems} finding{'s' * (problems != 1)} (a pattern may name an optional "
            "file on purpose: `--strict` makes any finding fail)",
            FIX,
        ]
    else:
        lines.append(
            f"every file git knows is some step's input, excluded or an output; "
            f"every input pattern matches ({len(coverage.steps)} steps)"
        )
    return lines


def coverage_json(coverage: Coverage) -> dict[str, object]:
    return {
        "in_git": coverage.in_git,
        "problems": coverage.problems,
        "steps": [
            {
                "step": s.step,
                "cwd": s.cwd,
                "unread": [{"path": u.path, "files": u.files} for u in s.unread],
                "empty_patterns": list(s.empty_patterns),
                "pending_patterns": [
                    {"pattern": p, "producer": producer} for p, producer in s.pending_patterns
                ],
            }
            for s in coverage.steps
        ],
    }
