"""Keyword-only record classes, without `dataclasses`' start-up cost.

Every build starts a fresh interpreter, and `@dataclass` compiles six small
functions per class with `exec`: ~0.5 ms a class, ~15 ms for buildlib's classes,
plus ~7 ms to import `dataclasses` itself (it pulls in `inspect`), about a sixth of a
no-op build. `record` gives the same contract for the way buildlib uses dataclasses
(keyword-only `__init__`, defaults and `field(default_factory=...)`, `__eq__`,
`__hash__` when frozen, `__repr__`, `replace`) with shared generic methods and no
code generation. `typing.dataclass_transform` tells type checkers it behaves like
`@dataclass(frozen=True, kw_only=True)`; pass `frozen=False` for a mutable one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")
_MISSING: Any = object()
_FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    """A field's default, default factory and whether it takes part in `==`."""

    __slots__ = ("compare", "default", "default_factory", "name")

    def __init__(
        self, *, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | Any = _MISSING,
    compare: bool = True,
) -> Any:
    """Like `dataclasses.field`: a default factory, or a field left out of `==` and hash."""
    return Field(default=default, default_factory=default_factory, compare=compare)


def fields(cls_or_record: object) -> tuple[Field, ...]:
    """The record's fields, in declaration order (base classes first)."""
    found: tuple[Field, ...] = getattr(cls_or_record, _FIELDS)
    return found


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of `obj` with `changes`, through `__init__` (as `dataclasses.replace`)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)


def restore(cls: type[_T], values: dict[str, Any]) -> _T:
    """The record whose fields are `values`, which must name every field: for plain data
    the engine stored from records of the same code (core/engine.py names the code), so
    neither defaults nor checks run; `__init__` is not called."""
    obj: _T = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(*, frozen: bool = True) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field, Field))
def record(
    cls: type[_T] | None = None, /, *, frozen: bool = True
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Make `cls` a keyword-only record class (frozen unless `frozen=False`)."""
    if cls is None:
        return lambda c: _make(c, frozen=frozen)
    return _make(cls, frozen=frozen)


def _make(cls: type[_T], *, frozen: bool) -> type[_T]:
    own: list[Field] = []
    # Not inspect.get_annotations: importing inspect is part of the cost this module avoids.
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if str(annotation).split("[", 1)[0].endswith("ClassVar"):  # ClassVar, typing.ClassVar
            continue
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if isinstance(value, Field):
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        own.append(spec)
    inherited = [f for f in getattr(cls, _FIELDS, ()) if f.name not in {o.name for o in own}]
    all_fields = (*inherited, *own)
    setattr(cls, _FIELDS, all_fields)
    compared = tuple(f.name for f in all_fields if f.compare)
    required = frozenset(
        f.name for f in all_fields if f.default is _MISSING and f.default_factory is _MISSING
    )
    factories = tuple(
        (f.name, f.default_factory) for f in all_fields if f.default_factory is not _MISSING
    )
    names = frozenset(f.name for f in all_fields)

    def __init__(self: Any, **kwargs: Any) -> None:  # noqa: N807
        if not required <= kwargs.keys() or not kwargs.keys() <= names:
            _bad_arguments(cls, kwargs, required, names)
        for name, factory in factories:
            if name not in kwargs:
                kwargs[name] = factory()
        self.__dict__.update(kwargs)  # defaults stay class attributes, as with dataclasses

    def __repr__(self: Any) -> str:  # noqa: N807
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in all_fields)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self: Any, other: object) -> bool:  # noqa: N807
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in compared)

    methods: dict[str, object] = {
        "__init__": __init__,
        "__repr__": __repr__,
        "__eq__": __eq__,
        "__hash__": None,
    }
    if frozen:

        def __hash__(self: Any) -> int:  # noqa: N807
            return hash(tuple(getattr(self, n) for n in compared))

        methods.update(__hash__=__hash__, __setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
    for name, method in methods.items():
        setattr(cls, name, method)
    return cls


def _bad_arguments(
    cls: type, kwargs: dict[str, Any], required: frozenset[str], names: frozenset[str]
) -> None:
    missing = sorted(required - kwargs.keys())
    if missing:
        raise TypeError(f"{cls.__name__}() missing required keyword argument '{missing[0]}'")
    unexpected = sorted(kwargs.keys() - names)
    raise TypeError(f"{cls.__name__}() got an unexpected keyword argument '{unexpected[0]}'")


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field '{name}'")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field '{name}'")
