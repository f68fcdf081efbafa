"""Checkouts waiting on a full pool: who is served next, and when a slot is handed over.

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

No threads here: a :class:`Waiter` is a token the runner makes (with its own way to
block: a lock for threads, a future for asyncio) and the queue only orders them. Waking
one is the machine's decision, delivered by calling :meth:`Waiter.wake`, which a
runner implements without blocking.
"""

from __future__ import annotations

from collections import deque

from ldappool._core.slots import Slot
from ldappool._identity import Credentials

__all__ = ["WaitQueue", "Waiter"]


class Waiter:
    """One checkout queued on a full pool: the runner subclasses it with a way to block."""

    __slots__ = ("credentials", "error", "passed", "since", "slot", "woken")

    def __init__(self, credentials: Credentials, since: float) -> None:
        self.credentials = credentials
        self.since = since
        #: Handed to this waiter directly: it need not look for one.
        self.slot: Slot | None = None
        #: Told to look for a free slot (taken out of the queue meanwhile).
        self.woken = False
        #: A password check let past the gate (:mod:`ldappool._core.gate`): a place was
        #: taken for it.
        self.passed = False
        #: Why it must stop waiting (the pool closed).
        self.error: BaseException | None = None

    def wake(self) -> None:
        """Let the waiting checkout go on: called once each time it leaves the queue.

        Must not block: the machine calls it with the pool's lock held.
        """
        raise NotImplementedError


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

    def join(self, waiter: Waiter) -> None:
        self.waiters.append(waiter)

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
