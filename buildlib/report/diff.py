"""`buildlib diff REPORT_A REPORT_B`: per step, what differs between two builds' fingerprints.

For "CI missed where my laptop hit": download CI's `.buildlib/reports/latest.json`
(or any `<build_id>.json`) and compare it with yours. Each report keeps every step's
fingerprint components (`fingerprint_components`, docs/report.schema.json); the
sentences are those of `explain-miss` (`cache/fpdiff.py`), with "in A" and "in B".
Exit status as diff(1): 0 when no step's fingerprint differs, 1 when one does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from buildlib.cache.fpdiff import Sides, differences
from buildlib.core.errors import UserError

SIDES = Sides(here="in A", there="in B")


class ReportError(UserError):
    """A report that cannot be read: exit 2, as diff(1) does for trouble (1 is "differ")."""

    exit_code = 2


def diff_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "report_a",
        type=Path,
        metavar="REPORT_A",
        help="a build's JSON report (.buildlib/reports/latest.json)",
    )
    parser.add_argument(
        "report_b",
        type=Path,
        metavar="REPORT_B",
        help="another build's JSON report, e.g. downloaded from CI",
    )
    parser.add_argument(
        "--all", action="store_true", help="also list the steps whose fingerprints are equal"
    )


def diff_command(args: argparse.Namespace, context: None) -> int:
    del context
    a, b = load_report(args.report_a), load_report(args.report_b)
    for report, path in ((a, args.report_a), (b, args.report_b)):
        fill_recorded_components(report, path)
    lines, differ = diff_reports(a, b, every_step=args.all)
    print(f"A: {args.report_a} ({_describe(a)})")
    print(f"B: {args.report_b} ({_describe(b)})")
    print("\n".join(lines))
    return 1 if differ else 0


def load_report(path: Path) -> dict[str, Any]:
    """A report, checked enough to compare; UserError naming the file otherwise."""
    fix = "pass a buildlib build report (.buildlib/reports/latest.json or <build_id>.json)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it: {exc.strerror or exc}", fix=fix) from None
    except (ValueError, UnicodeDecodeError):
        raise ReportError(f"{path}: not valid JSON", fix=fix) from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ReportError(f"{path}: not a build report (no 'steps' list)", fix=fix)
    if data.get("schema_version") != 1:
        raise ReportError(
            f"{path}: report schema_version {data.get('schema_version')!r}, this buildlib reads 1",
            fix="compare reports of one buildlib version",
        )
    for index, step in enumerate(data["steps"]):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            raise ReportError(f"{path}: steps[{index}] has no name", fix=fix)
    return data


def fill_recorded_components(report: dict[str, Any], path: Path) -> None:
    """Give each step that was up to date the components its fingerprint was recorded
    with (a report keeps only those of the steps its build ran or restored), read from
    the state of the workspace that wrote it: the one whose `.buildlib/reports/` holds
    `path`, else the report's own `workspace`, when that is on this machine. Only a
    record of the same fingerprint counts."""
    from buildlib.core.layout import BuildDir
    from buildlib.run.step_state import StepState

    mode, target = report.get("mode"), report.get("target")
    if not isinstance(mode, str) or not isinstance(target, str):
        return
    reports = path.absolute().parent
    if reports.name == "reports" and reports.parent.name == ".buildlib":
        build_dir = reports.parent
    elif isinstance(report.get("workspace"), str):
        build_dir = Path(report["workspace"]) / ".buildlib"
    else:
        return
    state = StepState(build_dir / "state" / BuildDir.tag(mode, target))
    for step in report["steps"]:
        if step.get("fingerprint_components") is not None or step.get("outcome") != "cached":
            continue
        fingerprint = step.get("fingerprint")
        if isinstance(fingerprint, str):
            step["fingerprint_components"] = state.components(step["name"], fingerprint)


def diff_reports(
    a: dict[str, Any], b: dict[str, Any], *, every_step: bool = False
) -> tuple[list[str], bool]:
    """The lines per step (A's order, then B's other steps) and whether any differs."""
    steps_a = {s["name"]: s for s in a["steps"]}
    steps_b = {s["name"]: s for s in b["steps"]}
    lines: list[str] = []
    if (a.get("mode"), a.get("target")) != (b.get("mode"), b.get("target")):
        lines.append(
            f"the builds differ in mode or target ({a.get('mode')}, {a.get('target')} "
            f"in A; {b.get('mode')}, {b.get('target')} in B): every fingerprint does"
        )
    differ = False
    for name in [*steps_a, *(n for n in steps_b if n not in steps_a)]:
        step_a, step_b = steps_a.get(name), steps_b.get(name)
        if step_a is None or step_b is None:
            lines.append(f"{name}: only {'in A' if step_b is None else 'in B'}")
            differ = True
            continue
        found = _step_lines(step_a, step_b)
        if found is None:
            if every_step:
                lines.append(f"{name}: same fingerprint")
            continue
        differ = True
        lines.append(f"{name}:")
        lines += [f"  {line}" for line in found]
    if not differ:
        lines.append("no step's fingerprint differs")
    return lines, differ


def _step_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str] | None:
    """What differs between one step's two fingerprints; None when they are equal."""
    if a.get("fingerprint") == b.get("fingerprint"):  # equal, or neither has one (skipped)
        return None
    mine, theirs = _components(a), _components(b)
    if mine is None or theirs is None:
        missing = " and ".join(side for side, c in (("A", mine), ("B", theirs)) if c is None)
        return [
            f"fingerprints differ; no components recorded in {missing} (the step "
            "failed or never ran there; or it was up to date and the state of the "
            "workspace that wrote the report, which holds them, is not on this machine "
            "or has moved on; or an older buildlib wrote the report)"
        ]
    found = differences(mine, theirs, SIDES)
    return found or ["no component differs, but the digests do (another buildlib version?)"]


def _components(step: dict[str, Any]) -> dict[str, str] | None:
    found = step.get("fingerprint_components")
    if not isinstance(found, dict):
        return None
    return {str(k): str(v) for k, v in found.items()}


def _describe(report: dict[str, Any]) -> str:
    host = f" on {report['host']}" if report.get("host") else ""
    return (
        f"build {report.get('build_id', '?')}, {report.get('mode', '?')}, "
        f"{report.get('target', '?')}{host}"
    )
