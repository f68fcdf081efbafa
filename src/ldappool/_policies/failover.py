"""Which server to try next."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs

from ldappool._port import Server
from ldappool._validate import non_negative, positive_or_none

__all__ = ["FailoverPolicy", "InOrder", "RoundRobin"]


@attrs.frozen
class FailoverPolicy:
    """Orders the servers for each new connection.

    Subclasses override :meth:`order`. A server that failed every attempt is
    quarantined for ``cooldown`` seconds: it goes to the end of the order, so new
    connections stop paying its timeout while another server answers, yet it is still
    tried when nothing else works.
    """

    #: Seconds a failed server is moved to the end of the order (0: never).
    cooldown: float = attrs.field(default=5.0, validator=non_negative, kw_only=True)
    #: Seconds one new connection may spend on all servers and attempts together: no
    #: attempt starts and no backoff sleeps past it (an attempt is bounded by ``timeout``).
    #: None: until every server has had its retries.
    max_time: float | None = attrs.field(default=None, validator=positive_or_none, kw_only=True)

    def order(self, servers: Sequence[Server]) -> Sequence[Server]:
        """The servers in the order to try them for one new connection."""
        raise NotImplementedError


@attrs.frozen
class InOrder(FailoverPolicy):
    """Always the first server first, as listed: as ldappool 3.x did.

    Once a failed first server is back (after its cooldown), new connections return to
    it, and the pool drifts back as connections are recycled.
    """

    def order(self, servers: Sequence[Server]) -> Sequence[Server]:
        return servers


@attrs.frozen
class RoundRobin(FailoverPolicy):
    """Each new connection starts one server further, to spread load over replicas."""

    _turn: itertools.count[int] = attrs.field(
        factory=itertools.count, init=False, eq=False, repr=False
    )

    def order(self, servers: Sequence[Server]) -> Sequence[Server]:
        start = next(self._turn) % len(servers)
        return [*servers[start:], *servers[:start]]
