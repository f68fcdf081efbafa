"""ConnectionManager: the public face, with the API of ldappool 3.x.

It validates arguments, turns them into settings and policies, and delegates all
pooling to :class:`~ldappool.pool.Pool`. Nothing here does I/O of its own.
"""

from __future__ import annotations

from typing import Any

from ldappool._validate import check_bool, check_int, check_number, check_optional_str
from ldappool.clock import Clock, SystemClock
from ldappool.connect import Connector
from ldappool.connector import ConnectSettings, Driver, TLSSettings
from ldappool.drivers import resolve
from ldappool.identity import IdentityHasher
from ldappool.lease import Lease
from ldappool.policies import FailoverPolicy, InOrder, LifetimePolicy, RetryPolicy
from ldappool.pool import Pool
from ldappool.stats import Stats
from ldappool.table import render
from ldappool.uris import parse_uris

__all__ = ["ConnectionManager"]


class ConnectionManager:
    """A pool of bound LDAP connections to one or more servers.

    Every argument is described in the usage guide; each is checked here, so a bad value raises
    ValueError or TypeError naming it now rather than at the first checkout.
    """

    def __init__(
        self,
        uri: str,
        bind: str | None = None,
        passwd: str | None = None,
        size: int = 10,
        retry_max: int = 3,
        retry_delay: float = 0.1,
        use_tls: bool = False,
        timeout: float | None = -1,
        use_pool: bool = True,
        max_lifetime: float | None = 600,
        *,
        driver: str | Driver = "python-ldap",
        retry: RetryPolicy | None = None,
        failover: FailoverPolicy | None = None,
        lifetime: LifetimePolicy | None = None,
        pool_timeout: float | None = 30.0,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_verify: bool = True,
        warn_held_after: float | None = None,
        handoff_after: float = 0.05,
        clock: Clock | None = None,
    ) -> None:
        servers = parse_uris(uri)
        self._bind = check_optional_str("bind", bind)
        self._passwd = check_optional_str("passwd", passwd)
        self.size = check_int("size", size, minimum=1)
        self.retry_max = check_int("retry_max", retry_max, minimum=1)
        self.retry_delay = check_number("retry_delay", retry_delay)
        self.use_tls = check_bool("use_tls", use_tls)
        self.timeout = _timeout(timeout)
        self.use_pool = check_bool("use_pool", use_pool)
        self.max_lifetime = check_number(
            "max_lifetime", max_lifetime, strict=True, allow_none=True
        )
        self.pool_timeout = check_number("pool_timeout", pool_timeout, allow_none=True)
        held = check_number("warn_held_after", warn_held_after, strict=True, allow_none=True)
        handoff = check_number("handoff_after", handoff_after) or 0.0
        tls = TLSSettings(
            ca_file=_path("tls_ca_file", tls_ca_file),
            cert_file=_path("tls_cert_file", tls_cert_file),
            key_file=_path("tls_key_file", tls_key_file),
            verify=check_bool("tls_verify", tls_verify),
        )
        if tls.key_file and not tls.cert_file:
            raise ValueError("tls_key_file needs tls_cert_file (the client certificate)")
        retry = _policy("retry", retry, RetryPolicy) or RetryPolicy(
            max_attempts=self.retry_max, delay=self.retry_delay or 0.0
        )
        failover = _policy("failover", failover, FailoverPolicy) or InOrder()
        lifetime = _policy("lifetime", lifetime, LifetimePolicy) or LifetimePolicy(
            max_lifetime=self.max_lifetime
        )
        clock = clock or SystemClock()
        self.driver = resolve(driver)  # last: it may import a driver package

        self.uri = " ".join(str(s) for s in servers)
        self.servers = servers
        self.retry, self.failover, self.lifetime = retry, failover, lifetime
        self._hasher = IdentityHasher()
        self._default = self._hasher.identity(self._bind, self._passwd)
        self._clock = clock
        settings = ConnectSettings(timeout=self.timeout, use_tls=self.use_tls, tls=tls)
        connector = Connector(self.driver, servers, settings, retry, failover, clock)
        self._pool = Pool(
            connector,
            size=self.size,
            lifetime=lifetime,
            pool_timeout=self.pool_timeout,
            reuse=self.use_pool,
            clock=clock,
            warn_held_after=held,
            handoff_after=handoff,
        )

    @property
    def bind(self) -> str | None:
        """The default bind DN."""
        return self._bind

    def connection(self, bind: str | None = None, passwd: str | None = None) -> Lease:
        """A context manager lending a bound connection: the driver's own object.

        ``bind`` and ``passwd`` default, each on its own, to the manager's (as in the
        ldappool 3.x). The connection is returned to the pool when the block ends, unless the
        block lost it (connection errors) or re-bound it.
        """
        if bind is None and passwd is None:
            return Lease(self._pool, self._default, self._bind, self._passwd)
        who = self._bind if bind is None else check_optional_str("bind", bind)
        cred = self._passwd if passwd is None else check_optional_str("passwd", passwd)
        return Lease(self._pool, self._hasher.identity(who, cred), who, cred)

    def purge(self, bind: str | None, passwd: str | None = None) -> int:
        """Drop the connections bound as ``bind`` (with ``passwd``, if given).

        Idle ones are closed now, lent ones when they come back. Returns how many were
        closed now.
        """
        check_optional_str("bind", bind)
        if passwd is None:
            return self._pool.purge(lambda identity: identity.matches_dn(bind))
        wanted = self._hasher.identity(bind, check_optional_str("passwd", passwd))
        return self._pool.purge(lambda identity: identity == wanted)

    def close(self) -> None:
        """Unbind every idle connection and lend no more; lent ones close at checkin."""
        self._pool.close()

    def stats(self) -> Stats:
        """A frozen snapshot of the pool's state and counters."""
        return self._pool.snapshot()[1]

    def __len__(self) -> int:
        return self._pool.snapshot()[1].connections

    def __str__(self) -> str:
        slots, _ = self._pool.snapshot()
        return render(slots, self.size, self.lifetime.max_lifetime, self._clock.monotonic())

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else f"{len(self)}/{self.size} connections"
        return (
            f"<ConnectionManager {self.uri!r} driver={self.driver.name!r} "
            f"bind={self._bind!r} {state}>"
        )

    def __enter__(self) -> ConnectionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _timeout(value: object) -> float | None:
    """-1 or None: no limit; otherwise seconds > 0."""
    if value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value == -1
    ):
        return None
    return check_number("timeout", value, strict=True)


def _path(name: str, value: object) -> str | None:
    path = check_optional_str(name, value)
    if path == "":
        raise ValueError(f"{name} must be a file path or None, not an empty string")
    return path


def _policy(name: str, value: object, kind: type[Any]) -> Any:
    if value is not None and not isinstance(value, kind):
        raise TypeError(
            f"{name} must be a {kind.__name__} instance or None, not {type(value).__name__}"
        )
    return value
