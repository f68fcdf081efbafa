"""The port: everything the pool knows about LDAP, and all a driver needs to know of the pool.

The pool never imports a driver, and a driver imports nothing of ldappool but this
module (and its own helpers). The pool opens, binds, checks and closes connections
through the :class:`Driver` and :class:`Connection` protocols, learns what an
exception means from :meth:`Driver.classify`, and gives each connection an
:class:`Owner` (its side of the connection, for the read recovery). A new driver is one
module implementing these plus one registry line (or an entry point in the
``ldappool.drivers`` group).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "BindAnswer",
    "ConnectSettings",
    "Connection",
    "Driver",
    "ErrorKind",
    "Owner",
    "PasswordPolicy",
    "PolicyError",
    "Sasl",
    "Server",
    "TLSSettings",
]


class ErrorKind(enum.Enum):
    """What a driver exception means to the pool."""

    #: The server is unreachable or the connection was lost: retry, fail over, discard.
    DOWN = "down"
    #: No answer within ``timeout``: treated like DOWN (the connection may hold an
    #: unanswered request, so it is never reused).
    TIMEOUT = "timeout"
    #: Wrong DN or password: never retried, never failed over.
    CREDENTIALS = "credentials"
    #: Anything else (no such object, size limit...): the connection is still healthy.
    OTHER = "other"

    @property
    def transient(self) -> bool:
        """Whether the error may go away: worth another attempt or another server, and a
        connection that raised it is given up (DOWN and TIMEOUT)."""
        return self is ErrorKind.DOWN or self is ErrorKind.TIMEOUT


@attrs.frozen
class Server:
    """One server URI, parsed once at construction."""

    uri: str
    scheme: str  # "ldap", "ldaps" or "ldapi"
    host: str  # host name, or the socket path for ldapi://
    port: int | None  # None: the scheme's default (or ldapi)

    def __str__(self) -> str:
        return self.uri


@attrs.frozen(repr=True)
class TLSSettings:
    """Per-manager TLS material. Certificates are verified unless ``verify`` is False."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@attrs.frozen
class ConnectSettings:
    """How every connection of one manager is opened."""

    #: Seconds for connecting and for each operation; None means no limit.
    timeout: float | None = None
    #: StartTLS right after connecting (ldaps:// is TLS from the start anyway).
    use_tls: bool = False
    #: The manager's own TLS material; None when it was given no ``tls_*`` argument: then
    #: the library's process-wide TLS settings apply (python-ldap's ``ldap.set_option``,
    #: ldap.conf), as in ldappool 3.x, or a verifying default where it has none (ldap3).
    tls: TLSSettings | None = None


class PolicyError(enum.Enum):
    """The error of a password policy answer (draft-behera-ldap-password-policy, 10)."""

    PASSWORD_EXPIRED = 0
    ACCOUNT_LOCKED = 1
    #: The password was reset by an administrator: the user must change it first.
    CHANGE_AFTER_RESET = 2
    PASSWORD_MOD_NOT_ALLOWED = 3
    MUST_SUPPLY_OLD_PASSWORD = 4
    INSUFFICIENT_PASSWORD_QUALITY = 5
    PASSWORD_TOO_SHORT = 6
    PASSWORD_TOO_YOUNG = 7
    PASSWORD_IN_HISTORY = 8
    PASSWORD_TOO_LONG = 9


@attrs.frozen
class PasswordPolicy:
    """The server's password policy answer to a bind: the response control of the LDAP
    password policy draft, which OpenLDAP's ppolicy overlay, 389-ds and others send."""

    #: Seconds before the password expires (the server warns this close to expiry).
    expires_in: int | None = None
    #: The password has expired; this many more binds with it are allowed.
    grace_logins_left: int | None = None
    error: PolicyError | None = None


@attrs.frozen
class BindAnswer:
    """What a server answered to a password check (:meth:`Connection.check_password`)."""

    #: The driver's exception for a refused bind (wrong password, locked...); None: bound.
    refusal: BaseException | None = None
    #: The policy answer that came with the bind result; None when there was none.
    policy: PasswordPolicy | None = None


_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")


def _mechanism(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not _MECHANISM.fullmatch(value):
        raise ValueError(
            f"sasl mechanism must be a SASL mechanism name such as 'EXTERNAL', not {value!r}"
        )


def _optional_str(_instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"Sasl.{attribute.name} must be a str or None, not {type(value).__name__}")


def _optional_callable(_instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"Sasl.{attribute.name} must be callable (returning the secret) or None")


@attrs.frozen
class Sasl:
    """A SASL bind: the mechanism and who to be, never a stored secret.

    ``EXTERNAL`` takes the identity the transport proves: the peer's user over ldapi://,
    the client certificate over TLS. ``GSSAPI`` uses the Kerberos ticket cache. A
    mechanism that needs a secret (``DIGEST-MD5``) gets it from ``secret()``, called at
    each bind and not kept. Connections are pooled by mechanism, ``user`` and
    ``authz_id``.
    """

    mechanism: str = attrs.field(validator=_mechanism)
    #: The authorization identity to assume ("" or None: the authenticated one).
    authz_id: str | None = attrs.field(default=None, validator=_optional_str)
    #: The authentication identity, for mechanisms that take one (DIGEST-MD5).
    user: str | None = attrs.field(default=None, validator=_optional_str)
    #: Returns the secret, for mechanisms that take one; called at each bind.
    secret: Callable[[], str] | None = attrs.field(
        default=None, repr=False, validator=_optional_callable
    )

    @classmethod
    def external(cls, authz_id: str | None = None) -> Sasl:
        """SASL EXTERNAL: the identity of ldapi://'s peer or of the TLS client certificate."""
        return cls("EXTERNAL", authz_id)


@runtime_checkable
class Owner(Protocol):
    """The pool's side of one connection, given to it once, when it is opened."""

    @property
    def lent(self) -> bool:
        """Whether the connection is checked out now (``StateConnector.active``)."""

    def recover(self) -> None:
        """Reconnect and rebind the lent connection under a read that lost it.

        Goes through :meth:`Connection.reconnect` and :meth:`Connection.bind`; raises
        when that fails, and always while the connection is not lent.
        """


@runtime_checkable
class Connection(Protocol):
    """One live LDAP connection as the pool sees it.

    Methods raise the driver's own exceptions; the pool asks :meth:`Driver.classify`
    what they mean. Only :meth:`close` and :meth:`abandon` never raise.
    """

    @property
    def native(self) -> Any:
        """What the user receives: python-ldap's LDAPObject, an ldap3 Connection..."""

    def bind(self, who: str | None, cred: str | None) -> None:
        """Simple bind (anonymous when both are None). Keeps no copy of ``cred``."""

    def check_password(self, who: str, cred: str) -> BindAnswer:
        """Simple bind as ``who`` with the password policy request control (not
        critical; left out once :meth:`supported_controls` said the server does not
        know it): one bind request, never repeated.

        A server's refusal (wrong password, locked account...) is returned, with the
        policy answer if the server sent one; transport errors (DOWN, TIMEOUT) are
        raised. Keeps no copy of ``cred``; the connection stays bound as ``who`` on
        success, and usable (anonymous) after a refusal.
        """

    def sasl_bind(self, sasl: Sasl) -> None:
        """SASL bind; raises the driver's exception when refused. Keeps no secret."""

    def supported_controls(self) -> frozenset[str] | None:
        """The root DSE's ``supportedControl``: one round trip, a search (never a bind).

        None when the server would not say (the read was refused). The connection keeps
        the answer: :meth:`check_password` sends the policy control only to a server
        that lists it, or that would not say. Transport errors are raised. The pool uses
        it as the first round trip of a connection opened for password checks.
        """

    def looks_alive(self) -> bool:
        """False if the server has closed (or reset) this idle connection.

        Must not do a round trip: a zero-timeout poll of the socket is the model. It
        runs at every checkout: one system call at most.
        """

    def ping(self) -> None:
        """One cheap round trip (WhoAmI); raises if the connection is unusable."""

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        """Give the same native object a new transport to ``server``, not bound yet.

        The holder keeps the object it was lent; only what is under it is replaced
        (the old transport is closed first). Raises the driver's exceptions.
        """

    def set_owner(self, owner: Owner | None) -> None:
        """Tell the connection who pools it: the pool does, once, when it opens it.

        When an idempotent read loses the connection, the native object calls
        ``owner.recover()`` once and runs the read again; if that raises, the read's
        own exception is raised. Writes are never replayed. ``owner.lent`` answers
        the native object's ``active``. None (and :meth:`close`) detaches it.
        """

    def identity_changed(self) -> bool:
        """True if the holder re-bound or unbound the native connection.

        Such a connection is discarded at checkin: it can no longer be matched to
        the identity it was lent under.
        """

    def close(self) -> None:
        """Unbind and release the socket. Never raises."""

    def abandon(self) -> None:
        """Forget the connection without any I/O on its socket (after ``fork()``).

        The socket is shared with the parent process: the child must neither read,
        write nor send an unbind on it. Never raises.
        """


@runtime_checkable
class Driver(Protocol):
    """Opens connections and interprets the exceptions of one LDAP library."""

    name: str

    def connect(self, server: Server, settings: ConnectSettings) -> Connection:
        """Open (and StartTLS if asked) a connection to ``server``; do not bind."""

    def classify(self, error: BaseException) -> ErrorKind:
        """Say what a driver exception means to the pool."""

    # Optional: ``error_bases(kind, cause) -> tuple of exception classes``. The
    # ldappool error about to be raised for an error of this ``kind`` (with the
    # driver's ``cause``, if any) is made an instance of these too, so that ``except``
    # clauses written for the driver's own exceptions catch it. A small fixed set per
    # driver, that depends on ``kind`` and the cause's class only: the pool asks once
    # per pair and keeps the answer.
    #
    # Optional, for AsyncConnectionManager (without them, every call runs in the pool's
    # worker threads):
    #
    # ``aio(conn, *, timeout, recover, run) -> object | None``: what an asyncio manager
    # lends for ``conn`` (a connection of this driver): an object with awaitable
    # operations, the native object as its ``native``; None for the pool's generic one.
    # ``timeout``: seconds per operation (None: no limit); ``recover``: an async function
    # that reconnects and rebinds the lent connection under a read that lost it (raises
    # when it cannot, or when the connection is not lent); ``run(fn, *args)``: awaits a
    # blocking call in the pool's bounded worker threads. An operation interrupted
    # (cancelled) with its request on the wire must leave ``conn.identity_changed()``
    # True, so that the connection is not pooled again (the pool notes that itself for
    # the calls made through ``run``).
    #
    # ``aio_check_password(conn, lent, who, cred) -> Awaitable[BindAnswer]``:
    # :meth:`Connection.check_password` without blocking, through ``lent`` (what ``aio``
    # returned); the same rules (one bind, a refusal returned, transport errors raised).
