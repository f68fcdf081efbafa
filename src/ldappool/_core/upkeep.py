"""The state machine's decisions for the upkeep thread: which idle connections to look
at, what to do with what it found, and the slots it fills up to ``min_size``.

A part of :class:`~ldappool._core.machine.PoolMachine` (a mixin of it), in a file of its
own. The thread itself, and its I/O, are :mod:`ldappool._upkeep`'s; the same rules as the
rest of the machine: called under the runner's lock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from ldappool._core.slots import Slot, Step
from ldappool._core.waiting import Waiter
from ldappool._identity import Credentials
from ldappool._stats import Counters

__all__ = ["UpkeepDecisions"]

_KEEP, _OPEN = Step.KEEP, Step.OPEN


class UpkeepDecisions:
    """PoolMachine's upkeep events: ``borrow``/``give_back``, ``refill``/``refilled``."""

    # The machine's state these read and write (PoolMachine sets them).
    size: int
    min_size: int
    closed: bool
    counts: Counters
    _slots: list[Slot]
    _empty: list[Slot]
    _waiters: deque[Waiter]
    _idle_lru: OrderedDict[int, Slot]

    if TYPE_CHECKING:  # PoolMachine's, used here

        def checkin(
            self, slot: Slot, now: float, lost: bool = False, changed: bool = False
        ) -> Step: ...

        def _take_idle(self, slots: list[Slot], why: str) -> list[Slot]: ...

        def _take_other(self) -> Slot | None: ...

        def _unidle(self, slot: Slot) -> None: ...

        def _retired(self, slot: Slot) -> str | None: ...

        def _closing(self, slot: Slot, why: str | None) -> Step: ...

        def _give(self, slot: Slot, now: float) -> None: ...

    def idle_slots(self) -> list[Slot]:
        """The idle slots now, least recently used first: to look at their sockets."""
        return list(self._idle_lru.values())

    def take_stale(self, slot: Slot) -> bool:
        """The upkeep found an idle connection closed by the server: to CLOSE now (True),
        unless it was lent or closed meanwhile (False: nothing to do)."""
        if self._idle_lru.get(slot.number) is not slot:
            return False
        self.counts.stale += 1
        self._take_idle([slot], "stale")
        return True

    def borrow(self, slot: Slot, now: float, keepalive: float) -> bool:
        """Take an idle connection out to look at it (True) if it is still idle and quiet
        for ``keepalive`` seconds (0: whatever its quiet time); give it back with
        :meth:`give_back`."""
        if self._idle_lru.get(slot.number) is not slot:
            return False
        if now - max(slot.last_used, slot.pinged_at) < keepalive:
            return False
        self._unidle(slot)
        slot.in_use = True
        return True

    def give_back(self, slot: Slot, now: float, alive: bool, *, pinged: bool) -> Step:
        """A borrowed connection was looked at (and ``pinged``): pooled again (KEEP; its
        idle time for the lifetime policy goes on), or to CLOSE when it was found dead
        or the pool changed meanwhile."""
        if pinged:
            self.counts.pings += 1
        why = self._retired(slot) if alive else "stale"
        if why is not None:
            if not alive:
                self.counts.stale += 1
            return self._closing(slot, why)
        if pinged:
            slot.pinged_at = now
        self._give(slot, now)
        return _KEEP

    def refill(self, credentials: Credentials, now: float) -> Slot | None:
        """A slot to OPEN for ``credentials`` while fewer than ``min_size`` connections are
        open and nobody waits (it is lent to the upkeep: check it in once opened), or None."""
        if (
            self.closed
            or self._waiters
            or len(self._slots) - len(self._empty) >= min(self.min_size, self.size)
        ):
            return None
        slot = self._take_other()
        if slot is None or slot.conn is not None:  # (_take_other only gives an empty one here)
            return None
        slot.in_use = True
        slot.credentials = credentials
        slot.lent_at = now
        slot.step = _OPEN
        return slot

    def refilled(self, slot: Slot, now: float, opened: bool) -> Step:
        """The upkeep's refill is done: pooled (or handed to a waiter), or CLOSE when the
        pool closed or shrank meanwhile, or the open failed with a connection left."""
        if opened:
            return self.checkin(slot, now)
        slot.credentials = None
        if slot.conn is not None:
            return self._closing(slot, "refused")
        self._give(slot, now)
        return _KEEP
