"""How `voice.result` reads and writes its stored JSON, field by field: a flat part as a dict (`plain`),
a flat part read back from one (`read_part`, by each field's annotation), and the lenient readers of a
stored value (`nonempty_str`, `int_or_none`, ...). A reader never raises on a malformed row: a value of
the wrong type reads as None (the field's default), so a row loses the field, never the call.
Standard library only, and no result types: `voice.result` builds its parts with these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Part = TypeVar("Part", bound=DataclassInstance)

JsonObject = dict[str, Any]


def plain(obj: Any) -> JsonObject:
    """A flat part as a dict of its fields (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k in obj.__slots__ for v in (getattr(obj, k),)}


def read_parts(cls: type[Part], items: Any) -> tuple[Part, ...]:
    """Flat parts from a stored list of dicts (or a dialogue check's records), field by field."""
    return tuple(read_part(cls, x) for x in dicts(items))


def read_part(cls: type[Part], d: Mapping[str, Any]) -> Part:
    """One flat part from its dict: each field read by its annotation; a missing or mistyped value reads as
    the field's default (or "", 0, False, ()), so a malformed row loses the field, never the part."""
    kw: dict[str, Any] = {}
    for f in fields(cls):
        kind = cast(str, f.type)  # `from __future__ import annotations`: the annotation as written
        value = _READERS[kind](d.get(f.name))
        if value is None and "None" not in kind:
            value = f.default if f.default is not MISSING else _ZERO[kind]
        kw[f.name] = value
    return cls(**kw)


def nonempty_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def int_or_none(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def float_or_none(v: Any) -> float | None:
    return float(v) if is_number(v) else None


def bool_or_none(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None if v is None else str(v)


def as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def dicts(v: Any) -> list[Mapping[str, Any]]:
    return [x for x in as_list(v) if isinstance(x, Mapping)]


def as_mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in as_list(v) if x is not None)


def red_flag(v: Any) -> str:
    """A stored red flag: an id (what the dialogues write), or an early row's {"flag"|"id": ...}."""
    if isinstance(v, Mapping):
        v = v.get("id") or v.get("flag") or v.get("name")
    return v if isinstance(v, str) else ""


# what `read_part` reads each annotation with (None: missing or of the wrong type), and the zero it falls back to
_READERS: dict[str, Callable[[Any], Any]] = {
    "str": text_or_none, "str | None": nonempty_str, "int | None": int_or_none, "float": float_or_none,
    "float | None": float_or_none, "bool": bool, "tuple[str, ...]": strs,
}  # fmt: skip
_ZERO: dict[str, Any] = {"str": "", "float": 0.0, "bool": False, "tuple[str, ...]": ()}


__all__ = [
    "JsonObject", "as_list", "as_mapping", "bool_or_none", "dicts", "float_or_none", "int_or_none", "is_number",
    "nonempty_str", "plain", "read_part", "read_parts", "red_flag", "strs", "text_or_none",
]  # fmt: skip
