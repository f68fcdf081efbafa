"""What both managers share: arguments, settings, policies, identities, the result of a check.

:class:`~ldappool.ConnectionManager` (threads) and :class:`~ldappool.AsyncConnectionManager`
(asyncio) take exactly the same arguments, checked here once: a bad value raises
ValueError or TypeError naming it, before any server is touched. This builds the
settings, the policies, the dialer and the default identity, then asks the subclass for
its runner (:meth:`BaseManager._runner`). Nothing here does I/O.

The attributes are those of ldappool 3.x. The ones that can change while the pool runs
do so when set (``size``, ``pool_timeout``, ``retry_max``...); the others raise
AttributeError when set, rather than being silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ldappool import _arguments as arguments
from ldappool._auth import NO_POLICY, AuthResult, unauthenticated
from ldappool._clock import Clock, SystemClock
from ldappool._core.slots import SlotView
from ldappool._dialer import Dialer
from ldappool._errors import LDAPPoolError
from ldappool._events import Listener
from ldappool._identity import Credentials, Identity, IdentityHasher
from ldappool._policies import FailoverPolicy, InOrder, LifetimePolicy, RetryPolicy
from ldappool._port import (
    BindAnswer,
    ConnectSettings,
    Driver,
    ErrorKind,
    Sasl,
    Server,
)
from ldappool._stats import Stats
from ldappool._table import render
from ldappool._uris import parse_uris
from ldappool._validate import check_bool, check_int, check_number, check_optional_str

__all__ = ["BaseManager", "Runner"]


class Runner(Protocol):
    """What a manager asks of its runner (``ThreadedPool``, ``AsyncPool``) without waiting."""

    @property
    def size(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def min_size(self) -> int: ...

    pool_timeout: float | None
    auth_size: int | None

    def resize(self, size: int) -> int: ...
    def purge(self, match: Callable[[Identity], bool]) -> int: ...
    def snapshot(self) -> tuple[list[SlotView], Stats]: ...


class _Fixed:
    """An attribute set at construction: setting it later raises, saying so."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name, self.private = name, f"_{name}"

    def __get__(self, obj: object, objtype: type[Any] | None = None) -> Any:
        return self if obj is None else getattr(obj, self.private)

    def __set__(self, obj: object, value: object) -> None:
        kind = type(obj).__name__
        raise AttributeError(
            f"{self.name} is fixed when the {kind} is made; make a new {kind} to change it"
        )


class BaseManager:
    """A pool of bound LDAP connections to one or more servers: what does not depend on
    how the pool waits (threads or asyncio).

    Every argument is described in the usage guide; each is checked here, so a bad value raises
    ValueError or TypeError naming it now rather than at the first checkout.
    """

    uri = _Fixed()
    servers = _Fixed()
    use_tls = _Fixed()
    timeout = _Fixed()
    use_pool = _Fixed()
    max_lifetime = _Fixed()
    lifetime = _Fixed()
    driver = _Fixed()
    connector_cls = _Fixed()

    _pool: Runner

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
        connector_cls: type[Any] | None = None,
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
        tls_verify: bool | None = None,
        warn_held_after: float | None = None,
        handoff_after: float = 0.05,
        auth_size: int | None = None,
        sasl: Sasl | None = None,
        listeners: Iterable[Listener] = (),
        min_size: int = 0,
        keepalive: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        servers = None if connector_cls is not None else parse_uris(uri)
        self._bind = check_optional_str("bind", bind)
        self._passwd = check_optional_str("passwd", passwd)
        if unauthenticated(self._bind, self._passwd):
            raise ValueError(
                "passwd: a bind DN without a password makes an unauthenticated bind, which "
                "servers answer as anonymous; give the password (or no bind DN)"
            )
        self._sasl = arguments.sasl(sasl)
        if self._sasl is not None and (self._bind is not None or self._passwd is not None):
            raise ValueError("sasl: give either sasl or bind and passwd, not both")
        size = check_int("size", size, minimum=1)
        auth_size = arguments.auth_size(auth_size, size)
        min_size = check_int("min_size", min_size, minimum=0)
        if min_size > size:
            raise ValueError(f"min_size must be at most size ({size}), not {min_size}")
        keepalive = check_number("keepalive", keepalive, strict=True, allow_none=True)
        self._retry_max = check_int("retry_max", retry_max, minimum=1)
        self._retry_delay = check_number("retry_delay", retry_delay) or 0.0
        self._use_tls = check_bool("use_tls", use_tls)
        self._timeout = timeout
        seconds = arguments.timeout(timeout)
        self._use_pool = check_bool("use_pool", use_pool)
        self._max_lifetime = max_lifetime
        lifetime_seconds = check_number("max_lifetime", max_lifetime, allow_none=True)
        pool_timeout = arguments.pool_timeout(pool_timeout)
        held = check_number("warn_held_after", warn_held_after, strict=True, allow_none=True)
        handoff = check_number("handoff_after", handoff_after) or 0.0
        tls = arguments.tls_settings(tls_ca_file, tls_cert_file, tls_key_file, tls_verify)
        self._retry_given = retry is not None
        retry = arguments.policy("retry", retry, RetryPolicy) or self._default_retry()
        failover = arguments.policy("failover", failover, FailoverPolicy) or InOrder()
        lifetime = arguments.policy("lifetime", lifetime, LifetimePolicy) or LifetimePolicy(
            max_lifetime=lifetime_seconds
        )
        clock = clock or SystemClock()
        # Last (but for connector_cls' URIs): it may import a driver package.
        self._driver = arguments.driver(driver, connector_cls, self._retry_max, self._retry_delay)
        self._connector_cls = getattr(self._driver, "connector_cls", None)
        if servers is None:
            servers = parse_uris(uri, any_scheme=getattr(self._driver, "any_scheme", False))

        self._uri = " ".join(str(s) for s in servers)
        self._servers = servers
        self._lifetime = lifetime
        self._hasher = IdentityHasher()
        self._set_default_identity(self._bind, self._passwd, self._sasl)
        self._clock = clock
        settings = ConnectSettings(timeout=seconds, use_tls=self._use_tls, tls=tls)
        self._dialer = Dialer(self._driver, servers, settings, retry, failover, clock)
        self._events = self._dialer.events
        for listener in arguments.listeners(listeners):
            self._events.add(listener)
        self._pool = self._runner(
            self._dialer,
            size=size,
            lifetime=lifetime,
            pool_timeout=pool_timeout,
            reuse=self._use_pool,
            clock=clock,
            warn_held_after=held,
            handoff_after=handoff,
            auth_size=auth_size,
            min_size=min_size,
            keepalive=keepalive,
            default=lambda: self._default,
        )

    def _runner(self, dialer: Dialer, **options: Any) -> Runner:
        """The runner that pools for this manager (the subclass's)."""
        raise NotImplementedError

    # -- the attributes that change while the pool runs -----------------------------------

    @property
    def size(self) -> int:
        """The hard cap on open connections; setting it resizes the pool (see :meth:`resize`)."""
        return self._pool.size

    @size.setter
    def size(self, size: int) -> None:
        self.resize(size)

    def resize(self, size: int) -> int:
        """Change ``size`` now. Growing lets waiting checkouts in at once; shrinking closes
        idle connections over the new size now, lent ones over it when they come back.
        Returns how many were closed now."""
        return self._pool.resize(check_int("size", size, minimum=1))

    @property
    def pool_timeout(self) -> float | None:
        """Seconds a checkout waits for a slot; setting it applies to checkouts from now on."""
        return self._pool.pool_timeout

    @pool_timeout.setter
    def pool_timeout(self, seconds: float | None) -> None:
        self._pool.pool_timeout = arguments.pool_timeout(seconds)

    @property
    def bind(self) -> str | None:
        """The default bind DN of :meth:`connection`."""
        return self._bind

    @bind.setter
    def bind(self, dn: str | None) -> None:
        self._set_default_identity(check_optional_str("bind", dn), self._passwd)

    @property
    def passwd(self) -> str | None:
        """The default password, as in 3.x (never shown by ``str`` or ``repr``)."""
        return self._passwd

    @passwd.setter
    def passwd(self, password: str | None) -> None:
        self._set_default_identity(self._bind, check_optional_str("passwd", password))

    def _set_default_identity(
        self, bind: str | None, passwd: str | None, sasl: Sasl | None = None
    ) -> None:
        """The identity of ``connection()`` without arguments; None when it would be an
        unauthenticated bind (``connection()`` then refuses it)."""
        self._bind, self._passwd, self._sasl = bind, passwd, sasl
        self._default: Credentials | None = (
            Credentials(self._hasher.sasl_identity(sasl), None, None, sasl)
            if sasl is not None
            else None
            if unauthenticated(bind, passwd)
            else Credentials(self._hasher.identity(bind, passwd), bind, passwd)
        )

    @property
    def min_size(self) -> int:
        """Connections the upkeep keeps open, of the default identity."""
        return self._pool.min_size

    @property
    def sasl(self) -> Sasl | None:
        """The default SASL bind of :meth:`connection` (instead of ``bind``/``passwd``)."""
        return self._sasl

    @property
    def auth_size(self) -> int | None:
        """How many password checks run at once (and connections kept for them); None:
        half of ``size``. Setting it applies now."""
        return self._pool.auth_size

    @auth_size.setter
    def auth_size(self, auth_size: int | None) -> None:
        self._pool.auth_size = arguments.auth_size(auth_size, self.size)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of new connections; setting it applies from the next connect."""
        return self._dialer.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy instance, not {type(policy).__name__}")
        self._dialer.retry = policy
        self._retry_given = True

    @property
    def retry_max(self) -> int:
        """Attempts per server: the retry policy's ``max_attempts``."""
        return self._dialer.retry.max_attempts

    @retry_max.setter
    def retry_max(self, attempts: int) -> None:
        self._check_default_retry("retry_max")
        self._retry_max = check_int("retry_max", attempts, minimum=1)
        self._dialer.retry = self._default_retry()

    @property
    def retry_delay(self) -> float:
        """Seconds between attempts: the retry policy's ``delay``."""
        return self._dialer.retry.delay

    @retry_delay.setter
    def retry_delay(self, seconds: float) -> None:
        self._check_default_retry("retry_delay")
        self._retry_delay = check_number("retry_delay", seconds) or 0.0
        self._dialer.retry = self._default_retry()

    @property
    def failover(self) -> FailoverPolicy:
        """Which server to try next; setting it applies from the next connect."""
        return self._dialer.failover

    @failover.setter
    def failover(self, policy: FailoverPolicy) -> None:
        self._dialer.failover = arguments.policy("failover", policy, FailoverPolicy) or InOrder()

    def _default_retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self._retry_max, delay=self._retry_delay)

    def _check_default_retry(self, name: str) -> None:
        if self._retry_given:
            raise AttributeError(
                f"{name} comes from the retry policy this manager was given; "
                "set cm.retry to a new RetryPolicy instead"
            )

    # -- who a checkout or a check is for ------------------------------------------------

    def _credentials(self, bind: str | None, passwd: str | None, sasl: Sasl | None) -> Credentials:
        """The credentials of ``connection(bind, passwd, sasl=)``, each defaulting to the
        manager's; InvalidCredentialsError for an unauthenticated bind."""
        default = self._default
        if bind is None and passwd is None and sasl is None and default is not None:
            return default
        if sasl is not None:
            if bind is not None or passwd is not None:
                raise ValueError("connection(): give either sasl or bind and passwd, not both")
            checked = arguments.sasl(sasl)
            assert checked is not None
            return Credentials(self._hasher.sasl_identity(checked), None, None, checked)
        who = self._bind if bind is None else check_optional_str("bind", bind)
        cred = self._passwd if passwd is None else check_optional_str("passwd", passwd)
        if unauthenticated(who, cred):
            raise self._unauthenticated(who)
        return Credentials(self._hasher.identity(who, cred), who, cred)

    def _check_password_args(self, dn: object, password: object) -> None:
        """authenticate()'s arguments: two strings, neither empty (nothing is sent)."""
        if not (isinstance(dn, str) and isinstance(password, str)):
            arguments.required_str("dn", dn)
            arguments.required_str("password", password)
        if not dn or not password:
            raise self._unauthenticated(dn if isinstance(dn, str) else None)

    def _auth_result(self, answer: BindAnswer, server: Server | None, dn: str) -> AuthResult:
        """What a password check answered: an AuthResult, or the refusal raised."""
        if answer.refusal is not None:
            raise self._password_error(answer, server, dn) from answer.refusal
        return AuthResult(dn, server.uri if server else None, answer.policy or NO_POLICY)

    def _password_error(self, answer: BindAnswer, server: Server | None, dn: str) -> LDAPPoolError:
        """The error for a refused password check (``answer.refusal``), to raise from
        it (the frames of the refusal's traceback keep no locals: ``Dialer.error``)."""
        assert answer.refusal is not None
        return self._dialer.password_refusal(answer.refusal, answer.policy, server, dn)

    def _unauthenticated(self, who: str | None) -> LDAPPoolError:
        return self._dialer.error(
            ErrorKind.CREDENTIALS,
            f"refused to bind as {who!r} without a password (or without a DN): the server "
            "would take it as an unauthenticated, anonymous bind; nothing was sent",
            None,
            None,
        )

    # -- events, purges, what the pool looks like ----------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for each :class:`~ldappool.Event` from now on.

        It runs in the thread where the event happened, never under the pool's lock;
        if it raises, the error is logged and the pool goes on. See :doc:`operations`.
        """
        self._events.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ValueError if it was not added."""
        self._events.remove(listener)

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

    def drain(self) -> int:
        """Replace every connection: idle ones are closed now, lent ones when they come
        back (after a certificate or DNS change, say). The pool stays open; returns how
        many were closed now."""
        return self._pool.purge(lambda _identity: True)

    def stats(self) -> Stats:
        """A frozen snapshot of the pool's state and counters."""
        return self._pool.snapshot()[1]

    def __len__(self) -> int:
        return self._pool.snapshot()[1].connections

    def __str__(self) -> str:
        slots, stats = self._pool.snapshot()
        return render(slots, stats.size, self._lifetime.max_lifetime, self._clock.monotonic())

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else f"{len(self)}/{self.size} connections"
        return (
            f"<{type(self).__name__} {self._uri!r} driver={self._driver.name!r} "
            f"bind={self._bind!r} {state}>"
        )
