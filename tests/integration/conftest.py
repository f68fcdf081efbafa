"""Fixtures for tests against a real slapd on loopback.

- ``slapd``: the session's server, checked to have no client connection when the
  test starts. Do not restart, suspend or reconfigure it: use ``fresh_slapd``.
- ``fresh_slapd``: a server of the test's own (about 0.1 s to start), stopped after.
- ``slapd_installed``: skips (fails on CI) when OpenLDAP is missing, for tests that
  build their own ``Slapd``.
- ``untrusted_slapd``: a server whose certificate (self-signed) no client trusts.
- ``auth_slapd``: the session's AuthSlapd: a password policy (the ppolicy overlay)
  and SASL EXTERNAL over ldapi:// and over TLS with a client certificate. Do not
  restart or reconfigure it; put users into policy states with its methods.
- ``policy_user``: a fresh user on ``auth_slapd`` (a uid never used before, in the
  normal policy state), deleted after the test: failures and locks never leak.
- ``driver``: "python-ldap" then "ldap3": every test that takes it runs on both.
- ``make_manager(uri, **kwargs)``: a ConnectionManager on ``driver`` (``timeout`` and
  ``pool_timeout`` default to 5 s so that nothing waits forever); every manager
  is closed after the test, then each server the test used must show no client
  connection left open (a leak fails the test that caused it).
- ``make_async_manager(uri, **kwargs)``: the same for AsyncConnectionManager (closed
  after the test in an event loop of its own).
- ``proxy_factory(server)``: a FaultProxy in front of a server, closed after the test.

Helpers live in the ``harness`` package: ``search(conn, base, filter)`` and
``whoami(conn)`` on a native connection of either driver, ``wait_until``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.harness import (
    AuthSlapd,
    FaultProxy,
    ManagerFactory,
    ProxyFactory,
    Slapd,
    SlapdNotInstalled,
    User,
    find_slapd,
    self_signed_certificate,
    wait_until,
)

if TYPE_CHECKING:
    from ldappool import AsyncConnectionManager, ConnectionManager

DRIVERS = ["python-ldap", "ldap3"]
HERE = Path(__file__).resolve().parent
#: A hung test dumps every thread's stack and ends the run instead of blocking CI.
TEST_DEADLINE = 120
#: Default ``timeout`` and ``pool_timeout`` of test managers: nothing waits forever.
MANAGER_TIMEOUT = 5.0
#: Seconds for the server to notice connections closed by the client.
SETTLE = 5.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


def _require_slapd() -> None:
    try:
        find_slapd()
    except SlapdNotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the integration tests: {exc}")
        pytest.skip(str(exc))


def _started(server: Slapd) -> Slapd:
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(autouse=True)
def _bounded_test() -> Iterator[None]:
    faulthandler.dump_traceback_later(TEST_DEADLINE, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def slapd_installed() -> None:
    """For tests that build their own Slapd: skip (fail on CI) without OpenLDAP."""
    _require_slapd()


@pytest.fixture(scope="session")
def _session_slapd() -> Iterator[Slapd]:
    _require_slapd()
    server = _started(Slapd())
    yield server
    server.stop()


@pytest.fixture
def slapd(_session_slapd: Slapd) -> Slapd:
    server = _session_slapd
    if not server.running:  # a test stopped it by mistake: later tests still get one
        server.start()
    wait_until(
        lambda: server.client_connections() == 0,
        timeout=SETTLE,
        message="the shared slapd has client connections left over by an earlier test",
    )
    return server


@pytest.fixture
def fresh_slapd() -> Iterator[Slapd]:
    _require_slapd()
    server = _started(Slapd())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def untrusted_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    _require_slapd()
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("untrusted"))
    server = _started(Slapd(cert_file=cert, key_file=key, ca_file=cert))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_slapd() -> Iterator[AuthSlapd]:
    """One AuthSlapd for the session: tests share it through fresh users."""
    _require_slapd()
    server = _started(AuthSlapd())
    yield server
    server.stop()


@pytest.fixture
def policy_user(auth_slapd: AuthSlapd) -> Iterator[User]:
    """A user of the test's own on ``auth_slapd``, so that the lockout counts and
    states of one test never reach another; deleted afterwards."""
    user = auth_slapd.new_user()
    yield user
    if auth_slapd.running:
        auth_slapd.remove_user(user.uid)


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def proxy_factory() -> Iterator[ProxyFactory]:
    proxies: list[FaultProxy] = []

    def make(server: Slapd) -> FaultProxy:
        proxy = FaultProxy("127.0.0.1", server.port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


_SERVER_FIXTURES = (
    "slapd",
    "fresh_slapd",
    "untrusted_slapd",
    "auth_slapd",
    "proxy_factory",
)


@pytest.fixture
def make_manager(request: pytest.FixtureRequest, driver: str) -> Iterator[ManagerFactory]:
    # Set the servers up first, so that they are torn down after the managers.
    servers = [
        request.getfixturevalue(name) for name in _SERVER_FIXTURES if name in request.fixturenames
    ]
    from ldappool import ConnectionManager

    managers: list[ConnectionManager] = []

    def make(uri: str, *args: Any, **kwargs: Any) -> ConnectionManager:
        kwargs.setdefault("driver", driver)
        if len(args) < 7:  # timeout is the 7th positional argument after uri
            kwargs.setdefault("timeout", MANAGER_TIMEOUT)
        kwargs.setdefault("pool_timeout", MANAGER_TIMEOUT)
        manager = ConnectionManager(uri, *args, **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()
    for server in servers:
        if isinstance(server, Slapd) and server.running and not server.suspended:
            _assert_no_client_connection(server)


def _assert_no_client_connection(server: Slapd) -> None:
    wait_until(
        lambda: server.client_connections() == 0,
        timeout=SETTLE,
        message=f"{server}: connections left open after every manager was closed",
    )


@pytest.fixture
def make_async_manager(
    request: pytest.FixtureRequest, driver: str
) -> Iterator[Callable[..., AsyncConnectionManager]]:
    """``make_manager``'s twin for AsyncConnectionManager: the same defaults, every
    manager closed after the test (in a loop of its own: a test runs its loops with
    ``asyncio.run``), then the same check that no client connection is left open."""
    servers = [
        request.getfixturevalue(name) for name in _SERVER_FIXTURES if name in request.fixturenames
    ]
    from ldappool import AsyncConnectionManager

    managers: list[AsyncConnectionManager] = []

    def make(uri: str, *args: Any, **kwargs: Any) -> AsyncConnectionManager:
        kwargs.setdefault("driver", driver)
        if len(args) < 7:
            kwargs.setdefault("timeout", MANAGER_TIMEOUT)
        kwargs.setdefault("pool_timeout", MANAGER_TIMEOUT)
        manager = AsyncConnectionManager(uri, *args, **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        asyncio.run(manager.close())
    for server in servers:
        if isinstance(server, Slapd) and server.running and not server.suspended:
            _assert_no_client_connection(server)
