"""The gate in front of the password checks: at most ``limit`` at once, first come first served.

``authenticate()`` draws on a bounded share of the pool (``auth_size``): a login storm
must not take every slot from the service lookups, nor the other way round. A password
check passes the gate first, then asks the pool for a slot like any checkout. While
no more than ``limit`` checks run, no more than ``limit`` connections are kept for them:
a new one is only opened when every kept one is in use by another check.

No threads here, as in :mod:`ldappool._core.waiting`: the runner's waiter blocks on its
own, and passing the gate is delivered through :meth:`Waiter.wake` with ``woken`` set.
"""

from __future__ import annotations

from collections import deque

from ldappool._core.waiting import Waiter

__all__ = ["Gate"]


class Gate:
    """A counter of checks under way and the checks queued to pass, oldest first."""

    __slots__ = ("inside", "limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Checks past the gate now (each one until :meth:`leave`).
        self.inside = 0
        self.waiters: deque[Waiter] = deque()

    def enter(self, waiter: Waiter) -> bool:
        """Pass now (True), or queue ``waiter`` behind the others (False)."""
        if self.inside < self.limit and not self.waiters:
            self.inside += 1
            return True
        self.waiters.append(waiter)
        return False

    def leave(self) -> None:
        """A check is done: its place goes to the oldest queued check, if any."""
        self.inside -= 1
        self.let_in()

    def cancel(self, waiter: Waiter) -> None:
        """A queued check gives up (time out, interruption); if it had been let in
        meanwhile, its place is passed on."""
        if waiter.woken:
            waiter.woken = False
            self.leave()
        elif waiter in self.waiters:
            self.waiters.remove(waiter)

    def resize(self, limit: int) -> None:
        """A new limit: more room lets queued checks in now; less takes effect as
        checks leave."""
        self.limit = limit
        self.let_in()

    def fail_all(self, error: BaseException) -> None:
        """Wake every queued check with ``error`` (the pool is closing)."""
        for waiter in self.waiters:
            waiter.error = error
            waiter.wake()
        self.waiters.clear()

    def let_in(self) -> None:
        """Let the oldest queued checks in while there is room."""
        while self.waiters and self.inside < self.limit:
            waiter = self.waiters.popleft()
            self.inside += 1
            waiter.woken = True
            waiter.wake()
