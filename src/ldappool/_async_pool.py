"""The asyncio runner: drives the pool's state machine for ``AsyncConnectionManager``.

The same :class:`~ldappool._core.machine.PoolMachine` as the threaded runner, so the same
decisions: fairness, the cap, lifetimes, what to close and why. What differs is how a
checkout waits and where the I/O runs:

- a checkout on a full pool waits on a future, resolved by :meth:`Waiter.wake` (from
  the loop, or with ``call_soon_threadsafe`` from a worker thread): the event loop
  never blocks on a slot;
- the common checkout (a pooled connection whose socket looks fine) does no I/O at
  all: one poll of the socket, no await;
- opening, re-binding, pinging and closing connections (connect, TLS, bind, retry and
  failover, unbind) run the blocking :class:`~ldappool._slot_io.SlotIO` in a small
  thread pool owned by the pool (at most ``MAX_WORKERS`` threads): they are rare, and
  a thread there is honest;
- the lent object is the driver's (``Driver.aio``: non-blocking operations on the
  connection's socket for python-ldap, the worker threads for ldap3), or a generic one
  running the native object's methods in the worker threads.

Every machine call is made under one ``threading.Lock``: the worker threads and the
upkeep thread report to the machine too. Holding it is a matter of microseconds. What
does not wait is shared with the threaded runner (:mod:`ldappool._runner`).
"""

from __future__ import annotations

import asyncio
import math
from functools import partial
from typing import Any

from ldappool import _fork
from ldappool._async_io import AsyncNative, FutureWaiter, Holdings, Jobs, Workers
from ldappool._clock import Clock
from ldappool._core.slots import Slot, Step
from ldappool._dialer import Dialer
from ldappool._events import EventKind
from ldappool._identity import PASSWORD_CHECKS, Credentials
from ldappool._port import BindAnswer, Connection, ErrorKind, Server
from ldappool._runner import BaseRunner

__all__ = ["MAX_WORKERS", "AsyncPool"]

#: The most worker threads of one pool (fewer for a smaller ``size``).
MAX_WORKERS = 8

_USE, _LEND, _KEEP = Step.USE, Step.LEND, Step.KEEP
_CREDENTIALS = ErrorKind.CREDENTIALS


class AsyncPool(BaseRunner):
    """Lends bound connections out of ``size`` slots to any number of asyncio tasks."""

    def __init__(self, dialer: Dialer, *, clock: Clock, **options: Any) -> None:
        """``options``: those of :class:`~ldappool._runner.BaseRunner`."""
        super().__init__(dialer, clock=clock, **options)
        self._check = getattr(dialer.driver, "aio_check_password", None)
        lent: dict[int, tuple[Connection, Any, Jobs]] = {}
        workers = min(self._machine.size, MAX_WORKERS)
        self._workers = Workers(self._machine, self._io, self._events, clock, workers, lent)
        timeout = dialer.settings.timeout
        self._holdings = Holdings(dialer.driver, self._io, self._workers, timeout, lent)
        _fork.watch(self)

    # -- checkout --------------------------------------------------------------------

    async def checkout(self, credentials: Credentials, deadline: float = math.nan) -> Slot:
        """A slot whose connection is live and bound as ``credentials``; waits (without
        blocking the loop) up to ``deadline``, by default ``pool_timeout`` from now."""
        now = self._now()
        with self._lock:
            slot = self._request(credentials, now)
            if slot is None:
                waiter = FutureWaiter(credentials, now)
                overdue = self._queue(waiter, now)
        if slot is None:
            if self._events.listeners:
                self._emit(EventKind.WAIT_STARTED, None, credentials.who)
            self._warn_overdue(overdue, now)
            slot = await self._wait(waiter, self._deadline() if math.isnan(deadline) else deadline)
        elif slot.step is _LEND and self.warn_held_after is None:
            conn = slot.conn
            if conn is not None and conn.looks_alive():  # the common case ends here
                if self._events.listeners:
                    self._emit(EventKind.CHECKED_OUT, slot, credentials.who, self._now() - now)
                return slot
        slot = await self._prepare(slot, credentials)
        if self._events.listeners:
            self._emit(EventKind.CHECKED_OUT, slot, credentials.who, self._now() - now)
        return slot

    async def _prepare(self, slot: Slot, credentials: Credentials) -> Slot:
        """Carry out the slot's step in a worker thread; on failure the slot goes back.

        A checkout cancelled meanwhile does not stop the thread: the slot stays taken
        until the step is over, then goes back (checked in, or its connection closed).
        """
        if self._background and not self._upkeep.running:
            self._upkeep.start()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._workers.executor(), self._io.prepare, slot, credentials)
        try:
            await asyncio.shield(job)
        except BaseException:
            if job.done():
                self._unprepared(slot, job)
            else:
                job.add_done_callback(partial(self._unprepared, slot))
            raise
        if self.warn_held_after is not None:
            self._record(slot)
        return slot

    def _unprepared(self, slot: Slot, job: asyncio.Future[None]) -> None:
        """A checkout that did not take its slot: back to the pool, whatever the step did."""
        failed = job.cancelled() or job.exception() is not None
        with self._lock:
            now = self._now()
            step = self._machine.failed(slot, now) if failed else self._machine.checkin(slot, now)
        if step is Step.CLOSE:
            self._close(slot)

    async def _wait(self, waiter: FutureWaiter, deadline: float) -> Slot:
        """Wait until a slot is handed over, or woken, until one is found or time is up;
        interrupted (cancelled, timed out), the waiter passes on what it was given."""
        try:
            while True:
                woken = await waiter.wait(deadline)
                if waiter.slot is not None:  # handed over: set before the wake-up
                    return waiter.slot
                with self._lock:
                    slot = self._machine.look(waiter, self._now(), timed_out=not woken)
                if slot is not None:
                    return slot
        except BaseException as exc:
            self._cancel(waiter, exc)
            raise

    # -- what is lent ------------------------------------------------------------------

    def lend(self, slot: Slot) -> Any:
        """What a checkout of ``slot`` gets: its connection's awaitable object."""
        return self._holdings.lend(slot)

    # -- checkin ---------------------------------------------------------------------

    def checkin(self, slot: Slot, error: BaseException | None) -> None:
        """Take a slot back (no await: a cancellation cannot cut it short); pool its
        connection unless it must not be reused. Closing it runs in a worker thread."""
        conn = slot.conn
        jobs = self._holdings.jobs(slot)
        lost = error is not None and self._classify(error).transient
        changed = conn is not None and (
            conn.identity_changed() or (jobs is not None and jobs.interrupted)
        )
        now = self._now()
        if self._origins:
            self._warn_at_checkin(slot, now)
        if self._events.listeners:
            self._checked_in(slot, now)
        with self._lock:
            step = self._return(slot, now, lost, changed)
        if step is not _KEEP:
            self._carry_out(slot, conn, step, error if lost else None)

    # -- password checks -------------------------------------------------------------

    async def authenticate(self, who: str, cred: str) -> tuple[BindAnswer, Server | None]:
        """Check a password with one bind, on a connection kept for password checks: the
        rules of ``ThreadedPool.authenticate``, the bind without blocking the loop."""
        now = self._now()
        with self._lock:
            passed, slot = self._machine.begin_check(now)
            if not passed:
                waiter = FutureWaiter(PASSWORD_CHECKS, now)
                self._machine.queue_gate(waiter)
        deadline = math.nan
        if not passed:
            deadline = self._deadline()
            slot = await self._wait_at_gate(waiter, deadline)
        try:
            if slot is None:
                slot = await self.checkout(PASSWORD_CHECKS, deadline)
            else:
                step, conn = slot.step, slot.conn
                if (
                    conn is None
                    or not (step is _USE or (step is _LEND and conn.looks_alive()))
                    or self.warn_held_after is not None
                ):
                    slot = await self._prepare(slot, PASSWORD_CHECKS)
                if self._events.listeners:
                    self._emit(EventKind.CHECKED_OUT, slot, None, self._now() - now)
        except BaseException:
            with self._lock:
                self._machine.leave_gate(self._now())
            raise
        server, conn = slot.server, slot.conn
        assert conn is not None
        _, lent, jobs = self._holdings.held(slot)
        check = self._check
        try:
            if check is not None and not isinstance(lent, AsyncNative):
                answer: BindAnswer = await check(conn, lent, who, cred)
            else:
                answer = await jobs(conn.check_password, who, cred)
        except BaseException as exc:
            raise self._check_unanswered(slot, server, who, exc)  # noqa: B904 - cause set there
        refusal = answer.refusal
        refused = refusal is not None and self._classify(refusal) is _CREDENTIALS
        self._end_check(slot, lost=False, refused=refused)
        return answer, server

    async def _wait_at_gate(self, waiter: FutureWaiter, deadline: float) -> Slot | None:
        """Until the gate lets this password check in (its slot, as ``begin_check``
        gives one), or time is up."""
        try:
            while True:
                woken = await waiter.wait(deadline)
                with self._lock:
                    passed, slot = self._machine.at_gate(waiter, self._now(), timed_out=not woken)
                    if passed:
                        return slot
        except BaseException:
            with self._lock:
                self._machine.cancel_gate(waiter, self._now())
            raise

    # -- closing, in the worker threads --------------------------------------------------

    def _close(self, slot: Slot) -> None:
        """Close a slot's connection (CLOSE) in a worker thread."""
        self._workers.close_later(slot)

    def _close_returned(self, slot: Slot) -> None:
        """Close a slot checked in to be closed, once the call running on it is over."""
        self._workers.close_after(slot, self._holdings.jobs(slot))

    def close_slot(self, slot: Slot) -> None:
        """Close a slot's connection the machine said to CLOSE (the upkeep's thread)."""
        self._workers.close(slot)

    # -- maintenance -----------------------------------------------------------------

    async def close(self) -> None:
        """Refuse new checkouts, fail waiters with PoolClosedError, close idle connections,
        stop the upkeep thread; return once the closes are done."""
        with self._lock:
            doomed = self._machine.close()
        self._close_each(doomed)
        if self._upkeep.running:
            await asyncio.to_thread(self._upkeep.stop)
        else:
            self._upkeep.stop()
        await self._workers.settle()
        self._workers.let_go()

    async def settle(self) -> None:
        """Return once every close started so far is done."""
        await self._workers.settle()

    async def open(self, wait: bool) -> None:
        """Open connections up to ``min_size`` now (``wait``: raising the error if one
        cannot be opened) or in the background; start the upkeep thread."""
        if wait:
            await self._workers.run(partial(self._upkeep.refill, raise_errors=True))
        if self._background:
            self._upkeep.start()

    async def check(self) -> int:
        """Look at every idle connection now (its socket, then a WhoAmI); close the dead."""
        found: int = await self._workers.run(self._upkeep.check)
        return found

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching their sockets; the parent's
        worker threads do not exist here: new ones on first need."""
        self._holdings.lent.clear()
        self._workers.forked()
        super().after_fork_in_child()
