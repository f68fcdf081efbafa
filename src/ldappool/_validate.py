"""Argument checks shared by the manager and the policies.

Every check names the argument, so a bad value fails at construction with a message
that says which argument to fix, never later at first use.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["check_bool", "check_int", "check_number", "check_optional_str"]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An int (not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number >= minimum (> minimum when strict), or None if allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number or None" if allow_none else "a number"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value}")
    if number < minimum or (strict and number == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {minimum:g}, got {value}")
    return number


def check_bool(name: str, value: object) -> bool:
    """Exactly True or False: 0, 1 or "no" are more likely mistakes than intent."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def check_optional_str(name: str, value: object) -> str | None:
    """A str or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    return value


# attrs validators built on the checks above, for the public policy classes.


def positive_int(_inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    check_int(attribute.name, value, minimum=1)


def non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    check_number(attribute.name, value)


def non_negative_or_none(_inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    check_number(attribute.name, value, allow_none=True)


def positive_or_none(_inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    check_number(attribute.name, value, strict=True, allow_none=True)
