"""Pool events: what happened to which connection, for listeners (metrics, logs, alerts).

A listener is any callable taking an :class:`Event`. It is called synchronously, in the
thread where the event happened and never with the pool's lock held, so it must be
quick (hand slow work to a queue). A listener that raises is logged and otherwise
ignored: it cannot break a checkout. No event carries a password.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import attrs

__all__ = ["Event", "EventKind", "Events", "Listener"]

log = logging.getLogger("ldappool")


class EventKind(enum.Enum):
    """What an :class:`Event` reports."""

    #: A connection was opened and bound (``duration``: seconds it took, all attempts).
    OPENED = "opened"
    #: The pool closed a connection (``reason``: why, see :class:`Event`).
    CLOSED = "closed"
    #: A connection was lent (``duration``: seconds the checkout took, waiting included).
    CHECKED_OUT = "checked_out"
    #: A lent connection came back (``duration``: seconds it was held).
    CHECKED_IN = "checked_in"
    #: A checkout found the pool full and queued.
    WAIT_STARTED = "wait_started"
    #: A queued checkout gave up after ``pool_timeout`` (MaxConnectionReachedError).
    WAIT_TIMED_OUT = "wait_timed_out"
    #: A server was given up for the next one (``error``: the last attempt's).
    FAILOVER = "failover"
    #: A failed server moved to the end of the order for the failover policy's cooldown.
    SERVER_QUARANTINED = "server_quarantined"
    #: A quarantined server took a connection again.
    SERVER_BACK = "server_back"
    #: A server refused a bind (``reason``: "invalid credentials", "account locked"...).
    BIND_REFUSED = "bind_refused"


@attrs.frozen
class Event:
    """One thing that happened in a pool.

    ``reason`` of CLOSED is one of: ``"expired"`` (the lifetime policy), ``"stale"``
    (closed by the server while idle, or a failed ping), ``"lost"`` (a connection error
    in use), ``"changed"`` (the holder re-bound or unbound it), ``"purged"``,
    ``"shrunk"`` (over ``size`` after a resize), ``"closed"`` (the manager was closed),
    ``"not pooled"`` (``use_pool=False``), ``"refused"`` (a bind on it was refused),
    ``"idle"`` (idle longer than the lifetime policy allows).
    """

    kind: EventKind
    #: The pool slot's number (as in ``print(cm)``), when a connection is concerned.
    slot: int | None = None
    #: The URI of the server concerned.
    server: str | None = None
    #: The bind DN concerned (None: anonymous or not known).
    dn: str | None = None
    reason: str | None = None
    #: Seconds, for OPENED, CHECKED_OUT and CHECKED_IN.
    duration: float | None = None
    #: The error's repr, for FAILOVER and BIND_REFUSED.
    error: str | None = None


Listener = Callable[[Event], object]


class Events:
    """The listeners of one manager, and the one place that calls them."""

    __slots__ = ("listeners",)

    def __init__(self) -> None:
        #: Read (truthiness) on the hot path before an event is even made.
        self.listeners: list[Listener] = []

    def add(self, listener: Listener) -> None:
        if not callable(listener):
            raise TypeError(f"a listener must be callable, not {type(listener).__name__}")
        self.listeners = [*self.listeners, listener]  # copy on write: emit() never locks

    def remove(self, listener: Listener) -> None:
        listeners = list(self.listeners)
        listeners.remove(listener)  # ValueError if it was not added, like list.remove
        self.listeners = listeners

    def closed(self, slot: int, server: object, dn: str | None, reason: str) -> None:
        """Tell of a connection the pool closed (only made when someone listens)."""
        if self.listeners:
            self.emit(
                Event(
                    EventKind.CLOSED,
                    slot=slot,
                    server=str(server) if server else None,
                    dn=dn,
                    reason=reason,
                )
            )

    def emit(self, event: Event) -> None:
        """Call every listener; one that raises is logged and the others still run."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("ldappool event listener %r failed on %s", listener, event.kind)
