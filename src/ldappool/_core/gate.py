"""The gate in front of the password checks: at most ``limit`` at once.

``authenticate()`` draws on a bounded share of the pool (``auth_size``): a login storm
must not take every slot from the service lookups, nor the other way round. A password
check passes the gate first, then takes a slot. While no more than ``limit`` checks
run, no more than ``limit`` connections are kept for them: a new one is only opened
when every kept one is in use by another check.

Who passes when the gate is full follows the checkouts' rule (:mod:`ldappool._core.waiting`,
Go's ``sync.Mutex``): queued checks are served oldest first, but a place that comes free
is left free and the oldest one woken to come and take it, so that a thread already
running (typically the one whose check just ended, going for its next one) may take it
first; the woken check then goes back to the head of the queue. Once the oldest has
waited ``handoff_after``, places are handed straight to it. Handing every place over
made each check a switch between two threads under the GIL: with 8 threads checking
through 4 places, 0.67 of the limit's throughput in the login storm, against 0.77 with
this rule (in-process A/B runs; docs/performance.rst).

No threads here: the runner's waiter blocks on its own, and the gate's decisions reach
it through :meth:`Waiter.wake`: ``passed`` set when a place was taken for it, not set
when it is only to look for one (:meth:`Gate.look`).
"""

from __future__ import annotations

from collections import deque

from ldappool._core.waiting import Waiter

__all__ = ["Gate"]


class Gate:
    """A counter of checks under way, the checks queued to pass, oldest first, and the
    one woken to look for a place, if any."""

    __slots__ = ("handoff_after", "inside", "limit", "looking", "waiters")

    def __init__(self, limit: int, handoff_after: float = 0.05) -> None:
        self.limit = limit
        #: Seconds the oldest queued check may be passed over before places go to it.
        self.handoff_after = handoff_after
        #: Checks past the gate now (each one until :meth:`leave`).
        self.inside = 0
        self.waiters: deque[Waiter] = deque()
        #: Woken to take a free place, out of the queue meanwhile: at most one at a time,
        #: so that a burst of checks ending does not wake a herd.
        self.looking: Waiter | None = None

    def __len__(self) -> int:
        """Checks waiting to pass: queued, or woken and not yet looking."""
        return len(self.waiters) + (self.looking is not None)

    def enter(self, waiter: Waiter) -> bool:
        """Pass now if there is room (True), ahead of queued checks that are asleep;
        else queue ``waiter`` behind the others (False)."""
        if self.inside < self.limit:
            self.inside += 1
            return True
        self.waiters.append(waiter)
        return False

    def leave(self, now: float) -> None:
        """A check is done: its place is free (see :meth:`serve`)."""
        self.inside -= 1
        if self.waiters:
            self.serve(now)

    def serve(self, now: float) -> None:
        """Places are free while checks queue: handed to the oldest queued checks that
        have waited ``handoff_after`` (``passed``), else left free and the oldest woken
        to come and look, unless one is on its way."""
        waiters = self.waiters
        while waiters and self.inside < self.limit:
            if now - waiters[0].since >= self.handoff_after:
                self._hand_over(waiters.popleft())
            elif self.looking is None:
                waiter = self.looking = waiters.popleft()
                waiter.wake()
                return
            else:
                return

    def look(self, waiter: Waiter, now: float) -> bool:
        """A woken check looks for its place: True once past the gate (handed one, or a
        free one taken now); False when it is back at the head of the queue, or was
        not woken (or has an ``error`` to raise)."""
        if waiter.passed:
            return True
        if self.looking is waiter:
            self.looking = None
            if self.inside < self.limit:
                self.inside += 1
                waiter.passed = True
                self.serve(now)  # room for more: the next may look too
                return True
            self.waiters.appendleft(waiter)  # its age kept
        return False

    def cancel(self, waiter: Waiter, now: float) -> None:
        """A check gives up waiting (time out, interruption): a place taken for it is
        freed, and one it was woken to look for is left to the next."""
        if waiter.passed:
            waiter.passed = False
            self.leave(now)
        elif self.looking is waiter:
            self.looking = None
            self.serve(now)
        elif waiter in self.waiters:
            self.waiters.remove(waiter)

    def resize(self, limit: int) -> None:
        """A new limit: more room lets queued checks in now; less takes effect as
        checks leave."""
        self.limit = limit
        while self.waiters and self.inside < self.limit:
            self._hand_over(self.waiters.popleft())

    def fail_all(self, error: BaseException) -> None:
        """Wake every queued check with ``error`` (the pool is closing); the one woken
        already finds it when it looks (a waiter is woken once per wait)."""
        if self.looking is not None:
            self.looking.error = error
            self.looking = None
        for waiter in self.waiters:
            waiter.error = error
            waiter.wake()
        self.waiters.clear()

    def _hand_over(self, waiter: Waiter) -> None:
        self.inside += 1
        waiter.passed = True
        waiter.wake()
