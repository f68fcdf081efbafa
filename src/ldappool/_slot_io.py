"""The blocking I/O the state machine asks for on one slot, for the threaded runner.

Looks at a pooled connection's socket, pings it, rebinds it or opens a new one (the
:class:`~ldappool._core.slots.Step` of a checkout), and reconnects it under a read that
lost it. All of it runs outside the pool lock, on a slot the calling thread holds; each
outcome is reported to the machine with the lock held.
"""

from __future__ import annotations

import logging
import threading

from ldappool._clock import Clock
from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot, Step
from ldappool._dialer import Dialer, bind
from ldappool._errors import LDAPPoolError
from ldappool._events import Event, EventKind
from ldappool._identity import PASSWORD_CHECKS, Credentials
from ldappool._port import Connection, ErrorKind, Server

__all__ = ["SlotIO", "SlotOwner"]

log = logging.getLogger("ldappool")


class SlotIO:
    """Carries out a checkout's steps and the read recovery for one pool."""

    def __init__(
        self, machine: PoolMachine, lock: threading.Lock, dialer: Dialer, clock: Clock
    ) -> None:
        self._machine = machine
        #: The pool's lock (replaced in a forked child).
        self.lock = lock
        self._dialer = dialer
        self._classify = dialer.driver.classify
        self._now = clock.monotonic
        self._events = dialer.events

    def prepare(self, slot: Slot, credentials: Credentials) -> None:
        """Do what the slot's step says until it can be lent; raise if it cannot."""
        step = slot.step
        while True:
            conn = slot.conn
            if step is Step.OPEN or conn is None:
                self._open(slot, credentials)
                return
            if step is Step.USE:
                return  # a password check's connection, used moments ago
            if step is Step.REPLACE:
                reason = None  # past its lifetime (counted as such by the machine)
            elif not conn.looks_alive() or (step is Step.PING and not self._ping(conn)):
                reason = "stale"
            elif step is Step.REBIND and not self._rebind(slot, conn, credentials):
                reason = None  # lost: no bind was refused
            else:
                return  # fit to lend
            step = self._discard(slot, reason)

    def _ping(self, conn: Connection) -> bool:
        self._count("pings")
        try:
            conn.ping()
        except Exception:
            return False
        return True

    def _open(self, slot: Slot, credentials: Credentials) -> None:
        started = self._now()
        if credentials is PASSWORD_CHECKS:
            conn, server = self._dialer.open_unbound()
        else:
            conn, server = self._dialer.open(credentials)
        now = self._now()
        with self.lock:
            self._machine.opened(slot, conn, server, now)
        if self._events.listeners:
            self._events.emit(
                Event(
                    EventKind.OPENED,
                    slot=slot.number,
                    server=str(server),
                    dn=credentials.who,
                    duration=now - started,
                )
            )
        # For the connection's life: it refuses to recover unless the slot is lent.
        conn.set_owner(SlotOwner(self, slot, conn))

    def _rebind(self, slot: Slot, conn: Connection, credentials: Credentials) -> bool:
        """Bind an idle connection of another identity; False if it turned out dead."""
        try:
            bind(conn, credentials)
        except Exception as exc:
            kind = self._classify(exc)
            if kind.transient:
                return False
            raise self._dialer.refusal(kind, exc, slot.server, credentials.who, "bind") from exc
        with self.lock:
            self._machine.rebound(slot)
        return True

    def unanswered(self, server: Server | None, who: str, exc: Exception) -> LDAPPoolError:
        """The error for a password check that got no answer (the connection lost, no
        answer in time): BackendError. The bind may have reached the server and counted
        as a failed attempt, so it is neither retried nor sent elsewhere."""
        kind = self._classify(exc)
        return self._dialer.error(
            kind if kind.transient else ErrorKind.DOWN,
            f"the password check of {who!r} on {server} got no answer ({exc!r}); "
            "not retried, as the server may have counted it",
            server,
            exc,
        )

    def _discard(self, slot: Slot, reason: str | None) -> Step:
        """Close the slot's connection (``reason``: why, as a counter) and go on to OPEN."""
        if reason is not None:
            log.debug("slot %d: replacing a %s connection to %s", slot.number, reason, slot.server)
        server, identity = slot.server, slot.identity
        with self.lock:
            conn = self._machine.discard(slot, reason)
        if conn is not None:
            conn.close()
            dn = identity.dn if identity else None
            self._events.closed(slot.number, server, dn, reason or "expired")
        return Step.OPEN

    def _count(self, name: str) -> None:
        with self.lock:
            self._machine.count(name)

    def recover(self, slot: Slot, conn: Connection) -> None:
        """Reconnect a lent connection under a read that lost it (holder's thread)."""
        credentials = slot.credentials
        if credentials is None or slot.conn is not conn:
            raise RuntimeError("not lent: a connection in the pool is not recovered")
        lost_from = slot.server
        server = self._dialer.reopen(conn, credentials)
        with self.lock:
            self._machine.recovered(slot, server, self._now())
        log.info(
            "slot %d: reconnected to %s after losing %s in use", slot.number, server, lost_from
        )


class SlotOwner:
    """The pool's side of one connection (the port's ``Owner``): its slot, while it
    holds this connection."""

    __slots__ = ("_conn", "_io", "_slot")

    def __init__(self, io: SlotIO, slot: Slot, conn: Connection) -> None:
        self._io, self._slot, self._conn = io, slot, conn

    @property
    def lent(self) -> bool:
        """Checked out now; False once the slot holds another connection."""
        slot = self._slot
        return slot.credentials is not None and slot.conn is self._conn

    def recover(self) -> None:
        """Reconnect and rebind under a lost read; raises unless lent."""
        self._io.recover(self._slot, self._conn)
