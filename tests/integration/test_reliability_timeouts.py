"""An unresponsive server costs at most ``timeout`` per attempt (issue 4, item 6).

Every way a server can stop answering, on both drivers: the TCP connect hangs (a port
whose backlog is full drops SYNs), the connect succeeds but the bind, the TLS
handshake or StartTLS is never answered (the blackhole proxy, a SIGSTOPped slapd),
and an operation on a lent connection is never answered. Each attempt gives up after
``timeout``; the retry policy's attempts add up, nothing else does. The lower bounds
prove the attempts happened (a fast failure would say nothing about the bound).

Timing figures are printed (``pytest -s``) for docs/reliability.rst.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from ldappool import BackendTimeoutError, LDAPPoolError
from tests.integration.harness import (
    FaultProxy,
    ManagerFactory,
    ProxyFactory,
    SilentListener,
    Slapd,
    describe,
    search,
    wait_until,
    whoami,
)

TIMEOUT = 0.3
ATTEMPTS = 2
#: Seconds allowed beyond the sum of the timeouts: thread scheduling on a loaded CI box.
SLACK = 1.0


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    with SilentListener() as listener:
        yield listener


def _timed(action: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        action()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize("fault", ["connect", "bind", "ldaps-handshake", "starttls"])
def test_unresponsive_server_costs_timeout_per_connect_attempt(
    driver: str,
    fault: str,
    slapd: Slapd,
    silent: SilentListener,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    proxy = proxy_factory(slapd)
    proxy.blackhole()
    uri = {
        "connect": silent.uri,
        "bind": proxy.uri,
        "ldaps-handshake": f"ldaps://127.0.0.1:{proxy.port}",
        "starttls": proxy.uri,
    }[fault]
    cm = make_manager(
        uri,
        slapd.root_dn,
        slapd.root_pw,
        retry_max=ATTEMPTS,
        retry_delay=0,
        timeout=TIMEOUT,
        use_tls=fault == "starttls",
        tls_ca_file=slapd.ca_file,
    )

    def checkout() -> None:
        with cm.connection():
            pass

    elapsed, error = _timed(checkout)
    print(f"FIGURE {driver} unresponsive {fault}: {elapsed:.2f} s for {ATTEMPTS} x {TIMEOUT} s")
    assert isinstance(error, BackendTimeoutError), repr(error)
    assert error.__cause__ is not None
    assert ATTEMPTS * TIMEOUT * 0.9 <= elapsed <= ATTEMPTS * TIMEOUT + SLACK, elapsed
    assert cm.stats().connect_errors == ATTEMPTS
    if fault != "connect":
        assert proxy.accepted == ATTEMPTS
    assert len(cm) == 0


def test_suspended_server_costs_timeout_per_connect_attempt(
    driver: str, fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(
        fresh_slapd.ldap_uri,
        fresh_slapd.root_dn,
        fresh_slapd.root_pw,
        retry_max=ATTEMPTS,
        retry_delay=0,
        timeout=TIMEOUT,
    )

    def checkout() -> None:
        with cm.connection():
            pass

    fresh_slapd.suspend()
    try:
        elapsed, error = _timed(checkout)
    finally:
        fresh_slapd.resume()
    print(f"FIGURE {driver} suspended server: {elapsed:.2f} s for {ATTEMPTS} x {TIMEOUT} s")
    assert isinstance(error, BackendTimeoutError), repr(error)
    assert ATTEMPTS * TIMEOUT * 0.9 <= elapsed <= ATTEMPTS * TIMEOUT + SLACK, elapsed
    with cm.connection() as conn:  # back, and the failed attempts left nothing behind
        assert whoami(conn) == fresh_slapd.root_dn
    wait_until(lambda: fresh_slapd.client_connections() == 1, message="only the new one left")


@pytest.mark.parametrize("operation", ["search", "whoami", "write"])
def test_operation_on_an_unresponsive_server_costs_one_timeout(
    driver: str,
    operation: str,
    fresh_slapd: Slapd,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    """The server stops answering a lent connection: the operation raises after
    ``timeout``. A timed-out read is not retried: the server may still be working
    on it, and a retry would cost another timeout."""
    proxy = proxy_factory(fresh_slapd)
    root_dn = fresh_slapd.root_dn
    cm = make_manager(proxy.uri, root_dn, fresh_slapd.root_pw, retry_max=1, timeout=TIMEOUT)
    alice = fresh_slapd.users["alice"].dn
    calls: dict[str, Callable[[object], object]] = {
        "search": lambda conn: search(conn, fresh_slapd.people_dn, "(uid=alice)"),
        "whoami": whoami,
        "write": lambda conn: describe(conn, alice, "slow"),
    }
    with pytest.raises(Exception) as excinfo, cm.connection() as conn:
        proxy.blackhole()
        started = time.monotonic()
        try:
            calls[operation](conn)
        finally:
            elapsed = time.monotonic() - started
    print(f"FIGURE {driver} unanswered {operation}: {elapsed:.2f} s with timeout={TIMEOUT}")
    assert not isinstance(excinfo.value, (AssertionError, LDAPPoolError, RuntimeError))
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + SLACK, elapsed
    assert (cm.stats().lost, cm.stats().recovered, len(cm)) == (1, 0, 0)
    proxy.pass_through()
    with cm.connection() as conn:
        assert whoami(conn) == root_dn


def test_slow_but_answering_server_is_not_a_fault(
    driver: str, slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    """A delay below ``timeout`` on every packet slows things down, nothing more."""
    alice = slapd.users["alice"]
    proxy: FaultProxy = proxy_factory(slapd)
    proxy.add_delay(TIMEOUT / 5)
    cm = make_manager(proxy.uri, alice.dn, alice.password, retry_max=1, timeout=TIMEOUT)
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
        assert search(conn, slapd.people_dn, "(uid=alice)") == [alice.dn]
    stats = cm.stats()
    assert (stats.connect_errors, stats.lost, stats.recovered) == (0, 0, 0)
