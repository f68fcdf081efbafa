"""The threaded runner: drives the pool's state machine for ``ConnectionManager``.

Each machine call happens under one lock and is cheap (:mod:`ldappool._core.machine`);
every I/O it decides on (connect, bind, socket check, ping, unbind) runs after the lock
is released, on a slot the calling thread holds (:mod:`ldappool._slot_io`). A checkout
waiting on a full pool blocks on its own lock, released when the machine wakes it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable

from ldappool import _fork
from ldappool._clock import Clock
from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot, SlotView, Step
from ldappool._core.waiting import Waiter
from ldappool._dialer import Dialer
from ldappool._errors import MaxConnectionReachedError
from ldappool._events import Event, EventKind
from ldappool._identity import PASSWORD_CHECKS, Credentials, Identity
from ldappool._policies import LifetimePolicy
from ldappool._port import BindAnswer, Connection, Server
from ldappool._slot_io import SlotIO
from ldappool._stats import Stats
from ldappool._upkeep import Upkeep

__all__ = ["ThreadedPool"]

log = logging.getLogger("ldappool")

#: Seconds between two rounds of the upkeep thread (less with a shorter keepalive).
UPKEEP_INTERVAL = 1.0

_LEND, _KEEP, _CLOSE = Step.LEND, Step.KEEP, Step.CLOSE


class _ThreadWaiter(Waiter):
    """A waiter that blocks its thread on a bare lock, taken now and released by wake():
    the cheapest blocking handoff (a futex), where an Event would add a Condition and a
    second lock per wait."""

    __slots__ = ("_lock",)

    def __init__(self, credentials: Credentials, since: float) -> None:
        super().__init__(credentials, since)
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until woken or ``timeout`` seconds pass; True if woken. Re-arms itself."""
        return self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class ThreadedPool:
    """Lends bound connections out of ``size`` slots to any number of threads."""

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
        _fork.watch(self)

    # -- checkout --------------------------------------------------------------------

    def checkout(self, credentials: Credentials, deadline: float = math.nan) -> Slot:
        """A slot whose connection is live and bound as ``credentials``.

        ``deadline``: the ``time.monotonic()`` until which to wait for a slot; by default
        ``pool_timeout`` from now (infinity: no limit).
        """
        now = self._now()
        with self._lock:
            slot = self._request(credentials, now)
            if slot is None:
                waiter, overdue = self._queue(credentials, now)
        if slot is None:
            if self._events.listeners:
                self._emit(EventKind.WAIT_STARTED, None, credentials.who)
            self._warn_overdue(overdue, now)
            slot = self._wait(waiter, self._deadline() if math.isnan(deadline) else deadline)
        elif slot.step is _LEND and self.warn_held_after is None:
            conn = slot.conn
            if conn is not None and conn.looks_alive():  # the common case ends here
                if self._events.listeners:
                    self._emit(EventKind.CHECKED_OUT, slot, credentials.who, self._now() - now)
                return slot
        slot = self._prepare(slot, credentials)
        if self._events.listeners:
            self._emit(EventKind.CHECKED_OUT, slot, credentials.who, self._now() - now)
        return slot

    def _queue(
        self, credentials: Credentials, now: float
    ) -> tuple[_ThreadWaiter, list[tuple[Slot, str]]]:
        """Queue a checkout on a full pool (lock held); and the holders to warn about."""
        waiter = _ThreadWaiter(credentials, now)
        self._machine.enqueue(waiter)
        limit = self.warn_held_after
        if limit is None:
            return waiter, []
        overdue = [(s, self._origins.pop(s, "")) for s in self._machine.overdue(now, limit)]
        return waiter, [(slot, origin) for slot, origin in overdue if origin]

    def _prepare(self, slot: Slot, credentials: Credentials) -> Slot:
        """Carry out the slot's step; on failure the slot goes back (nothing leaks)."""
        if self._background and not self._upkeep.running:
            self._upkeep.start()
        try:
            self._io.prepare(slot, credentials)
        except BaseException:
            with self._lock:
                step = self._machine.failed(slot, self._now())
            if step is _CLOSE:
                self._close(slot)
            raise
        if self.warn_held_after is not None:
            # Without this frame and the two above it (checkout, Lease.__enter__).
            origin = "".join(traceback.format_stack(limit=12)[:-3])
            with self._lock:
                self._origins[slot] = origin
        return slot

    def _deadline(self) -> float:
        """When a checkout starting now stops waiting (``time.monotonic()``)."""
        timeout = self._machine.pool_timeout
        return math.inf if timeout is None else time.monotonic() + timeout

    def _wait(self, waiter: _ThreadWaiter, deadline: float) -> Slot:
        """Sleep until a slot is handed over, or woken, until one is found or time is up."""
        timeout = _left(deadline)
        try:
            while True:
                woken = waiter.wait(timeout)
                if waiter.slot is not None:  # handed over: set before the wake-up
                    return waiter.slot
                with self._lock:
                    slot = self._machine.look(waiter, self._now(), timed_out=not woken)
                if slot is not None:
                    return slot
                timeout = _left(deadline)
        except BaseException as exc:  # KeyboardInterrupt, time out...: lose no slot
            with self._lock:
                slot, step = self._machine.cancel(waiter, self._now())
            if step is _CLOSE and slot is not None:
                self._close(slot)
            if isinstance(exc, MaxConnectionReachedError) and self._events.listeners:
                self._emit(EventKind.WAIT_TIMED_OUT, None, waiter.credentials.who)
            raise

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

    # -- checkin ---------------------------------------------------------------------

    def checkin(self, slot: Slot, error: BaseException | None) -> None:
        """Take a slot back; pool its connection unless it must not be reused."""
        conn = slot.conn
        lost = error is not None and self._classify(error).transient
        changed = conn is not None and conn.identity_changed()
        now = self._now()
        if self._origins:  # before the slot can be lent again
            self._warn_at_checkin(slot, now)
        if self._events.listeners:  # before the slot can be lent again too
            self._checked_in(slot, now)
        with self._lock:
            step = self._return(slot, now, lost, changed)
        if step is not _KEEP:
            self._carry_out(slot, conn, step, error if lost else None)

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
            self._close(slot)
        elif step is Step.ABANDON and conn is not None:
            conn.abandon()

    def _warn_at_checkin(self, slot: Slot, now: float) -> None:
        """A holder coming back late, not named yet: name it now."""
        with self._lock:
            origin = self._origins.pop(slot, None)
        limit = self.warn_held_after
        if origin and limit is not None and now - slot.lent_at > limit:
            self._warn_overdue([(slot, origin)], now)

    def _close(self, slot: Slot) -> None:
        """Close the connection of a slot the machine said to CLOSE, then free the slot:
        only once the server has been told, so ``size`` holds as the server counts."""
        conn, server, identity = slot.conn, slot.server, slot.identity
        if conn is not None:
            conn.close()  # never raises
        with self._lock:
            self._machine.closed_conn(slot, self._now())
        if conn is not None:
            self._events.closed(slot.number, server, identity.dn if identity else None, slot.why)

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

    # -- password checks -------------------------------------------------------------

    def authenticate(self, who: str, cred: str) -> tuple[BindAnswer, Server | None]:
        """Check a password with one bind, on a connection kept for password checks.

        At most the gate's limit of checks run at once (see :mod:`ldappool._core.gate`);
        waiting for the gate and then for a slot takes ``pool_timeout`` in all. A
        refused password leaves the connection in service; a bind that got no answer
        raises BackendError and the connection is closed. The common case (room at the
        gate, a kept connection whose socket looks fine) takes the lock twice: once to
        pass the gate with a slot, once to give both back.
        """
        now = self._now()
        with self._lock:
            passed, slot = self._machine.begin_check(now)
            if not passed:
                waiter = _ThreadWaiter(PASSWORD_CHECKS, now)
                self._machine.queue_gate(waiter)
        deadline = math.nan
        if not passed:
            deadline = self._deadline()
            self._wait_at_gate(waiter, deadline)
        try:
            if slot is None:
                slot = self.checkout(PASSWORD_CHECKS, deadline)
            else:
                conn = slot.conn
                if (
                    slot.step is not _LEND
                    or conn is None
                    or not conn.looks_alive()
                    or self.warn_held_after is not None
                ):
                    slot = self._prepare(slot, PASSWORD_CHECKS)
                if self._events.listeners:
                    self._emit(EventKind.CHECKED_OUT, slot, None, self._now() - now)
        except BaseException:
            with self._lock:
                self._machine.leave_gate()
            raise
        server, conn = slot.server, slot.conn
        assert conn is not None
        try:
            answer = conn.check_password(who, cred)
        except BaseException as exc:
            self._end_check(slot, lost=True)
            if isinstance(exc, Exception):
                raise self._io.unanswered(server, who, exc) from exc
            raise
        self._end_check(slot, lost=False)
        return answer, server

    def _end_check(self, slot: Slot, *, lost: bool) -> None:
        """Check a password check's slot in and leave the gate, under one lock hold."""
        conn = slot.conn
        now = self._now()
        if self._origins:
            self._warn_at_checkin(slot, now)
        if self._events.listeners:
            self._checked_in(slot, now)
        with self._lock:
            step = self._machine.end_check(slot, now, lost=lost)
        if step is not _KEEP:
            self._carry_out(slot, conn, step, None)

    def _wait_at_gate(self, waiter: _ThreadWaiter, deadline: float) -> None:
        """Sleep until the gate lets this password check in, or time is up."""
        try:
            while True:
                woken = waiter.wait(_left(deadline))
                with self._lock:
                    if self._machine.at_gate(waiter, timed_out=not woken):
                        return
        except BaseException:
            with self._lock:
                self._machine.cancel_gate(waiter)
            raise

    # -- maintenance -----------------------------------------------------------------

    def purge(self, match: Callable[[Identity], bool]) -> int:
        """Drop connections whose identity ``match`` accepts; return how many idle ones
        were closed now (lent ones close at checkin)."""
        with self._lock:
            doomed = self._machine.purge(match)
        for slot in doomed:
            self._close(slot)
        return len(doomed)

    def resize(self, size: int) -> int:
        """Change the cap. Growing lets waiters in; shrinking closes idle connections
        over the new size now (returns how many) and lent ones over it at checkin."""
        with self._lock:
            doomed = self._machine.resize(size, self._now())
        for slot in doomed:
            self._close(slot)
        return len(doomed)

    def close(self) -> None:
        """Refuse new checkouts, wake waiters with PoolClosedError, close idle connections,
        stop the upkeep thread."""
        with self._lock:
            doomed = self._machine.close()
        self._upkeep.stop()
        for slot in doomed:
            self._close(slot)

    def open(self, wait: bool) -> None:
        """Open connections up to ``min_size`` now (``wait``: in this thread, raising the
        error if one cannot be opened) or in the background; start the upkeep thread."""
        if wait:
            self._upkeep.refill(raise_errors=True)
        if self._background:
            self._upkeep.start()

    def check(self) -> int:
        """Look at every idle connection now (its socket, then a WhoAmI); close the dead
        ones; return how many."""
        return self._upkeep.check()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching their sockets."""
        self._lock = self._io.lock = threading.Lock()
        self._origins = {}
        self._upkeep.after_fork_in_child()
        for conn in self._machine.forked():
            conn.abandon()

    @property
    def lock(self) -> threading.Lock:
        """The pool's lock (replaced in a forked child)."""
        return self._lock

    def close_slot(self, slot: Slot) -> None:
        """Close a slot's connection the machine said to CLOSE (for the upkeep)."""
        self._close(slot)

    # -- state -----------------------------------------------------------------------

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


def _left(deadline: float) -> float | None:
    """Seconds until ``deadline`` (a ``time.monotonic()``), None for no limit."""
    return None if deadline == math.inf else deadline - time.monotonic()
