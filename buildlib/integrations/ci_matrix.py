"""The CI build matrix: one GitHub Actions job per (mode, target), each on its native runner.

`build_matrix` only decides; it reads the target table and returns plain data, so it is
tested without GitHub. `matrix_main` is the `python -m buildlib matrix` / `nox -s matrix`
entry point: it prints the matrix as JSON on stdout for the workflow's `plan` job
(`ci/workflows/build.yml`), which hands it to `strategy.matrix` through `fromJSON`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.workspace.manifest import MODE_NAME
from buildlib.workspace.targets import TARGETS, Target, host_triple

if TYPE_CHECKING:
    from buildlib.integrations.ci_plans import ShardRequest
    from buildlib.planning.shards import ShardPlan

    ShardPlanner = Callable[[ShardRequest], ShardPlan | None]

# The Python that CI's build session runs under; the noxfile parametrizes `build` with it.
BUILD_PYTHON = "3.12"
# GitHub refuses a matrix that expands to more jobs than this.
MAX_JOBS = 256


class MatrixError(UserError):
    """The requested modes or targets are not ones the manifest or the target table knows."""


@record
class MatrixEntry:
    """One CI job: build `mode` for `target` on `target.runner`, then verify it."""

    mode: str
    target: Target

    @property
    def session(self) -> str:
        return f"build-{BUILD_PYTHON}(mode='{self.mode}')"

    @property
    def verify_session(self) -> str:
        # `verify` is one session; mode and target reach the engine after `--`.
        return f"verify -- --mode {self.mode} --target {self.target.triple}"

    @property
    def artifact_name(self) -> str:
        """Unique per job: upload-artifact v4 refuses two uploads with one name in a run."""
        return f"build-{self.mode}-{self.target.triple}"

    def as_json(self) -> dict[str, str]:
        """The row as `matrix.<key>` sees it: flat, string values only."""
        return {
            "mode": self.mode,
            "target": self.target.triple,
            "runner": self.target.runner,
            "os": self.target.os,
            "arch": self.target.arch,
            "session": self.session,
            "verify_session": self.verify_session,
            "artifact_name": self.artifact_name,
        }


def build_matrix(
    *,
    modes: Sequence[str],
    targets: Sequence[str] | None = None,
    include_cross: bool = True,
    known_modes: Sequence[str] | None = None,
    host: str | None = None,
) -> dict[str, list[dict[str, str]]]:
    """The `{"include": [...]}` matrix over `modes` x `targets`, modes outermost.

    `targets` defaults to every triple in `TARGETS`, in table order. With
    `include_cross=False` only the targets of `host` (default: this machine) are kept,
    i.e. what `nox -s build` here would build. When `known_modes` is given (the
    manifest's `[modes.*]`), every mode must be one of them. Duplicates are dropped.
    All bad names are reported in one `MatrixError` that lists the valid ones.
    """
    wanted_modes = _unique(modes)
    wanted_targets = _unique(targets) if targets is not None else list(TARGETS)
    problems = [*_mode_problems(wanted_modes, known_modes), *_target_problems(wanted_targets)]
    if problems:
        raise MatrixError("; ".join(problems), fix=_fix(known_modes))
    if not include_cross:
        native = host if host is not None else host_triple()
        wanted_targets = [t for t in wanted_targets if t == native]
        if not wanted_targets:
            raise MatrixError(
                f"none of the requested targets is this host's ({native})",
                fix=f"add {native} to --targets, or drop --native-only",
            )
    entries = [MatrixEntry(mode=m, target=TARGETS[t]) for m in wanted_modes for t in wanted_targets]
    if len(entries) > MAX_JOBS:
        raise MatrixError(
            f"the matrix has {len(entries)} jobs; GitHub Actions allows at most {MAX_JOBS}",
            fix="pass fewer --modes or --targets",
        )
    return {"include": [e.as_json() for e in entries]}


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _mode_problems(modes: Sequence[str], known: Sequence[str] | None) -> list[str]:
    if not modes:
        return ["no modes given"]
    problems = [
        # Modes end up inside nox session names (`build-3.12(mode='x')`) and artifact
        # names, which GitHub restricts: a quote or slash would break both silently.
        f"mode name {m!r} is not usable in a session name"
        for m in modes
        if not MODE_NAME.fullmatch(m)
    ]
    if known is not None:
        unknown = [m for m in modes if m not in known]
        if unknown:
            problems.append("unknown mode(s) " + ", ".join(map(repr, unknown)))
    return problems


def _target_problems(targets: Sequence[str]) -> list[str]:
    if not targets:
        return ["no targets given"]
    unknown = [t for t in targets if t not in TARGETS]
    if not unknown:
        return []
    return ["unknown target(s) " + ", ".join(map(repr, unknown))]


def _fix(known_modes: Sequence[str] | None) -> str:
    modes = ", ".join(known_modes) if known_modes is not None else "the [modes.*] of build.toml"
    return f"use modes from {modes}; targets from {', '.join(TARGETS)}"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments, our code for internal errors; make it a user error."""

    def error(self, message: str) -> NoReturn:
        raise MatrixError(f"buildlib matrix: {message}", fix=self.format_usage().strip())


def _parser(manifest_modes: Sequence[str]) -> _Parser:
    parser = _Parser(
        prog="buildlib matrix",
        description="Print the GitHub Actions build matrix (mode x target) as JSON.",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        metavar="MODE",
        default=None,
        help=f"modes to build (default: every mode in the manifest: {list(manifest_modes)})",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        metavar="TRIPLE",
        default=None,
        help="target triples (default: all of " + ", ".join(TARGETS) + ")",
    )
    parser.add_argument(
        "--native-only",
        action="store_true",
        help="keep only this host's target (no jobs for other platforms)",
    )
    style = parser.add_mutually_exclusive_group()
    style.add_argument(
        "--json",
        action="store_true",
        help='one compact line, for `echo "matrix=$(...)" >> $GITHUB_OUTPUT` (the default)',
    )
    style.add_argument("--pretty", action="store_true", help="indented, for reading")
    shards = parser.add_argument_group(
        "one build over several jobs (docs/ci.md)",
        "--shards N lays one mode and target out in waves of at most N jobs that exchange "
        "results through the remote cache, then a final job that restores everything and "
        "verifies; the output has `waves`, `wave1`..`waveW` (matrices) and `verify`",
    )
    shards.add_argument("--shards", type=int, metavar="N", help="jobs per wave")
    shards.add_argument(
        "--waves",
        type=int,
        metavar="W",
        default=None,
        help="wave jobs the workflow has (default: as many as needed)",
    )
    shards.add_argument(
        "--job-overhead",
        type=float,
        metavar="SECONDS",
        default=None,
        help="what a job costs before its first step (default 30)",
    )
    shards.add_argument(
        "--affected",
        action="store_true",
        help="lay out only what the change affects (BUILDLIB_BASE, "
        "GITHUB_BASE_REF or the default branch is the base)",
    )
    shards.add_argument(
        "--github-output",
        action="store_true",
        help="append each key as `key=value` to the file $GITHUB_OUTPUT "
        "names, for the workflow's job outputs",
    )
    return parser


def render(matrix: dict[str, list[dict[str, str]]], *, pretty: bool) -> str:
    """The matrix as JSON text: one line unless `pretty`, so it fits one GITHUB_OUTPUT line."""
    if pretty:
        return json.dumps(matrix, indent=2)
    return json.dumps(matrix, separators=(",", ":"))


def matrix_main(
    argv: Sequence[str] | None = None,
    *,
    manifest_modes: Sequence[str],
    shard_planner: ShardPlanner | None = None,
) -> int:
    """Parse `argv` and print the matrix on stdout (0); on bad input print one error (1).

    Called by the CLI's `matrix` command with the modes the manifest declares and, for
    `--shards`, a function that lays a mode and target out (`ci_plans`). Nothing but the
    JSON goes to stdout, so the workflow can capture it whole.
    """
    try:
        args = _parser(manifest_modes).parse_args(argv)
        if args.shards is not None or args.github_output:
            outputs = _sharded(args, manifest_modes, shard_planner)
            if args.github_output:
                _write_github_output(outputs)
            else:
                sys.stdout.write(
                    json.dumps(
                        outputs,
                        indent=2 if args.pretty else None,
                        separators=None if args.pretty else (",", ":"),
                    )
                    + "\n"
                )
            return 0
        matrix = build_matrix(
            modes=args.modes if args.modes is not None else list(manifest_modes),
            targets=args.targets,
            include_cross=not args.native_only,
            known_modes=manifest_modes,
        )
    except UserError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return error.exit_code
    sys.stdout.write(render(matrix, pretty=args.pretty) + "\n")
    return 0


# -- one build over several jobs -------------------------------------------------------------

UNUSED_ROW = {"id": "unused"}  # a wave the layout does not use: its job is skipped by `if:`
FINAL_JOB = "verify"  # planning/shards.py's name for the last job


def _sharded(
    args: argparse.Namespace, manifest_modes: Sequence[str], planner: ShardPlanner | None
) -> dict[str, Any]:
    """The job outputs of the workflow's plan job for a sharded build."""
    from buildlib.integrations.ci_plans import ShardRequest

    if args.shards is None:
        raise MatrixError("--github-output goes with --shards", fix="add --shards N")
    if args.shards < 1:
        raise MatrixError(
            f"--shards {args.shards}: at least one job is needed", fix="pass --shards 1 or more"
        )
    if args.shards > MAX_JOBS:
        raise MatrixError(
            f"--shards {args.shards}: GitHub runs at most {MAX_JOBS} jobs of a matrix",
            fix=f"pass --shards {MAX_JOBS} or fewer",
        )
    if args.waves is not None and args.waves < 1:
        raise MatrixError(
            f"--waves {args.waves}: at least one wave is needed",
            fix="pass --waves 1 or more (the workflow's wave jobs)",
        )
    if args.job_overhead is not None and args.job_overhead < 0:
        raise MatrixError(
            f"--job-overhead {args.job_overhead}: negative",
            fix="pass the seconds a CI job spends before its first step",
        )
    if args.modes is None or len(_unique(args.modes)) != 1:
        raise MatrixError(
            "--shards lays out one mode's graph",
            fix="name it: --modes " + (manifest_modes[0] if manifest_modes else "production"),
        )
    targets = _unique(args.targets) if args.targets is not None else [host_triple()]
    problems = [*_mode_problems(args.modes, manifest_modes), *_target_problems(targets)]
    if len(targets) != 1:
        problems.append("--shards lays out one target's graph")
    if problems:
        raise MatrixError(
            "; ".join(problems), fix=_fix(manifest_modes) + " (one of each with --shards)"
        )
    if planner is None:
        raise MatrixError("--shards needs the manifest", fix="run `buildlib matrix --shards N`")
    entry = MatrixEntry(mode=args.modes[0], target=TARGETS[targets[0]])
    layout = planner(
        ShardRequest(
            mode=entry.mode,
            target=entry.target.triple,
            shards=args.shards,
            waves=args.waves,
            overhead=args.job_overhead,
            affected=args.affected,
        )
    )
    return shard_outputs(layout, entry, waves=args.waves)


def shard_outputs(
    layout: ShardPlan | None, entry: MatrixEntry, *, waves: int | None
) -> dict[str, Any]:
    """`sharded`, `waves` (how many are used, "0" when nothing is to be built), `wave1`..
    `waveW` (W = `waves`, else as many as used; an unused wave holds UNUSED_ROW) and
    `verify`, each a `{"include": [...]}` matrix whose rows carry `id`, `wave`, `steps`
    (space-separated) and the keys of a normal matrix row."""
    used = layout.waves if layout is not None else 0
    slots = max(waves or used, used)
    outputs: dict[str, Any] = {"sharded": "true", "waves": str(used)}
    rows: dict[int, list[dict[str, str]]] = {}

    def row(job_id: str, wave: int, steps: Sequence[str]) -> dict[str, str]:
        return {
            **entry.as_json(),
            "id": job_id,
            "wave": str(wave),
            "steps": " ".join(steps),
            "artifact_name": f"{entry.artifact_name}-{job_id}",
        }

    # With nothing to build (--affected found nothing) the final job still runs, alone.
    final = row(FINAL_JOB, used + 1, ())
    for job in layout.jobs if layout is not None else ():
        if job.final:
            final = row(job.id, job.wave, job.steps)
        else:
            rows.setdefault(job.wave, []).append(row(job.id, job.wave, job.steps))
    for wave in range(1, slots + 1):
        outputs[f"wave{wave}"] = {"include": rows.get(wave, [UNUSED_ROW])}
    outputs["verify"] = {"include": [final]}
    return outputs


def _write_github_output(outputs: dict[str, Any]) -> None:
    path = os.environ.get("GITHUB_OUTPUT", "")
    if not path:
        raise MatrixError(
            "--github-output: $GITHUB_OUTPUT is not set (GitHub Actions sets it in every step)",
            fix="run it in a workflow step, or drop --github-output to print the JSON",
        )
    compact = (",", ":")
    lines = [
        f"{key}={value if isinstance(value, str) else json.dumps(value, separators=compact)}"
        for key, value in outputs.items()
    ]
    with open(path, "a", encoding="utf-8") as handle:  # noqa: PTH123 - GitHub's own file
        handle.write("\n".join(lines) + "\n")
    sys.stdout.write(json.dumps(outputs, separators=(",", ":")) + "\n")
