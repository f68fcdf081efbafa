"""The python-ldap driver: connections are :class:`StateConnector` objects.

Every option is set on the connection's own LDAPObject, never with the process-global
``ldap.set_option``, so that two managers (or the application) never see each other's
TLS material or timeouts. A manager given no ``tls_*`` argument leaves TLS to python-ldap's
process-wide options, as ldappool 3.x did. ``ReconnectLDAPObject`` is not used:
reconnecting is the pool's job, and it would silently replay writes.

This module holds the connection's life (bind, password check, liveness, reconnect,
close, fork) and the driver (connect, errors, asyncio); SASL binds, the root DSE read and
the policy answer's decoding are in :mod:`~ldappool._drivers._python_ldap_auth`, the
connector class and the options
set on each connection in :mod:`~ldappool._drivers._python_ldap_setup`.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import ldap
import ldap.controls

from ldappool._drivers import _python_ldap_auth as auth
from ldappool._drivers._legacy import LegacyConnection
from ldappool._drivers._liveness import SocketWatch
from ldappool._drivers._python_ldap_setup import configure, is_ldap_object, state_connector_class
from ldappool._drivers._shared import blackhole, socket_timed_out
from ldappool._drivers._state_connector import BASE, StateConnector
from ldappool._port import (
    BindAnswer,
    ConnectSettings,
    ErrorKind,
    Owner,
    Sasl,
    Server,
)

__all__ = ["PooledLDAPObject", "PythonLdapConnection", "PythonLdapDriver", "StateConnector"]

#: The name StateConnector had before it took 3.x's.
PooledLDAPObject = StateConnector

# Objects abandoned while a vanished thread was inside them: never to be freed.
_STRANDED: list[object] = []
# Server answers that say "this server cannot serve now": retry later or elsewhere.
_DOWN_ERRORS = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.BUSY)
# 48 is what slapd answers for an entry without a password: retrying cannot help.
_CREDENTIAL_ERRORS = (ldap.INVALID_CREDENTIALS, ldap.INAPPROPRIATE_AUTH)
# The python-ldap classes each ldappool error is an instance of too (ldappool 3.x let
# these through): the most specific match first.
#: The driver's class for each kind of error ldappool raises: what 3.x let through.
_NATIVE_ERRORS: dict[ErrorKind, type[Exception]] = {
    ErrorKind.CREDENTIALS: ldap.INVALID_CREDENTIALS,
    ErrorKind.TIMEOUT: ldap.TIMEOUT,
    ErrorKind.DOWN: ldap.SERVER_DOWN,
    ErrorKind.OTHER: ldap.LDAPError,
}


class PythonLdapConnection:
    """One pooled python-ldap connection (the port's ``Connection``)."""

    def __init__(
        self, native: StateConnector, uri: str, driver: PythonLdapDriver | None = None
    ) -> None:
        self._native = native
        self._driver = driver or PythonLdapDriver()
        self._uri = uri
        self._closed = False
        self._fd = -1  # the socket last seen; -1 before the first operation
        self._watching: SocketWatch | None = None
        #: What a password check sends (None: no control; see supported_controls).
        self._bind_controls: auth.BindControls = auth.bind_controls(None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PythonLdapConnection {self._uri} {state}>"

    @property
    def native(self) -> StateConnector:
        """The LDAPObject lent to users."""
        return self._native

    def bind(self, who: str | None, cred: str | None) -> None:
        """Simple bind, anonymous when both are None; the pool's own, so no identity change."""
        self._native.simple_bind_s(who, cred)
        self._native._ldappool_rebound = False
        self._watch(self._native.get_option(ldap.OPT_DESC))

    def check_password(self, who: str, cred: str) -> BindAnswer:
        """One simple bind with the password policy request control (unless the server
        does not list it); a refusal is returned, a transient error (as the driver
        classifies it) raised.

        ``simple_bind`` and the C ``result4`` rather than ``simple_bind_s``: python-ldap's
        own result methods decode response controls through its registry, which drops a
        control it does not know (the policy control, unless some code imported
        ``ldap.controls.ppolicy``) and otherwise decodes it with pyasn1. The raw
        ``(oid, criticality, value)`` tuples come from ``result4`` on success, and from
        the error's ``ctrls`` on a refusal. Both calls run as the object's ``_ldap_call``
        runs each (``StateConnector._ldappool_bind``), so a lost connection is marked as
        with any other call. Run on every login: in one piece.
        """
        native = self._native
        state = native.__dict__
        # The base's simple_bind without its detours: StateConnector's marks a holder's
        # bind (cleared below anyway) and converts the controls each time. An error comes
        # back as a value, without the traceback that would hold ``cred``.
        answer = native._ldappool_bind(who, cred, self._bind_controls)
        if isinstance(answer, ldap.LDAPError):
            if self._driver.classify(answer).transient:
                state["_ldappool_rebound"] = True  # as simple_bind would have noted
                raise answer
            details = answer.args[0] if answer.args else None
            answered = details.get("ctrls") if isinstance(details, dict) else None
            # RFC 4511 4.2.2: a refused bind leaves the connection anonymous.
            state["who"], state["_ldappool_rebound"] = None, False
            if self._watching is None:
                self._watch(native.get_option(ldap.OPT_DESC))
            return BindAnswer(refusal=answer, policy=auth.policy(answered))
        state["_ldappool_rebound"] = False  # the pool's bind, not the holder's
        state["connected"], state["who"] = True, who
        if state["_connection_time"] is None:
            state["_connection_time"] = time.time()
        if self._watching is None:  # libldap only changes the socket after SERVER_DOWN
            self._watch(native.get_option(ldap.OPT_DESC))
        answered = answer[3]
        return BindAnswer(policy=auth.policy(answered)) if answered else auth.BOUND

    async def check_password_aio(self, lent: Any, who: str, cred: str) -> BindAnswer:
        """:meth:`check_password` on the event loop, through ``lent`` (this connection's
        AsyncLDAP): the same single bind, controls and bookkeeping, without blocking."""
        answer: BindAnswer = await lent.check_password(who, cred, self._bind_controls, pooled=True)
        if self._watching is None:
            self._watch(self._native.get_option(ldap.OPT_DESC))
        return answer

    def supported_controls(self) -> frozenset[str] | None:
        """The root DSE's supportedControl (a base search; None if refused); the policy
        control is sent from now on only if it is listed, or the server would not say."""
        controls = auth.supported_controls(self._native, self._driver)
        self._watch(self._native.get_option(ldap.OPT_DESC))
        self._bind_controls = auth.bind_controls(controls)
        return controls

    def sasl_bind(self, sasl: Sasl) -> None:
        """SASL bind through libsasl; raises when refused
        (:func:`~ldappool._drivers._python_ldap_auth.sasl_bind`)."""
        auth.sasl_bind(self._native, sasl, self._driver)
        self._watch(self._native.get_option(ldap.OPT_DESC))

    def looks_alive(self) -> bool:
        """Whether the server has not closed the socket (see ``SocketWatch``): no I/O."""
        watching = self._watching  # None once closed
        if watching is not None and not self._native._ldappool_lost:
            # The socket seen at bind is still the one: libldap only replaces it after
            # a failure, which raised SERVER_DOWN and marked the object lost.
            return watching.alive()
        if self._closed or self._native._ldappool_lost:
            return False
        try:
            fd = self._native.get_option(ldap.OPT_DESC)
        except Exception:
            return False
        if not isinstance(fd, int) or fd < 0:
            # No socket: never connected yet (nothing to lose), or libldap closed it.
            return self._fd < 0
        if self._fd >= 0 and fd != self._fd:
            return False  # reopened behind our back: no longer bound as lent
        self._watch(fd)
        return self._watching is not None and self._watching.alive()

    def ping(self) -> None:
        """One WhoAmI round trip."""
        BASE.whoami_s(self._native)

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        """Move a new libldap handle (``_l``) under the same LDAPObject.

        The old handle is released with its last reference: libldap's unbind on a
        connection that is already gone costs nothing.
        """
        fresh = self._driver.connect(server, settings)._native
        native = self._native
        state = native.__dict__
        state["_l"], state["timeout"], state["_uri"] = fresh._l, fresh.timeout, server.uri
        state["_ldappool_lost"], state["_connection_time"] = False, None
        self._unwatch()
        self._uri, self._fd, self._closed = server.uri, -1, False
        for option, value in native._ldappool_options.items():  # the holder's options
            with contextlib.suppress(ldap.LDAPError, ValueError, TypeError):
                BASE.set_option(native, option, value)

    def set_owner(self, owner: Owner | None) -> None:
        """Install (or, with None, remove) the pool's side: recovery and ``active``."""
        # Straight into __dict__: SimpleLDAPObject.__setattr__ is a Python-level detour.
        self._native.__dict__["_ldappool_owner"] = owner

    def identity_changed(self) -> bool:
        """True after a holder bind, unbind or SERVER_DOWN, or ``connected`` set False:
        the identity is not the lent one, or the holder wants the connection closed."""
        native = self._native
        changed: bool = native._ldappool_rebound or native._ldappool_lost
        return changed

    def close(self) -> None:
        """Unbind and release the socket; never raises, idempotent."""
        if self._closed:
            return
        self._closed = True
        self.set_owner(None)
        with contextlib.suppress(Exception):  # closing is best effort by contract
            self._native.unbind_ext_s()
        self._unwatch()  # last: the watch's dup would keep the TCP connection open

    def abandon(self) -> None:
        """Release the connection in a forked child without touching the parent's socket.

        The socket's fd number is pointed at /dev/null first, which drops the child's
        reference to the socket; whatever libldap writes afterwards (the unbind, a TLS
        close_notify) goes nowhere. If a thread of the parent was inside the object at
        fork() (its lock is held), the C object must not be called at all: python-ldap
        aborts the process ("saving thread twice"), and libldap's mutexes may be held.
        Then the fd last seen is used and the object is kept alive forever, since its
        deallocation would call into it too.
        """
        if self._closed:
            return
        self._closed = True
        self._unwatch()  # closes only this process's copy of the dup
        native = self._native
        native.__dict__["_ldappool_owner"] = None
        try:
            lock = native._ldap_object_lock._lock
            idle = bool(lock.acquire(False))
            if idle:
                lock.release()  # nobody else runs here; unbind_ext takes it again
            handle = native.__dict__.get("_l") if idle else None  # None once unbound
            if handle is not None:
                fd = handle.get_option(ldap.OPT_DESC)
            else:
                fd = self._fd
                if not idle:
                    _STRANDED.append(native)
            if fd >= 0:
                blackhole(fd)
            if handle is not None:
                native.unbind_ext()
        except Exception:  # noqa: S110 - must never raise, whatever state the object is in
            pass

    def _watch(self, fd: object) -> None:
        if not isinstance(fd, int) or fd < 0 or (fd == self._fd and self._watching is not None):
            return
        self._unwatch()
        with contextlib.suppress(OSError):
            self._watching = SocketWatch.for_fd(fd)
        self._fd = fd

    def _unwatch(self) -> None:
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.close()


class PythonLdapDriver:
    """Opens python-ldap connections and interprets python-ldap exceptions.

    ``options``: python-ldap options (``ldap.OPT_*``) set on every connection.
    ``connector_cls``: the class of the connections lent, as ldappool 3.x's argument
    of that name; built the 3.x way, ``connector_cls(uri, **connector_args)``. A
    :class:`StateConnector` subclass is used as it is; another ``SimpleLDAPObject``
    subclass gets StateConnector mixed in under it (so that the pool still notices
    binds and lost connections, and retries reads); any other class is driven as a
    duck-typed 3.x connector (:class:`~ldappool._drivers._legacy.LegacyConnection`).
    """

    name = "python-ldap"

    def __init__(
        self,
        *,
        options: Mapping[int, object] | None = None,
        connector_cls: type[Any] | None = None,
        connector_args: Mapping[str, Any] | None = None,
    ) -> None:
        self._options = dict(options or {})
        self._legacy = connector_cls is not None and not is_ldap_object(connector_cls)
        self._native_class: type[Any] = (
            cast(type[Any], connector_cls)
            if self._legacy
            else state_connector_class(connector_cls)
        )
        self._connector_args = dict(connector_args or {})

    def __repr__(self) -> str:
        return (
            f"PythonLdapDriver(options={self._options!r}, "
            f"connector_cls={self._native_class.__qualname__})"
        )

    @property
    def connector_cls(self) -> type[Any]:
        """The class of the native connections lent out."""
        return self._native_class

    @property
    def any_scheme(self) -> bool:
        """A duck-typed connector class decides what its URIs mean."""
        return self._legacy

    def connect(
        self, server: Server, settings: ConnectSettings
    ) -> PythonLdapConnection | LegacyConnection:
        """Configure a connection and StartTLS if asked; the TCP connect is lazy otherwise."""
        if settings.timeout is not None and settings.timeout <= 0:
            # 0 would turn every synchronous call into a poll returning None.
            raise ValueError(f"timeout must be > 0 or None, not {settings.timeout!r}")
        if self._legacy:
            return LegacyConnection.open(
                self._native_class, server, settings, self._connector_args, self.classify
            )
        native = self._native_class(server.uri, **self._connector_args)
        try:
            configure(native, server, settings, self._options)
            if settings.use_tls and server.scheme != "ldaps":
                native.start_tls_s()  # connects first
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is what matters
                native.unbind_ext()
            raise
        return PythonLdapConnection(native, server.uri, self)

    def aio(
        self,
        conn: object,
        *,
        timeout: float | None,
        recover: Callable[[], Awaitable[None]] | None,
        run: object = None,
    ) -> Any:
        """What AsyncConnectionManager lends for ``conn``: an
        :class:`~ldappool._drivers._aio.AsyncLDAP` (libldap's asynchronous calls, awaited
        on the event loop, no thread); None for a duck-typed 3.x connector."""
        if not isinstance(conn, PythonLdapConnection):
            return None
        from ldappool._drivers._aio import AsyncLDAP  # noqa: PLC0415 (asyncio users only)

        return AsyncLDAP(conn.native, timeout=timeout, recover=recover)

    async def aio_check_password(
        self, conn: PythonLdapConnection, lent: Any, who: str, cred: str
    ) -> BindAnswer:
        """A password check (:meth:`PythonLdapConnection.check_password`) on the loop."""
        return await conn.check_password_aio(lent, who, cred)

    def error_bases(
        self, kind: ErrorKind, cause: BaseException | None
    ) -> tuple[type[BaseException], ...]:
        """python-ldap's classes for an error of this ``kind``: what 3.x let through, and
        the cause's own."""
        bases: list[type[BaseException]] = []
        if isinstance(cause, ldap.LDAPError) and type(cause).__module__ == "ldap":
            bases.append(type(cause))  # e.g. INAPPROPRIATE_AUTH, UNWILLING_TO_PERFORM
        bases.append(_NATIVE_ERRORS[kind])
        return tuple(bases)

    def classify(self, error: BaseException) -> ErrorKind:
        """Say what a python-ldap (or socket) exception means to the pool.

        Only client-side timeouts are TIMEOUT: TIMELIMIT_EXCEEDED is the server
        answering a search within its time limit, so the connection is fine (OTHER).
        BUSY and UNAVAILABLE are answers, but they say this server cannot serve:
        DOWN makes the pool retry or fail over, and costs at most a reconnect.
        """
        if isinstance(error, _CREDENTIAL_ERRORS):
            return ErrorKind.CREDENTIALS
        if isinstance(error, ldap.TIMEOUT) or socket_timed_out(error):
            return ErrorKind.TIMEOUT
        if isinstance(error, ldap.SERVER_DOWN) and _errno(error) == errno.ETIMEDOUT:
            return ErrorKind.TIMEOUT  # OPT_NETWORK_TIMEOUT expired while connecting
        if isinstance(error, (*_DOWN_ERRORS, OSError)):
            return ErrorKind.DOWN
        return ErrorKind.OTHER


def _errno(error: BaseException) -> int | None:
    details = error.args[0] if error.args else None
    value = details.get("errno") if isinstance(details, dict) else None
    return value if isinstance(value, int) else None
