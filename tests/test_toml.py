"""buildlib/core/toml.py: the compiled tomli reads every text as the standard tomllib does.

tomli 2.4 and later read TOML 1.1 (trailing commas and newlines in inline tables, `\\e`
and `\\x` escapes, times without seconds), which tomllib refuses; core/toml.py uses
tomli only before 2.4, so that a manifest means the same whichever parser reads it. The
texts below are generated from fragments that include exactly those 1.1 forms.
"""

from __future__ import annotations

import inspect
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from buildlib.core import toml

_KEYS = st.sampled_from(["name", "command", "a", "b.c", '"quoted key"', "depends_on", "x-y"])
_VALUES = st.sampled_from(
    [
        '"text"',
        "'literal'",
        '"""multi\nline"""',
        '"esc \\" \\u00e9 \\t"',
        '"\\e"',  # TOML 1.1 only
        '"\\x41"',  # TOML 1.1 only
        "1",
        "-0x1f",
        "1_000",
        "3.5e2",
        "inf",
        "true",
        "1979-05-27T07:32:00Z",
        "1979-05-27",
        "07:32:00",
        "07:32",  # TOML 1.1 only
        '["a", "b",]',
        "[\n  1,\n  2\n]",
        "{ x = 1, y = 'z' }",
        "{ x = 1, }",  # TOML 1.1 only
        "{\n x = 1\n}",  # TOML 1.1 only
        "[[1], ['mixed']]",
    ]
)
_LINES = st.one_of(
    st.builds(lambda k, v: f"{k} = {v}", _KEYS, _VALUES),
    st.sampled_from(["[workspace]", "[[step]]", "[step.env]", "[modes.dev]", "# comment", ""]),
)


def _outcome(loads: object, text: str) -> object:
    try:
        return loads(text)  # type: ignore[operator]
    except tomllib.TOMLDecodeError:
        return "refused"
    except toml.TOMLDecodeError:
        return "refused"


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=12), st.data())
def test_the_compiled_parser_reads_every_text_as_tomllib(
    lines: list[str], data: st.DataObject
) -> None:
    text = "\n".join(lines) + "\n"
    if data.draw(st.booleans()):  # a damaged copy: cut, or a character dropped
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] if data.draw(st.booleans()) else text[:at] + text[at + 1 :]
    assert _outcome(toml.loads, text) == _outcome(tomllib.loads, text)


@given(st.text(max_size=200))
def test_any_text_gives_the_same_answer(text: str) -> None:
    assert _outcome(toml.loads, text) == _outcome(tomllib.loads, text)


def test_the_compiled_parser_is_the_one_in_use() -> None:
    """tomli is a dependency: the fallback to tomllib is for a bare checkout only. Its
    wheel here is the compiled one (a pure-Python tomli would be no faster)."""
    import tomli

    assert toml.TOMLDecodeError is tomli.TOMLDecodeError
    assert inspect.isbuiltin(tomli.loads), "tomli's pure-Python build is installed"
    assert issubclass(toml.TOMLDecodeError, ValueError)
