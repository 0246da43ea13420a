"""One traced step's accesses compared with what the manifest declares for it.

`classify` is pure over its arguments (a trace already narrowed to the workspace and the
declarations) apart from asking the file system whether a path is a file. What the
fingerprint already answers for is never a finding: the step's own outputs, the outputs
and `clean` intermediates of the steps it depends on, and ignored paths.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from buildlib.audit.declared import Declarations, Ignores, StepInputs, is_file
from buildlib.audit.trace_result import TraceResult
from buildlib.core.records import record


@record
class InputFinding:
    """A workspace file the step read, ran or looked at that its inputs do not select.

    `fix` is "inputs" (add a glob), "depends_on" (the file is `producer`'s output or
    intermediate) or "none" (`detail` says why no declaration can cover it)."""

    path: str
    access: str  # "read" | "executed" | "checked" (existence or metadata only)
    fix: str
    producer: str | None = None
    detail: str = ""


@record
class OutputFinding:
    """A workspace file the step left created, modified or deleted outside its outputs
    and every step's `clean` paths; `fixable` when declaring it as an output is right."""

    path: str
    change: str  # "created" | "written" (maybe created) | "modified" (metadata) | "deleted"
    fixable: bool
    detail: str = ""


@record
class StepFindings:
    undeclared_inputs: tuple[InputFinding, ...]
    undeclared_outputs: tuple[OutputFinding, ...]
    unread_inputs: tuple[str, ...]  # hint: selected by `inputs`, never touched
    missing_probes: tuple[str, ...]  # hint: looked for, absent, selected by no input glob
    created_dirs: frozenset[str]  # directories the step made (for output proposals)


def classify(
    trace: TraceResult, *, name: str, decl: Declarations, inputs: StepInputs, ignored: Ignores
) -> StepFindings:
    """Findings for step `name` from its workspace-relative trace."""
    step = _Step(trace, name, decl, inputs, ignored)
    return StepFindings(
        undeclared_inputs=tuple(step.inputs()),
        undeclared_outputs=tuple(step.outputs()),
        unread_inputs=tuple(
            sorted(
                inputs.files
                - trace.read
                - trace.executed
                - trace.stat_only
                - trace.inputs
                - trace.written
            )
        ),
        missing_probes=tuple(sorted(step.missing())),
        created_dirs=frozenset(p for p in trace.created if (decl.root / p).is_dir()),
    )


class _Step:
    """The arguments of `classify`, shared by its three questions."""

    def __init__(
        self,
        trace: TraceResult,
        name: str,
        decl: Declarations,
        inputs: StepInputs,
        ignored: Ignores,
    ) -> None:
        self.trace = trace
        self.name = name
        self.decl = decl
        self.declared = inputs
        self.ignored = ignored
        self.root: Path = decl.root

    def answered(self, path: str) -> bool:
        """Ignored, or something the fingerprint already covers."""
        return (
            self.ignored(path)
            or self.declared.covers(path)
            or self.decl.provided_upstream(self.name, path)
        )

    def inputs(self) -> list[InputFinding]:
        trace = self.trace
        checked = {p for p in trace.stat_only - trace.outputs if is_file(self.root, p)}
        others = [s for s in self.decl.plan.steps if s != self.name]
        found: list[InputFinding] = []
        for path in sorted(trace.inputs | checked):
            if self.answered(path):
                continue
            access = (
                "executed"
                if path in trace.executed
                else "read"
                if path in trace.inputs
                else "checked"
            )
            producer = self.decl.output_owner(path, besides=self.name) or self.decl.clean_owner(
                path, others
            )
            excluded = self.declared.excluded_by(path)
            if producer is not None and producer in self.decl.downstream(self.name):
                found.append(
                    InputFinding(
                        path=path,
                        access=access,
                        fix="none",
                        producer=producer,
                        detail=f"made by step '{producer}', which depends on this one: the "
                        "steps need another order",
                    )
                )
            elif producer is not None:
                found.append(
                    InputFinding(
                        path=path,
                        access=access,
                        fix="depends_on",
                        producer=producer,
                        detail=f"made by step '{producer}'",
                    )
                )
            elif excluded is not None:
                found.append(
                    InputFinding(
                        path=path,
                        access=access,
                        fix="none",
                        detail=f"excluded from inputs by '{excluded}': make the step that "
                        "writes it declare it as an output, and depend on that step",
                    )
                )
            else:
                found.append(InputFinding(path=path, access=access, fix="inputs"))
        return found

    def outputs(self) -> list[OutputFinding]:
        trace = self.trace
        left = {p for p in trace.outputs if is_file(self.root, p)}
        renamed_to = {dst for _, dst in trace.renamed}
        found: list[OutputFinding] = []
        for path in sorted(left | trace.removed):
            if (
                self.ignored(path)
                or self.decl.outputs[self.name].owner(path) is not None
                or self.decl.clean_owner(path) is not None
            ):
                continue
            change = (
                "deleted"
                if path in trace.removed
                else "created"
                if path in trace.created
                else "written"
                if path in trace.written or path in renamed_to
                else "modified"
            )
            other = self.decl.output_owner(path, besides=self.name)
            if other is not None:
                found.append(
                    OutputFinding(
                        path=path,
                        change=change,
                        fixable=False,
                        detail=f"declared as an output of step '{other}': two steps must not "
                        "write the same path",
                    )
                )
            elif self.declared.covers(path):
                found.append(
                    OutputFinding(
                        path=path,
                        change=change,
                        fixable=False,
                        detail="also one of the step's inputs: the step changes its own input",
                    )
                )
            elif change == "deleted":
                found.append(
                    OutputFinding(
                        path=path,
                        change=change,
                        fixable=False,
                        detail="existed before the step, which removed it",
                    )
                )
            else:
                found.append(OutputFinding(path=path, change=change, fixable=True))
        return found

    def missing(self) -> set[str]:
        found: set[str] = set()
        for path in self.trace.probed_missing - self.trace.outputs:
            if (
                self.answered(path)
                or self.declared.watches(path)
                or self.decl.clean_owner(path) is not None
            ):
                continue
            # not a lookup below a file ("a.ts/package.json")
            if (self.root / posixpath.dirname(path)).is_dir():
                found.add(path)
        return found
