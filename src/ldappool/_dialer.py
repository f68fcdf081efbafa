"""The dialer: opens one bound connection, servers in failover order, attempts per retry.

This is the only place that loops over servers and attempts, and the only place that
turns a driver's error into an ldappool one (the class from ``ERROR_FOR_KIND``, also an
instance of the driver's own classes). It blocks (connects, binds, sleeps between
attempts), so it runs outside the pool lock, on a slot the pool has already reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ldappool._auth import forget_locals
from ldappool._clock import Clock
from ldappool._errors import (
    ERROR_FOR_KIND,
    AccountLockedError,
    InvalidCredentialsError,
    LDAPPoolError,
    PasswordExpiredError,
    flavour,
    flavoured_error,
)
from ldappool._events import Event, EventKind, Events
from ldappool._identity import Credentials
from ldappool._policies import FailoverPolicy, RetryPolicy
from ldappool._port import (
    Connection,
    ConnectSettings,
    Driver,
    ErrorKind,
    PasswordPolicy,
    PolicyError,
    Server,
)

__all__ = ["Dialer", "bind"]

#: The error a refused password check raises, by the policy answer's reason.
_POLICY_ERRORS: dict[PolicyError | None, type[InvalidCredentialsError]] = {
    PolicyError.ACCOUNT_LOCKED: AccountLockedError,
    PolicyError.PASSWORD_EXPIRED: PasswordExpiredError,
}

#: How many classes of errors :meth:`Dialer.error` keeps at most (a driver may make
#: exception classes at run time, as ldap3 does for socket errors).
_FLAVOURS_KEPT = 64

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
        #: Where failovers, quarantines and refused binds are told (the manager's).
        self.events = Events()
        # server -> monotonic time until which it is quarantined (see FailoverPolicy).
        self._quarantine: dict[Server, float] = {}
        # (ldappool error, kind, driver error class) -> the class of the errors raised
        # (:meth:`error`): the driver's error_bases asked once per combination.
        self._flavours: dict[tuple[type[LDAPPoolError], ErrorKind, type], type[LDAPPoolError]] = {}

    def plan(self) -> list[Server]:
        """Servers in the order to try: the policy's order, quarantined ones last."""
        ordered = list(self.failover.order(self.servers))
        if not self._quarantine:
            return ordered
        now = self._clock.monotonic()
        healthy = [s for s in ordered if self._quarantine.get(s, 0.0) <= now]
        return healthy + [s for s in ordered if s not in healthy]

    def open(self, credentials: Credentials) -> tuple[Connection, Server]:
        """Connect and bind; raise InvalidCredentialsError, BackendError or ServerDownError."""

        def attempt(server: Server) -> Connection:
            conn = self.driver.connect(server, self.settings)
            try:
                bind(conn, credentials)
            except BaseException:
                conn.close()
                raise
            return conn

        return self._run(attempt, credentials.who)

    def open_unbound(self) -> tuple[Connection, Server]:
        """Connect without binding, for password checks. One round trip, reading which
        controls the server supports (the check sends the policy control only where it
        is known), proves that it answers: the check's bind is then sent on a working
        connection."""

        def attempt(server: Server) -> Connection:
            conn = self.driver.connect(server, self.settings)
            try:
                conn.supported_controls()
            except BaseException:
                conn.close()
                raise
            return conn

        return self._run(attempt, None)

    def reopen(self, conn: Connection, credentials: Credentials) -> Server:
        """Give ``conn`` a new transport and bind it again, as :meth:`open` would."""

        def attempt(server: Server) -> Connection:
            conn.reconnect(server, self.settings)
            bind(conn, credentials)
            return conn

        return self._run(attempt, credentials.who)[1]

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
                if self._quarantine.pop(server, None) is not None and self.events.listeners:
                    self.events.emit(Event(EventKind.SERVER_BACK, server=str(server)))
                return conn, server
            if not attempt:
                break  # out of time before this server's turn
            if self.failover.cooldown > 0:
                self._quarantine[server] = self._clock.monotonic() + self.failover.cooldown
                if self.events.listeners:
                    self.events.emit(Event(EventKind.SERVER_QUARANTINED, server=str(server)))
            self.count("failovers")
            if self.events.listeners:
                self.events.emit(
                    Event(EventKind.FAILOVER, server=str(server), error=repr(last_error))
                )
            log.warning("giving up on %s after %d attempt(s): %r", server, attempt, last_error)
        tried = ", ".join(str(s) for s in self.servers)
        raise self.error(
            last_kind,
            f"could not connect to {tried} after {attempts} attempt(s); "
            f"last error: {last_error!r}",
            last_server,
            last_error,
        ) from last_error

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
            if self.events.listeners:
                self._refused(server, who, "invalid credentials", exc)
            message = f"{server} refused the credentials for bind DN {who!r}"
        else:
            message = f"{server} refused the {what}: {exc!r}"
        return self.error(kind, message, server, exc)

    def password_refusal(
        self,
        refusal: BaseException,
        policy: PasswordPolicy | None,
        server: Server | None,
        who: str,
    ) -> LDAPPoolError:
        """The error for a refused password check: InvalidCredentialsError, or the
        subclass the server's policy answer names; BackendError for another answer.
        (Once per wrong password: kept short. The pool counted it as it ended the check.)"""
        kind = self.driver.classify(refusal)
        if kind is not ErrorKind.CREDENTIALS:
            return self.refusal(kind, refusal, server, who, "password check")
        reason = policy.error if policy is not None else None
        if reason is None:
            error: type[InvalidCredentialsError] = InvalidCredentialsError
            why, message = "invalid credentials", f"{server} refused the password of {who!r}"
        else:
            error = _POLICY_ERRORS.get(reason, InvalidCredentialsError)
            why = reason.name.lower().replace("_", " ")
            message = f"{server} refused the password of {who!r} ({why})"
        if self.events.listeners:
            self._refused(server, who, why, refusal)
        found = self.error(kind, message, server, refusal, error)
        assert isinstance(found, InvalidCredentialsError)
        found.policy = policy
        return found

    def _refused(
        self, server: Server | None, who: str | None, reason: str, exc: BaseException
    ) -> None:
        """Tell the listeners (only called when there are some)."""
        self.events.emit(
            Event(
                EventKind.BIND_REFUSED,
                server=str(server) if server else None,
                dn=who,
                reason=reason,
                error=repr(exc),
            )
        )

    def error(
        self,
        kind: ErrorKind,
        message: str,
        server: Server | None,
        cause: BaseException | None,
        error: type[LDAPPoolError] | None = None,
    ) -> LDAPPoolError:
        """The ldappool error for a driver error of this ``kind`` (or ``error``), also an
        instance of the driver's matching classes (when the driver names them:
        ``Driver.error_bases``), so that code written against the driver's exceptions
        catches it too. The frames ``cause`` passed through keep no locals (see
        :func:`~ldappool._auth.forget_locals`)."""
        if cause is not None:
            forget_locals(cause)  # a bind's frames hold its password
        error = error or ERROR_FOR_KIND[kind]
        key = (error, kind, cause.__class__)
        made = self._flavours.get(key)
        if made is None:
            bases = getattr(self.driver, "error_bases", None)
            made = flavour(error, tuple(bases(kind, cause)) if bases is not None else ())
            if len(self._flavours) >= _FLAVOURS_KEPT:  # classes a driver made at run time
                self._flavours.clear()
            self._flavours[key] = made
        return flavoured_error(made, message, str(server) if server else None, cause)


def bind(conn: Connection, credentials: Credentials) -> None:
    """Bind ``conn`` as ``credentials`` say: a simple bind, or a SASL one."""
    if credentials.sasl is not None:
        conn.sasl_bind(credentials.sasl)
    else:
        conn.bind(credentials.who, credentials.cred)
