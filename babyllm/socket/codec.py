"""Frozen dataclasses as plain JSON values and back, derived from their fields and type hints (the wire's
snapshots: babyllm.socket.wire), so a new field needs no code here or there.

Writing is dataclasses.asdict with non-finite floats as null (JSON has neither nan nor inf). Reading is
tolerant, so that a run of another version or a damaged line never breaks a reader:

- an unknown key is ignored; a missing or unreadable field takes its dataclass default (a required one
  leaves the record damaged);
- where a float goes, null (or anything but a number) is the field's default, else nan;
- a damaged record in a tuple is left out, as is a dict's damaged entry; a tuple of plain values is one
  value (one bad element damages it: a histogram missing a bin would mislead);
- a Literal takes its values, and (one of strings) any other non-empty string too: a newer run's new
  state or event kind shows as it is (its readers look such values up with a default).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

T = TypeVar("T")
Read = Callable[[Any], Any]  # a JSON value -> the typed value; raises Damaged when it cannot


class Damaged(ValueError):
    """A JSON value that cannot be read as its type."""


def to_json(record: Any) -> Any:
    """A dataclass instance as plain JSON values (dicts, lists, numbers, strings, null)."""
    return finite(dataclasses.asdict(record))


def finite(x: Any) -> Any:
    """`x` with non-finite floats as None, tuples as lists and dict keys as strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def reader(cls: type[T]) -> Callable[[Any], T]:
    """The reader of `cls`'s JSON form (built once: call it per value); Damaged when it is not a record."""
    return cast(Callable[[Any], T], _record(cls))


# --- readers by type -------------------------------------------------------------------------------


def _read(tp: Any) -> Read:
    if dataclasses.is_dataclass(tp):
        return _record(cast(type, tp))
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        inner = _read(next(a for a in args if a is not type(None)))
        return (lambda x: None if x is None else inner(x)) if type(None) in args else inner
    if origin is Literal:
        return _literal(args)
    if origin is tuple:
        return _tuple(args[0], records=dataclasses.is_dataclass(args[0]))
    if origin is dict:
        return _dict(args[1])
    return _SCALARS.get(tp, _any)


def _literal(values: tuple[Any, ...]) -> Read:
    """One of `values`; for a Literal of strings, any non-empty string (a newer run's new state shows as is)."""
    any_text = all(isinstance(v, str) for v in values)
    return lambda x: x if x in values or (any_text and isinstance(x, str) and x) else _damaged(x)


def _record(cls: type) -> Read:
    """A dataclass from a dict: each field read by its type (see the module doc)."""
    hints = get_type_hints(cls)
    fields = [(f.name, _read(hints[f.name]), _has_default(f), hints[f.name] is float)
              for f in dataclasses.fields(cls) if f.init]

    def read(x: Any) -> Any:
        if not isinstance(x, dict):
            return _damaged(x)
        kwargs: dict[str, Any] = {}
        for name, read_field, has_default, is_float in fields:
            if name not in x:
                if not has_default:
                    raise Damaged(f"{cls.__name__}: no {name}")
                continue
            try:
                kwargs[name] = read_field(x[name])
            except Damaged:
                if has_default:
                    continue  # (the dataclass fills in its default)
                if not is_float:
                    raise
                kwargs[name] = math.nan
        return cls(**kwargs)

    return read


def _tuple(item: Any, records: bool) -> Read:
    read_item = _element(item)

    def read(x: Any) -> tuple[Any, ...]:
        if not isinstance(x, list | tuple):
            return _damaged(x)
        if not records:
            return tuple(read_item(v) for v in x)
        return tuple(v for v in map(_or_left_out(read_item), x) if v is not _LEFT_OUT)

    return read


def _dict(value: Any) -> Read:
    read_value = _or_left_out(_element(value))

    def read(x: Any) -> dict[str, Any]:
        if not isinstance(x, dict):
            return _damaged(x)
        return {str(k): v for k, v in ((k, read_value(v)) for k, v in x.items()) if v is not _LEFT_OUT}

    return read


def _element(tp: Any) -> Read:
    """A tuple's or dict's item: a float that is not a number is nan there (the item is kept)."""
    read = _read(tp)
    return (lambda x: _float(x) if _is_number(x) else math.nan) if tp is float else read


def _or_left_out(read: Read) -> Read:
    def tolerant(x: Any) -> Any:
        try:
            return read(x)
        except Damaged:
            return _LEFT_OUT

    return tolerant


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


# --- scalars ---------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _float(x: Any) -> float:
    return float(x) if _is_number(x) else _damaged(x)


def _int(x: Any) -> int:
    if _is_number(x) and math.isfinite(x):
        return int(x)
    if isinstance(x, str):
        try:
            return int(x)
        except ValueError:
            pass
    return _damaged(x)


def _str(x: Any) -> str:
    return x if isinstance(x, str) else str(x) if _is_number(x) else _damaged(x)


def _bool(x: Any) -> bool:
    return x if isinstance(x, bool) else _damaged(x)


def _any(x: Any) -> Any:
    return x


def _damaged(x: Any) -> Any:
    raise Damaged(f"unreadable value {x!r:.40}")


_SCALARS: Mapping[Any, Read] = MappingProxyType({float: _float, int: _int, str: _str, bool: _bool})
_LEFT_OUT = object()  # a damaged item, left out of its tuple or dict
