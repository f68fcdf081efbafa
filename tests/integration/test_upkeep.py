"""Warm pools and the upkeep thread against a real slapd: restarts, idle timeouts, a
server that comes up late. slapd's cn=Monitor says what is open, and as whom."""

from __future__ import annotations

import time

from ldappool import EventKind
from tests.integration.harness import ManagerFactory, Slapd, wait_until, whoami


def test_open_wait_puts_min_size_bound_connections_on_the_server(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, alice.dn, alice.password, size=4, min_size=3)
    cm.open(wait=True)
    assert slapd.client_identities() == [alice.dn] * 3
    before = slapd.binds()
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    assert slapd.binds() == before  # ready: no connect, no bind at the checkout


def test_after_a_restart_the_upkeep_has_connections_ready(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = fresh_slapd.users["alice"]
    cm = make_manager(fresh_slapd.ldap_uri, alice.dn, alice.password, size=4, min_size=2)
    cm.open(wait=True)
    before = fresh_slapd.client_ids()
    fresh_slapd.restart()

    def replaced() -> set[int] | None:
        now = fresh_slapd.client_ids()
        return now if len(now) == 2 and not now & before else None

    ids = wait_until(replaced, timeout=10, message="two new connections opened by the upkeep")
    assert cm.stats().stale == 2
    with cm.connection() as conn:  # the first checkout after the restart: no connect
        assert whoami(conn) == alice.dn
    assert fresh_slapd.client_ids() == ids


def test_keepalive_pings_beat_the_server_s_idle_timeout(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    fresh_slapd.set_idle_timeout(1)  # slapd closes connections idle for a second or two
    try:
        cm = make_manager(fresh_slapd.ldap_uri, size=2, keepalive=0.3)
        with cm.connection():
            pass
        [kept] = fresh_slapd.client_ids()
        deadline = time.monotonic() + 3.5  # well past the idle timeout, several times
        while time.monotonic() < deadline:
            assert fresh_slapd.client_ids() == {kept}
            time.sleep(0.2)
        assert cm.stats().pings >= 3 and cm.stats().stale == 0
    finally:
        fresh_slapd.set_idle_timeout(0)


def test_a_server_that_comes_up_late_finds_the_pool_filling_itself(
    fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    events: list[EventKind] = []
    fresh_slapd.halt()
    cm = make_manager(
        fresh_slapd.ldap_uri,
        size=2,
        min_size=1,
        retry_max=1,
        listeners=[lambda e: events.append(e.kind)],
    )
    cm.open(wait=False)  # nothing to connect to yet: the upkeep backs off and retries
    fresh_slapd.start()
    wait_until(lambda: cm.stats().idle == 1, timeout=15, message="a connection ready")
    assert fresh_slapd.client_connections() == 1
    assert EventKind.OPENED in events
