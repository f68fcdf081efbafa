"""Real faults: restarts, idle timeouts, a frozen server, dead ports, cut sockets."""

from __future__ import annotations

import contextlib
import threading
import time

import ldap
import pytest

from ldappool import (
    BackendError,
    InvalidCredentialsError,
    LDAPPoolError,
    LifetimePolicy,
    ServerDownError,
)
from tests.integration.harness import (
    ManagerFactory,
    ProxyFactory,
    Slapd,
    describe,
    search,
    wait_until,
    whoami,
)
from tests.integration.harness.slapd import free_port

SLACK = 1.5  # seconds allowed beyond a configured timeout


@pytest.mark.parametrize("transport", ["ldap", "ldaps", "starttls"])
def test_server_restart_between_checkouts_is_invisible(
    transport: str, fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = fresh_slapd.users["alice"]
    uri = fresh_slapd.ldaps_uri if transport == "ldaps" else fresh_slapd.ldap_uri
    cm = make_manager(
        uri,
        alice.dn,
        alice.password,
        use_tls=transport == "starttls",
        tls_ca_file=fresh_slapd.ca_file,
    )
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    fresh_slapd.restart()
    assert fresh_slapd.client_connections() == 0
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    assert fresh_slapd.client_connections() == 1
    assert (cm.stats().stale, cm.stats().opened) == (1, 2)


def test_size_cap_holds_across_server_restarts(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    size = 4
    alice = fresh_slapd.users["alice"]
    cm = make_manager(fresh_slapd.ldap_uri, alice.dn, alice.password, size=size, timeout=2)
    stop = threading.Event()
    samples: list[int] = []
    unexpected: list[BaseException] = []
    done: list[str] = []

    def work() -> None:
        while not stop.is_set():
            try:
                with cm.connection() as conn:
                    done.append(whoami(conn))
            except LDAPPoolError:
                pass  # the server is down for a moment: a checkout may fail
            except Exception as exc:
                # A connection lost in the block raises the driver's own error; any
                # other exception is a bug.
                if type(exc).__module__.split(".")[0] not in ("ldap", "ldap3"):
                    unexpected.append(exc)

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(ldap.LDAPError):  # the server is restarting
                samples.append(fresh_slapd.client_connections())

    def more_samples(count: int) -> None:
        target = len(samples) + count
        wait_until(lambda: len(samples) >= target, message=f"{count} more samples")

    threads = [threading.Thread(target=work, daemon=True) for _ in range(12)]
    threads.append(threading.Thread(target=sample, daemon=True))
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            more_samples(5)  # under load, before...
            fresh_slapd.restart()
        more_samples(5)  # ... and after each restart
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert unexpected == []
    assert done
    assert max(samples) <= size, f"server saw {max(samples)} connections, size={size}"
    with cm.connection() as conn:  # and the pool works after the storm
        assert whoami(conn) == alice.dn


def test_server_idle_timeout_is_invisible(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = fresh_slapd.users["alice"]
    cm = make_manager(fresh_slapd.ldap_uri, alice.dn, alice.password)
    fresh_slapd.set_idle_timeout(1)
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    wait_until(
        lambda: fresh_slapd.client_connections() == 0,
        timeout=8,
        message="the server dropped the idle connection",
    )
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    assert cm.stats().stale == 1


def test_unresponsive_server_fails_within_timeout(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    timeout = 1.0
    root_dn, root_pw = fresh_slapd.root_dn, fresh_slapd.root_pw
    cm = make_manager(fresh_slapd.ldap_uri, root_dn, root_pw, retry_max=1, timeout=timeout)
    fresh_slapd.suspend()
    try:
        started = time.monotonic()
        with pytest.raises(ServerDownError) as excinfo, cm.connection():
            pass
        elapsed = time.monotonic() - started
    finally:
        fresh_slapd.resume()
    assert isinstance(excinfo.value, BackendError)
    assert elapsed < timeout + SLACK, f"took {elapsed:.2f} s with timeout={timeout}"
    assert len(cm) == 0
    with cm.connection() as conn:  # the slot was freed; the server is back
        assert whoami(conn) == fresh_slapd.root_dn


def test_unresponsive_server_times_out_an_operation_in_the_block(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    timeout = 1.0
    root_dn, root_pw = fresh_slapd.root_dn, fresh_slapd.root_pw
    cm = make_manager(fresh_slapd.ldap_uri, root_dn, root_pw, timeout=timeout)
    with cm.connection():
        pass
    fresh_slapd.suspend()
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as excinfo, cm.connection() as conn:
            search(conn, fresh_slapd.suffix)
        elapsed = time.monotonic() - started
    finally:
        fresh_slapd.resume()
    assert not isinstance(excinfo.value, AssertionError)
    assert elapsed < timeout + SLACK, f"took {elapsed:.2f} s with timeout={timeout}"
    assert (cm.stats().lost, len(cm)) == (1, 0)  # discarded, not pooled


def test_timeout_caught_inside_the_block_still_discards_the_connection(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    """The timed-out request may still be running, its answer still to come."""
    root_dn, root_pw = fresh_slapd.root_dn, fresh_slapd.root_pw
    cm = make_manager(fresh_slapd.ldap_uri, root_dn, root_pw, timeout=0.5)
    with cm.connection():
        pass
    fresh_slapd.suspend()
    try:
        with cm.connection() as conn:
            with pytest.raises(Exception) as excinfo:
                search(conn, fresh_slapd.suffix)
            assert not isinstance(excinfo.value, AssertionError)
    finally:
        fresh_slapd.resume()
    assert len(cm) == 0
    with cm.connection() as conn:
        assert whoami(conn) == root_dn


def test_failover_past_a_dead_uri(slapd: Slapd, make_manager: ManagerFactory) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    cm = make_manager(
        f"{dead}, {slapd.ldap_uri}", slapd.root_dn, slapd.root_pw, retry_max=2, retry_delay=0
    )
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    stats = cm.stats()
    assert (stats.failovers, stats.connect_errors, stats.opened) == (1, 2, 1)
    assert slapd.client_connections() == 1


def test_every_server_dead_raises_server_down(make_manager: ManagerFactory) -> None:
    uris = f"ldap://127.0.0.1:{free_port()} ldap://127.0.0.1:{free_port()}"
    cm = make_manager(uris, retry_max=2, retry_delay=0)
    with pytest.raises(ServerDownError) as excinfo, cm.connection():
        pass
    assert excinfo.value.__cause__ is not None
    assert not isinstance(excinfo.value.__cause__, LDAPPoolError)
    assert cm.stats().connect_errors == 4
    assert len(cm) == 0


def test_wrong_password_raises_invalid_credentials_with_one_bind_and_frees_the_slot(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, size=1, retry_max=3, pool_timeout=0.5)
    binds = slapd.binds()
    with pytest.raises(InvalidCredentialsError) as excinfo, cm.connection(alice.dn, "wrong"):
        pass
    assert slapd.binds() - binds == 1
    assert excinfo.value.__cause__ is not None
    assert not isinstance(excinfo.value.__cause__, LDAPPoolError)
    assert cm.stats().invalid_credentials == 1
    wait_until(lambda: slapd.client_connections() == 0, message="failed connection closed")
    with cm.connection(alice.dn, alice.password) as conn:  # no MaxConnectionReachedError
        assert whoami(conn) == alice.dn


def test_wrong_password_on_rebind_makes_one_bind_and_frees_the_slot(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, size=1, retry_max=3, pool_timeout=0.5)
    with cm.connection(alice.dn, alice.password):
        pass
    binds = slapd.binds()
    with pytest.raises(InvalidCredentialsError), cm.connection(bob.dn, "wrong"):
        pass
    assert slapd.binds() - binds == 1
    with cm.connection(bob.dn, bob.password) as conn:
        assert whoami(conn) == bob.dn
    assert slapd.client_identities() == [bob.dn]


def test_connection_lost_in_a_write_is_discarded(
    slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, slapd.root_dn, slapd.root_pw, retry_max=1)
    with pytest.raises(Exception) as excinfo, cm.connection() as conn:
        assert proxy.cut() == 1
        describe(conn, slapd.users["alice"].dn, "never replayed")
    assert not isinstance(excinfo.value, (AssertionError, LDAPPoolError))
    assert (cm.stats().lost, cm.stats().recovered, len(cm)) == (1, 0, 0)
    wait_until(lambda: slapd.client_connections() == 0, message="cut connection closed")
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn


def test_connection_cut_while_idle_is_replaced_invisibly(
    slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, slapd.root_dn, slapd.root_pw)
    with cm.connection():
        pass
    assert proxy.cut() == 1
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    assert (cm.stats().stale, cm.stats().opened) == (1, 2)


def test_silently_dropped_idle_connection_is_caught_by_the_ping(
    slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    """A firewall that drops an idle flow without a word: only a round trip tells."""
    timeout = 0.5
    proxy = proxy_factory(slapd)
    cm = make_manager(
        f"{proxy.uri} {slapd.ldap_uri}",
        slapd.root_dn,
        slapd.root_pw,
        retry_max=1,
        timeout=timeout,
        lifetime=LifetimePolicy(ping_after=0.1),
    )
    with cm.connection():
        pass
    proxy.blackhole()
    idle_since = time.monotonic()
    wait_until(lambda: time.monotonic() - idle_since > 0.15, message="idle long enough")
    started = time.monotonic()
    with cm.connection() as conn:  # ping fails, the proxy blackholes, fail over direct
        assert whoami(conn) == slapd.root_dn
    elapsed = time.monotonic() - started
    assert elapsed < 2 * timeout + SLACK, f"took {elapsed:.2f} s with timeout={timeout}"
    stats = cm.stats()
    assert (stats.pings, stats.stale, stats.failovers) == (1, 1, 1)


def test_read_that_loses_its_connection_is_retried_transparently(
    slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(slapd)
    alice = slapd.users["alice"]
    cm = make_manager(proxy.uri, alice.dn, alice.password)
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
        assert proxy.cut() == 1
        assert search(conn, alice.dn) == [alice.dn]  # on a new connection, same identity
        assert whoami(conn) == alice.dn
    stats = cm.stats()
    assert (stats.recovered, stats.lost, len(cm)) == (1, 0, 1)
    assert slapd.client_identities() == [alice.dn]
