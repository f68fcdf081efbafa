"""The threaded runner: drives the pool's state machine for ``ConnectionManager``.

Each machine call happens under one lock and is cheap (:mod:`ldappool._core.machine`);
every I/O it decides on (connect, bind, socket check, ping, unbind) runs after the lock
is released, on a slot the calling thread holds (:mod:`ldappool._slot_io`). A checkout
waiting on a full pool blocks on its own lock, released when the machine wakes it.
What does not wait is shared with the asyncio runner (:mod:`ldappool._runner`).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from ldappool import _fork
from ldappool._core.slots import Slot, Step
from ldappool._core.waiting import Waiter
from ldappool._dialer import Dialer
from ldappool._events import EventKind
from ldappool._identity import PASSWORD_CHECKS, Credentials
from ldappool._port import BindAnswer, ErrorKind, Server
from ldappool._runner import BaseRunner

__all__ = ["ThreadedPool"]

_USE, _LEND, _KEEP, _CLOSE = Step.USE, Step.LEND, Step.KEEP, Step.CLOSE
_CREDENTIALS = ErrorKind.CREDENTIALS


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


class ThreadedPool(BaseRunner):
    """Lends bound connections out of ``size`` slots to any number of threads."""

    def __init__(self, dialer: Dialer, **options: Any) -> None:
        """``options``: those of :class:`~ldappool._runner.BaseRunner`."""
        super().__init__(dialer, **options)
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
                waiter = _ThreadWaiter(credentials, now)
                overdue = self._queue(waiter, now)
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
            self._record(slot)
        return slot

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
            self._cancel(waiter, exc)
            raise

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

    def _close(self, slot: Slot) -> None:
        """Close the connection of a slot the machine said to CLOSE, now, then free the
        slot: only once the server has been told, so ``size`` holds as the server counts."""
        conn, server, identity = slot.conn, slot.server, slot.identity
        if conn is not None:
            conn.close()  # never raises
        with self._lock:
            self._machine.closed_conn(slot, self._now())
        if conn is not None:
            self._events.closed(slot.number, server, identity.dn if identity else None, slot.why)

    #: The upkeep's closes are the same, in its thread.
    close_slot = _close

    # -- password checks -------------------------------------------------------------

    def authenticate(self, who: str, cred: str) -> tuple[BindAnswer, Server | None]:
        """Check a password with one bind, on a connection kept for password checks.

        At most the gate's limit of checks run at once (see :mod:`ldappool._core.gate`);
        waiting for the gate and then for a slot takes ``pool_timeout`` in all. A
        refused password leaves the connection in service; a bind that got no answer
        raises BackendError and the connection is closed. The common case (room at the
        gate, a kept connection that answered a check moments ago, or whose socket
        looks fine) takes the lock twice: once to pass the gate with a slot, once to
        give both back.
        """
        now = self._now()
        waiter = None
        with self._lock:
            passed, slot = self._machine.begin_check(now)
            if not passed:
                waiter = _ThreadWaiter(PASSWORD_CHECKS, now)
                self._machine.queue_gate(waiter)
        if (
            slot is None
            or slot.step is not _USE
            or self.warn_held_after is not None
            or self._events.listeners
        ):  # all but the common case
            slot = self._slot_for_check(waiter, slot, now)
        server, conn = slot.server, slot.conn
        assert conn is not None
        try:
            answer = conn.check_password(who, cred)
        except BaseException as exc:
            raise self._check_unanswered(slot, server, who, exc)  # noqa: B904 - cause set there
        refusal = answer.refusal
        refused = refusal is not None and self._classify(refusal) is _CREDENTIALS
        if self._origins or self._events.listeners:
            self._end_check(slot, lost=False, refused=refused)
        else:  # _end_check's common case, written out
            now = self._now()
            with self._lock:
                step = self._machine.end_check(slot, now, lost=False, refused=refused)
            if step is not _KEEP:
                self._carry_out(slot, conn, step, None)
        return answer, server

    def _slot_for_check(self, waiter: _ThreadWaiter | None, slot: Slot | None, now: float) -> Slot:
        """The rest of a password check's way to a slot, past :meth:`authenticate`'s
        common case: the wait at the gate (``waiter``: queued there), a checkout like
        any other when the gate gave no slot, the slot's step. On failure, the check
        gives its place at the gate up."""
        deadline = math.nan
        if waiter is not None:
            deadline = self._deadline()
            slot = self._wait_at_gate(waiter, deadline)
        try:
            if slot is None:
                slot = self.checkout(PASSWORD_CHECKS, deadline)
            else:
                step, conn = slot.step, slot.conn
                if (
                    conn is None
                    or not (step is _USE or (step is _LEND and conn.looks_alive()))
                    or self.warn_held_after is not None
                ):
                    slot = self._prepare(slot, PASSWORD_CHECKS)
                if self._events.listeners:
                    self._emit(EventKind.CHECKED_OUT, slot, None, self._now() - now)
        except BaseException:
            with self._lock:
                self._machine.leave_gate(self._now())
            raise
        return slot

    def _wait_at_gate(self, waiter: _ThreadWaiter, deadline: float) -> Slot | None:
        """Sleep until the gate lets this password check in (its slot, as
        ``begin_check`` gives one), or time is up."""
        try:
            while True:
                woken = waiter.wait(_left(deadline))
                with self._lock:
                    passed, slot = self._machine.at_gate(waiter, self._now(), timed_out=not woken)
                    if passed:
                        return slot
        except BaseException:
            with self._lock:
                self._machine.cancel_gate(waiter, self._now())
            raise

    # -- maintenance -----------------------------------------------------------------

    def close(self) -> None:
        """Refuse new checkouts, wake waiters with PoolClosedError, close idle connections,
        stop the upkeep thread."""
        with self._lock:
            doomed = self._machine.close()
        self._upkeep.stop()
        self._close_each(doomed)

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


def _left(deadline: float) -> float | None:
    """Seconds until ``deadline`` (a ``time.monotonic()``), None for no limit."""
    return None if deadline == math.inf else deadline - time.monotonic()
