"""The audit's report, for a person (`render_text`) and for tools (`to_json`).

Both say the same things per step: problems (undeclared inputs, outputs and tools,
nondeterministic outputs: each one can make a cached result wrong), hints (declared
inputs never touched, files looked for and missing, reads outside the workspace), and
the proposed manifest lines. Long hint lists are cut in the text (`HINTS_SHOWN`); the
JSON has them whole.
"""

from __future__ import annotations

from buildlib.audit.determinism import Difference
from buildlib.audit.findings import StepFindings
from buildlib.audit.fixes import toml_array
from buildlib.audit.runner import AuditReport, StepAudit
from buildlib.audit.trace_result import printable

HINTS_SHOWN = 5
SCHEMA_VERSION = 1


def render_text(report: AuditReport) -> str:
    how = [f"mode {report.mode}", f"target {report.target}"]
    if report.clean:
        how.append("outputs and intermediates removed first")
    if report.twice:
        how.append("each step run twice")
    lines = [f"audit of {len(report.steps)} step(s) under strace: " + ", ".join(how)]
    if not report.clean:
        lines.append(
            "(intermediates were kept: a tool with incremental state of its own, as "
            "cargo, may have skipped work; --clean traces cold runs)"
        )
    for name, why in report.not_audited:
        lines.append(f"not audited: {name} ({why})")
    for step in report.steps:
        lines.append("")
        lines.extend(_step_text(step))
    lines.append("")
    lines.append(_totals(report))
    if report.toml:
        lines.append("")
        lines.append("proposed fix, to paste into " + report.manifest + ":")
        lines.append("")
        lines.append(report.toml)
    return "\n".join(lines)


def _step_text(step: StepAudit) -> list[str]:
    if step.findings is None:
        return [f"{step.name}: {step.status.upper()}: {step.note}"]
    head = f"{step.name} ({step.duration:.1f}s): "
    head += f"{step.problems} problem(s)" if step.problems else "clean"
    if step.status != "audited":
        head += f"; {step.status.upper()}"
    lines = [head]
    f = step.findings
    if f is not None and f.undeclared_inputs:
        lines.append(
            '  undeclared inputs (not selected by the step\'s `inputs`; "checked": '
            "looked at, content not read):"
        )
        for i in f.undeclared_inputs:
            fix = {
                "inputs": "",
                "depends_on": f" -> depends_on {i.producer}",
                "none": f" ({i.detail})",
            }[i.fix]
            lines.append(f"    {i.access:<9}{printable(i.path)}{fix}")
    if f is not None and f.undeclared_outputs:
        lines.append("  undeclared outputs (outside `outputs` and every step's `clean`):")
        for o in f.undeclared_outputs:
            extra = f" ({o.detail})" if o.detail else ""
            lines.append(f"    {o.change:<9}{printable(o.path)}{extra}")
    lines.extend(_tools_text(step))
    if step.nondeterministic:
        lines.append("  nondeterministic outputs (two runs from clean outputs differ):")
        lines.extend(f"    {_difference(d)}" for d in step.nondeterministic)
    if step.note:
        lines.append(f"  note: {step.note}")
    lines.extend(_hints(step, f))
    return lines


def _tools_text(step: StepAudit) -> list[str]:
    if not step.tools:
        return []
    lines = ["  undeclared tools (run, but their versions are not in the fingerprint):"]
    for t in step.tools:
        if t.existing:
            how = f"add '{t.name}' to the step's tools"
        else:
            how = "new [tools] entry " + toml_array(t.name, list(t.version_command))
            if not t.version_checked:
                how += " (did not answer here: write the command that prints its version)"
        lines.append(f"    {t.name:<9}{printable(t.program)}: {how}")
    return lines


def _hints(step: StepAudit, f: StepFindings | None) -> list[str]:
    groups: list[tuple[str, tuple[str, ...]]] = []
    if f is not None:
        groups.append(
            ("declared inputs it never touched (a glob of sources is fine)", f.unread_inputs)
        )
        groups.append(
            ("looked for, missing, and no input glob would see one appear", f.missing_probes)
        )
    groups.append(
        ("read outside the workspace (no declaration can cover these)", step.outside_reads)
    )
    groups.append(("tracer warnings", step.warnings))
    lines: list[str] = []
    for title, items in groups:
        if not items:
            continue
        shown = ", ".join(printable(p) for p in items[:HINTS_SHOWN])
        more = f" and {len(items) - HINTS_SHOWN} more" if len(items) > HINTS_SHOWN else ""
        lines.append(f"  hint: {title} ({len(items)}): {shown}{more}")
    return lines


def _difference(d: Difference) -> str:
    if d.offset is None:
        return f"{printable(d.path)}: {d.note}"
    sizes = "" if d.sizes[0] == d.sizes[1] else f", {d.sizes[0]} then {d.sizes[1]} bytes"
    return (
        f"{printable(d.path)}: first difference at byte {d.offset}{sizes}: "
        f"{d.first!r} then {d.second!r}"
    )


def _totals(report: AuditReport) -> str:
    failed = [s.name for s in report.steps if s.status != "audited"]
    dirty = [s.name for s in report.steps if s.status == "audited" and s.problems]
    clean = len(report.steps) - len(failed) - len(dirty)
    parts = [f"{clean} clean"]
    if dirty:
        parts.append(f"{len(dirty)} with problems ({', '.join(dirty)})")
    if failed:
        parts.append(f"{len(failed)} not audited ({', '.join(failed)})")
    verdict = "audit passed" if report.ok else "audit found problems"
    return f"{verdict}: " + ", ".join(parts) + f"; {report.duration:.1f}s"


def to_json(report: AuditReport) -> dict[str, object]:
    """The report as plain data (paths with non-UTF-8 bytes escaped)."""
    return {
        "version": SCHEMA_VERSION,
        "manifest": report.manifest,
        "mode": report.mode,
        "target": report.target,
        "twice": report.twice,
        "clean": report.clean,
        "ok": report.ok,
        "duration": round(report.duration, 3),
        "not_audited": [{"step": n, "why": why} for n, why in report.not_audited],
        "steps": [_step_json(s) for s in report.steps],
        "toml": report.toml,
    }


def _step_json(step: StepAudit) -> dict[str, object]:
    f = step.findings
    out: dict[str, object] = {
        "name": step.name,
        "status": step.status,
        "exit_code": step.exit_code,
        "duration": round(step.duration, 3),
        "log": step.log,
        "note": step.note,
        "problems": step.problems,
        "undeclared_inputs": []
        if f is None
        else [
            {
                "path": printable(i.path),
                "access": i.access,
                "fix": i.fix,
                "producer": i.producer,
                "detail": i.detail,
            }
            for i in f.undeclared_inputs
        ],
        "undeclared_outputs": []
        if f is None
        else [
            {
                "path": printable(o.path),
                "change": o.change,
                "fixable": o.fixable,
                "detail": o.detail,
            }
            for o in f.undeclared_outputs
        ],
        "undeclared_tools": [
            {
                "program": printable(t.program),
                "name": t.name,
                "existing": t.existing,
                "version_command": list(t.version_command),
                "version_checked": t.version_checked,
                "launcher": t.launcher,
            }
            for t in step.tools
        ],
        "nondeterministic_outputs": [
            {
                "path": printable(d.path),
                "offset": d.offset,
                "sizes": list(d.sizes),
                "first": d.first.decode("latin-1"),
                "second": d.second.decode("latin-1"),
                "note": d.note,
            }
            for d in step.nondeterministic
        ],
        "unread_inputs": [] if f is None else [printable(p) for p in f.unread_inputs],
        "missing_probes": [] if f is None else [printable(p) for p in f.missing_probes],
        "outside_reads": [printable(p) for p in step.outside_reads],
        "warnings": list(step.warnings),
    }
    fix = step.fix
    out["proposed"] = (
        None
        if fix is None or fix.empty
        else {
            "inputs": list(fix.inputs),
            "outputs": list(fix.outputs),
            "tools": list(fix.tools),
            "depends_on": list(fix.depends_on),
            "new_tools": {k: list(v) for k, v in fix.new_tools.items()},
            "unwritable": [printable(p) for p in fix.unwritable],
        }
    )
    return out
