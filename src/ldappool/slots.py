"""The pool's records: one Slot per unit of capacity, and the view of one for display."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from ldappool.connector import Connection, Server
from ldappool.identity import Identity

if TYPE_CHECKING:
    from ldappool.lease import Lease

__all__ = ["Slot", "SlotView"]


class SlotView(NamedTuple):
    """A copy of a slot's state, taken under the pool lock for display."""

    number: int
    connected: bool
    in_use: bool
    uri: str
    opened_at: float
    dn: str | None
    anonymous: bool


class Slot:
    """One of the pool's ``size`` places; holds at most one connection.

    Slots live as long as the pool. Capacity is counted in slots, not connections: a
    slot is taken before its connection is opened, so connections being opened count
    against ``size`` too, and a slot is only given back once its connection is closed.
    """

    __slots__ = (
        "checked_out_at",
        "conn",
        "expires_at",
        "fit_until",
        "generation",
        "identity",
        "in_use",
        "keep",
        "last_used",
        "lease",
        "native",
        "number",
        "opened_at",
        "origin",
        "purge",
        "server",
    )

    def __init__(self, number: int, generation: int) -> None:
        self.number = number
        self.generation = generation
        self.conn: Connection | None = None
        #: ``conn.native``, read once per connection rather than once per checkout.
        self.native: Any = None
        self.identity: Identity | None = None
        self.server: Server | None = None
        self.opened_at = 0.0
        self.expires_at = 0.0
        self.last_used = 0.0
        #: Until then, the connection may be lent again without asking the lifetime
        #: policy: min(expiry, last use + the policy's quiet period). See Pool.checkout.
        self.fit_until = -math.inf
        #: The checkout holding it: its credentials serve the read recovery.
        self.lease: Lease | None = None
        self.checked_out_at = 0.0
        #: Where the holder checked it out, when ``warn_held_after`` is set.
        self.origin: str | None = None
        self.in_use = False
        #: Close the connection at checkin instead of pooling it (``purge()``).
        self.purge = False
        #: Its checkin may put the connection straight back in the pool, if nothing went
        #: wrong in the block: set at checkout when the pool allows it (pooling on, no
        #: held-too-long watch), cleared by purge(), close(), a fork or losing the
        #: connection. Changed under the pool lock.
        self.keep = False

    def view(self) -> SlotView:
        """A copy of the state shown by ``print(cm)``."""
        identity = self.identity
        return SlotView(
            self.number,
            self.conn is not None,
            self.in_use,
            str(self.server) if self.server else "",
            self.opened_at,
            identity.dn if identity else None,
            identity is not None and not identity.dn,
        )

    def detach(self) -> Connection | None:
        """Empty the slot, returning the connection it held (to close outside the lock)."""
        conn, self.conn = self.conn, None
        self.keep = False
        self.native = None
        self.fit_until = -math.inf
        self.identity = None
        self.server = None
        self.purge = False
        return conn
