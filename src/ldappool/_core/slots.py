"""The pool's records: one Slot per unit of capacity, the Step a runner takes with one,
and the view of a slot for display."""

from __future__ import annotations

import enum
import math
from typing import Any, NamedTuple

from ldappool._identity import Credentials, Identity
from ldappool._port import Connection, Server

__all__ = ["Slot", "SlotView", "Step"]


class Step(enum.Enum):
    """What the state machine tells its runner to do with a slot next.

    At checkout: USE, LEND, PING, REBIND, REPLACE or OPEN, then the runner reports the
    outcome (``opened``, ``rebound``, ``discard``, ``failed``). At checkin and in
    maintenance: KEEP, CLOSE (then ``closed``) or ABANDON.
    """

    #: Kept for password checks and answered one moments ago (the lifetime policy's
    #: ``socket_check_after``): used as it is, without a look at the socket.
    USE = "use"
    #: Pooled and fit: look at the socket (no round trip), then lend it.
    LEND = "lend"
    #: Pooled, idle long enough for the lifetime policy to want one round trip first.
    PING = "ping"
    #: Pooled, bound as another identity: look at the socket, bind as the caller, lend.
    REBIND = "rebind"
    #: Pooled but past its lifetime: close it (``discard``), then open a new one.
    REPLACE = "replace"
    #: Empty: open a connection (retry, failover) and bind it as the caller.
    OPEN = "open"
    #: Nothing to do: the slot is pooled, empty, or already handed to a waiter.
    KEEP = "keep"
    #: Close the slot's connection (unbind), then report ``closed``.
    CLOSE = "close"
    #: Forget the connection without any I/O (lent before a fork: the parent's socket).
    ABANDON = "abandon"


class SlotView(NamedTuple):
    """A copy of a slot's state, taken under the pool lock for display."""

    number: int
    connected: bool
    in_use: bool
    uri: str
    opened_at: float
    #: The bind DN, or what stands for a bind without one (a SASL identity...).
    dn: str | None
    anonymous: bool


class Slot:
    """One of the pool's ``size`` places; holds at most one connection.

    Slots live as long as the pool (until a fork). Capacity is counted in slots, not
    connections: a slot is taken before its connection is opened, so connections being
    opened count against ``size`` too, and a slot is only given back once its connection
    is closed. Only the state machine writes these fields (its runner reads them).
    """

    __slots__ = (
        "conn",
        "credentials",
        "expires_at",
        "fit_until",
        "generation",
        "identity",
        "in_use",
        "last_used",
        "lent_at",
        "native",
        "number",
        "opened_at",
        "pinged_at",
        "purge",
        "server",
        "step",
        "why",
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
        #: The upkeep's last keepalive ping (not a use: max_idle still counts from
        #: last_used).
        self.pinged_at = 0.0
        #: Until then, the connection may be lent again without asking the lifetime
        #: policy: min(expiry, last use + the policy's quiet period).
        self.fit_until = -math.inf
        #: The checkout holding it (None while it is not lent): the read recovery binds
        #: with these.
        self.credentials: Credentials | None = None
        self.lent_at = 0.0
        self.in_use = False
        #: Close the connection at checkin instead of pooling it (``purge()``).
        self.purge = False
        #: What the runner is to do with it next (set with each decision).
        self.step = Step.KEEP
        #: Why its step is CLOSE (an Event's reason: "expired", "purged"...).
        self.why = ""

    def view(self) -> SlotView:
        """A copy of the state shown by ``print(cm)``."""
        identity = self.identity
        return SlotView(
            self.number,
            self.conn is not None,
            self.in_use,
            str(self.server) if self.server else "",
            self.opened_at,
            identity.label if identity else None,
            identity is not None and not identity.label,
        )

    def clear(self) -> Connection | None:
        """Empty the slot, returning the connection it held."""
        conn, self.conn = self.conn, None
        self.native = None
        self.fit_until = -math.inf
        self.identity = None
        self.server = None
        self.purge = False
        self.pinged_at = 0.0
        return conn

    def __repr__(self) -> str:
        state = "lent" if self.in_use else "idle" if self.conn is not None else "empty"
        return f"<Slot {self.number} {state} {self.step.name}>"
