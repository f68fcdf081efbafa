"""What both runners share: the machine under one lock, and all of it that never waits.

:class:`BaseRunner` is what the threaded runner (:mod:`ldappool._threaded`) and the
asyncio runner (:mod:`ldappool._async_pool`) do alike: the
:class:`~ldappool._core.machine.PoolMachine` and the ``threading.Lock`` every call to it
is made under (the worker and upkeep threads report to the machine too), the clock, the
:class:`~ldappool._slot_io.SlotIO`, the :class:`~ldappool._upkeep.Upkeep` thread, the
events, the ``warn_held_after`` bookkeeping, the settings read from the machine and its
snapshot, ``purge`` and ``resize``, the end of a password check, and the fork hook.

A subclass adds what differs: how a checkout waits (a thread on a lock, a task on a
future), where a step's I/O runs, and how it closes a connection the machine said to
CLOSE (:meth:`BaseRunner._close`: now, in the calling thread, or in a worker thread).
The hot paths (checkout, checkin, a password check) are written out in each runner and
call nothing here that they did not call before.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable

from ldappool._clock import Clock
from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot, SlotView, Step
from ldappool._core.waiting import Waiter
from ldappool._dialer import Dialer
from ldappool._errors import MaxConnectionReachedError
from ldappool._events import Event, EventKind
from ldappool._identity import Credentials, Identity
from ldappool._policies import LifetimePolicy
from ldappool._port import Connection, Server
from ldappool._slot_io import SlotIO
from ldappool._stats import Stats
from ldappool._upkeep import Upkeep

__all__ = ["UPKEEP_INTERVAL", "BaseRunner"]

log = logging.getLogger("ldappool")

#: Seconds between two rounds of the upkeep thread (less with a shorter keepalive).
UPKEEP_INTERVAL = 1.0

_KEEP, _CLOSE = Step.KEEP, Step.CLOSE


class BaseRunner:
    """Drives one pool's state machine: what does not depend on how a checkout waits.

    A subclass registers itself with :func:`ldappool._fork.watch` once it is whole.
    """

    def __init__(
        self,
        dialer: Dialer,
        *,
        size: int,
        lifetime: LifetimePolicy,
        pool_timeout: float | None,
        reuse: bool,
        clock: Clock,
        warn_held_after: float | None = None,
        handoff_after: float = 0.05,
        auth_size: int | None = None,
        min_size: int = 0,
        keepalive: float | None = None,
        default: Callable[[], Credentials | None] = lambda: None,
    ) -> None:
        self._machine = PoolMachine(
            auth_size=auth_size,
            min_size=min_size,
            size=size,
            lifetime=lifetime,
            reuse=reuse,
            handoff_after=handoff_after,
            pool_timeout=pool_timeout,
        )
        self._lock = threading.Lock()
        self._now = clock.monotonic
        # The machine's two hot-path methods, looked up once.
        self._request = self._machine.request
        self._return = self._machine.checkin
        dialer.count = self._count  # its outcomes land in this pool's stats
        self._classify = dialer.driver.classify
        self._events = dialer.events
        self._io = SlotIO(self._machine, self._lock, dialer, clock)
        #: Seconds after which a holder is named in a warning (None: never).
        self.warn_held_after = warn_held_after
        #: Where each lent slot was checked out, while ``warn_held_after`` is set.
        self._origins: dict[Slot, str] = {}
        self._upkeep = Upkeep(
            self,
            self._machine,
            self._io,
            clock,
            default=default,
            keepalive=keepalive,
            interval=UPKEEP_INTERVAL if keepalive is None else min(UPKEEP_INTERVAL, keepalive / 2),
        )
        #: Whether the upkeep thread runs (started with the first connection opened).
        self._background = min_size > 0 or keepalive is not None

    # -- closing: the subclass's way ---------------------------------------------------

    def _close(self, slot: Slot) -> None:
        """Close the connection of a slot the machine said to CLOSE, then free the slot
        (only once the server has been told, so ``size`` holds as the server counts);
        without blocking the caller longer than the runner allows."""
        raise NotImplementedError

    def _close_returned(self, slot: Slot) -> None:
        """Close a slot checked in to be closed (the asyncio runner waits for the last
        call running on its connection first)."""
        self._close(slot)

    def close_slot(self, slot: Slot) -> None:
        """Close a slot's connection the machine said to CLOSE, in the calling thread
        (the upkeep's)."""
        raise NotImplementedError

    @property
    def lock(self) -> threading.Lock:
        """The pool's lock (replaced in a forked child)."""
        return self._lock

    # -- waiting -----------------------------------------------------------------------

    def _deadline(self) -> float:
        """When a checkout starting now stops waiting (``time.monotonic()``)."""
        timeout = self._machine.pool_timeout
        return math.inf if timeout is None else time.monotonic() + timeout

    def _queue(self, waiter: Waiter, now: float) -> list[tuple[Slot, str]]:
        """Queue a checkout on a full pool (lock held); the holders to warn about."""
        self._machine.enqueue(waiter)
        limit = self.warn_held_after
        if limit is None:
            return []
        named = [(s, self._origins.pop(s, "")) for s in self._machine.overdue(now, limit)]
        return [(slot, origin) for slot, origin in named if origin]

    def _cancel(self, waiter: Waiter, exc: BaseException) -> None:
        """A waiter interrupted (timed out, cancelled, KeyboardInterrupt...) leaves the
        queue and passes on what it was given: no slot is lost."""
        with self._lock:
            slot, step = self._machine.cancel(waiter, self._now())
        if step is _CLOSE and slot is not None:
            self._close(slot)
        if isinstance(exc, MaxConnectionReachedError) and self._events.listeners:
            self._emit(EventKind.WAIT_TIMED_OUT, None, waiter.credentials.who)

    # -- warn_held_after ---------------------------------------------------------------

    def _record(self, slot: Slot) -> None:
        """Where ``slot`` was checked out: the stack, without this frame and the three
        above it (``_prepare``, ``checkout`` or ``authenticate``, the lease or manager)."""
        origin = "".join(traceback.format_stack(limit=13)[:-4])
        with self._lock:
            self._origins[slot] = origin

    def _warn_overdue(self, holders: list[tuple[Slot, str]], now: float) -> None:
        """Name the holders that kept their connection too long (once per checkout)."""
        limit = self.warn_held_after
        for slot, origin in holders:
            if limit is not None:
                log.warning(
                    "slot %d checked out for %.1fs (longer than warn_held_after=%gs), from:\n%s",
                    slot.number,
                    now - slot.lent_at,
                    limit,
                    origin,
                )

    def _warn_at_checkin(self, slot: Slot, now: float) -> None:
        """A holder coming back late, not named yet: name it now."""
        with self._lock:
            origin = self._origins.pop(slot, None)
        limit = self.warn_held_after
        if origin and limit is not None and now - slot.lent_at > limit:
            self._warn_overdue([(slot, origin)], now)

    # -- checkin -----------------------------------------------------------------------

    def _checked_in(self, slot: Slot, now: float) -> None:
        credentials = slot.credentials
        who = credentials.who if credentials is not None else None
        self._emit(EventKind.CHECKED_IN, slot, who, now - slot.lent_at)

    def _carry_out(
        self, slot: Slot, conn: Connection | None, step: Step, lost: BaseException | None
    ) -> None:
        """What the machine said at checkin: CLOSE the connection, or ABANDON it."""
        if step is _CLOSE:
            if lost is not None:
                log.info(
                    "slot %d: connection to %s lost in use: %r", slot.number, slot.server, lost
                )
            self._close_returned(slot)
        elif step is Step.ABANDON and conn is not None:
            conn.abandon()

    def _end_check(self, slot: Slot, *, lost: bool, refused: bool = False) -> None:
        """Check a password check's slot in and leave the gate, under one lock hold
        (``refused``: a wrong password, counted then)."""
        conn = slot.conn
        now = self._now()
        if self._origins:
            self._warn_at_checkin(slot, now)
        if self._events.listeners:
            self._checked_in(slot, now)
        with self._lock:
            step = self._machine.end_check(slot, now, lost=lost, refused=refused)
        if step is not _KEEP:
            self._carry_out(slot, conn, step, None)

    def _check_unanswered(
        self, slot: Slot, server: Server | None, who: str, error: BaseException
    ) -> BaseException:
        """A password check's bind raised ``error``: end the check with its connection
        closed (the answer may be lost on it), and return what to raise: BackendError
        caused by a driver's error (the bind may have counted, so it is not retried),
        anything else (an interrupt, a cancellation) as it came."""
        self._end_check(slot, lost=True)
        if not isinstance(error, Exception):
            return error
        unanswered = self._io.unanswered(server, who, error)
        unanswered.__cause__ = error
        return unanswered

    # -- events --------------------------------------------------------------------------

    def _emit(
        self, kind: EventKind, slot: Slot | None, dn: str | None, duration: float | None = None
    ) -> None:
        """Tell the listeners (only called when there are some)."""
        server = slot.server if slot is not None else None
        self._events.emit(
            Event(
                kind,
                slot=slot.number if slot is not None else None,
                server=str(server) if server else None,
                dn=dn,
                duration=duration,
            )
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._machine.count(name)

    # -- maintenance -------------------------------------------------------------------

    def purge(self, match: Callable[[Identity], bool]) -> int:
        """Drop connections whose identity ``match`` accepts: idle ones are closed now
        (returns how many), lent ones at checkin."""
        with self._lock:
            doomed = self._machine.purge(match)
        return self._close_each(doomed)

    def resize(self, size: int) -> int:
        """Change the cap. Growing lets waiters in; shrinking closes idle connections
        over the new size now (returns how many) and lent ones over it at checkin."""
        with self._lock:
            doomed = self._machine.resize(size, self._now())
        return self._close_each(doomed)

    def _close_each(self, doomed: list[Slot]) -> int:
        for slot in doomed:
            self._close(slot)
        return len(doomed)

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching their sockets."""
        self._lock = self._io.lock = threading.Lock()
        self._origins = {}
        self._upkeep.after_fork_in_child()
        for conn in self._machine.forked():
            conn.abandon()

    # -- state ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._machine.size

    @property
    def closed(self) -> bool:
        """Whether close() was called: no more checkouts."""
        return self._machine.closed

    @property
    def pool_timeout(self) -> float | None:
        return self._machine.pool_timeout

    @pool_timeout.setter
    def pool_timeout(self, seconds: float | None) -> None:
        self._machine.pool_timeout = seconds

    @property
    def min_size(self) -> int:
        return self._machine.min_size

    @property
    def auth_size(self) -> int | None:
        return self._machine.auth_size

    @auth_size.setter
    def auth_size(self, auth_size: int | None) -> None:
        with self._lock:
            self._machine.set_auth_size(auth_size)

    @property
    def handoff_after(self) -> float:
        return self._machine.handoff_after

    @handoff_after.setter
    def handoff_after(self, seconds: float) -> None:
        with self._lock:
            self._machine.handoff_after = seconds

    def snapshot(self) -> tuple[list[SlotView], Stats]:
        """The occupied slots and the counters, read together under the lock."""
        with self._lock:
            return self._machine.snapshot()
