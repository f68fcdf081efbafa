"""The pool as a state machine: events in, decisions out; no I/O, no threads, no clock.

Every decision the pool makes is taken here, once: which slot a checkout gets and what
must be done to it first (:class:`~ldappool._core.slots.Step`), who waits and who is
woken or handed a slot, which connections are closed and why, what ``size`` allows.
A runner (the threaded one in :mod:`ldappool._threaded`) calls these methods with its
lock held, passing the time (``now``) and the outcome of the I/O it did; it does that
I/O outside the lock. The machine raises PoolClosedError and MaxConnectionReachedError
itself, and delivers "wake this waiter" by calling :meth:`Waiter.wake`.

The common checkout (an idle connection of the caller's identity, used recently) and
the common checkin are short paths through :meth:`request` and :meth:`checkin`: a
search on loopback takes ~120 us, and every microsecond spent here adds to it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from ldappool._core.checks import CheckDecisions
from ldappool._core.gate import Gate
from ldappool._core.slots import Slot, SlotView, Step
from ldappool._core.upkeep import UpkeepDecisions
from ldappool._core.waiting import Waiter, WaitQueue
from ldappool._errors import MaxConnectionReachedError, PoolClosedError
from ldappool._identity import PASSWORD_CHECKS, Credentials, Identity
from ldappool._policies import LifetimePolicy
from ldappool._port import Connection, Server
from ldappool._stats import Counters, Stats

__all__ = ["PoolMachine"]

_LEND, _PING, _REBIND = Step.LEND, Step.PING, Step.REBIND
_REPLACE, _OPEN = Step.REPLACE, Step.OPEN
_KEEP, _CLOSE, _ABANDON = Step.KEEP, Step.CLOSE, Step.ABANDON
_CHECKS = PASSWORD_CHECKS.identity


class PoolMachine(CheckDecisions, UpkeepDecisions):
    """Slots, idle connections, waiters and counters, and the rules that move them.

    The password checks' decisions are in :mod:`ldappool._core.checks`, the upkeep
    thread's in :mod:`ldappool._core.upkeep`: one machine, three files.
    """

    def __init__(
        self,
        *,
        size: int,
        lifetime: LifetimePolicy,
        reuse: bool = True,
        handoff_after: float = 0.05,
        pool_timeout: float | None = None,
        auth_size: int | None = None,
        min_size: int = 0,
    ) -> None:
        self.size = size
        #: Connections the upkeep keeps open (idle or not), of the default identity.
        self.min_size = min_size
        #: The share of ``size`` for password checks; None: half of it (at least one).
        self.auth_size = auth_size
        self.lifetime = lifetime
        #: Pool connections at all (``use_pool``); False closes each one at checkin.
        self.reuse = reuse
        #: Only for the message of MaxConnectionReachedError: the runner does the waiting.
        self.pool_timeout = pool_timeout
        #: Idle seconds below which the lifetime policy has nothing to say.
        self.quiet_for = _quiet_period(lifetime)
        #: Seconds after a password check during which its connection is used as it is.
        self.use_within = lifetime.socket_check_after
        self.closed = False
        self.counts = Counters()
        self._handoff_after = handoff_after
        self._reset(generation=0)

    def _reset(self, generation: int) -> None:
        self.generation = generation
        # Slots are made on first need, so a huge ``size`` costs nothing up front.
        self._slots: list[Slot] = []
        self._empty: list[Slot] = []
        # Idle slots by identity key, most recently used last (a LIFO keeps the working
        # set small); and all idle slots, least recently used first (for rebinds).
        # Buckets left empty stay until there are many of them: see _pool.
        self._idle: dict[bytes, list[Slot]] = {}
        self._idle_lru: OrderedDict[int, Slot] = OrderedDict()
        self._queue = WaitQueue(self._handoff_after)
        self._waiters = self._queue.waiters  # read on every checkin
        self._gate = Gate(self._auth_limit(), self._handoff_after)

    # -- checkout ------------------------------------------------------------------------

    def request(self, credentials: Credentials, now: float) -> Slot | None:
        """A checkout: a slot now lent to ``credentials``, its ``step`` saying what to do
        before handing it out; or None when the pool is full (then :meth:`enqueue`)."""
        identity = credentials.identity
        counts = self.counts
        bucket = self._idle.get(identity.key)
        if bucket:  # (close() empties the buckets: no need to look at ``closed``)
            slot = bucket.pop()
            del self._idle_lru[slot.number]
            counts.reused += 1
            slot.step = _LEND if now < slot.fit_until else self._prepare(slot, identity, now)
        else:
            if self.closed:
                raise PoolClosedError("this ConnectionManager is closed")
            found = self._take_other()
            if found is None:
                return None
            slot = found
            slot.step = self._prepare(slot, identity, now)
        counts.checkouts += 1
        slot.in_use = True
        slot.credentials = credentials
        slot.lent_at = now
        return slot

    def _take_other(self) -> Slot | None:
        """No idle connection of the caller's: an empty slot, a new one, or the least
        recently used idle connection of another identity (to rebind)."""
        if len(self._slots) - len(self._empty) < self.size:  # fewer occupied than size
            if self._empty:
                return self._empty.pop()
            slot = Slot(len(self._slots) + 1, self.generation)
            self._slots.append(slot)
            return slot
        if self._idle_lru:
            slot = next(iter(self._idle_lru.values()))
            self._unidle(slot)
            return slot
        return None

    def _prepare(self, slot: Slot, identity: Identity, now: float) -> Step:
        """What must be done to ``slot`` before lending it to ``identity``."""
        if slot.conn is None:
            return _OPEN
        ping = False
        if now >= slot.fit_until:  # else the lifetime policy has nothing to say
            idle = now - slot.last_used
            consult = idle > self.quiet_for
            if now >= slot.expires_at or (consult and self.lifetime.too_idle(idle)):
                self.counts.expired += 1
                return _REPLACE
            ping = consult and self.lifetime.should_ping(idle)
        if slot.identity != identity:
            if identity is not _CHECKS:
                return _REBIND  # the bind is a round trip: no ping needed
            # Any live connection will do for a password check, which binds it anyway;
            # from now on it is kept for password checks.
            slot.identity = identity
        return _PING if ping else _LEND

    def enqueue(self, waiter: Waiter) -> None:
        """The pool was full (``request`` returned None): queue the checkout."""
        self._queue.join(waiter)
        self.counts.waits += 1

    def look(self, waiter: Waiter, now: float, *, timed_out: bool) -> Slot | None:
        """A waiter woke up (or its time ran out): a slot for it, or None to wait again.

        Raises MaxConnectionReachedError when time is up, PoolClosedError if closed.
        """
        if waiter.slot is not None:  # handed over: good even if time ran out meanwhile
            return waiter.slot
        if waiter.error is not None:
            raise waiter.error
        if waiter.woken:
            self._queue.looking(waiter)
            if self.closed:
                raise PoolClosedError("this ConnectionManager was closed")
            slot = self.request(waiter.credentials, now)
            if slot is not None:
                if self._available():
                    self._queue.wake_oldest()  # several slots came back at once
                return slot
            if not timed_out:  # another checkout was quicker
                self._queue.requeue(waiter)
                return None
        if timed_out:
            self._queue.leave(waiter)
            self.counts.wait_timeouts += 1
            raise MaxConnectionReachedError(
                f"all {self.size} connections stayed in use for pool_timeout="
                f"{self.pool_timeout}s; raise size or pool_timeout"
            )
        return None  # a stale wake-up: still queued

    def cancel(self, waiter: Waiter, now: float) -> tuple[Slot | None, Step]:
        """A waiting checkout was interrupted: take it out, passing on what it was given.

        A slot handed to it comes back as if checked in unused: ``(slot, CLOSE)`` when
        close(), purge() or a shrink came meanwhile (the runner closes it), else
        ``(slot, KEEP)``; ``(None, KEEP)`` when it held none.
        """
        slot = waiter.slot
        if slot is not None:
            waiter.slot = None
            self.counts.checkouts -= 1
            slot.credentials = None
            why = self._retired(slot) if slot.conn is not None else None
            if why is not None:
                return slot, self._closing(slot, why)
            self._give(slot, now)
        elif waiter.woken:
            self._queue.looking(waiter)
            if self._available():
                self._queue.wake_oldest()  # pass the wake-up on
        else:
            self._queue.leave(waiter)
        return slot, _KEEP

    # -- the outcomes of a checkout's I/O -----------------------------------------------------

    def discard(self, slot: Slot, reason: str | None = None) -> Connection | None:
        """The slot's connection failed a check (``reason``: the counter, e.g. "stale"), or
        is past its lifetime: it comes out, for the runner to close; the slot stays lent,
        its next step is OPEN."""
        if reason is not None:
            self.counts.bump(reason)
        conn = slot.clear()
        if conn is not None:
            self.counts.closed += 1
        slot.step = _OPEN
        return conn

    def opened(self, slot: Slot, conn: Connection, server: Server, now: float) -> None:
        """A connection was opened and bound for the slot's checkout."""
        assert slot.credentials is not None
        slot.conn, slot.native, slot.server = conn, conn.native, server
        slot.identity = slot.credentials.identity
        slot.opened_at = slot.last_used = now
        slot.lent_at = now  # held from now on: opening it is not the holder's time
        slot.expires_at = self.lifetime.expires_at(now)
        slot.step = _LEND
        self.counts.opened += 1

    def rebound(self, slot: Slot) -> None:
        """The slot's connection is now bound as its checkout's identity."""
        assert slot.credentials is not None
        slot.identity = slot.credentials.identity
        slot.step = _LEND
        self.counts.rebinds += 1

    def recovered(self, slot: Slot, server: Server, now: float) -> None:
        """A lent connection got a new transport under a read that had lost it."""
        slot.server, slot.opened_at = server, now
        slot.expires_at = self.lifetime.expires_at(now)
        self.counts.recovered += 1

    def failed(self, slot: Slot, now: float) -> Step:
        """The checkout failed (refused, unreachable, interrupted): the slot is not lent.

        CLOSE when a connection is left in it (a bind refused, say), else KEEP: the slot
        went back (to a waiter, perhaps).
        """
        self.counts.checkouts -= 1
        slot.credentials = None
        if slot.conn is not None:
            return self._closing(slot, "refused")
        self._give(slot, now)
        return _KEEP

    def count(self, name: str) -> None:
        """An outcome of the runner's own (connect_errors, failovers, pings...)."""
        self.counts.bump(name)

    # -- checkin -------------------------------------------------------------------------

    def checkin(self, slot: Slot, now: float, lost: bool = False, changed: bool = False) -> Step:
        """A lent slot came back: KEEP (pooled or handed over), CLOSE or ABANDON.

        ``lost``: the holder's block raised an error that means the connection is gone
        (``ErrorKind.transient``). ``changed``: the holder re-bound or unbound it.
        """
        slot.credentials = None
        if slot.generation != self.generation:  # lent before a fork: not ours to touch
            return _ABANDON
        identity = slot.identity
        if identity is not None:  # (a connection is in the slot)
            expires = slot.expires_at
            if (
                lost
                or changed
                or now >= expires
                or slot.purge
                or not self.reuse
                or self.closed
                or len(self._slots) - len(self._empty) > self.size  # shrunk meanwhile
            ):  # (the conditions of _retired, inline: the checkin's hot path)
                if lost:
                    self.counts.lost += 1
                    return self._closing(slot, "lost")
                if now >= expires:
                    self.counts.expired += 1
                    return self._closing(slot, "expired")
                return self._closing(slot, "changed" if changed else self._retired(slot))
            slot.last_used = now
            fit = now + self.quiet_for
            slot.fit_until = fit if fit < expires else expires
            if not self._waiters:  # the common case, as at the end of _give
                bucket = self._idle.get(identity.key)
                if bucket is not None:
                    slot.in_use = False
                    bucket.append(slot)
                    self._idle_lru[slot.number] = slot
                    return _KEEP
        self._give(slot, now)
        return _KEEP

    def _retired(self, slot: Slot) -> str | None:
        """Why a healthy connection coming back must close rather than be pooled (a
        CLOSED event's reason), or None."""
        if slot.purge:
            return "purged"
        if self.closed:
            return "closed"
        if not self.reuse:
            return "not pooled"
        if len(self._slots) - len(self._empty) > self.size:
            return "shrunk"
        return None

    def _closing(self, slot: Slot, why: str | None) -> Step:
        slot.step = _CLOSE
        slot.why = why or "closed"
        return _CLOSE

    def closed_conn(self, slot: Slot, now: float) -> None:
        """The runner closed the slot's connection, as told (CLOSE): the slot is free."""
        if slot.clear() is not None:
            self.counts.closed += 1
        self._give(slot, now)

    def _give(self, slot: Slot, now: float) -> None:
        """Hand a slot coming back to a waiter, or make it free (see ``waiting``).

        An empty slot is not handed over while more slots are occupied than ``size``
        (after a shrink): it stays empty, and so the pool shrinks.
        """
        if self._waiters and (
            slot.conn is not None or len(self._slots) - len(self._empty) <= self.size
        ):
            waiter = self._queue.serve(now)
            if waiter is not None:
                credentials = waiter.credentials
                self.counts.checkouts += 1
                if slot.conn is not None and slot.identity == credentials.identity:
                    self.counts.reused += 1
                slot.credentials = credentials
                slot.lent_at = now
                slot.step = self._prepare(slot, credentials.identity, now)
                waiter.slot = slot
                waiter.wake()
                return
        slot.in_use = False
        identity = slot.identity
        if slot.conn is None or identity is None:
            self._empty.append(slot)
            return
        bucket = self._idle.get(identity.key)
        if bucket is None:
            if len(self._idle) > 2 * len(self._slots) + 8:  # many empty buckets
                self._idle = {key: slots for key, slots in self._idle.items() if slots}
            bucket = self._idle[identity.key] = []
        bucket.append(slot)
        self._idle_lru[slot.number] = slot

    def _unidle(self, slot: Slot) -> None:
        """Take an idle slot out of both indexes, wherever it stands."""
        assert slot.identity is not None
        del self._idle_lru[slot.number]
        bucket = self._idle[slot.identity.key]
        bucket.remove(slot)
        if not bucket:
            del self._idle[slot.identity.key]

    def _available(self) -> bool:
        """Whether a request would find a slot now."""
        return bool(self._idle_lru) or len(self._slots) - len(self._empty) < self.size

    # -- maintenance ---------------------------------------------------------------------

    def _take_idle(self, slots: list[Slot], why: str) -> list[Slot]:
        """Idle slots taken out of the pool to CLOSE (ours until ``closed_conn``)."""
        for slot in slots:
            self._unidle(slot)
            slot.in_use = True
            self._closing(slot, why)
        return slots

    def purge(self, match: Callable[[Identity], bool]) -> list[Slot]:
        """Drop connections whose identity ``match`` accepts: the idle ones to CLOSE now;
        lent ones close at checkin."""
        doomed = []
        for slot in self._slots:
            if slot.identity is None or not match(slot.identity):
                continue
            if slot.in_use:
                slot.purge = True
            else:
                doomed.append(slot)
        return self._take_idle(doomed, "purged")

    def resize(self, size: int, now: float) -> list[Slot]:
        """Set the cap: idle slots over it to CLOSE now (least recently used first); lent
        ones over it close at checkin. Growing lets a waiter in (who wakes the next)."""
        self.size = size
        self._gate.resize(self._auth_limit())
        excess = len(self._slots) - len(self._empty) - size
        if excess < 0:
            self._queue.wake_oldest()
        return self._take_idle(list(self._idle_lru.values())[: max(excess, 0)], "shrunk")

    def expire(self, now: float) -> list[Slot]:
        """Time passed: idle connections past their lifetime, or idle longer than the
        policy allows while more than ``min_size`` are open, taken out to CLOSE now
        rather than at the next checkout."""
        lifetime = self.lifetime
        old = [slot for slot in self._idle_lru.values() if now >= slot.expires_at]
        spare = len(self._slots) - len(self._empty) - len(old) - self.min_size
        idle = [
            slot
            for slot in self._idle_lru.values()  # least recently used first
            if now < slot.expires_at and lifetime.too_idle(now - slot.last_used)
        ][: max(spare, 0)]
        self.counts.expired += len(old) + len(idle)
        return self._take_idle(old, "expired") + self._take_idle(idle, "idle")

    def close(self) -> list[Slot]:
        """Refuse new checkouts, fail every waiter with PoolClosedError; the idle slots to
        CLOSE now (lent ones close at checkin)."""
        self.closed = True
        self._queue.fail_all(PoolClosedError("this ConnectionManager was closed"))
        self._gate.fail_all(PoolClosedError("this ConnectionManager was closed"))
        return self._take_idle(list(self._idle_lru.values()), "closed")

    def forked(self) -> list[Connection]:
        """In a forked child: every connection of the parent, to ABANDON (no I/O on the
        parent's sockets); the pool starts anew. A slot lent at the fork keeps the old
        generation: its checkin says ABANDON."""
        conns = [slot.conn for slot in self._slots if slot.conn is not None]
        self._reset(self.generation + 1)
        return conns

    # -- what the pool looks like ------------------------------------------------------------

    @property
    def handoff_after(self) -> float:
        """Seconds the oldest waiter may be passed over before slots (or, at the gate,
        places for password checks) are handed to it."""
        return self._handoff_after

    @handoff_after.setter
    def handoff_after(self, seconds: float) -> None:
        self._handoff_after = self._queue.handoff_after = self._gate.handoff_after = seconds

    @property
    def occupied(self) -> int:
        """Slots holding a connection or lent out: what counts against ``size``."""
        return len(self._slots) - len(self._empty)

    def overdue(self, now: float, limit: float) -> list[Slot]:
        """Lent slots checked out more than ``limit`` seconds ago."""
        return [s for s in self._slots if s.in_use and s.credentials and now - s.lent_at > limit]

    def snapshot(self) -> tuple[list[SlotView], Stats]:
        """The occupied slots and the counters, as one consistent picture."""
        occupied = [s for s in self._slots if s.conn is not None or s.in_use]
        stats = Stats(
            size=self.size,
            connections=len(occupied),
            in_use=sum(1 for s in occupied if s.in_use),
            idle=len(self._idle_lru),
            waiting=len(self._queue) + len(self._gate),
            **self.counts.as_dict(),
        )
        return [s.view() for s in occupied], stats


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
