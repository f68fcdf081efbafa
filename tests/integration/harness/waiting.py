"""Bounded polling: wait for a condition instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not become true in time (an AssertionError, so pytest shows it)."""


def wait_until(
    probe: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Call ``probe`` until it returns a truthy value, and return that value.

    Exceptions from the probe propagate. Raises WaitTimeout after ``timeout`` seconds,
    naming the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{message}: not true after {timeout} s (last value {value!r})")
        time.sleep(interval)
