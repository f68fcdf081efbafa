"""The ldap3 driver: connections are :class:`PooledConnection`, an ``ldap3.Connection``.

Each connection gets its own ``ldap3.Server`` and ``ldap3.Tls``, built from the
manager's settings: nothing is process-global, and certificates are verified unless
the settings say otherwise (ldap3's own ``Tls()`` verifies nothing). The SYNC strategy,
one socket per connection: ldap3's REUSABLE and RESTARTABLE strategies would pool and
reconnect behind the pool's back.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import quote

import ldap3
from ldap3.core import exceptions as lx

from ldappool._drivers._ldap3_native import PooledConnection, is_timeout
from ldappool._drivers._liveness import dead, probe
from ldappool._drivers._ppolicy import PPOLICY_OID, policy_or_none
from ldappool._drivers._shared import WHOAMI, blackhole
from ldappool._port import (
    BindAnswer,
    ConnectSettings,
    ErrorKind,
    Owner,
    PasswordPolicy,
    Sasl,
    Server,
    TLSSettings,
)

__all__ = ["Ldap3Connection", "Ldap3Driver", "PooledConnection"]

_RESULT_KEYS = ("result", "description", "dn", "message", "type")
_GET_INFO = {ldap3.NONE, ldap3.DSA, ldap3.SCHEMA, ldap3.ALL} | {
    getattr(ldap3, name) for name in dir(ldap3) if name.startswith("OFFLINE_")
}
# What the driver decides itself, per option argument.
_RESERVED = {
    "connection_options": {
        "server", "user", "password", "auto_bind", "authentication", "client_strategy",
        "lazy", "receive_timeout", "sasl_mechanism", "sasl_credentials", "cred_store",
        "pool_name", "pool_size", "pool_lifetime", "pool_keepalive",
    },
    "server_options": {"host", "port", "use_ssl", "get_info", "tls", "connect_timeout"},
    "tls_options": {
        "validate", "ca_certs_file", "local_certificate_file", "local_private_key_file",
    },
}  # fmt: skip
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
#: The SASL mechanisms ldap3 2.9 implements (GSSAPI only with the gssapi package).
_SASL_MECHANISMS = ("EXTERNAL", "DIGEST-MD5", "GSSAPI", "PLAIN")


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
        self._bind_controls: list[tuple[str, bool, None]] | None = [(PPOLICY_OID, False, None)]
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
            raise _result_error(native, "bind failed")
        if native._connection_time is None:
            native._connection_time = time.time()

    def check_password(self, who: str, cred: str) -> BindAnswer:
        """One simple bind with the password policy request control; a refusal is returned.

        ldap3 keeps the value of a response control it does not know as bytes, under
        ``result["controls"][oid]["value"]``, on success and failure alike. A result code
        is a refusal whether ldap3 returned False or raised it (``raise_exceptions``);
        socket errors are raised. The password is cleared as in :meth:`bind`.
        """
        native = self._native
        native.user, native.password = who, cred
        native.authentication = ldap3.SIMPLE
        native._ldappool_identity_changed = True  # until the server has answered
        native.result = None  # a refusal ldap3 makes client-side leaves the last one
        refusal: Exception | None = None
        try:
            bound = ldap3.Connection.bind(
                native, read_server_info=self._read_server_info, controls=self._bind_controls
            )
            if bound is not True:
                refusal = _result_error(native, "bind failed")
        except lx.LDAPException as error:
            refusal = error
        finally:
            native.password = native.request = None
        if refusal is not None and self._driver.classify(refusal).transient:
            raise refusal  # lost, timed out, or busy: noted as changed, not pooled again
        native._ldappool_identity_changed = False  # the pool's bind, refused or not
        if refusal is None and native._connection_time is None:
            native._connection_time = time.time()
        return BindAnswer(refusal=refusal, policy=_policy(native.result))

    def supported_controls(self) -> frozenset[str] | None:
        """The root DSE's supportedControl (a base search; None if refused); the policy
        control is sent from now on only if it is listed, or the server would not say."""
        native = self._native
        controls: frozenset[str] | None = None
        try:
            ldap3.Connection.search(
                native, "", "(objectClass=*)", ldap3.BASE, attributes=["supportedControl"]
            )
        except lx.LDAPException as error:
            if self._driver.classify(error).transient:
                raise
        else:
            result = native.result
            if isinstance(result, dict) and result.get("result") == 0:
                controls = frozenset()
                for entry in native.response or ():
                    for name, values in (entry.get("raw_attributes") or {}).items():
                        if name.lower() == "supportedcontrol":
                            controls = frozenset(v.decode("ascii", "replace") for v in values)
        listed = controls is None or PPOLICY_OID in controls
        self._bind_controls = [(PPOLICY_OID, False, None)] if listed else None
        return controls

    def sasl_bind(self, sasl: Sasl) -> None:
        """SASL bind with ldap3's own mechanisms; raises when refused.

        ``sasl_credentials`` are what ldap3 2.9 reads for each mechanism; the secret is
        asked of ``sasl.secret()`` for this bind, and the credentials, the password and
        the request (which holds the encoded credentials) are cleared afterwards. The
        "holder re-bound" note is cleared, refused or not: the bind is the pool's; a
        lost or timed-out connection stays noted, not to be pooled again.
        """
        credentials = _sasl_credentials(sasl)
        native = self._native
        native.user = native.password = None
        native.authentication = ldap3.SASL
        native.sasl_mechanism = sasl.mechanism
        native.sasl_credentials = credentials
        native._ldappool_identity_changed = True  # until the server has answered
        native.result = None  # not to report an earlier operation's result
        try:
            bound = ldap3.Connection.bind(native, read_server_info=self._read_server_info)
        except lx.LDAPException as error:
            if not self._driver.classify(error).transient:
                native._ldappool_identity_changed = False
            raise
        finally:
            native.sasl_credentials = native.password = native.request = None
        if bound is not True:
            refused = _result_error(native, f"SASL {sasl.mechanism} bind failed")
            native._ldappool_identity_changed = self._driver.classify(refused).transient
            raise refused
        native._ldappool_identity_changed = False
        if native._connection_time is None:
            native._connection_time = time.time()

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
            raise _result_error(self._native, "WhoAmI failed")

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


def _result_error(native: ldap3.Connection, what: str) -> Exception:
    """What ldap3 raises for the last result with ``raise_exceptions=True``."""
    res = native.result
    if isinstance(res, dict) and res.get("result"):
        # Builds the subclass for the result code: LDAPInvalidCredentialsResult for 49...
        return lx.LDAPOperationResult(*(res.get(k) for k in _RESULT_KEYS))
    return lx.LDAPBindError(f"{what}: {native.last_error or 'no result'}")


def _policy(result: object) -> PasswordPolicy | None:
    """The policy answer in an ldap3 result, if the server sent one."""
    controls = result.get("controls") if isinstance(result, dict) else None
    control = controls.get(PPOLICY_OID) if isinstance(controls, dict) else None
    return policy_or_none(control.get("value") if isinstance(control, dict) else None)


def _sasl_credentials(sasl: Sasl) -> Any:
    """``sasl_credentials`` as ldap3 2.9 reads them for the mechanism; ValueError for a
    mechanism it does not implement, or without what the mechanism needs."""
    mechanism, authz_id = sasl.mechanism, sasl.authz_id or None
    if mechanism not in _SASL_MECHANISMS:
        raise ValueError(
            f"SASL mechanism {mechanism!r} is not one the ldap3 driver can do "
            f"({', '.join(_SASL_MECHANISMS)})"
        )
    if mechanism == "EXTERNAL":
        # The credentials octet string as it is, never absent: without an initial
        # response slapd answers saslBindInProgress with an empty challenge, which
        # ldap3's one-step EXTERNAL takes for the end. "": the transport's identity.
        return authz_id or ""
    if mechanism == "GSSAPI":
        try:  # ldap3 imports it at the first GSSAPI bind; fail before sending anything
            import ldap3.protocol.sasl.kerberos  # noqa: F401, PLC0415
        except lx.LDAPPackageUnavailableError as exc:
            raise ValueError("SASL GSSAPI with ldap3 needs the gssapi package") from exc
        return (None, authz_id)  # None: the service host is the Server's
    if not sasl.user or sasl.secret is None:
        raise ValueError(f"SASL {mechanism} needs Sasl.user and Sasl.secret")
    if mechanism == "PLAIN":
        return (authz_id, sasl.user, sasl.secret())
    return (None, sasl.user, sasl.secret(), authz_id)  # DIGEST-MD5: realm from the server


def _checked_options(argument: str, value: object, target: Any) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise TypeError(f"{argument} must be a mapping, not {type(value).__name__}")
    accepted = set(inspect.signature(target).parameters) - {"self"}
    for key in value:
        if key in _RESERVED[argument]:
            raise ValueError(f"{argument}: {key!r} is set by ldappool, it cannot be overridden")
        if key not in accepted:
            raise ValueError(f"{argument}: {target.__qualname__} has no option {key!r}")
    return MappingProxyType(dict(value))


_MIXED: dict[type[Any], type[PooledConnection]] = {}


def _pooled_class(cls: object) -> type[PooledConnection]:
    """The class to build: PooledConnection, or mixed under an ldap3.Connection subclass."""
    if cls is None:
        return PooledConnection
    if not isinstance(cls, type) or not issubclass(cls, ldap3.Connection):
        raise TypeError(
            "connector_cls must be an ldap3.Connection subclass with the ldap3 driver "
            f"(python-ldap connector classes need driver='python-ldap'), not {cls!r}"
        )
    if issubclass(cls, PooledConnection):
        return cls
    mixed = _MIXED.get(cls)
    if mixed is None:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        mixed = _MIXED[cls] = type(cls.__name__, (cls, PooledConnection), namespace)
    return mixed


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
        self._native_class = _pooled_class(connector_cls)
        if not isinstance(get_info, str):
            raise TypeError(f"get_info must be an ldap3 constant, not {type(get_info).__name__}")
        if get_info not in _GET_INFO:
            raise ValueError(f"get_info must be one of {', '.join(sorted(_GET_INFO))}")
        self._get_info = get_info
        self._connection_options = _checked_options(
            "connection_options", connection_options, ldap3.Connection.__init__
        )
        self._server_options = _checked_options("server_options", server_options, ldap3.Server)
        self._tls_options = _checked_options("tls_options", tls_options, ldap3.Tls)
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
