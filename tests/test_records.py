"""`buildlib.core.records.record`: the dataclass contract buildlib relies on, without codegen."""

from __future__ import annotations

from typing import ClassVar

import pytest

from buildlib.core.records import FrozenInstanceError, field, fields, record, replace


@record
class Point:
    kind: ClassVar[str] = "point"  # a class attribute, not a field
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", compare=False)


@record(frozen=False)
class Counter:
    count: int = 0


def test_keyword_only_with_defaults_and_factories() -> None:
    p = Point(x=1)
    assert (p.x, p.y, p.tags, p.note) == (1, 0, [], "")
    assert Point(x=1).tags is not Point(x=1).tags  # a fresh list each time
    with pytest.raises(TypeError):
        Point(1)  # type: ignore[call-arg]


def test_missing_and_unknown_arguments_name_the_field() -> None:
    with pytest.raises(TypeError, match="missing required keyword argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(x=1, z=2)  # type: ignore[call-arg]


def test_equality_hash_and_repr() -> None:
    assert Point(x=1, note="a") == Point(x=1, note="b")  # note is compare=False
    assert Point(x=1) != Point(x=2)
    assert Point(x=1) != (1, 0)  # type: ignore[comparison-overlap]
    a, b = Point(x=3, tags=(), note="a"), Point(x=3, tags=(), note="b")  # type: ignore[arg-type]
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert repr(Point(x=1)) == "Point(x=1, y=0, tags=[], note='')"


def test_frozen_refuses_assignment_and_mutable_does_not() -> None:
    p = Point(x=1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.x
    c = Counter()
    c.count += 1
    assert c.count == 1
    with pytest.raises(TypeError):
        hash(c)


def test_replace_and_fields() -> None:
    p = Point(x=1, y=2)
    q = replace(p, y=5)
    assert (q.x, q.y, p.y) == (1, 5, 2)
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(p, z=1)
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "note"]
    assert Point.kind == "point" and Point(x=1).kind == "point"
