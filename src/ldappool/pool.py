"""The pool core: slots, identities, waiters, lifetime.

Pure Python, driver-agnostic. State changes happen under one lock and are cheap
(dict and deque operations); every I/O the pool decides on (connect, bind, poll,
ping, unbind) runs after the lock is released, on a slot the calling thread owns.

The common checkout (an idle connection of the caller's identity, used recently) and
the common checkin (nothing went wrong) have short paths of their own, tried first: a
search on loopback takes ~120 us, and every microsecond spent here adds to it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import traceback
import weakref
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING

import attrs

from ldappool.clock import Clock
from ldappool.connect import Connector
from ldappool.connector import Connection, ErrorKind
from ldappool.errors import (
    BackendError,
    InvalidCredentialsError,
    MaxConnectionReachedError,
    PoolClosedError,
)
from ldappool.identity import Identity
from ldappool.policies import LifetimePolicy
from ldappool.slots import Slot, SlotView, Waiter
from ldappool.stats import Stats

if TYPE_CHECKING:
    from ldappool.lease import Lease

__all__ = ["Pool"]

log = logging.getLogger("ldappool")

_LOST = (ErrorKind.DOWN, ErrorKind.TIMEOUT)


class Pool:
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
        self._connector = connector
        connector.count = self._count  # its outcomes land in this pool's stats
        self._classify = connector.driver.classify
        self.size = size
        self.lifetime = lifetime
        self.pool_timeout = pool_timeout
        self.reuse = reuse
        self._clock = clock
        self._now = clock.monotonic
        self.warn_held_after = warn_held_after
        #: Seconds a waiter may be passed over before slots are handed to it: see _give.
        self.handoff_after = handoff_after
        self._quiet_for = _quiet_period(lifetime)
        self._lock = threading.Lock()
        self._closed = False
        #: Whether checkouts may use the short checkin (``Slot.keep``): pooling on, not
        #: closed, no held-too-long watch.
        self._fast = reuse and warn_held_after is None
        self._counts = dict.fromkeys(_COUNTER_NAMES, 0)
        self._reuses = 0  # short-path checkouts: counted as checkouts and as reused
        self._reset_slots(generation=0)
        _POOLS.add(self)

    # -- state, under the lock ------------------------------------------------------

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
        self._waiters: deque[Waiter] = deque()  # oldest first
        self._woken: Waiter | None = None  # told to look, not yet looked

    def _take(self, identity: Identity) -> Slot | None:
        """A slot for ``identity``: its own idle connection, an empty slot, or the
        least recently used idle connection of another identity (to rebind)."""
        bucket = self._idle.get(identity.key)
        if bucket:
            slot = bucket.pop()
            del self._idle_lru[slot.number]
            self._counts["reused"] += 1
        elif self._empty:
            slot = self._empty.pop()
        elif len(self._slots) < self.size:
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
        """Make a slot available and wake the oldest waiter to take it, or hand it
        straight to the oldest waiter once that one has waited ``handoff_after``.

        Handing every slot over would be fair, but under the GIL it makes every
        checkin a thread switch: with 32 threads on 8 connections, throughput fell
        by a third. Waking instead lets a thread that is already running (often the
        one checking in) take the slot first; the woken waiter, if it finds nothing,
        keeps its place at the head of the queue. At most one waiter is woken at a
        time, so a burst of checkins does not wake a herd.
        """
        waiters = self._waiters
        if waiters:
            if self._now() - waiters[0].since >= self.handoff_after:
                waiter = waiters.popleft()
                self._counts["checkouts"] += 1
                if slot.conn is not None and slot.identity == waiter.identity:
                    self._counts["reused"] += 1
                waiter.slot = slot
                waiter.wake()
                return
            self._wake_next()
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

    def _wake_next(self) -> None:
        """Wake the oldest waiter, unless one is already on its way."""
        if self._waiters and self._woken is None:
            waiter = self._woken = self._waiters.popleft()
            waiter.woken = True
            waiter.wake()

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
        return bool(self._idle_lru or self._empty or len(self._slots) < self.size)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

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
                    waiter = Waiter(identity, self._now())
                    self._waiters.append(waiter)
                    self._counts["waits"] += 1
                    if self.warn_held_after is not None:
                        overdue = [s for s in self._slots if s.in_use and s.origin]
            if slot is None:
                self._warn_overdue(overdue)
                slot = self._wait(waiter)
        try:
            self._prepare(slot, identity, lease.who, lease.cred)
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
            waiter.woken = False
            self._woken = None
            if self._closed:
                raise PoolClosedError("this ConnectionManager was closed")
            slot = self._take(waiter.identity)
            if slot is not None:
                if self._available():
                    self._wake_next()  # several slots came back at once
                return slot
            if not timed_out:  # another thread was quicker: back to the head of the queue
                self._waiters.appendleft(waiter)
                return None
        if timed_out:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
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
            waiter.woken = False
            self._woken = None
            if self._available():
                self._wake_next()  # pass the wake-up on
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def _prepare(self, slot: Slot, identity: Identity, who: str | None, cred: str | None) -> None:
        """Make the slot's connection usable for ``identity`` (I/O, outside the lock)."""
        conn = slot.conn
        if conn is not None:
            now = self._now()
            reason = self._unfit(slot, conn, now)
            if reason is None and slot.identity == identity:
                return
            if reason is None:
                if self._rebind(slot, conn, identity, who, cred):
                    return
            else:
                self._count(reason)
                log.debug(
                    "slot %d: replacing a %s connection to %s", slot.number, reason, slot.server
                )
            self._close(slot.detach())
        new, server = self._connector.open(who, cred)
        now = self._now()
        slot.conn, slot.native, slot.identity, slot.server = new, new.native, identity, server
        slot.opened_at, slot.last_used = now, now
        slot.expires_at = self.lifetime.expires_at(now)
        # For the connection's life: it refuses to act unless the slot is lent.
        new.set_recovery(partial(self._recover, slot))
        self._count("opened")

    def _unfit(self, slot: Slot, conn: Connection, now: float) -> str | None:
        """Why a pooled connection must not be lent (a counter name), or None."""
        if now >= slot.expires_at:
            return "expired"
        idle = now - slot.last_used
        consult = idle > self._quiet_for  # else the policy has nothing to say: skip it
        if consult and self.lifetime.too_idle(idle):
            return "expired"
        if not conn.looks_alive():
            return "stale"
        if consult and self.lifetime.should_ping(idle):
            self._count("pings")
            try:
                conn.ping()
            except Exception:
                return "stale"
        return None

    def _rebind(
        self, slot: Slot, conn: Connection, identity: Identity, who: str | None, cred: str | None
    ) -> bool:
        """Rebind an idle connection of another identity; False if it turned out dead."""
        slot.identity = None  # bound to nobody we know until the bind succeeds
        try:
            conn.bind(who, cred)
        except Exception as exc:
            kind = self._classify(exc)
            if kind in _LOST:
                return False
            if kind is ErrorKind.CREDENTIALS:
                self._count("invalid_credentials")
                raise InvalidCredentialsError(
                    f"{slot.server} refused the credentials for bind DN {who!r}", str(slot.server)
                ) from exc
            raise BackendError(
                f"{slot.server} refused the bind: {exc!r}", str(slot.server)
            ) from exc
        slot.identity = identity
        self._count("rebinds")
        return True

    def _recover(self, slot: Slot) -> None:
        """Reconnect a lent connection under a read that lost it (holder's thread)."""
        lease, conn = slot.lease, slot.conn
        if lease is None or conn is None:
            raise RuntimeError("not lent: a connection in the pool is not recovered")
        lost_from = slot.server
        server = self._connector.reopen(conn, lease.who, lease.cred)
        now = self._now()
        slot.server, slot.opened_at = server, now
        slot.expires_at = self.lifetime.expires_at(now)
        self._count("recovered")
        log.info(
            "slot %d: reconnected to %s after losing %s in use", slot.number, server, lost_from
        )

    # -- checkin ---------------------------------------------------------------------

    def checkin(self, slot: Slot, error: BaseException | None) -> None:
        """Take a slot back; pool its connection unless it must not be reused."""
        slot.lease = None  # no recovery from now on, and the password goes with it
        conn = slot.conn
        if error is None and slot.keep and not conn.identity_changed():  # type: ignore[union-attr]
            now = self._now()
            expires = slot.expires_at
            if now < expires:
                slot.last_used = now
                fit = now + self._quiet_for
                slot.fit_until = fit if fit < expires else expires
                with self._lock:
                    if slot.keep:  # not purged, nor the pool closed, meanwhile
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
            if error is not None and self._classify(error) in _LOST:
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
        self._return(slot, now)

    def _return(self, slot: Slot, now: float) -> None:
        """Give a slot back to the pool, its connection (if any) fit to be lent again."""
        slot.last_used = now
        fit = now + self._quiet_for
        slot.fit_until = fit if fit < slot.expires_at else slot.expires_at
        with self._lock:
            if not self._closed:
                self._give(slot)
                return
        self._release(slot, slot.detach())  # closed meanwhile

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

    def _close(self, conn: Connection | None) -> None:
        if conn is not None:
            conn.close()
            self._count("closed")

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

    def close(self) -> None:
        """Refuse new checkouts, wake waiters with PoolClosedError, close idle connections."""
        with self._lock:
            self._closed = True
            self._fast = False
            for slot in self._slots:
                slot.keep = False  # lent ones are closed at checkin
            for waiter in self._waiters:
                waiter.error = PoolClosedError("this ConnectionManager was closed")
                waiter.wake()
            self._waiters.clear()
            idle = list(self._idle_lru.values())
            self._idle.clear()
            self._idle_lru.clear()
        for slot in idle:
            self._close(slot.detach())
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

    # -- introspection ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

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
                waiting=len(self._waiters) + (self._woken is not None),
                **counts,
            )
        return occupied, stats


def _quiet_period(lifetime: LifetimePolicy) -> float:
    """Idle seconds below which the lifetime policy neither closes nor pings.

    Lets the checkout skip two method calls on its hot path; a subclass that overrides
    either method is always consulted.
    """
    kind = type(lifetime)
    if (kind.too_idle, kind.should_ping) != (LifetimePolicy.too_idle, LifetimePolicy.should_ping):
        return -math.inf
    limits = [v for v in (lifetime.max_idle, lifetime.ping_after) if v is not None]
    return min(limits, default=math.inf)


_COUNTER_NAMES = tuple(
    a.name
    for a in attrs.fields(Stats)
    if a.name not in ("size", "connections", "in_use", "idle", "waiting")
)

_POOLS: weakref.WeakSet[Pool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
