"""The dialer: opens one bound connection, servers in failover order, attempts per retry.

This is the only place that loops over servers and attempts, and the only place that
turns a driver's error into an ldappool one (the class from ``ERROR_FOR_KIND``, also an
instance of the driver's own classes). It blocks (connects, binds, sleeps between
attempts), so it runs outside the pool lock, on a slot the pool has already reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ldappool._clock import Clock
from ldappool._errors import ERROR_FOR_KIND, LDAPPoolError, driver_flavoured
from ldappool._policies import FailoverPolicy, RetryPolicy
from ldappool._port import Connection, ConnectSettings, Driver, ErrorKind, Server

__all__ = ["Dialer"]

log = logging.getLogger("ldappool")


class Dialer:
    """Opens bound connections: each server in failover order, each retried per policy."""

    def __init__(
        self,
        driver: Driver,
        servers: Sequence[Server],
        settings: ConnectSettings,
        retry: RetryPolicy,
        failover: FailoverPolicy,
        clock: Clock,
    ) -> None:
        self.driver = driver
        self.servers = tuple(servers)
        self.settings = settings
        self.retry = retry
        self.failover = failover
        self._clock = clock
        #: Counts outcomes by name; the pool that uses this dialer installs its own.
        self.count: Callable[[str], None] = lambda _name: None
        # server -> monotonic time until which it is quarantined (see FailoverPolicy).
        self._quarantine: dict[Server, float] = {}

    def plan(self) -> list[Server]:
        """Servers in the order to try: the policy's order, quarantined ones last."""
        ordered = list(self.failover.order(self.servers))
        if not self._quarantine:
            return ordered
        now = self._clock.monotonic()
        healthy = [s for s in ordered if self._quarantine.get(s, 0.0) <= now]
        return healthy + [s for s in ordered if s not in healthy]

    def open(self, who: str | None, cred: str | None) -> tuple[Connection, Server]:
        """Connect and bind; raise InvalidCredentialsError, BackendError or ServerDownError."""
        return self._run(lambda server: self._connect_and_bind(server, who, cred), who)

    def reopen(self, conn: Connection, who: str | None, cred: str | None) -> Server:
        """Give ``conn`` a new transport and bind it again, as :meth:`open` would."""

        def attempt(server: Server) -> Connection:
            conn.reconnect(server, self.settings)
            conn.bind(who, cred)
            return conn

        return self._run(attempt, who)[1]

    def _run(
        self, attempt_on: Callable[[Server], Connection], who: str | None
    ) -> tuple[Connection, Server]:
        """Each server in failover order, each retried per policy, until one works."""
        last_error: BaseException | None = None
        last_kind = ErrorKind.DOWN
        last_server: Server | None = None
        attempts = 0
        max_time = self.failover.max_time
        deadline = None if max_time is None else self._clock.monotonic() + max_time
        for server in self.plan():
            attempt = 0
            while True:
                if attempts and deadline is not None and self._clock.monotonic() >= deadline:
                    break
                attempt += 1
                attempts += 1
                try:
                    conn = attempt_on(server)
                except Exception as exc:
                    kind = self.driver.classify(exc)
                    if not kind.transient:  # no retry or other server can fix it
                        raise self.refusal(kind, exc, server, who, "connection") from exc
                    self.count("connect_errors")
                    log.debug("attempt %d on %s failed: %r", attempt, server, exc)
                    last_error, last_kind, last_server = exc, kind, server
                    if not self.retry.should_retry(attempt, exc):
                        break
                    pause = self.retry.backoff(attempt)
                    if deadline is not None and self._clock.monotonic() + pause >= deadline:
                        break  # no sleeping past max_time
                    self._clock.sleep(pause)
                    continue
                self._quarantine.pop(server, None)
                return conn, server
            if not attempt:
                break  # out of time before this server's turn
            if self.failover.cooldown > 0:
                self._quarantine[server] = self._clock.monotonic() + self.failover.cooldown
            self.count("failovers")
            log.warning("giving up on %s after %d attempt(s): %r", server, attempt, last_error)
        tried = ", ".join(str(s) for s in self.servers)
        raise self.error(
            last_kind,
            f"could not connect to {tried} after {attempts} attempt(s); "
            f"last error: {last_error!r}",
            last_server,
            last_error,
        ) from last_error

    def _connect_and_bind(self, server: Server, who: str | None, cred: str | None) -> Connection:
        conn = self.driver.connect(server, self.settings)
        try:
            conn.bind(who, cred)
        except BaseException:
            conn.close()
            raise
        return conn

    def refusal(
        self,
        kind: ErrorKind,
        exc: BaseException,
        server: Server | None,
        who: str | None,
        what: str,
    ) -> LDAPPoolError:
        """The error for a server's refusal (of the ``what``): wrong credentials, or
        another answer that no retry or other server can change."""
        if kind is ErrorKind.CREDENTIALS:
            self.count("invalid_credentials")
            message = f"{server} refused the credentials for bind DN {who!r}"
        else:
            message = f"{server} refused the {what}: {exc!r}"
        return self.error(kind, message, server, exc)

    def error(
        self,
        kind: ErrorKind,
        message: str,
        server: Server | None,
        cause: BaseException | None,
    ) -> LDAPPoolError:
        """The ldappool error for a driver error of this ``kind``, also an instance of the
        driver's matching classes (when the driver names them: ``Driver.error_bases``),
        so that code written against the driver's exceptions catches it too."""
        error = ERROR_FOR_KIND[kind]
        bases = getattr(self.driver, "error_bases", None)
        native = tuple(bases(kind, cause)) if bases is not None else ()
        return driver_flavoured(error, native, message, str(server) if server else None, cause)
