"""The python-ldap driver: connections are ``ldap.ldapobject.SimpleLDAPObject`` objects.

Every option is set on the connection's own LDAPObject, never with the process-global
``ldap.set_option``, so that two managers (or the application) never see each other's
TLS material or timeouts. ``ReconnectLDAPObject`` is not used: reconnecting is the
pool's job, and it would silently replay writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import ldap
import ldap.ldapobject

from ldappool.connector import ConnectSettings, ErrorKind, Server
from ldappool.drivers._liveness import SocketWatch

__all__ = ["PooledLDAPObject", "PythonLdapConnection", "PythonLdapDriver"]

_NO_LIMIT = -1
# Objects abandoned while a vanished thread was inside them: never to be freed.
_STRANDED: list[object] = []
# Server answers that say "this server cannot serve now": retry later or elsewhere.
_DOWN_ERRORS = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.BUSY)
# What a read raises when its connection is gone: the pool may reconnect and retry it.
_LOST_ERRORS = (ldap.SERVER_DOWN, ldap.UNAVAILABLE)
# 48 is what slapd answers for an entry without a password: retrying cannot help.
_CREDENTIAL_ERRORS = (ldap.INVALID_CREDENTIALS, ldap.INAPPROPRIATE_AUTH)


class PooledLDAPObject(ldap.ldapobject.SimpleLDAPObject):  # type: ignore[misc]
    """A SimpleLDAPObject that notes when its holder binds, unbinds or loses it.

    Behaves exactly like its base class. The pool reads the notes at checkin: a
    connection whose identity may differ from the one it was lent under is dropped.
    """

    _ldappool_recover: Callable[[], None] | None = None

    def __init__(self, uri: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._ldappool_rebound = False
        self._ldappool_lost = False

    # The synchronous reads, retried once on a new connection while lent: search_s,
    # search_st, read_s, read_rootdse_s, read_subschemasubentry_s... all funnel into
    # search_ext_s, compare_s into compare_ext_s. Asynchronous calls and writes are not.
    # Each read costs one try block when nothing goes wrong: the retry logic is only
    # reached from the except clause. search_ext_s, on every search's path, does the
    # base's two steps itself (search_ext, then result) rather than call it: a wrapper
    # frame costs ~1 us per search, 1 % of a search on loopback.
    def search_ext_s(
        self,
        base: str,
        scope: int,
        filterstr: str | None = None,
        attrlist: list[str] | None = None,
        attrsonly: int = 0,
        serverctrls: Any = None,
        clientctrls: Any = None,
        timeout: float = -1,
        sizelimit: int = 0,
    ) -> Any:
        try:
            msgid = self.search_ext(
                base, scope, filterstr, attrlist, attrsonly, serverctrls, clientctrls,
                timeout, sizelimit,
            )  # fmt: skip
            return self.result(msgid, all=1, timeout=timeout)[1]
        except _LOST_ERRORS as lost:
            if _continues_paging(serverctrls):
                raise
            args = (base, scope, filterstr, attrlist, attrsonly, serverctrls, clientctrls)
            return self._ldappool_retry(lost, _BASE.search_ext_s, (*args, timeout, sizelimit), {})

    def compare_ext_s(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return _BASE.compare_ext_s(self, *args, **kwargs)
        except _LOST_ERRORS as lost:
            return self._ldappool_retry(lost, _BASE.compare_ext_s, args, kwargs)

    def whoami_s(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return _BASE.whoami_s(self, *args, **kwargs)
        except _LOST_ERRORS as lost:
            return self._ldappool_retry(lost, _BASE.whoami_s, args, kwargs)

    def _ldappool_retry(self, lost: Exception, read: Any, args: Any, kwargs: Any) -> Any:
        """Reconnect through the pool and run ``read`` once more, or raise ``lost``."""
        recover = self._ldappool_recover
        if recover is None:
            raise lost
        try:
            recover()
        except Exception:
            raise lost from None  # the read's own error, as without a pool
        return read(self, *args, **kwargs)

    # simple_bind is the funnel of bind, bind_s and simple_bind_s;
    # sasl_interactive_bind_s the one of every sasl_*_bind_s but sasl_bind_s.
    # A failed bind counts too: it leaves the connection anonymous (RFC 4511).
    def simple_bind(self, *args: Any, **kwargs: Any) -> Any:
        self._ldappool_rebound = True
        return super().simple_bind(*args, **kwargs)

    def sasl_interactive_bind_s(self, *args: Any, **kwargs: Any) -> Any:
        self._ldappool_rebound = True
        return super().sasl_interactive_bind_s(*args, **kwargs)

    def sasl_bind_s(self, *args: Any, **kwargs: Any) -> Any:
        self._ldappool_rebound = True
        return super().sasl_bind_s(*args, **kwargs)

    def unbind_ext(self, *args: Any, **kwargs: Any) -> Any:
        # The funnel of unbind, unbind_s and unbind_ext_s.
        self._ldappool_rebound = True
        return super().unbind_ext(*args, **kwargs)

    def _ldap_call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call into libldap goes through here, under the object's lock.

        After SERVER_DOWN the link is dead, or (libldap's default-connection logic)
        reopened anonymously later. After a client-side TIMEOUT the request may still
        be running on the server, its answer still to come. Either way the connection
        is not pooled again. This replaces the base method rather than wrap it (it runs
        twice per search): same lock, same ``info`` from ``errno``; with python-ldap's
        tracing on, the base's own version runs, for its trace lines.
        """
        if self._trace_level:
            try:
                return _BASE._ldap_call(self, func, *args, **kwargs)
            except (ldap.SERVER_DOWN, ldap.TIMEOUT):
                self._ldappool_lost = True
                raise
        lock = self._ldap_object_lock
        lock.acquire()
        try:
            return func(*args, **kwargs)
        except ldap.LDAPError as error:
            if isinstance(error, (ldap.SERVER_DOWN, ldap.TIMEOUT)):
                self._ldappool_lost = True
            _explain_errno(error)
            raise
        finally:
            lock.release()


_BASE = ldap.ldapobject.SimpleLDAPObject
_PAGED_RESULTS = "1.2.840.113556.1.4.319"


def _explain_errno(error: Exception) -> None:
    """Add the text of the error's ``errno`` as its ``info``, as python-ldap does."""
    details = error.args[0] if error.args else None
    if isinstance(details, dict) and "info" not in details and "errno" in details:
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            details["info"] = os.strerror(details["errno"])


def _continues_paging(controls: Any) -> bool:
    """A page after the first: its cookie means nothing on another connection, so
    such a search is not retried (the server would answer a protocol error)."""
    return any(
        getattr(c, "controlType", None) == _PAGED_RESULTS and getattr(c, "cookie", None)
        for c in controls or ()
    )


class PythonLdapConnection:
    """One pooled python-ldap connection (the port's ``Connection``)."""

    def __init__(
        self, native: PooledLDAPObject, uri: str, driver: PythonLdapDriver | None = None
    ) -> None:
        self._native = native
        self._driver = driver or PythonLdapDriver()
        self._uri = uri
        self._closed = False
        self._fd = -1  # the socket last seen; -1 before the first operation
        self._watching: SocketWatch | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PythonLdapConnection {self._uri} {state}>"

    @property
    def native(self) -> PooledLDAPObject:
        """The LDAPObject lent to users."""
        return self._native

    def bind(self, who: str | None, cred: str | None) -> None:
        """Simple bind, anonymous when both are None; the pool's own, so no identity change."""
        self._native.simple_bind_s(who, cred)
        self._native._ldappool_rebound = False
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
        _BASE.whoami_s(self._native)

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        """Move a new libldap handle (``_l``) under the same LDAPObject.

        The old handle is released with its last reference: libldap's unbind on a
        connection that is already gone costs nothing.
        """
        fresh = self._driver.connect(server, settings)._native
        native = self._native
        native._l, native.timeout, native._uri = fresh._l, fresh.timeout, server.uri
        native._ldappool_lost = False
        self._unwatch()
        self._uri, self._fd, self._closed = server.uri, -1, False

    def set_recovery(self, recover: Callable[[], None] | None) -> None:
        """Install (or, with None, remove) the pool's reconnect for lost reads."""
        # Straight into __dict__: SimpleLDAPObject.__setattr__ is a Python-level detour.
        self._native.__dict__["_ldappool_recover"] = recover

    def identity_changed(self) -> bool:
        """True after a holder bind, unbind or SERVER_DOWN: the identity is not the lent one."""
        native = self._native
        return native._ldappool_rebound or native._ldappool_lost

    def close(self) -> None:
        """Unbind and release the socket; never raises, idempotent."""
        if self._closed:
            return
        self._closed = True
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
                _blackhole(fd)
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


def _blackhole(fd: int) -> None:
    """Point ``fd`` at /dev/null: closes this process's reference to what it was."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


class PythonLdapDriver:
    """Opens python-ldap connections and interprets python-ldap exceptions."""

    name = "python-ldap"

    def __init__(self, *, options: Mapping[int, object] | None = None) -> None:
        self._options = dict(options or {})

    def __repr__(self) -> str:
        return f"PythonLdapDriver(options={self._options!r})"

    def connect(self, server: Server, settings: ConnectSettings) -> PythonLdapConnection:
        """Configure a connection and StartTLS if asked; the TCP connect is lazy otherwise."""
        if settings.timeout is not None and settings.timeout <= 0:
            # 0 would turn every synchronous call into a poll returning None.
            raise ValueError(f"timeout must be > 0 or None, not {settings.timeout!r}")
        native = PooledLDAPObject(server.uri)
        try:
            self._configure(native, server, settings)
            if settings.use_tls and server.scheme != "ldaps":
                native.start_tls_s()  # connects first
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is what matters
                native.unbind_ext()
            raise
        return PythonLdapConnection(native, server.uri, self)

    def _configure(self, native: Any, server: Server, settings: ConnectSettings) -> None:
        timeout = _NO_LIMIT if settings.timeout is None else settings.timeout
        native.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
        native.set_option(ldap.OPT_REFERRALS, 0)
        # NETWORK_TIMEOUT bounds connect(); TIMEOUT bounds libldap's synchronous
        # calls (StartTLS, WhoAmI, SASL) and ldap_result() without a timeout;
        # .timeout is what python-ldap's own *_s methods pass to result().
        native.set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeout)
        native.set_option(ldap.OPT_TIMEOUT, settings.timeout)
        native.timeout = timeout
        uses_tls = server.scheme == "ldaps" or settings.use_tls
        if uses_tls:
            tls = settings.tls
            ca_file, ca_dir = tls.ca_file, None
            if ca_file is None and tls.verify:
                ca_file, ca_dir = _default_trust()
            files: tuple[tuple[int, str | None], ...] = (
                (ldap.OPT_X_TLS_CACERTFILE, ca_file),
                (ldap.OPT_X_TLS_CACERTDIR, ca_dir),
                (ldap.OPT_X_TLS_CERTFILE, tls.cert_file),
                (ldap.OPT_X_TLS_KEYFILE, tls.key_file),
            )
            for option, path in files:
                if path is not None:
                    native.set_option(option, path)
            require = ldap.OPT_X_TLS_DEMAND if tls.verify else ldap.OPT_X_TLS_NEVER
            native.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, require)
            if settings.timeout is not None:
                # libldap 2.5 bounds the TLS handshake (ldaps:// or after StartTLS) by
                # NETWORK_TIMEOUT only in async-connect mode: otherwise it spins on
                # a silent server forever, at 100% CPU.
                native.set_option(ldap.OPT_CONNECT_ASYNC, 1)
        for option, value in self._options.items():
            native.set_option(option, value)
        if uses_tls:
            # Builds this connection's TLS context from the options above: must be last.
            native.set_option(ldap.OPT_X_TLS_NEWCTX, 0)

    def classify(self, error: BaseException) -> ErrorKind:
        """Say what a python-ldap (or socket) exception means to the pool.

        Only client-side timeouts are TIMEOUT: TIMELIMIT_EXCEEDED is the server
        answering a search within its time limit, so the connection is fine (OTHER).
        BUSY and UNAVAILABLE are answers, but they say this server cannot serve:
        DOWN makes the pool retry or fail over, and costs at most a reconnect.
        """
        if isinstance(error, _CREDENTIAL_ERRORS):
            return ErrorKind.CREDENTIALS
        if isinstance(error, (ldap.TIMEOUT, TimeoutError)):
            return ErrorKind.TIMEOUT
        if isinstance(error, ldap.SERVER_DOWN) and _errno(error) == errno.ETIMEDOUT:
            return ErrorKind.TIMEOUT  # OPT_NETWORK_TIMEOUT expired while connecting
        if isinstance(error, (*_DOWN_ERRORS, OSError)):
            return ErrorKind.DOWN
        return ErrorKind.OTHER


def _default_trust() -> tuple[str | None, str | None]:
    """The CA file or directory libldap would use by default, else the system's.

    A connection's own TLS context starts empty, not from ldap.conf: without this,
    verify=True with no ca_file would trust nothing. One file beats a directory:
    GnuTLS would parse every file in /etc/ssl/certs.
    """
    ca_file = ldap.get_option(ldap.OPT_X_TLS_CACERTFILE)
    ca_dir = ldap.get_option(ldap.OPT_X_TLS_CACERTDIR)
    if not (ca_file or ca_dir):
        paths = ssl.get_default_verify_paths()
        ca_file, ca_dir = paths.cafile, paths.capath
    return (ca_file, None) if ca_file else (None, ca_dir)


def _errno(error: BaseException) -> int | None:
    details = error.args[0] if error.args else None
    value = details.get("errno") if isinstance(details, dict) else None
    return value if isinstance(value, int) else None
