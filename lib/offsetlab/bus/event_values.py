"""Payload values on the wire: what JSON cannot say, said in JSON (one concept of the
envelope, :mod:`offsetlab.bus.events`).

- ``datetime`` values travel as ISO 8601 text, tuples (and lists) as arrays, mappings as
  objects with string keys (:func:`to_json_value`); decoding turns them back where the
  field's annotation asks for a ``datetime`` or a tuple (:func:`from_json_value`), and only
  fields whose annotation could ask are looked at (:func:`may_convert`);
- the envelope's ``occurred_at`` is UTC ISO text (:func:`utc_isoformat`: ``isoformat()``,
  the text up to the second kept from the last call).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["to_json_value", "from_json_value", "may_convert", "utc_isoformat"]

#: (the date and time to the second, its ISO text) of the last UTC time formatted
_ISO_SECOND: tuple[tuple[int, ...], str] = ((), "")


def utc_isoformat(at: datetime) -> str:
    """``at.isoformat()`` of a UTC datetime, the text up to the second kept from the last
    call (events made together share it): 0.50 us instead of 0.78 us here."""
    global _ISO_SECOND
    key = (at.year, at.month, at.day, at.hour, at.minute, at.second)
    cached = _ISO_SECOND
    if cached[0] != key:
        cached = _ISO_SECOND = (key, at.replace(microsecond=0, tzinfo=None).isoformat())
    us = at.microsecond
    return f"{cached[1]}.{us:06d}+00:00" if us else f"{cached[1]}+00:00"


def to_json_value(value: Any) -> Any:
    """A payload value as JSON can say it (exact str/int/bool/float/None as they are)."""
    t = type(value)
    if t is str or t is int or t is bool or t is float or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [to_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    return value


def from_json_value(value: Any, annotation: Any) -> Any:
    """Turn a JSON value back into the field's declared type where JSON lost it."""
    origin = typing.get_origin(annotation)
    if annotation is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if (annotation is tuple or origin is tuple) and isinstance(value, list):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return tuple(from_json_value(v, inner) for v in value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            converted = from_json_value(value, arg)
            if converted is not value:
                return converted
    return value


def may_convert(annotation: Any) -> bool:
    """Whether :func:`from_json_value` can change a value of a field so annotated."""
    origin = typing.get_origin(annotation)
    if annotation is datetime or annotation is tuple or origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(may_convert(a) for a in typing.get_args(annotation) if a is not type(None))
    return False
