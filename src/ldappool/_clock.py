"""The one source of time for the pool, injectable so the core is tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time and sleep."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
