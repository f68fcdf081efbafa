"""The background upkeep of a threaded pool: keeps connections ready before anyone asks.

One daemon thread per pool, started on the pool's first connection (or by ``open()``),
stopped by ``close()``, started again in a forked child when the child first needs a
connection. Every ``interval`` seconds it:

1. closes idle connections past their lifetime, or idle longer than the lifetime
   policy allows while more than ``min_size`` are open;
2. looks at each idle connection's socket (no round trip): one the server closed
   (a restart, an idle timeout) is closed and replaced before a checkout meets it;
   one quiet for ``keepalive`` seconds gets a WhoAmI, so that firewalls and load
   balancers that drop idle flows never see it idle that long;
3. opens connections of the default identity until ``min_size`` are open.

While no server takes a connection, the next round waits longer each time (doubling
from ``interval`` up to ``BACKOFF_CAP``), so that a down directory is not hammered and
the first checkout after it comes back finds a connection ready.

All of it is the state machine's decisions (``expire``, ``borrow``, ``give_back``,
``take_stale``, ``refill``); the I/O happens on slots taken out of the pool, never
under its lock, so a checkout never waits for the upkeep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from ldappool._clock import Clock
from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot, Step
from ldappool._identity import Credentials
from ldappool._port import Connection
from ldappool._slot_io import SlotIO

__all__ = ["BACKOFF_CAP", "Upkeep", "next_delay"]

log = logging.getLogger("ldappool")

#: The longest pause between two rounds while no server takes a connection (seconds).
BACKOFF_CAP = 30.0


def next_delay(delay: float, interval: float, ready: bool) -> float:
    """The pause before the next round: ``interval`` after a good one, else twice the
    last pause (``interval`` at least), up to ``BACKOFF_CAP``."""
    if ready:
        return interval
    return min(max(delay, interval) * 2, max(BACKOFF_CAP, interval))


class Host(Protocol):
    """What the upkeep needs of its pool (a runner: ``ldappool._runner.BaseRunner``)."""

    @property
    def lock(self) -> threading.Lock: ...

    def close_slot(self, slot: Slot) -> None: ...


class Upkeep:
    """The upkeep thread of one pool, and one round of its work (``run_once``)."""

    def __init__(
        self,
        host: Host,
        machine: PoolMachine,
        io: SlotIO,
        clock: Clock,
        *,
        default: Callable[[], Credentials | None],
        keepalive: float | None,
        interval: float,
    ) -> None:
        self._host = host
        self._machine = machine
        self._io = io
        self._now = clock.monotonic
        #: The identity ``min_size`` connections are opened as (None: none to open).
        self._default = default
        self.keepalive = keepalive
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # starting and stopping

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs (or the pool is closed)."""
        with self._lock:
            if self.running or self._machine.closed:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="ldappool-upkeep", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; wait for it up to ``timeout`` seconds (it may be inside a
        connect: it ends once that does, and opens nothing more)."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: start anew when needed."""
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()

    def _run(self, stop: threading.Event) -> None:
        delay = self.interval
        while not stop.wait(delay) and not self._machine.closed:
            try:
                ready = self.run_once()
            except Exception:  # a bug here must not end the upkeep for good
                log.exception("ldappool upkeep round failed")
                ready = False
            delay = next_delay(delay, self.interval, ready)

    # -- one round -----------------------------------------------------------------------

    def run_once(self) -> bool:
        """One round of upkeep; False when a connection could not be opened."""
        self._expire()
        self._look_at_idle(self.keepalive)
        return self.refill()

    def check(self) -> int:
        """Every idle connection looked at and pinged now; how many were found dead."""
        before = self._machine.counts.stale
        self._look_at_idle(0.0)
        return self._machine.counts.stale - before

    def _expire(self) -> None:
        with self._host.lock:
            doomed = self._machine.expire(self._now())
        for slot in doomed:
            self._host.close_slot(slot)

    def _look_at_idle(self, keepalive: float | None) -> None:
        """Each idle connection's socket; a ping for those quiet for ``keepalive`` seconds
        (one at a time, each taken out of the pool only while it is looked at)."""
        machine, lock = self._machine, self._host.lock
        with lock:
            idle = machine.idle_slots()
        for slot in idle:
            now = self._now()
            with lock:
                quiet = keepalive is not None and machine.borrow(slot, now, keepalive)
                taken = quiet or machine.borrow(slot, now, 0.0)
            if not taken:
                continue  # lent or closed meanwhile
            conn = slot.conn
            alive = conn is not None and conn.looks_alive()
            if alive and quiet and conn is not None:
                alive = self._ping(conn)
            with lock:
                step = machine.give_back(slot, self._now(), alive, pinged=quiet)
            if step is Step.CLOSE:
                log.debug("upkeep: closing a %s idle connection to %s", slot.why, slot.server)
                self._host.close_slot(slot)

    def _ping(self, conn: Connection) -> bool:
        try:
            conn.ping()
        except Exception:
            return False
        return True

    def refill(self, *, raise_errors: bool = False) -> bool:
        """Open connections of the default identity until ``min_size`` are open; False
        (or the error, with ``raise_errors``) when one could not be opened."""
        credentials = self._default()
        if credentials is None:
            return True
        machine, lock = self._machine, self._host.lock
        while True:
            with lock:
                slot = machine.refill(credentials, self._now())
            if slot is None:
                return True
            try:
                self._io.prepare(slot, credentials)
            except Exception as exc:
                with lock:
                    step = machine.refilled(slot, self._now(), opened=False)
                if step is Step.CLOSE:
                    self._host.close_slot(slot)
                if raise_errors:
                    raise
                log.info("upkeep: could not open a connection: %r", exc)
                return False
            with lock:
                step = machine.refilled(slot, self._now(), opened=True)
            if step is Step.CLOSE:
                self._host.close_slot(slot)
