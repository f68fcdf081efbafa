"""How long a pooled connection may live, and when to check it before lending it."""

from __future__ import annotations

import math
import random

import attrs

from ldappool._validate import non_negative, non_negative_or_none, positive_or_none

__all__ = ["LifetimePolicy"]


def _fraction(_inst: object, attribute: attrs.Attribute[float], value: object) -> None:
    non_negative(_inst, attribute, value)  # a real number >= 0, or it raised
    if isinstance(value, (int, float)) and value >= 1:
        raise ValueError(f"{attribute.name} must be < 1, got {value}")


@attrs.frozen
class LifetimePolicy:
    """Recycle old connections, and ping the ones that sat idle long.

    Every checkout already looks at the socket (no round trip), which catches a server
    that closed the connection. A connection idle longer than ``ping_after`` is also
    pinged (WhoAmI, one round trip) before it is lent, for what the socket cannot tell:
    a peer that vanished without closing (a firewall dropping idle flows, a host gone).

    A password check skips the look when its connection answered the previous check
    less than ``socket_check_after`` seconds ago: the look is a system call, about a
    tenth of a login storm's throughput, and what it catches (idle timeouts, load
    balancers) needs far longer idleness. A server that goes away within that window
    costs the next check on that connection a BackendError instead of a reconnect.
    """

    #: Seconds a connection may live, from its connect (``max_lifetime``); None: forever;
    #: 0: never reused (closed at checkin), as in ldappool 3.x.
    max_lifetime: float | None = attrs.field(default=600.0, validator=non_negative_or_none)
    #: Seconds idle after which a connection is closed instead of lent; None: never.
    max_idle: float | None = attrs.field(default=None, validator=positive_or_none)
    #: Seconds idle after which a connection is pinged before it is lent; None: never.
    ping_after: float | None = attrs.field(default=60.0, validator=positive_or_none)
    #: Each connection's lifetime is shortened by a random fraction up to this, so that
    #: connections opened together do not all expire (and reconnect) together.
    jitter: float = attrs.field(default=0.05, validator=_fraction)
    #: Seconds after a password check during which its connection is used for the next
    #: check without looking at its socket; 0: look before every check.
    socket_check_after: float = attrs.field(default=0.05, validator=non_negative)

    def expires_at(self, opened_at: float) -> float:
        """Monotonic time at which a connection opened at ``opened_at`` must be recycled."""
        if self.max_lifetime is None:
            return math.inf
        return opened_at + self.max_lifetime * (1.0 - random.uniform(0.0, self.jitter))

    def too_idle(self, idle: float) -> bool:
        """Whether a connection idle for ``idle`` seconds is closed rather than lent."""
        return self.max_idle is not None and idle > self.max_idle

    def should_ping(self, idle: float) -> bool:
        """Whether a connection idle for ``idle`` seconds is pinged before it is lent."""
        return self.ping_after is not None and idle > self.ping_after
