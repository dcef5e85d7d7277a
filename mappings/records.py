"""Reading values out of a Salesforce record without trusting its shape.

The record is an Opportunity row as simple-salesforce returns it (``attributes`` removed), with
relationship fields nested as dicts (``Account`` → ``Parent`` → ...). Salesforce answers with
the field names' canonical case whatever case the query used, so look-ups fall back to a
case-insensitive match; a missing field and an explicit ``null`` are the same thing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: A value an expression can produce; ``None`` means "absent".
Scalar = str | int | float | bool | None


class NotAScalarError(ValueError):
    """The path ends on a nested object or list where a field value was expected."""


def get_key(container: dict[str, Any], key: str) -> Any:
    """``container[key]``, matching the key case-insensitively when the exact case is absent."""
    if key in container:
        return container[key]
    folded = key.casefold()
    for candidate, value in container.items():
        if isinstance(candidate, str) and candidate.casefold() == folded:
            return value
    return None


def get_object(record: Any, segments: Sequence[str]) -> dict[str, Any] | None:
    """Follow relationship segments; ``None`` when any hop is absent or not an object."""
    current: Any = record
    for segment in segments:
        if not isinstance(current, dict):
            return None
        current = get_key(current, segment)
    return current if isinstance(current, dict) else None


def get_scalar(record: Any, segments: Sequence[str]) -> Scalar:
    """The value at a field path; ``None`` if any hop is missing or null.

    Raises :class:`NotAScalarError` when the path lands on an object or list: the mapping named
    a relationship where it meant a field, and guessing would put a dict into a customer name.
    """
    current: Any = record
    for index, segment in enumerate(segments):
        if current is None:
            return None
        if not isinstance(current, dict):
            hop = ".".join(segments[:index])
            raise NotAScalarError(f"{hop} is not an object")
        current = get_key(current, segment)
    if current is None or isinstance(current, str | bool | int):
        return current
    if isinstance(current, float):
        if math.isnan(current) or math.isinf(current):
            raise NotAScalarError("is not a finite number")
        return current
    raise NotAScalarError(f"is a {type(current).__name__}, not a field value")


def to_text(value: Scalar) -> str | None:
    """The string Metronome should receive for a value; ``None`` for absent or empty.

    Salesforce sends numbers as JSON numbers (often floats, ``5.0`` for a whole number) and
    booleans as JSON booleans; spelling them one fixed way keeps the desired state, and so the
    dedupe hash, stable across API versions.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    else:
        text = value
    return text if text != "" else None
