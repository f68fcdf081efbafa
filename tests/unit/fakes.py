"""An in-memory LDAP 'server' and a driver for it, to test the pool core without a network."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import attrs

from ldappool._port import (
    BindAnswer,
    ConnectSettings,
    ErrorKind,
    Owner,
    PasswordPolicy,
    Sasl,
    Server,
)


class FakeDown(Exception):
    """The fake server is unreachable, or the connection was lost."""


class FakeTimeout(Exception):
    """The fake server did not answer in time."""


class FakeInvalidCredentials(Exception):
    """Wrong DN or password."""


class FakeNoSuchObject(Exception):
    """An ordinary LDAP error that leaves the connection healthy."""


@attrs.define
class FakeServer:
    """What the server would see: connections open now, the most ever, binds."""

    users: dict[str | None, str | None] = attrs.field(factory=lambda: {None: None})
    #: The password policy answer to a bind as each DN (right password or not).
    policies: dict[str, PasswordPolicy] = attrs.field(factory=dict)
    #: Refuse these DNs whatever the password (a locked account).
    locked: set[str] = attrs.field(factory=set)
    #: SASL identities accepted: (mechanism, authz_id) -> the DN it maps to.
    sasl: dict[tuple[str, str | None], str] = attrs.field(factory=dict)
    #: Lose the connection after receiving a password check's bind (no answer comes).
    drop_checks: bool = False
    #: The root DSE's supportedControl (None: the server would not say), and its reads.
    controls: frozenset[str] | None = None
    probes: int = 0
    up: bool = True
    timeout: bool = False
    live: int = 0
    peak: int = 0
    opened: int = 0
    binds: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock)


class FakeNative:
    """What the user receives: can run a 'search', or be rebound by its holder."""

    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn

    @property
    def whoami(self) -> str | None:
        return self._conn.bound_as

    def search(self) -> str:
        """A read: retried once on a new connection if this one was lost."""
        try:
            return self._search()
        except FakeDown as lost:
            owner = self._conn.owner
            if owner is None:
                raise
            try:
                owner.recover()
            except Exception:
                raise lost from None
            return self._search()

    def modify(self) -> str:
        """A write: never retried."""
        return self._search()

    def _search(self) -> str:
        if self._conn.closed or self._conn.dropped or not self._conn.server.up:
            raise FakeDown("connection lost")
        return "result"

    def simple_bind_s(self, who: str | None, cred: str | None) -> None:
        self._conn.changed = True
        self._conn.bound_as = who


class FakeConnection:
    """One connection to a FakeServer."""

    def __init__(self, server: FakeServer, uri: str) -> None:
        self.server = server
        self.uri = uri
        self.bound_as: str | None = None
        self.closed = False
        self.abandoned = False
        self.dropped = False  # the server closed it
        self.changed = False
        self.pings = 0
        self.owner: Owner | None = None
        self.driver: FakeDriver | None = None
        self._native = FakeNative(self)

    @property
    def native(self) -> FakeNative:
        return self._native

    def bind(self, who: str | None, cred: str | None) -> None:
        with self.server.lock:
            self.server.binds += 1
        if self.dropped or not self.server.up:
            raise FakeDown("bind on a lost connection")
        if who not in self.server.users or self.server.users[who] != cred:
            self.bound_as = None
            raise FakeInvalidCredentials(who)
        self.bound_as = who
        self.changed = False

    def check_password(self, who: str, cred: str) -> BindAnswer:
        with self.server.lock:
            self.server.binds += 1
        if self.dropped or not self.server.up:
            raise FakeDown("bind on a lost connection")
        if self.server.drop_checks:
            self.dropped = True
            raise FakeDown("connection lost before the answer")
        policy = self.server.policies.get(who)
        if who in self.server.locked or self.server.users.get(who, object()) != cred:
            self.bound_as = None
            return BindAnswer(FakeInvalidCredentials(who), policy)
        self.bound_as = who
        return BindAnswer(None, policy)

    def supported_controls(self) -> frozenset[str] | None:
        with self.server.lock:
            self.server.probes += 1
        if self.dropped or not self.server.up:
            raise FakeDown("search on a lost connection")
        return self.server.controls

    def sasl_bind(self, sasl: Sasl) -> None:
        with self.server.lock:
            self.server.binds += 1
        if self.dropped or not self.server.up:
            raise FakeDown("bind on a lost connection")
        dn = self.server.sasl.get((sasl.mechanism, sasl.authz_id))
        if dn is None:
            self.bound_as = None
            raise FakeInvalidCredentials(sasl.mechanism)
        self.bound_as = dn
        self.changed = False

    def looks_alive(self) -> bool:
        return not (self.closed or self.dropped)

    def ping(self) -> None:
        self.pings += 1
        if self.dropped or not self.server.up:
            raise FakeDown("ping failed")

    def identity_changed(self) -> bool:
        return self.changed

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        assert self.driver is not None
        fresh = self.driver.connect(server, settings)
        self.close()
        self.server, self.uri = fresh.server, fresh.uri
        self.closed = self.dropped = False
        self.bound_as = None
        fresh.abandoned = True  # its 'transport' now belongs to self
        self.driver.connections.remove(fresh)

    def set_owner(self, owner: Owner | None) -> None:
        self.owner = owner

    def close(self) -> None:
        if not self.closed and not self.abandoned:
            self.closed = True
            with self.server.lock:
                self.server.live -= 1

    def abandon(self) -> None:
        self.abandoned = True


class FakeDriver:
    """Implements the Driver port over FakeServers keyed by URI."""

    name = "fake"

    def __init__(self, **servers: FakeServer) -> None:
        # keyword names are host names: FakeDriver(a=FakeServer()) serves ldap://a
        self.servers = {f"ldap://{host}": server for host, server in servers.items()}
        self.connections: list[FakeConnection] = []
        self.connect_calls: list[str] = []
        self.settings: ConnectSettings | None = None

    def connect(self, server: Server, settings: ConnectSettings) -> FakeConnection:
        self.settings = settings
        self.connect_calls.append(server.uri)
        fake = self.servers.get(server.uri)
        if fake is None or not fake.up:
            raise FakeDown(server.uri)
        if fake.timeout:
            raise FakeTimeout(server.uri)
        conn = FakeConnection(fake, server.uri)
        conn.driver = self
        with fake.lock:
            fake.live += 1
            fake.opened += 1
            fake.peak = max(fake.peak, fake.live)
        self.connections.append(conn)
        return conn

    def classify(self, error: BaseException) -> ErrorKind:
        if isinstance(error, FakeDown):
            return ErrorKind.DOWN
        if isinstance(error, FakeTimeout):
            return ErrorKind.TIMEOUT
        if isinstance(error, FakeInvalidCredentials):
            return ErrorKind.CREDENTIALS
        return ErrorKind.OTHER


@attrs.define
class FakeClock:
    """Time moves only when a test (or a backoff sleep) moves it."""

    now: float = 1000.0
    sleeps: list[float] = attrs.field(factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def live_connections(driver: FakeDriver) -> Iterator[FakeConnection]:
    return (c for c in driver.connections if not c.closed and not c.abandoned)


def kwargs(**overrides: Any) -> dict[str, Any]:
    """Manager arguments for a fast, single-server fake setup."""
    base: dict[str, Any] = {"retry_delay": 0.0}
    base.update(overrides)
    return base
