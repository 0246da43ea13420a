"""The manifest changes that make a step's declaration cover what it did, as TOML to paste.

`propose` turns one step's findings into additions (`inputs`, `outputs`, `tools`,
`depends_on`), generalised by `globs` and with mode- and target-specific values put back
as placeholders. `render_toml` prints, per step, the full new value of each key that
changes (a TOML array cannot be extended by pasting a fragment), the existing entries
first and as written, so the lines replace the old ones in the step's `[[step]]` table;
new `[tools]` entries come in one block at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from buildlib.audit import globs
from buildlib.audit.declared import Declarations, StepInputs, literal_prefix
from buildlib.audit.findings import StepFindings
from buildlib.audit.programs import ToolFinding
from buildlib.core.records import field, record
from buildlib.incremental.filehash import FileHasher
from buildlib.incremental.outputs import OutputScope, expand_outputs, overlap

KEYS = ("inputs", "outputs", "tools", "depends_on")


@record
class StepFix:
    """Entries to add to one step's keys (templates put back), and new [tools] entries."""

    step: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    new_tools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unwritable: tuple[str, ...] = ()  # paths TOML cannot hold (not UTF-8)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, key) for key in KEYS) and not self.new_tools


def propose(
    name: str,
    findings: StepFindings,
    tools: Sequence[ToolFinding],
    *,
    decl: Declarations,
    inputs: StepInputs,
) -> StepFix:
    """The smallest additions that cover `findings` and `tools` for step `name`."""
    step = decl.step(name)
    root = decl.root
    blocked = _blocker(decl)
    new_inputs = {f.path for f in findings.undeclared_inputs if f.fix == "inputs"}
    hasher = FileHasher(root)

    def selects(directory: str) -> frozenset[str]:
        return frozenset(hasher.expand([globs.escape(directory) + "/**"], inputs.exclude))

    input_globs = globs.cover_inputs(new_inputs, selects=selects, blocked=blocked)

    new_outputs = {f.path for f in findings.undeclared_outputs if f.fixable}
    own = OutputScope(step.outputs)

    def holds(directory: str) -> frozenset[str]:
        return frozenset(expand_outputs(root, [globs.escape(directory)]))

    def owned(path: str) -> bool:
        return path in new_outputs or own.owner(path) is not None

    others = {s: decl.step(s).outputs for s in decl.plan.steps if s != name}
    output_globs = globs.cover_outputs(
        new_outputs, holds=holds, owned=owned, created=findings.created_dirs, blocked=blocked
    )
    if output_globs and overlap({**others, name: (*step.outputs, *output_globs)}) is not None:
        output_globs = sorted(globs.escape(p) for p in new_outputs)  # literal files only

    depends = sorted(
        {
            f.producer
            for f in findings.undeclared_inputs
            if f.fix == "depends_on" and f.producer is not None
        }
    )
    added_tools = sorted({t.name for t in tools})
    new_tools = {t.name: t.version_command for t in tools if not t.existing}
    variables = decl.variables

    def shown(patterns: Sequence[str]) -> tuple[list[str], list[str]]:
        ok = [p for p in patterns if _writable(p)]
        return [globs.templatize(p, variables) for p in ok], [
            p for p in patterns if not _writable(p)
        ]

    shown_inputs, bad_inputs = shown(input_globs)
    shown_outputs, bad_outputs = shown(output_globs)
    return StepFix(
        step=name,
        inputs=tuple(shown_inputs),
        outputs=tuple(shown_outputs),
        tools=tuple(added_tools),
        depends_on=tuple(depends),
        new_tools=new_tools,
        unwritable=(*bad_inputs, *bad_outputs),
    )


def _blocker(decl: Declarations) -> Callable[[str], bool]:
    """Directories never taken whole: the root, and any holding or below a declared
    output or `clean` path of any step."""
    prefixes = [literal_prefix(p) for p in decl.declared_paths()]

    def blocked(directory: str) -> bool:
        if directory in ("", "."):
            return True
        return any(
            p in ("", directory) or p.startswith(directory + "/") or directory.startswith(p + "/")
            for p in prefixes
        )

    return blocked


def _writable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def render_toml(fixes: Sequence[StepFix], decl: Declarations) -> str:
    """The TOML to paste: per step, the new full value of each key that changes; then the
    new [tools] entries. Empty when nothing needs fixing."""
    blocks: list[str] = []
    new_tools: dict[str, tuple[str, ...]] = {}
    for fix in fixes:
        if fix.empty:
            continue
        spec = decl.manifest.steps[fix.step]
        lines = [f'# [[step]] name = "{fix.step}": replace these keys']
        for key in KEYS:
            added = getattr(fix, key)
            if not added:
                continue
            current: tuple[str, ...] = getattr(spec, key)
            merged = [*current, *(a for a in added if a not in current)]
            lines.append(toml_array(key, merged))
        blocks.append("\n".join(lines))
        new_tools.update(fix.new_tools)
    if new_tools:
        lines = ["# [tools]: add these entries"]
        lines.extend(toml_array(name, list(argv)) for name, argv in sorted(new_tools.items()))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def toml_array(key: str, values: Sequence[str], width: int = 100) -> str:
    """`key = ["a", "b"]`, one value per line when that is too wide."""
    items = [toml_string(v) for v in values]
    one = f"{toml_key(key)} = [{', '.join(items)}]"
    if len(one) <= width:
        return one
    return f"{toml_key(key)} = [\n" + "".join(f"  {i},\n" for i in items) + "]"


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, for text that is valid UTF-8; TOML
    also wants DEL escaped)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return toml_string(key)
