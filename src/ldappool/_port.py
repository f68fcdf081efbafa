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
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "ConnectSettings",
    "Connection",
    "Driver",
    "ErrorKind",
    "Owner",
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
    # driver.
