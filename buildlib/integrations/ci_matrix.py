"""The CI build matrix: one GitHub Actions job per (mode, target), each on its native runner.

`build_matrix` only decides; it reads the target table and returns plain data, so it is
tested without GitHub. `matrix_main` is the `python -m buildlib matrix` / `nox -s matrix`
entry point: it prints the matrix as JSON on stdout for the workflow's `plan` job
(`ci/workflows/build.yml`), which hands it to `strategy.matrix` through `fromJSON`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.workspace.targets import TARGETS, Target, host_triple

# Modes end up inside nox session names (`build-3.12(mode='x')`) and artifact names,
# which GitHub restricts; a quote or slash here would break both silently.
MODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
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
    problems = [f"mode name {m!r} is not usable in a session name" for m in modes
                if not MODE_NAME.match(m)]
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
        "--modes", nargs="+", metavar="MODE", default=list(manifest_modes),
        help="modes to build (default: every mode in the manifest: %(default)s)",
    )
    parser.add_argument(
        "--targets", nargs="+", metavar="TRIPLE", default=None,
        help="target triples (default: all of " + ", ".join(TARGETS) + ")",
    )
    parser.add_argument(
        "--native-only", action="store_true",
        help="keep only this host's target (no jobs for other platforms)",
    )
    style = parser.add_mutually_exclusive_group()
    style.add_argument(
        "--json", action="store_true",
        help="one compact line, for `echo \"matrix=$(...)\" >> $GITHUB_OUTPUT` (the default)",
    )
    style.add_argument("--pretty", action="store_true", help="indented, for reading")
    return parser


def render(matrix: dict[str, list[dict[str, str]]], *, pretty: bool) -> str:
    """The matrix as JSON text: one line unless `pretty`, so it fits one GITHUB_OUTPUT line."""
    if pretty:
        return json.dumps(matrix, indent=2)
    return json.dumps(matrix, separators=(",", ":"))


def matrix_main(argv: Sequence[str] | None = None, *, manifest_modes: Sequence[str]) -> int:
    """Parse `argv` and print the matrix on stdout (0); on bad input print one error (1).

    Called by the CLI's `matrix` command with the modes the manifest declares. Nothing
    but the JSON goes to stdout, so the workflow can capture it whole.
    """
    try:
        args = _parser(manifest_modes).parse_args(argv)
        matrix = build_matrix(
            modes=args.modes,
            targets=args.targets,
            include_cross=not args.native_only,
            known_modes=manifest_modes,
        )
    except UserError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return error.exit_code
    sys.stdout.write(render(matrix, pretty=args.pretty) + "\n")
    return 0
