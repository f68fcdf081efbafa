"""The harness itself, checked with raw python-ldap (no ldappool involved).

If these fail, the other integration tests' counts cannot be trusted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import ldap
import pytest

from tests.integration.harness import FaultProxy, Slapd, search, wait_until, whoami

TIMEOUT = 2.0
Opener = Callable[..., ldap.ldapobject.LDAPObject]


def connect(
    uri: str, ca_file: str | None = None, timeout: float = TIMEOUT
) -> ldap.ldapobject.LDAPObject:
    conn = ldap.initialize(uri)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
    conn.set_option(ldap.OPT_TIMEOUT, timeout)
    if ca_file is not None:
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_file)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    return conn


@pytest.fixture
def opened() -> Iterator[Opener]:
    """Like connect(), and every connection is unbound after the test."""
    conns: list[ldap.ldapobject.LDAPObject] = []

    def open_(uri: str, **kwargs: object) -> ldap.ldapobject.LDAPObject:
        conn = connect(uri, **kwargs)  # type: ignore[arg-type]
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        with contextlib.suppress(ldap.LDAPError, AttributeError):  # AttributeError: unbound
            conn.unbind_s()


def test_counts_one_client_connection_per_open_connection(slapd: Slapd, opened: Opener) -> None:
    first, second = opened(slapd.ldap_uri), opened(slapd.ldap_uri)
    first.simple_bind_s(slapd.root_dn, slapd.root_pw)
    second.simple_bind_s(slapd.root_dn, slapd.root_pw)
    assert slapd.client_connections() == 2
    first.unbind_s()
    wait_until(lambda: slapd.client_connections() == 1, message="one closed")
    second.unbind_s()
    wait_until(lambda: slapd.client_connections() == 0, message="both closed")


def test_monitor_reads_neither_bind_nor_count_as_client(slapd: Slapd) -> None:
    before = slapd.binds()
    for _ in range(5):
        assert slapd.client_connections() == 0
    assert slapd.binds() == before


def test_counts_binds_exactly(slapd: Slapd, opened: Opener) -> None:
    alice = slapd.users["alice"]
    before = slapd.binds()
    conn = opened(slapd.ldap_uri)
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        conn.simple_bind_s(alice.dn, "wrong")
    assert slapd.binds() == before + 1
    conn.simple_bind_s(alice.dn, alice.password)
    conn.simple_bind_s(alice.dn, alice.password)
    assert slapd.binds() == before + 3


def test_users_bind_and_search(slapd: Slapd, opened: Opener) -> None:
    conn = opened(slapd.ldap_uri)
    bob = slapd.users["bob"]
    conn.simple_bind_s(bob.dn, bob.password)
    assert whoami(conn) == bob.dn
    assert search(conn, slapd.people_dn, "(uid=*)") == sorted(u.dn for u in slapd.users.values())


def test_root_dn_reads_the_monitor(slapd: Slapd, opened: Opener) -> None:
    conn = opened(slapd.ldap_uri)
    conn.simple_bind_s(slapd.root_dn, slapd.root_pw)
    assert "cn=Bind,cn=Operations,cn=Monitor" in search(conn, "cn=Operations,cn=Monitor")


def test_anonymous_ip_clients_cannot_write(slapd: Slapd, opened: Opener) -> None:
    conn = opened(slapd.ldap_uri)
    with pytest.raises(ldap.LDAPError):
        conn.modify_s(slapd.users["alice"].dn, [(ldap.MOD_REPLACE, "sn", [b"x"])])


def test_ldaps_and_starttls_verify_against_the_ca(slapd: Slapd, opened: Opener) -> None:
    tls = opened(slapd.ldaps_uri, ca_file=slapd.ca_file)
    tls.simple_bind_s(slapd.root_dn, slapd.root_pw)
    plain = opened(slapd.ldap_uri, ca_file=slapd.ca_file)
    plain.start_tls_s()
    plain.simple_bind_s(slapd.root_dn, slapd.root_pw)
    assert whoami(plain) == slapd.root_dn


def test_untrusted_server_is_refused(slapd: Slapd, untrusted_slapd: Slapd, opened: Opener) -> None:
    with pytest.raises(ldap.SERVER_DOWN):
        opened(untrusted_slapd.ldaps_uri, ca_file=slapd.ca_file).simple_bind_s()
    with pytest.raises(ldap.CONNECT_ERROR):
        opened(untrusted_slapd.ldap_uri, ca_file=slapd.ca_file).start_tls_s()
    # ... and it is a working server for a client that trusts its certificate.
    opened(untrusted_slapd.ldaps_uri, ca_file=untrusted_slapd.ca_file).simple_bind_s()


def test_add_user(fresh_slapd: Slapd, opened: Opener) -> None:
    dn = fresh_slapd.add_user("dave", "dave-pw")
    conn = opened(fresh_slapd.ldap_uri)
    conn.simple_bind_s(dn, "dave-pw")
    assert whoami(conn) == dn


def test_restart_keeps_port_and_data_and_drops_connections(
    fresh_slapd: Slapd, opened: Opener
) -> None:
    dn = fresh_slapd.add_user("erin", "erin-pw")
    old = opened(fresh_slapd.ldap_uri)
    old.simple_bind_s(dn, "erin-pw")
    pid, port = fresh_slapd.pid, fresh_slapd.port
    fresh_slapd.restart()
    assert (fresh_slapd.port, fresh_slapd.client_connections()) == (port, 0)
    assert fresh_slapd.pid != pid
    with pytest.raises(ldap.SERVER_DOWN):
        old.whoami_s()
    new = opened(fresh_slapd.ldap_uri)
    new.simple_bind_s(dn, "erin-pw")


def test_suspended_server_accepts_but_never_answers(fresh_slapd: Slapd, opened: Opener) -> None:
    live = opened(fresh_slapd.ldap_uri, timeout=0.5)
    live.simple_bind_s(fresh_slapd.root_dn, fresh_slapd.root_pw)
    fresh_slapd.suspend()
    try:
        started = time.monotonic()
        with pytest.raises(ldap.TIMEOUT):
            opened(fresh_slapd.ldap_uri, timeout=0.5).simple_bind_s()
        with pytest.raises(ldap.TIMEOUT):
            live.whoami_s()
        assert time.monotonic() - started < 2.5
    finally:
        fresh_slapd.resume()
    opened(fresh_slapd.ldap_uri).simple_bind_s()


def test_idle_timeout_drops_idle_connections(fresh_slapd: Slapd, opened: Opener) -> None:
    opened(fresh_slapd.ldap_uri).simple_bind_s()
    fresh_slapd.set_idle_timeout(1)
    assert fresh_slapd.client_connections() == 1
    wait_until(lambda: fresh_slapd.client_connections() == 0, timeout=6, message="idle drop")


@pytest.mark.usefixtures("slapd_installed")
def test_stop_is_idempotent_and_removes_data() -> None:
    server = Slapd()
    server.start()
    rundir = server.rundir
    assert rundir is not None and rundir.exists()
    server.stop()
    server.stop()
    assert not rundir.exists()
    assert not server.running


# -- the fault proxy ----------------------------------------------------------


def test_proxy_passes_through_and_is_counted_as_a_client(slapd: Slapd, opened: Opener) -> None:
    with FaultProxy("127.0.0.1", slapd.port) as proxy:
        conn = opened(proxy.uri)
        conn.simple_bind_s(slapd.root_dn, slapd.root_pw)
        assert whoami(conn) == slapd.root_dn
        assert (proxy.live(), slapd.client_connections()) == (1, 1)
        conn.unbind_s()
        wait_until(lambda: proxy.live() == 0, message="proxy pair closed")
        wait_until(lambda: slapd.client_connections() == 0, message="upstream closed")


def test_proxy_delay(slapd: Slapd, opened: Opener) -> None:
    with FaultProxy("127.0.0.1", slapd.port) as proxy:
        conn = opened(proxy.uri)
        conn.simple_bind_s()
        proxy.add_delay(0.3)
        started = time.monotonic()
        conn.whoami_s()
        assert time.monotonic() - started >= 0.5  # request and answer are both held
        proxy.pass_through()
        started = time.monotonic()
        conn.whoami_s()
        assert time.monotonic() - started < 0.3


def test_proxy_cut_breaks_live_connections(slapd: Slapd, opened: Opener) -> None:
    with FaultProxy("127.0.0.1", slapd.port) as proxy:
        conn = opened(proxy.uri)
        conn.simple_bind_s()
        assert proxy.cut() == 1
        with pytest.raises(ldap.SERVER_DOWN):
            conn.whoami_s()
        wait_until(lambda: slapd.client_connections() == 0, message="upstream closed")
        opened(proxy.uri).simple_bind_s()  # new connections still go through


def test_proxy_blackhole(slapd: Slapd, opened: Opener) -> None:
    with FaultProxy("127.0.0.1", slapd.port) as proxy:
        live = opened(proxy.uri, timeout=0.3)
        live.simple_bind_s()
        proxy.blackhole()
        with pytest.raises(ldap.TIMEOUT):
            live.whoami_s()
        with pytest.raises(ldap.TIMEOUT):
            opened(proxy.uri, timeout=0.3).simple_bind_s()
        assert slapd.client_connections() == 1  # the blackholed newcomer never reached it


def test_proxy_close_stops_its_threads(slapd: Slapd) -> None:
    before = threading.active_count()
    proxy = FaultProxy("127.0.0.1", slapd.port)
    conn = connect(proxy.uri)
    conn.simple_bind_s()
    proxy.close()
    wait_until(lambda: threading.active_count() <= before, timeout=3, message="threads gone")
    with pytest.raises(ldap.SERVER_DOWN):
        conn.whoami_s()
