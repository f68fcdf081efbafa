"""OpenTelemetry metrics for a pool, after the semantic conventions for database client
connection pools (``db.client.connection.*``), and a few of ldappool's own.

The counts are observed from ``manager.stats()`` when a reader collects (nothing per
checkout); the durations and counters come from the pool's events, which the listener
records and does nothing else with. Every pool reporting through one meter provider
shares one set of instruments (an SDK keeps the first callbacks given for a name and
drops later ones); each pool's measurements carry its ``db.client.connection.pool.name``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from opentelemetry import metrics

from ldappool._events import Event, EventKind, Listener
from ldappool._stats import Stats

__all__ = ["OpenTelemetryMetrics"]

log = logging.getLogger("ldappool")

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
#: ldappool's own attribute: why a connection was closed, or a bind refused.
REASON = "ldappool.reason"
#: The conventions' advice for database durations (db.client.operation.duration), in s.
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}

Attributes = dict[str, str | int]
Reading = Callable[["OpenTelemetryMetrics", Stats], Iterable[tuple[int, Attributes]]]

#: The observed instruments (db.client.connection.*): unit, what a pool reports, text.
OBSERVED: dict[str, tuple[str, Reading, str]] = {
    "count": (
        "{connection}",
        lambda pool, s: ((s.idle, pool._idle), (s.in_use, pool._used)),
        "Connections open, by state: idle (pooled) or used (lent)",
    ),
    "idle.max": (
        "{connection}",
        lambda p, s: ((s.size, p._attrs),),
        "Most idle connections: size",
    ),
    "idle.min": ("{connection}", lambda p, s: ((p._min_size(), p._attrs),), "Idle kept: min_size"),
    "limit": ("{connection}", lambda p, s: ((s.size, p._attrs),), "Most connections: size"),
    "pending_requests": ("{request}", lambda p, s: ((s.waiting, p._attrs),), "Checkouts queued"),
}


class _Pool(Protocol):
    """What is read of a manager (a ConnectionManager; duck-typed for the layering)."""

    def stats(self) -> Stats: ...
    def add_listener(self, listener: Listener) -> None: ...
    def remove_listener(self, listener: Listener) -> None: ...


class OpenTelemetryMetrics:
    """Report one pool's metrics to OpenTelemetry, until :meth:`close`.

    ``manager``: the :class:`~ldappool.ConnectionManager`. ``pool_name``: the value of
    ``db.client.connection.pool.name``, unique among the pools of one meter provider.
    ``meter_provider``: None for the global one (``opentelemetry.metrics``'s).
    """

    def __init__(self, manager: _Pool, *, pool_name: str, meter_provider: Any = None) -> None:
        needed = ("stats", "add_listener", "remove_listener")
        if not all(callable(getattr(manager, name, None)) for name in needed):
            raise TypeError(f"manager must be a ConnectionManager, not {type(manager).__name__}")
        if not isinstance(pool_name, str):
            raise TypeError(f"pool_name must be a str, not {type(pool_name).__name__}")
        if not pool_name.strip():
            raise ValueError("pool_name must not be empty")
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            kind = type(meter_provider).__name__
            raise TypeError(f"meter_provider must be a MeterProvider or None, not {kind}")
        self._name = pool_name
        self._attrs: Attributes = {POOL_NAME: pool_name}
        self._idle: Attributes = {POOL_NAME: pool_name, STATE: "idle"}
        self._used: Attributes = {POOL_NAME: pool_name, STATE: "used"}
        self._closed = False
        self._failed = False
        self._manager: weakref.ref[_Pool] = weakref.ref(manager, self._forget)
        self._instruments = _instruments_for(meter_provider)
        self._instruments.add(self)
        manager.add_listener(self._listen)

    @property
    def pool_name(self) -> str:
        """The ``db.client.connection.pool.name`` of this pool's measurements."""
        return self._name

    def close(self) -> None:
        """Stop reporting this pool (again: nothing); the manager is left as it is."""
        if self._closed:
            return
        self._closed = True
        self._instruments.remove(self)
        manager = self._manager()
        if manager is not None:
            with contextlib.suppress(ValueError):  # the listener was removed by hand
                manager.remove_listener(self._listen)

    def __enter__(self) -> OpenTelemetryMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "reporting"
        return f"<OpenTelemetryMetrics pool_name={self._name!r} {state}>"

    def _forget(self, _ref: object) -> None:
        """The manager was garbage-collected: report no more (pruned at the next add).

        Takes no lock: a weakref callback may run inside any allocation, a locked one too.
        """
        self._closed = True

    def _stats(self) -> Stats | None:
        manager = self._manager()
        if self._closed or manager is None:
            return None
        try:
            return manager.stats()
        except Exception:
            log.debug("ldappool metrics: stats() of pool %r failed", self._name, exc_info=True)
            return None

    def _min_size(self) -> int:
        """The connections the upkeep keeps open (0 for a manager without min_size)."""
        return int(getattr(self._manager(), "min_size", 0))

    def _listen(self, event: Event) -> None:
        """Record one event: cheap, and never raises into the pool."""
        if self._closed:
            return
        try:
            self._record(event)
        except Exception:
            if not self._failed:  # once: a broken SDK or exporter must not flood the log
                self._failed = True
                log.warning("ldappool metrics: recording %s failed", event.kind, exc_info=True)

    def _record(self, event: Event) -> None:
        kind, into, duration = event.kind, self._instruments, event.duration
        if kind is EventKind.CHECKED_OUT and duration is not None:
            into.wait_time.record(duration, self._attrs)
        elif kind is EventKind.CHECKED_IN and duration is not None:
            into.use_time.record(duration, self._attrs)
        elif kind is EventKind.OPENED and duration is not None:
            into.create_time.record(duration, self._attrs)
        elif kind is EventKind.WAIT_TIMED_OUT:
            into.timeouts.add(1, self._attrs)
        elif kind is EventKind.CLOSED:
            into.closed.add(1, {**self._attrs, REASON: event.reason or "unknown"})
        elif kind is EventKind.BIND_REFUSED:
            into.refused.add(1, {**self._attrs, REASON: event.reason or "unknown"})
        elif kind is EventKind.FAILOVER:
            into.failovers.add(1, {**self._attrs, **_server(event.server)})


def _server(uri: str | None) -> Attributes:
    """``server.address`` and ``server.port`` of an LDAP URI (a socket path for ldapi)."""
    parts = urlsplit(uri or "")
    if parts.scheme == "ldapi":
        return {"server.address": unquote(parts.netloc)} if parts.netloc else {}
    if not parts.hostname:
        return {}
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    return {"server.address": parts.hostname, **({"server.port": port} if port else {})}


class _Instruments:
    """The instruments of one meter provider, and the pools that report through them."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self.pools: tuple[OpenTelemetryMetrics, ...] = ()  # copy on write: read unlocked
        prefix = "db.client.connection"
        for name, (unit, reading, text) in OBSERVED.items():
            callbacks = [self._observer(reading)]
            meter.create_observable_up_down_counter(f"{prefix}.{name}", callbacks, unit, text)
        self.timeouts = meter.create_counter(
            f"{prefix}.timeouts", "{timeout}", "Checkouts that gave up after pool_timeout"
        )
        self.create_time, self.wait_time, self.use_time = (
            meter.create_histogram(
                f"{prefix}.{name}", "s", text, explicit_bucket_boundaries_advisory=BUCKETS
            )
            for name, text in (
                ("create_time", "Time to open and bind a connection"),
                ("wait_time", "Time a checkout took, waiting and opening included"),
                ("use_time", "Time a connection was held, from checkout to checkin"),
            )
        )
        self.closed = meter.create_counter(
            "ldappool.connection.closed", "{connection}", "Connections the pool closed, by reason"
        )
        self.refused = meter.create_counter(
            "ldappool.bind_refused", "{bind}", "Binds a server refused, by reason"
        )
        self.failovers = meter.create_counter(
            "ldappool.failovers", "{failover}", "Times a server was given up for the next one"
        )

    def add(self, pool: OpenTelemetryMetrics) -> None:
        with self._lock:
            pools = tuple(p for p in self.pools if not p._closed)
            if any(p.pool_name == pool.pool_name for p in pools):
                raise ValueError(
                    f"pool_name {pool.pool_name!r} is already reported through this meter "
                    "provider: pool names must be unique (or close() the other one first)"
                )
            self.pools = (*pools, pool)

    def remove(self, pool: OpenTelemetryMetrics) -> None:
        with self._lock:
            self.pools = tuple(p for p in self.pools if p is not pool)

    def _observer(
        self, reading: Reading
    ) -> Callable[[metrics.CallbackOptions], Iterator[metrics.Observation]]:
        def observe(_options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
            for pool in self.pools:
                stats = pool._stats()
                if stats is not None:
                    for value, attributes in reading(pool, stats):
                        yield metrics.Observation(value, attributes)

        return observe


_registry_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_for_global: list[_Instruments] = []  # the global provider's (through its proxy, if unset)


def _instruments_for(provider: Any) -> _Instruments:
    """The instruments of ``provider`` (None: the global one), made on first use."""
    with _registry_lock:
        if provider is None or provider is metrics.get_meter_provider():
            if not _for_global:
                _for_global.append(_Instruments(metrics.get_meter("ldappool", _version())))
            return _for_global[0]
        found = _by_provider.get(provider)
        if found is None:
            meter = provider.get_meter("ldappool", _version())
            found = _by_provider[provider] = _Instruments(meter)
        return found


def _version() -> str:
    try:
        return metadata.version("ldappool")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return ""
