"""The pool's bookkeeping: slots, idle connections, waiters, counters.

Everything here runs under the pool lock and is cheap: no I/O, no waiting. What to do
with it (the checkout and checkin paths, the I/O outside the lock) is in
:mod:`ldappool.pool`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import attrs

from ldappool.identity import Identity
from ldappool.slots import Slot, SlotView
from ldappool.stats import Stats
from ldappool.waiting import WaitQueue

__all__ = ["PoolState"]


class PoolState:
    """Which slot is where, and the counters: the part of a pool its lock guards."""

    def __init__(self, *, size: int, handoff_after: float, now: Callable[[], float]) -> None:
        self.size = size
        self._now = now
        self._handoff_after = handoff_after
        self._lock = threading.Lock()
        self._closed = False
        self._counts = dict.fromkeys(_COUNTER_NAMES, 0)
        self._reuses = 0  # short-path checkouts: counted as checkouts and as reused
        self._reset_slots(generation=0)

    def _reset_slots(self, generation: int) -> None:
        self._generation = generation
        # Slots are made on first need, so a huge ``size`` costs nothing up front.
        self._slots: list[Slot] = []
        self._empty: list[Slot] = []
        # Idle slots by identity key, most recently used last (a LIFO keeps the working
        # set small); and all idle slots, least recently used first (for rebinds).
        # Buckets left empty stay until there are many of them: see _give.
        self._idle: dict[bytes, list[Slot]] = {}
        self._idle_lru: OrderedDict[int, Slot] = OrderedDict()
        self._queue = WaitQueue(self._handoff_after)
        self._waiters = self._queue.waiters  # read on the short checkin path

    def _take(self, identity: Identity) -> Slot | None:
        """A slot for ``identity``: its own idle connection, an empty slot, or the
        least recently used idle connection of another identity (to rebind)."""
        bucket = self._idle.get(identity.key)
        if bucket:
            slot = bucket.pop()
            del self._idle_lru[slot.number]
            self._counts["reused"] += 1
        elif len(self._slots) - len(self._empty) < self.size:  # fewer occupied than size
            if self._empty:
                slot = self._empty.pop()
            else:
                slot = Slot(len(self._slots) + 1, self._generation)
                self._slots.append(slot)
        elif self._idle_lru:
            slot = next(iter(self._idle_lru.values()))
            self._unidle(slot)
        else:
            return None
        slot.in_use = True
        self._counts["checkouts"] += 1
        return slot

    def _give(self, slot: Slot) -> None:
        """Hand a slot coming back to a waiter, or make it free (see ``waiting``).

        An empty slot is not handed over while more slots are occupied than ``size``
        (after a shrink): it stays empty, and so the pool shrinks.
        """
        if self._waiters and (
            slot.conn is not None or len(self._slots) - len(self._empty) <= self.size
        ):
            waiter = self._queue.serve(self._now())
            if waiter is not None:
                self._counts["checkouts"] += 1
                if slot.conn is not None and slot.identity == waiter.identity:
                    self._counts["reused"] += 1
                waiter.slot = slot
                waiter.wake()
                return
        slot.in_use = False
        if slot.conn is None or slot.identity is None:
            self._empty.append(slot)
        else:
            bucket = self._idle.get(slot.identity.key)
            if bucket is None:
                if len(self._idle) > 2 * len(self._slots) + 8:  # many empty buckets
                    self._idle = {key: slots for key, slots in self._idle.items() if slots}
                bucket = self._idle[slot.identity.key] = []
            bucket.append(slot)
            self._idle_lru[slot.number] = slot

    def _unidle(self, slot: Slot) -> None:
        """Take an idle slot out of both indexes, wherever it stands (not the hot path)."""
        assert slot.identity is not None
        del self._idle_lru[slot.number]
        bucket = self._idle[slot.identity.key]
        bucket.remove(slot)
        if not bucket:
            del self._idle[slot.identity.key]

    def _available(self) -> bool:
        """Whether _take would find something (lock held)."""
        return bool(self._idle_lru) or len(self._slots) - len(self._empty) < self.size

    def _within_size(self) -> bool:
        """Whether no more slots are occupied than ``size`` (lock held).

        Only ever False after a shrink, until enough lent connections came back.
        """
        return len(self._slots) - len(self._empty) <= self.size

    def _resize(self, size: int) -> list[Slot]:
        """Set the cap (lock held). Returns the idle slots over it, taken out to close
        now; lent ones over it are closed at checkin (see ``_within_size``)."""
        self.size = size
        excess = len(self._slots) - len(self._empty) - size
        doomed = list(self._idle_lru.values())[: max(excess, 0)]  # least recently used
        for slot in doomed:
            self._unidle(slot)
            slot.in_use = True  # ours until closed
        if excess < 0:
            self._queue.wake_oldest()  # room for a waiter (who wakes the next one)
        return doomed

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    @property
    def closed(self) -> bool:
        """Whether close() was called: no more checkouts."""
        return self._closed

    @property
    def handoff_after(self) -> float:
        """Seconds the oldest waiter may be passed over before slots are handed to it."""
        return self._handoff_after

    @handoff_after.setter
    def handoff_after(self, seconds: float) -> None:
        with self._lock:
            self._handoff_after = self._queue.handoff_after = seconds

    def snapshot(self) -> tuple[list[SlotView], Stats]:
        """The occupied slots and the counters, read together under the lock."""
        with self._lock:
            occupied = [s.view() for s in self._slots if s.conn is not None or s.in_use]
            counts = dict(self._counts)
            counts["checkouts"] += self._reuses
            counts["reused"] += self._reuses
            stats = Stats(
                size=self.size,
                connections=sum(1 for s in self._slots if s.conn is not None or s.in_use),
                in_use=sum(1 for s in self._slots if s.in_use),
                idle=len(self._idle_lru),
                waiting=len(self._queue),
                **counts,
            )
        return occupied, stats


_COUNTER_NAMES = tuple(
    a.name
    for a in attrs.fields(Stats)
    if a.name not in ("size", "connections", "in_use", "idle", "waiting")
)
