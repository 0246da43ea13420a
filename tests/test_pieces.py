"""workspace/pieces.py and its use in manifest.py: build.toml read in pieces, so that an
edit validates only the [[step]] tables it touched (issue 17: 10,000 steps).

Two properties, each on generated input:
- whenever the text is read in pieces, the pieces mean what the whole text means, on
  texts built to fool the cut: `[[step]]` lines inside multi-line strings and arrays,
  quoted and spaced headers, tables after a step, CRLF line ends;
- a manifest loaded after any edit equals the manifest validated from scratch, errors
  included, message for message, while the steps whose tables kept their text are taken
  from the last validation (it validates only what changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import PY_TOML
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildlib.core import toml
from buildlib.core.errors import ManifestError
from buildlib.workspace import manifest as manifest_module
from buildlib.workspace import pieces
from buildlib.workspace.manifest import load_manifest

# --- the cut ----------------------------------------------------------------------------

_LINES = st.sampled_from(
    [
        "[[step]]",
        "[[artifact]]",
        "[[step]]  ",
        "[[ step ]]",
        '[["step"]]',
        "[[step]] # a comment",
        "[step]",
        "[step.env]",
        "[[step.target]]",
        "[artifact.x]",
        "[vars]",
        "[modes.dev]",
        "[workspace]",
        'name = "a"',
        'name = "b"',
        "x = 1",
        "step = 1",
        "artifact = []",
        'env = { A = "1" }',
        's = """',
        "s = '''",
        '"""',
        "'''",
        "arr = [",
        '  "[[step]]",',
        "]",
        "# [[step]]",
        "[[step]]\r",
        "\ufeff[[step]]",
        "[tools]",
        "",
    ]
)


def read_in_pieces(text: str) -> dict[str, Any] | None:
    """What manifest.py builds from the pieces, or None where it reads the whole text."""
    preamble, cut = pieces.cut(text)
    document = pieces.parse_preamble(preamble)
    if document is None or not cut:
        return None
    for piece in cut:
        table = pieces.parse_piece(piece)
        if table is None:
            return None
        document.setdefault(piece.kind, []).append(table)
    return document


def whole(text: str) -> dict[str, Any] | None:
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.lists(_LINES, max_size=14), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_pieces_mean_what_the_whole_text_means(lines: list[str], newline: str, end: bool) -> None:
    text = newline.join(lines) + (newline if end else "")
    in_pieces = read_in_pieces(text)
    if in_pieces is not None:
        assert in_pieces == whole(text)


@pytest.mark.parametrize(
    "text",
    [
        '[vars]\nx = "1"\n[[step]]\nname = "a"\n[step.env]\nA = "1"\n[[step]]\nname = "b"\n',
        '[[step]]\r\nname = "a"\r\n[[artifact]]\r\npath = "p"\r\n[[step]]\r\nname = "b"\r\n',
    ],
)
def test_a_plain_manifest_is_read_in_pieces(text: str) -> None:
    """The property above is not vacuous: the shapes manifests have are cut."""
    assert read_in_pieces(text) == whole(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        '[[step]]\nname = "a"\ns = """\n[[step]]\nname = "b"\n"""\n',  # a header in a string
        "[[step]]\nname = 'a'\ns = '''\n[[step]]\n'''\n",
        '[[step]]\nname = "a"\n[vars]\nx = "1"\n',  # a table after a step
        '[[step]]\nname = "a"\n[[ step ]]\nname = "b"\n',  # two steps in one piece
        'step = []\n[[step]]\nname = "a"\n',  # the preamble holds a step key
    ],
)
def test_a_text_the_cut_would_misread_is_read_whole(text: str) -> None:
    assert read_in_pieces(text) is None


# --- manifests loaded after an edit ---------------------------------------------------


def _step(index: int, command: str, deps: list[int], mode: str | None, tool: bool = False) -> str:
    lines = [
        "[[step]]",
        f'name = "s{index}"',
        f'command = [{PY_TOML}, "-c", "pass", "{command}"]',
        f"depends_on = {[f's{d}' for d in deps]!r}".replace("'", '"'),
        f'outputs = ["out/s{index}"]',
    ]
    if mode is not None:
        lines.append(f'modes = ["{mode}"]')
    if tool:
        lines.append('tools = ["t"]')
    return "\n".join(lines) + "\n"


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A preamble and 1-8 [[step]] tables, each depending on earlier ones."""
    modes = draw(st.sampled_from([["dev", "prod"], ["dev"], []]))
    preamble = "".join(f"[modes.{m}]\n" for m in modes) + "[vars]\nx = 'y'\n"
    preamble += "[tools]\nt = ['t', '--version']\n"
    steps = [
        _step(
            i,
            draw(st.sampled_from(["a", "b", "{x}"])),
            draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else [],
            draw(st.sampled_from([None, *modes])),
            draw(st.booleans()),
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    return preamble, steps


_EDITS = (
    "change a command",
    "insert a step",
    "remove a step",
    "swap two steps",
    "rename a mode",
    "duplicate a step",
    "depend on a missing step",
    "break the syntax of a step",
    "put a header in a string",
    "add an artifact",
    "add a table after the steps",
    "rename a tool",
)


def _edit(data: st.DataObject, preamble: str, steps: list[str], edit: str) -> tuple[str, list[str]]:
    """`edit` made to the preamble and steps: the edited pair."""
    at = data.draw(st.integers(0, len(steps) - 1))
    steps = list(steps)
    if edit == "change a command":
        steps[at] = steps[at].replace('"pass"', '"pass", "changed"')
    elif edit == "insert a step":
        steps.insert(at, _step(90 + at, "new", [], None))
    elif edit == "remove a step" and len(steps) > 1:
        del steps[at]
    elif edit == "swap two steps":
        other = data.draw(st.integers(0, len(steps) - 1))
        steps[at], steps[other] = steps[other], steps[at]
    elif edit == "rename a tool":
        preamble = preamble.replace("\nt = ['t'", "\nu = ['t'")
    elif edit == "rename a mode":
        preamble = preamble.replace("[modes.dev]", "[modes.develop]")
    elif edit == "duplicate a step":
        steps.append(steps[at])
    elif edit == "depend on a missing step":
        steps[at] = steps[at].replace("depends_on = [", 'depends_on = ["nowhere", ', 1)
    elif edit == "break the syntax of a step":
        steps[at] = steps[at].replace("outputs = [", "outputs = [[", 1)
    elif edit == "put a header in a string":
        steps[at] += 'description = """\n[[step]]\nname = "hidden"\n"""\n'
    elif edit == "add an artifact":
        steps.insert(at, '[[artifact]]\npath = "out/s0"\nstep = "s0"\nkind = "file"\n')
    elif edit == "add a table after the steps":
        steps.append('[vars.late]\nz = "1"\n')
    return preamble, steps


def _outcome(path: Path, **options: bool) -> object:
    try:
        return load_manifest(path, **options)
    except ManifestError as exc:
        return exc.render()


def _from_scratch(path: Path) -> object:
    check = manifest_module._Checker(path)
    try:
        return manifest_module._validate(
            check, path, manifest_module._parse(check, path.read_bytes())
        )
    except ManifestError as exc:
        return exc.render()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    manifest=manifests(),
    edits=st.lists(st.sampled_from(_EDITS), min_size=1, max_size=3),
    data=st.data(),
)
def test_an_edited_manifest_equals_the_one_validated_from_scratch(
    tmp_path_factory: pytest.TempPathFactory,
    manifest: tuple[str, list[str]],
    edits: list[str],
    data: st.DataObject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path_factory.mktemp("ws")
    path = root / "build.toml"
    preamble, steps = manifest
    path.write_text(preamble + "".join(steps))
    assert isinstance(_outcome(path, remember=True), manifest_module.Manifest)
    validated: list[str] = []
    real_load_step = manifest_module._load_step

    def counting(*args: Any, **kwargs: Any) -> Any:
        validated.append(args[2])
        return real_load_step(*args, **kwargs)

    remembered_text = path.read_text()
    # A text these edits made is read whole (workspace/pieces.py), every step validated.
    uncut = {"put a header in a string", "add a table after the steps"}
    for number, edit in enumerate(edits):
        before = path.read_text()
        preamble, steps = _edit(data, preamble, steps, edit)
        path.write_text(preamble + "".join(steps))
        remember = data.draw(st.booleans())
        validated.clear()
        with monkeypatch.context() as patch:
            patch.setattr(manifest_module, "_load_step", counting)
            edited = _outcome(path, remember=remember)
        assert edited == _from_scratch(path)
        if isinstance(edited, manifest_module.Manifest):
            cuttable = not uncut.intersection(edits[: number + 1])
            if edit == "change a command" and remembered_text == before and cuttable:
                assert len(validated) <= 1  # the other steps were taken as validated
            if remember:
                remembered_text = path.read_text()
            # What was remembered for this text is what it says: the next load agrees.
            assert load_manifest(path) == edited


def test_origins_name_the_table_and_what_its_validation_read(tmp_path: Path) -> None:
    """An unchanged table keeps its origin (plans are remembered under it); a changed
    table, or a renamed mode (which a step's `modes` is checked against), gives a new one."""
    path = tmp_path / "build.toml"
    base = "[modes.dev]\n" + _step(0, "a", [], None) + _step(1, "b", [0], "dev")
    path.write_text(base)
    first = load_manifest(path, remember=True).steps
    assert all(step.origin for step in first.values())
    path.write_text(base.replace('"b"]', '"c"]'))
    second = load_manifest(path, remember=True).steps
    assert second["s0"].origin == first["s0"].origin
    assert second["s1"].origin != first["s1"].origin
    path.write_text("[modes.prod]\n" + base)
    third = load_manifest(path).steps
    assert third["s0"].origin != first["s0"].origin
