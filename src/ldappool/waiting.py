"""Checkouts waiting on a full pool: who is served next, and how a waiter sleeps.

Waiters are served oldest first. A slot coming back is made free and the oldest waiter
is woken to come and take it; a thread that is already running (typically the one that
just returned it, going for its next one) may take it first, and the woken waiter then
goes back to the head of the queue. Once the oldest waiter has waited
``handoff_after``, slots coming back are handed straight to it instead, and nobody can
take them first. This is the scheme of Go's ``sync.Mutex``: handing every slot over
is strictly fair, but under the GIL it turns every checkin into a thread switch (with
32 threads on 8 connections, a quarter of the throughput); unbounded barging could
starve a waiter. At most one waiter is woken and not yet looking at a time, so a burst
of checkins does not wake a herd.

Everything here runs under the pool lock, except :meth:`Waiter.wait`.
"""

from __future__ import annotations

import threading
from collections import deque

from ldappool.identity import Identity
from ldappool.slots import Slot

__all__ = ["WaitQueue", "Waiter"]


class Waiter:
    """One checkout queued on a full pool."""

    __slots__ = ("_lock", "error", "identity", "since", "slot", "woken")

    def __init__(self, identity: Identity, since: float) -> None:
        self.identity = identity
        self.since = since
        # A bare lock, taken now and released by wake(): the cheapest blocking handoff
        # (a futex), where an Event would add a Condition and a second lock per wait.
        self._lock = threading.Lock()
        self._lock.acquire()
        #: Handed to this waiter directly: it need not look for one.
        self.slot: Slot | None = None
        #: Told to look for a free slot (taken out of the queue meanwhile).
        self.woken = False
        self.error: BaseException | None = None

    def wake(self) -> None:
        """Let the waiting thread go; called once per time it is taken out of the queue."""
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until woken or ``timeout`` seconds pass; True if woken. Re-arms itself."""
        return self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class WaitQueue:
    """The waiters, oldest first, and the one woken to look, if any."""

    __slots__ = ("handoff_after", "waiters", "woken")

    def __init__(self, handoff_after: float) -> None:
        #: Seconds the oldest waiter may be passed over before slots are handed to it.
        self.handoff_after = handoff_after
        self.waiters: deque[Waiter] = deque()
        self.woken: Waiter | None = None

    def __len__(self) -> int:
        return len(self.waiters) + (self.woken is not None)

    def join(self, identity: Identity, now: float) -> Waiter:
        waiter = Waiter(identity, now)
        self.waiters.append(waiter)
        return waiter

    def serve(self, now: float) -> Waiter | None:
        """A slot came back while waiters queue: the waiter to hand it to (out of the
        queue, not woken yet), or None when it is to be made free, the oldest waiter
        woken to take it."""
        if now - self.waiters[0].since >= self.handoff_after:
            return self.waiters.popleft()
        self.wake_oldest()
        return None

    def wake_oldest(self) -> None:
        """Wake the oldest waiter to look for a free slot, unless one is on its way."""
        if self.waiters and self.woken is None:
            waiter = self.woken = self.waiters.popleft()
            waiter.woken = True
            waiter.wake()

    def looking(self, waiter: Waiter) -> None:
        """A woken waiter is looking now: another may be woken from here on."""
        waiter.woken = False
        self.woken = None

    def requeue(self, waiter: Waiter) -> None:
        """A woken waiter found nothing: back to the head, its age kept."""
        self.waiters.appendleft(waiter)

    def leave(self, waiter: Waiter) -> None:
        """A waiter gives up (time out, interruption) while queued."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)

    def fail_all(self, error: BaseException) -> None:
        """Wake every queued waiter with ``error`` (the pool is closing)."""
        for waiter in self.waiters:
            waiter.error = error
            waiter.wake()
        self.waiters.clear()
