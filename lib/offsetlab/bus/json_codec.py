"""The envelope's JSON: the standard library's bytes, written faster by orjson when it is
installed (``pip install offsetlab[fast]``), never different.

:func:`dumps` gives exactly ``json.dumps(obj, separators=(",", ":"), sort_keys=True)``
encoded as UTF-8 (ASCII: non-ASCII characters are ``\\uXXXX`` escapes); :func:`loads` gives
exactly ``json.loads(data.decode("utf-8"))``. orjson is used only where its result is known
to be the standard library's (measured: about 10x faster both ways, see ``offsetlab bench``):

- writing, when the caller says every value is *plain* (:func:`plain`: exact ``str``,
  ``bool``, ``None``, ``int`` in 64 bits, finite ``float`` that Python and orjson print alike,
  lists and string-keyed dicts of those) and the bytes orjson wrote are ASCII without DEL
  (``json`` escapes both, orjson does not);
- reading, when no run of 19 or more digits could be an integer orjson would turn into a
  float; whatever orjson refuses (NaN, lone surrogates, ...) is read by ``json``.

orjson is optional and imported on first use: the bus needs only the standard library.
``OFFSETLAB_JSON=stdlib`` in the environment turns it off.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

__all__ = ["dumps", "dumps_plain", "loads", "plain", "backend", "JSONDecodeError"]

JSONDecodeError = json.JSONDecodeError

_stdlib_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_INT_MIN, _INT_MAX = INT_RANGE = -(2**63), 2**64 - 1  # what orjson writes as integers
_FLOAT_MIN = 1e-4  # below this (but 0) Python prints 1e-05 where orjson prints 0.00001
_INF = float("inf")
_MAX_DEPTH = 32  # deeper (or circular) values are left to json
#: every digit as "0", so that a run of 19 digits is a plain substring search (a regular
#: expression took 1.6 us on an envelope, this 0.3 us)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
_UNSET: Any = object()
_fast: Any = _UNSET


def _orjson() -> Any:
    """orjson's module, or ``None`` (not installed, or ``OFFSETLAB_JSON=stdlib``)."""
    global _fast
    if _fast is _UNSET:
        fast = None
        if os.environ.get("OFFSETLAB_JSON", "").strip().lower() != "stdlib":
            try:
                # optional accelerator, imported lazily by name: the bus needs only the stdlib
                fast = importlib.import_module("orjson")
            except ImportError:
                pass
        _fast = fast
    return _fast


def backend() -> str:
    """``"orjson <version>"`` when the fast path is on, else ``"json (stdlib)"``."""
    fast = _orjson()
    return f"orjson {fast.__version__}" if fast is not None else "json (stdlib)"


def plain(value: Any, _depth: int = 0) -> bool:
    """Whether orjson writes ``value`` as the standard library does (exact types only:
    subclasses, enums, big integers, tiny floats, deep or circular values go to ``json``)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if t is float:
        return bool(value == 0.0 or _FLOAT_MIN <= abs(value) < _INF)
    if _depth >= _MAX_DEPTH:
        return False
    if t is list:
        return all(plain(v, _depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and plain(v, _depth + 1) for k, v in value.items())
    return False


def dumps(obj: Any, *, is_plain: bool = False) -> bytes:
    """``json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()``; ``is_plain``:
    the caller checked every value with :func:`plain` (then orjson may write it).

    Raises what ``json.dumps`` raises (``TypeError``, ``ValueError``).
    """
    if is_plain:
        fast = _fast if _fast is not _UNSET else _orjson()
        if fast is not None:
            try:
                data: bytes = fast.dumps(obj, option=fast.OPT_SORT_KEYS)
            except TypeError:  # orjson.JSONEncodeError: let json say what is wrong
                pass
            else:
                if data.isascii() and b"\x7f" not in data:
                    return data
    return _stdlib_encode(obj).encode()


def dumps_plain(obj: Any) -> bytes | None:
    """:func:`dumps` of a plain value (:func:`plain`) that may also hold aware UTC
    ``datetime`` objects (``tzinfo`` exactly ``datetime.UTC``, written as their
    ``isoformat()`` text, which orjson writes alike), written by orjson; ``None`` when
    orjson is off or refuses, or its bytes are not the standard library's (then format the
    datetimes and call :func:`dumps`)."""
    fast = _fast if _fast is not _UNSET else _orjson()
    if fast is None:
        return None
    try:
        data: bytes = fast.dumps(obj, option=fast.OPT_SORT_KEYS)
    except TypeError:
        return None
    return data if data.isascii() and b"\x7f" not in data else None


def loads(data: bytes) -> Any:
    """``json.loads(data.decode("utf-8"))``: raises ``UnicodeDecodeError`` or
    ``json.JSONDecodeError`` as it does."""
    if type(data) is bytes:
        fast = _fast if _fast is not _UNSET else _orjson()
        if fast is not None and _LONG_RUN not in data.translate(_DIGITS_AS_ZERO):
            try:
                return fast.loads(data)
            except ValueError:  # orjson.JSONDecodeError: json decides (and explains)
                pass
    return json.loads(data.decode("utf-8"))
