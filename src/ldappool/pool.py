"""The pool core: the paths of a checkout and of a checkin.

Pure Python, driver-agnostic. State changes happen under one lock and are cheap
(:mod:`ldappool.state`); every I/O the pool decides on (connect, bind, socket check,
ping, unbind) runs after the lock is released, on a slot the calling thread owns
(:mod:`ldappool.upkeep`). Waiting on a full pool: :mod:`ldappool.waiting`.

The common checkout (an idle connection of the caller's identity, used recently) and
the common checkin (nothing went wrong) have short paths of their own, tried first: a
search on loopback takes ~120 us, and every microsecond spent here adds to it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING

from ldappool.clock import Clock
from ldappool.connect import TRANSIENT, Connector
from ldappool.connector import Connection
from ldappool.errors import MaxConnectionReachedError, PoolClosedError
from ldappool.policies import LifetimePolicy
from ldappool.slots import Slot
from ldappool.state import PoolState
from ldappool.upkeep import Upkeep
from ldappool.waiting import Waiter

if TYPE_CHECKING:
    from ldappool.lease import Lease

__all__ = ["Pool"]

log = logging.getLogger("ldappool")


class Pool(PoolState):
    """Lends bound connections out of ``size`` slots."""

    def __init__(
        self,
        connector: Connector,
        *,
        size: int,
        lifetime: LifetimePolicy,
        pool_timeout: float | None,
        reuse: bool,
        clock: Clock,
        warn_held_after: float | None = None,
        handoff_after: float = 0.05,
    ) -> None:
        super().__init__(size=size, handoff_after=handoff_after, now=clock.monotonic)
        connector.count = self._count  # its outcomes land in this pool's stats
        self._classify = connector.driver.classify
        self._upkeep = Upkeep(connector, lifetime, self._now, self._count)
        self._quiet_for = self._upkeep.quiet_for
        self.pool_timeout = pool_timeout
        self.reuse = reuse
        self.warn_held_after = warn_held_after
        #: Whether checkouts may use the short checkin (``Slot.keep``): pooling on, not
        #: closed, no held-too-long watch.
        self._fast = reuse and warn_held_after is None
        _POOLS.add(self)

    # -- checkout --------------------------------------------------------------------

    def checkout(self, lease: Lease) -> Slot:
        """A slot whose connection is live and bound as the lease's identity."""
        with self._lock:
            bucket = self._idle.get(lease.identity.key)
            if bucket:
                slot = bucket.pop()
                del self._idle_lru[slot.number]
                slot.in_use = True
                self._reuses += 1
            else:
                slot = None
        # Used recently enough that the lifetime policy has nothing to say: only the
        # socket needs a look.
        if (
            slot is not None
            and slot.keep
            and self._now() < slot.fit_until
            and slot.conn.looks_alive()  # type: ignore[union-attr]
        ):
            slot.lease = lease
            return slot
        return self._checkout(lease, slot)

    def _checkout(self, lease: Lease, slot: Slot | None) -> Slot:
        """The rest of a checkout: take or wait for a slot, then make it fit to lend."""
        identity = lease.identity
        if slot is None:
            overdue: list[Slot] = []
            with self._lock:
                if self._closed:
                    raise PoolClosedError("this ConnectionManager is closed")
                slot = self._take(identity)
                if slot is None:
                    waiter = self._queue.join(identity, self._now())
                    self._counts["waits"] += 1
                    if self.warn_held_after is not None:
                        overdue = [s for s in self._slots if s.in_use and s.origin]
            if slot is None:
                self._warn_overdue(overdue)
                slot = self._wait(waiter)
        try:
            self._upkeep.prepare(slot, identity, lease.who, lease.cred)
        except BaseException:
            self._release(slot, slot.detach(), failed_checkout=True)
            raise
        slot.lease = lease
        slot.keep = self._fast
        if self.warn_held_after is not None:
            slot.checked_out_at = self._now()
            # Without this frame, checkout's and Lease.__enter__'s.
            slot.origin = "".join(traceback.format_stack(limit=11)[:-3])
        return slot

    def _warn_overdue(self, slots: list[Slot]) -> None:
        """On a full pool, name the holders that kept their connection too long (once each)."""
        limit = self.warn_held_after
        now = self._now()
        for slot in slots:
            origin = slot.origin
            if limit is not None and origin and now - slot.checked_out_at > limit:
                slot.origin = None  # warn once per checkout
                log.warning(
                    "slot %d checked out for %.1fs (longer than warn_held_after=%gs), from:\n%s",
                    slot.number,
                    now - slot.checked_out_at,
                    limit,
                    origin,
                )

    def _wait(self, waiter: Waiter) -> Slot:
        """Sleep until a slot is handed over, or woken, until one is found or time is up."""
        timeout = self.pool_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                woken = waiter.wait(timeout)
                if waiter.slot is not None:  # handed over: set before the wake-up
                    return waiter.slot
                with self._lock:
                    slot = self._look(waiter, timed_out=not woken)
                if slot is not None:
                    return slot
                if deadline is not None:
                    timeout = deadline - time.monotonic()
        except BaseException:  # KeyboardInterrupt...: leave the queue, lose no slot
            with self._lock:
                self._leave(waiter)
            raise

    def _look(self, waiter: Waiter, *, timed_out: bool) -> Slot | None:
        """After a wake-up (or time out): a slot, or None to sleep again (lock held)."""
        if waiter.slot is not None:
            return waiter.slot
        if waiter.error is not None:
            raise waiter.error
        if waiter.woken:
            self._queue.looking(waiter)
            if self._closed:
                raise PoolClosedError("this ConnectionManager was closed")
            slot = self._take(waiter.identity)
            if slot is not None:
                if self._available():
                    self._queue.wake_oldest()  # several slots came back at once
                return slot
            if not timed_out:  # another thread was quicker
                self._queue.requeue(waiter)
                return None
        if timed_out:
            self._queue.leave(waiter)
            self._counts["wait_timeouts"] += 1
            raise MaxConnectionReachedError(
                f"all {self.size} connections stayed in use for pool_timeout="
                f"{self.pool_timeout}s; raise size or pool_timeout"
            )
        return None  # a stale wake-up: still queued

    def _leave(self, waiter: Waiter) -> None:
        """Take an interrupted waiter out, passing on whatever it was given (lock held)."""
        slot = waiter.slot
        if slot is not None:
            waiter.slot = None
            self._counts["checkouts"] -= 1
            self._give(slot)
        elif waiter.woken:
            self._queue.looking(waiter)
            if self._available():
                self._queue.wake_oldest()  # pass the wake-up on
        else:
            self._queue.leave(waiter)

    # -- checkin ---------------------------------------------------------------------

    def checkin(self, slot: Slot, error: BaseException | None) -> None:
        """Take a slot back; pool its connection unless it must not be reused."""
        slot.lease = None  # no recovery from now on, and the password goes with it
        conn = slot.conn
        if error is None and slot.keep and not conn.identity_changed():  # type: ignore[union-attr]
            now = self._now()
            expires = slot.expires_at
            if now < expires:  # as at the end of _checkin, inlined: the hot path
                slot.last_used = now
                fit = now + self._quiet_for
                slot.fit_until = fit if fit < expires else expires
                with self._lock:
                    # Not purged, nor the pool closed or shrunk, meanwhile.
                    if slot.keep and len(self._slots) - len(self._empty) <= self.size:
                        bucket = self._idle.get(slot.identity.key)  # type: ignore[union-attr]
                        if bucket is not None and not self._waiters:
                            slot.in_use = False  # what _give does, in this case
                            bucket.append(slot)
                            self._idle_lru[slot.number] = slot
                        else:
                            self._give(slot)
                        return
        self._checkin(slot, conn, error)

    def _checkin(self, slot: Slot, conn: Connection | None, error: BaseException | None) -> None:
        """Every other checkin: what went wrong decides whether the connection stays."""
        if slot.generation != self._generation:  # lent before a fork: not ours to touch
            if conn is not None:
                conn.abandon()
            return
        now = self._now()
        if slot.origin is not None:
            self._warn_overdue([slot])
            slot.origin = None
        if conn is not None:
            if error is not None and self._classify(error) in TRANSIENT:
                log.info(
                    "slot %d: connection to %s lost in use: %r", slot.number, slot.server, error
                )
                self._release(slot, slot.detach(), "lost")
                return
            if now >= slot.expires_at:
                self._release(slot, slot.detach(), "expired")
                return
            if not self.reuse or slot.purge or self._closed or conn.identity_changed():
                self._release(slot, slot.detach())
                return
        slot.last_used = now
        fit = now + self._quiet_for
        slot.fit_until = fit if fit < slot.expires_at else slot.expires_at
        with self._lock:
            if not self._closed and self._within_size():
                self._give(slot)
                return
        self._release(slot, slot.detach())  # closed or shrunk meanwhile

    def _release(
        self,
        slot: Slot,
        conn: Connection | None,
        reason: str | None = None,
        *,
        failed_checkout: bool = False,
    ) -> None:
        """Close ``conn``, then free its slot: the slot is free only once the server
        has been told, so ``size`` holds as the server counts connections."""
        if conn is not None:
            conn.close()
        with self._lock:
            if reason is not None:
                self._counts[reason] += 1
            if failed_checkout:
                self._counts["checkouts"] -= 1
            if conn is not None:
                self._counts["closed"] += 1
            self._give(slot)

    # -- maintenance -----------------------------------------------------------------

    def purge(self, match: object) -> int:
        """Drop connections whose identity ``match(identity)`` accepts; return how many
        idle ones were closed now (in-use ones close at checkin)."""
        assert callable(match)
        doomed: list[Slot] = []
        with self._lock:
            for slot in self._slots:
                if slot.identity is None or not match(slot.identity):
                    continue
                if slot.in_use:
                    slot.purge = True
                    slot.keep = False
                else:
                    doomed.append(slot)
                    self._unidle(slot)
                    slot.in_use = True  # ours until closed
        for slot in doomed:
            self._release(slot, slot.detach())
        return len(doomed)

    def resize(self, size: int) -> int:
        """Change the cap. Growing lets waiters in; shrinking closes idle connections
        over the new size now (returns how many) and lent ones over it at checkin."""
        with self._lock:
            doomed = self._resize(size)
        for slot in doomed:
            self._release(slot, slot.detach())
        return len(doomed)

    def close(self) -> None:
        """Refuse new checkouts, wake waiters with PoolClosedError, close idle connections."""
        with self._lock:
            self._closed = True
            self._fast = False
            for slot in self._slots:
                slot.keep = False  # lent ones are closed at checkin
            self._queue.fail_all(PoolClosedError("this ConnectionManager was closed"))
            idle = list(self._idle_lru.values())
            self._idle.clear()
            self._idle_lru.clear()
        for slot in idle:
            self._upkeep.close(slot.detach())
            with self._lock:
                slot.in_use = False
                self._empty.append(slot)

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching their sockets."""
        self._lock = threading.Lock()
        for slot in self._slots:
            slot.keep = False
            if slot.conn is not None:
                slot.conn.abandon()
        # A slot lent out when the fork happened keeps the old generation: its holder's
        # checkin only abandons it again.
        self._reset_slots(self._generation + 1)


_POOLS: weakref.WeakSet[Pool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
