"""The ldap3 driver: connections are :class:`PooledConnection`, an ``ldap3.Connection``.

Each connection gets its own ``ldap3.Server`` and ``ldap3.Tls``, built from the
manager's settings: nothing is process-global, and certificates are verified unless
the settings say otherwise (ldap3's own ``Tls()`` verifies nothing). The SYNC strategy,
one socket per connection: ldap3's REUSABLE and RESTARTABLE strategies would pool and
reconnect behind the pool's back.

This module holds the connection's life (bind, liveness, reconnect, close, fork) and the
driver (connect, the Server and Tls it builds, errors, asyncio); the password check,
SASL binds and the root DSE read are in :mod:`~ldappool._drivers._ldap3_auth`, the
option checks and the connector class in :mod:`~ldappool._drivers._ldap3_setup`.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from urllib.parse import quote

import ldap3
from ldap3.core import exceptions as lx

from ldappool._drivers import _ldap3_auth as auth
from ldappool._drivers._ldap3_native import PooledConnection, is_timeout, result_error
from ldappool._drivers._ldap3_setup import GET_INFO, checked_options, pooled_class
from ldappool._drivers._liveness import dead, probe
from ldappool._drivers._shared import WHOAMI, blackhole
from ldappool._port import (
    BindAnswer,
    ConnectSettings,
    ErrorKind,
    Owner,
    Sasl,
    Server,
    TLSSettings,
)

__all__ = ["Ldap3Connection", "Ldap3Driver", "PooledConnection"]

_CREDENTIAL_ERRORS = (
    lx.LDAPInvalidCredentialsResult,  # 49
    lx.LDAPInappropriateAuthenticationResult,  # 48: slapd's answer for an entry without password
    lx.LDAPPasswordIsMandatoryError,  # refused client-side: a DN without password would be
    lx.LDAPUserNameIsMandatoryError,  # an unauthenticated (anonymous) bind
)
# The ldap3 classes each ldappool error is an instance of too: the most specific first.
#: The driver's class for each kind of error ldappool raises: what 3.x let through.
_NATIVE_ERRORS: dict[ErrorKind, type[Exception]] = {
    ErrorKind.CREDENTIALS: lx.LDAPInvalidCredentialsResult,
    ErrorKind.TIMEOUT: lx.LDAPResponseTimeoutError,
    ErrorKind.DOWN: lx.LDAPCommunicationError,
    ErrorKind.OTHER: lx.LDAPException,
}
_DOWN_ERRORS = (
    lx.LDAPCommunicationError,  # socket open/send/receive, session terminated by server...
    lx.LDAPStartTLSError,  # StartTLS refused, or the handshake or certificate check failed
    lx.LDAPCertificateError,
    lx.LDAPUnavailableResult,  # answers that say "not this server, not now"
    lx.LDAPBusyResult,
    OSError,
)


class Ldap3Connection:
    """One pooled ldap3 connection (the port's ``Connection``)."""

    def __init__(
        self,
        native: PooledConnection,
        *,
        read_server_info: bool = False,
        driver: Ldap3Driver | None = None,
    ) -> None:
        self._native = native
        self._driver = driver or Ldap3Driver()
        self._read_server_info = read_server_info
        # The socket last looked at, and its probe: made once per socket.
        self._watched: Any = None
        #: What a password check sends (None: no control; see supported_controls).
        self._bind_controls: auth.BindControls = auth.bind_controls(None)
        self._alive: Callable[[], bool] = dead

    def __repr__(self) -> str:
        state = "closed" if self._native.closed else "open"
        return f"<Ldap3Connection {self._native.server.name} {state}>"

    @property
    def native(self) -> PooledConnection:
        """The ldap3 Connection lent to users."""
        return self._native

    def bind(self, who: str | None, cred: str | None) -> None:
        """Simple bind, anonymous when both are empty; raises where ldap3 returns False.

        ldap3 keeps the password on the Connection (for its reconnecting strategies) and
        the bind request, password included, in ``request``: both are cleared.
        """
        native = self._native
        native.user, native.password = who, cred
        native.authentication = ldap3.ANONYMOUS if not who and not cred else ldap3.SIMPLE
        ok = False
        try:
            ok = ldap3.Connection.bind(native, read_server_info=self._read_server_info) is True
        finally:
            native.password = native.request = None
            native._ldappool_identity_changed = not ok
        if not ok:
            raise result_error(native, "bind failed")
        if native._connection_time is None:
            native._connection_time = time.time()

    def check_password(self, who: str, cred: str) -> BindAnswer:
        """One simple bind with the password policy request control; a refusal is returned
        (:func:`~ldappool._drivers._ldap3_auth.check_password`)."""
        return auth.check_password(
            self._native, who, cred, self._read_server_info, self._bind_controls, self._driver
        )

    def supported_controls(self) -> frozenset[str] | None:
        """The root DSE's supportedControl (a base search; None if refused); the policy
        control is sent from now on only if it is listed, or the server would not say."""
        controls = auth.supported_controls(self._native, self._driver)
        self._bind_controls = auth.bind_controls(controls)
        return controls

    def sasl_bind(self, sasl: Sasl) -> None:
        """SASL bind with ldap3's own mechanisms; raises when refused
        (:func:`~ldappool._drivers._ldap3_auth.sasl_bind`)."""
        auth.sasl_bind(self._native, sasl, self._read_server_info, self._driver)

    def looks_alive(self) -> bool:
        """Whether the server has not closed the socket (see ``SocketWatch``): no I/O.

        What OpenSSL already read and decrypted is no longer on the socket: an idle
        connection with ``pending()`` bytes was written to, so it is not alive either.
        """
        native = self._native
        sock = native.socket
        if sock is self._watched and not native.closed:  # the socket of the last look
            return self._alive()
        return self._look_anew(native, sock)

    def _look_anew(self, native: PooledConnection, sock: Any) -> bool:
        """Pick the probe for a socket not seen before, and use it."""
        self._watched, self._alive = None, dead
        if native.closed or sock is None:
            return False
        try:
            if sock.fileno() < 0:
                return False
            alive = probe(sock)
        except (OSError, ValueError):
            return False
        if isinstance(sock, ssl.SSLSocket):
            pending = sock.pending
            self._alive = lambda: not pending() and alive()
        else:
            self._alive = alive
        self._watched = sock
        return self._alive()

    def ping(self) -> None:
        """One WhoAmI round trip; raises if it fails.

        Not ``extend.standard.who_am_i()``: it refuses client-side when the server info
        read does not list WhoAmI, and returns None for anonymous and failure alike.
        """
        ldap3.Connection.extended(self._native, WHOAMI)
        result = self._native.result
        if not isinstance(result, dict) or result.get("result") != 0:
            raise result_error(self._native, "WhoAmI failed")

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        """Close the socket and open a new one, to ``server``, under the same Connection."""
        native = self._native
        self._watched, self._alive = None, dead
        with contextlib.suppress(Exception):
            native.strategy.close()
        native._connection_time = None
        native.server = self._driver._ldap3_server(server, settings)
        self._driver._open(native, server, settings)

    def set_owner(self, owner: Owner | None) -> None:
        """Install (or, with None, remove) the pool's side: recovery and ``active``."""
        self._native._ldappool_owner = owner

    def identity_changed(self) -> bool:
        """True after a holder bind, rebind or unbind, or once the connection is closed."""
        return self._native._ldappool_identity_changed or self._native.closed

    def close(self) -> None:
        """Unbind and release the socket; never raises, idempotent."""
        self._watched, self._alive = None, dead
        self._native._ldappool_owner = None
        with contextlib.suppress(Exception):
            ldap3.Connection.unbind(self._native)
        if not self._native.closed:  # the unbind failed before ldap3 closed the socket
            with contextlib.suppress(Exception):
                self._native.strategy.close()

    def abandon(self) -> None:
        """Release the connection in a forked child without touching the parent's socket.

        The fd is pointed at /dev/null first, which drops the child's reference to the
        socket: a shutdown() (ldap3's close does one, and it would cut the parent's
        connection too) or a TLS alert sent later goes nowhere. ldap3's lock is not
        taken: a parent thread may have held it at fork() and does not exist here.
        """
        self._watched, self._alive = None, dead
        native = self._native
        native._ldappool_owner = None
        try:
            sock, native.socket = native.socket, None
            native.closed, native.listening, native.bound = True, False, False
            fd = sock.fileno() if sock is not None else -1
            if fd >= 0:
                blackhole(fd)
                sock.close()
        except Exception:  # noqa: S110 - must never raise
            pass


class Ldap3Driver:
    """Opens ldap3 connections and interprets ldap3 exceptions.

    ``get_info`` defaults to ``ldap3.NONE``: ldap3's default (SCHEMA) reads the schema
    at every bind, ~10-20x the cost of a connect. ``connection_options``,
    ``server_options`` and ``tls_options`` go to ``ldap3.Connection``, ``Server`` and
    ``Tls`` (e.g. ``check_names``, ``mode=ldap3.IP_V4_ONLY``, ``ca_certs_path``); what the
    manager's settings decide cannot be overridden. ``auto_referrals`` defaults to False,
    as with python-ldap: ldap3 would chase with credentials the pool does not keep.
    ``connector_cls``: an ``ldap3.Connection`` subclass for the connections lent, with
    :class:`PooledConnection` mixed in under it (its own methods come first).
    """

    name = "ldap3"

    def __init__(
        self,
        *,
        get_info: str = ldap3.NONE,
        connection_options: Mapping[str, Any] | None = None,
        server_options: Mapping[str, Any] | None = None,
        tls_options: Mapping[str, Any] | None = None,
        connector_cls: type[Any] | None = None,
    ) -> None:
        self._native_class = pooled_class(connector_cls)
        if not isinstance(get_info, str):
            raise TypeError(f"get_info must be an ldap3 constant, not {type(get_info).__name__}")
        if get_info not in GET_INFO:
            raise ValueError(f"get_info must be one of {', '.join(sorted(GET_INFO))}")
        self._get_info = get_info
        self._connection_options = checked_options(
            "connection_options", connection_options, ldap3.Connection.__init__
        )
        self._server_options = checked_options("server_options", server_options, ldap3.Server)
        self._tls_options = checked_options("tls_options", tls_options, ldap3.Tls)
        try:  # ldap3 checks some values at construction: fail now rather than at connect
            ldap3.Tls(**self._tls_options)
            server = ldap3.Server("localhost", get_info=ldap3.NONE, **self._server_options)
            self._native_class(server, auto_bind=ldap3.AUTO_BIND_NONE, **self._connection_options)
        except (lx.LDAPException, TypeError, ValueError) as exc:
            raise ValueError(f"invalid ldap3 options: {exc}") from exc

    def __repr__(self) -> str:  # values may be secrets (local_private_key_password)
        keys = sorted({*self._connection_options, *self._server_options, *self._tls_options})
        return f"Ldap3Driver(get_info={self._get_info!r}, options={keys!r})"

    @property
    def connector_cls(self) -> type[PooledConnection]:
        """The class of the native connections lent out."""
        return self._native_class

    def error_bases(
        self, kind: ErrorKind, cause: BaseException | None
    ) -> tuple[type[BaseException], ...]:
        """ldap3's classes for an error of this ``kind``: its family, and the cause's own
        class when it is one of ldap3's (not the ones ldap3 makes at run time for socket
        errors)."""
        bases: list[type[BaseException]] = []
        own = type(cause)
        if isinstance(cause, lx.LDAPException) and getattr(lx, own.__name__, None) is own:
            bases.append(own)
        bases.append(_NATIVE_ERRORS[kind])
        return tuple(bases)

    def aio(
        self,
        conn: object,
        *,
        timeout: float | None = None,
        recover: object = None,
        run: Callable[..., Awaitable[Any]],
    ) -> Any:
        """What AsyncConnectionManager lends for ``conn``: an
        :class:`~ldappool._drivers._aio_ldap3.AsyncLdap3`, whose operations run ldap3's
        own in the pool's worker threads (``run``); None for another connection class."""
        if not isinstance(conn, Ldap3Connection):
            return None
        from ldappool._drivers._aio_ldap3 import AsyncLdap3  # noqa: PLC0415 (asyncio only)

        return AsyncLdap3(conn.native, run)

    @property
    def get_info(self) -> str:
        """What ldap3 reads from the server at each bind."""
        return self._get_info

    def connect(self, server: Server, settings: ConnectSettings) -> Ldap3Connection:
        """Open the socket, and StartTLS if asked; do not bind."""
        timeout = settings.timeout
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")
        native = self._native_class(
            self._ldap3_server(server, settings),
            auto_bind=ldap3.AUTO_BIND_NONE,
            client_strategy=ldap3.SYNC,
            **{"auto_referrals": False, **self._connection_options},
        )
        try:
            self._open(native, server, settings)
        except BaseException:
            Ldap3Connection(native, driver=self).close()
            raise
        return Ldap3Connection(native, read_server_info=self._get_info != ldap3.NONE, driver=self)

    def _open(self, native: PooledConnection, server: Server, settings: ConnectSettings) -> None:
        """Open the socket with the timeouts, and StartTLS if asked."""
        timeout = settings.timeout
        # The socket timeout ldap3 sets for connect() stays on for the ldaps handshake.
        native.open(read_server_info=False)
        if server.scheme != "ldapi":
            # ldap3 writes a request in pieces: with Nagle's algorithm each small write
            # waits for the server's delayed ACK, ~40 ms per TLS handshake or bind.
            native.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if timeout is not None:
            native.socket.settimeout(timeout)  # every later send and receive
            # For ldap3's own reopen (a holder's bind after unbind). Whole seconds:
            # ldap3 packs it into SO_RCVTIMEO with "LL", a float raises struct.error.
            native.receive_timeout = max(1, math.ceil(timeout))
        starttls = settings.use_tls and server.scheme != "ldaps"
        if starttls and native.start_tls(read_server_info=False) is not True:
            raise lx.LDAPStartTLSError(f"StartTLS failed: {native.last_error}")

    def classify(self, error: BaseException) -> ErrorKind:
        """Say what an ldap3 (or socket) exception means to the pool.

        TIMEOUT is a client-side socket timeout (connect, TLS handshake, send, receive);
        timeLimitExceeded is the server answering in time, so OTHER. Certificate and
        StartTLS failures are DOWN: another server may do better.
        """
        if isinstance(error, _CREDENTIAL_ERRORS):
            return ErrorKind.CREDENTIALS
        if is_timeout(error):
            return ErrorKind.TIMEOUT
        if isinstance(error, _DOWN_ERRORS):
            return ErrorKind.DOWN
        return ErrorKind.OTHER

    def _ldap3_server(self, server: Server, settings: ConnectSettings) -> ldap3.Server:
        """One ldap3.Server per connection: ldap3 keeps per-socket state on it."""
        common: dict[str, Any] = {
            "get_info": cast(Any, self._get_info),
            "connect_timeout": settings.timeout,
            **self._server_options,
        }
        if server.scheme == "ldapi":
            if not server.host:
                raise ValueError(f"{server}: the ldap3 driver needs the ldapi socket path")
            built = ldap3.Server("ldapi://" + quote(server.host, safe=""), **common)
            built.host = server.host  # ldap3 would keep the "/" after "ldapi:/"
            return built
        host = server.host.strip("[]")  # ldap3 wants IPv6 literals bare
        tls = server.scheme == "ldaps" or settings.use_tls
        return ldap3.Server(
            host,
            port=server.port,
            use_ssl=server.scheme == "ldaps",
            tls=self._tls(host, settings.tls or TLSSettings()) if tls else None,
            **common,
        )

    def _tls(self, host: str, tls: TLSSettings) -> ldap3.Tls:
        """Verification on unless turned off (ldap3's default is CERT_NONE); SNI like libldap."""
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
            ca_certs_file=tls.ca_file,
            local_certificate_file=tls.cert_file,
            local_private_key_file=tls.key_file,
            **{"sni": host, **self._tls_options},
        )
