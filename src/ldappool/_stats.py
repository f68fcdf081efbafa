"""A frozen snapshot of the pool's counters, as returned by ``ConnectionManager.stats()``."""

from __future__ import annotations

import attrs

__all__ = ["COUNTER_NAMES", "Counters", "Stats"]


@attrs.frozen
class Stats:
    """Pool state now, and counters since the manager was created."""

    size: int  #: the cap
    connections: int  #: connections open (or being opened) now
    in_use: int  #: slots lent out now
    idle: int  #: pooled connections waiting to be lent
    waiting: int  #: checkouts queued on a full pool now
    checkouts: int  #: successful checkouts
    waits: int  #: checkouts that had to queue
    wait_timeouts: int  #: MaxConnectionReachedError raised
    opened: int  #: connections opened and bound
    closed: int  #: connections closed by the pool
    reused: int  #: checkouts served by a pooled connection of the same identity
    rebinds: int  #: idle connections re-bound to another identity
    stale: int  #: pooled connections found closed by the server at checkout
    expired: int  #: connections recycled by the lifetime policy
    pings: int  #: WhoAmI pings before lending an idle connection
    lost: int  #: connections discarded after an error in use (connection loss, timeout)
    recovered: int  #: lent connections reconnected under a read that lost its server
    connect_errors: int  #: failed connect/bind attempts (server down or timed out)
    failovers: int  #: times a server was given up for the next one
    invalid_credentials: int  #: binds refused for wrong DN or password
    password_checks: int  #: authenticate() calls that got to check (whatever the answer)


#: The counters among Stats' fields (the others describe the pool now).
COUNTER_NAMES = tuple(
    a.name
    for a in attrs.fields(Stats)
    if a.name not in ("size", "connections", "in_use", "idle", "waiting")
)


class Counters:
    """The pool's running counters: plain integer attributes, cheap to bump under the lock.

    One attribute per counter field of :class:`Stats` (a unit test holds them equal).
    """

    __slots__ = COUNTER_NAMES

    checkouts: int
    waits: int
    wait_timeouts: int
    opened: int
    closed: int
    reused: int
    rebinds: int
    stale: int
    expired: int
    pings: int
    lost: int
    recovered: int
    connect_errors: int
    failovers: int
    invalid_credentials: int
    password_checks: int

    def __init__(self) -> None:
        for name in COUNTER_NAMES:
            setattr(self, name, 0)

    def bump(self, name: str) -> None:
        """Add one to the counter ``name`` (one of Stats' counter fields)."""
        setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_NAMES}
