"""Making a slot's connection fit to lend: the pool's I/O on one slot.

Checks (lifetime, socket, ping), rebinds or replaces a connection at checkout, and
reconnects it under a read that lost it. Everything here runs outside the pool lock,
on a slot the calling thread owns; outcomes are counted through the pool's counter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from ldappool.connect import TRANSIENT, Connector
from ldappool.connector import Connection, ErrorKind
from ldappool.identity import Identity
from ldappool.policies import LifetimePolicy
from ldappool.slots import Slot

__all__ = ["SlotOwner", "Upkeep"]

log = logging.getLogger("ldappool")


class Upkeep:
    """Opens, checks, rebinds and recovers the connections of one pool's slots."""

    def __init__(
        self,
        connector: Connector,
        lifetime: LifetimePolicy,
        now: Callable[[], float],
        count: Callable[[str], None],
    ) -> None:
        self._connector = connector
        self._classify = connector.driver.classify
        self.lifetime = lifetime
        self._now = now
        self._count = count
        #: Idle seconds below which the lifetime policy has nothing to say.
        self.quiet_for = _quiet_period(lifetime)

    def prepare(self, slot: Slot, identity: Identity, who: str | None, cred: str | None) -> None:
        """Make the slot's connection usable for ``identity``: keep, rebind or replace it."""
        conn = slot.conn
        if conn is not None:
            reason = self._unfit(slot, conn, self._now())
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
            self.close(slot.detach())
        new, server = self._connector.open(who, cred)
        now = self._now()
        slot.conn, slot.native, slot.identity, slot.server = new, new.native, identity, server
        slot.opened_at, slot.last_used = now, now
        slot.expires_at = self.lifetime.expires_at(now)
        # For the connection's life: it refuses to recover unless the slot is lent.
        new.set_owner(SlotOwner(self, slot, new))
        self._count("opened")

    def _unfit(self, slot: Slot, conn: Connection, now: float) -> str | None:
        """Why a pooled connection must not be lent (a counter name), or None."""
        if now >= slot.expires_at:
            return "expired"
        idle = now - slot.last_used
        consult = idle > self.quiet_for  # else the policy has nothing to say: skip it
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
            if kind in TRANSIENT:
                return False
            if kind is ErrorKind.CREDENTIALS:
                self._count("invalid_credentials")
            raise self._connector.refusal(kind, exc, slot.server, who, "bind") from exc
        slot.identity = identity
        self._count("rebinds")
        return True

    def recover(self, slot: Slot, conn: Connection) -> None:
        """Reconnect a lent connection under a read that lost it (holder's thread)."""
        lease = slot.lease
        if lease is None or slot.conn is not conn:
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

    def close(self, conn: Connection | None) -> None:
        """Unbind a connection taken out of its slot (never raises)."""
        if conn is not None:
            conn.close()
            self._count("closed")


class SlotOwner:
    """The pool's side of one connection (the port's ``Owner``): its slot, while it
    holds this connection."""

    __slots__ = ("_conn", "_slot", "_upkeep")

    def __init__(self, upkeep: Upkeep, slot: Slot, conn: Connection) -> None:
        self._upkeep, self._slot, self._conn = upkeep, slot, conn

    @property
    def lent(self) -> bool:
        """Checked out now; False once the slot holds another connection."""
        slot = self._slot
        return slot.lease is not None and slot.conn is self._conn

    def recover(self) -> None:
        """Reconnect and rebind under a lost read; raises unless lent."""
        self._upkeep.recover(self._slot, self._conn)


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
