"""Failover that behaves (issue 4, item 3).

A server that failed is quarantined for ``FailoverPolicy.cooldown``: new connections
stop paying its timeout while another server answers; the time to give up on a list
of dead servers is bounded by the per-attempt timeout times the attempts; and when
the primary comes back, InOrder returns to it as connections are recycled.

Timing figures are printed (``pytest -s``) for docs/reliability.rst.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from ldappool import BackendTimeoutError, InOrder, LifetimePolicy, RetryPolicy
from tests.integration.harness import (
    ManagerFactory,
    ProxyFactory,
    SilentListener,
    Slapd,
    search,
    wait_until,
    whoami,
)

TIMEOUT = 0.3
SLACK = 1.0


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    with SilentListener() as listener:
        yield listener


def test_failed_server_is_quarantined_so_new_connections_skip_its_timeout(
    driver: str, slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    dead = proxy_factory(slapd)
    dead.blackhole()  # accepts, never answers: each attempt costs the full timeout
    cm = make_manager(
        f"{dead.uri} {slapd.ldap_uri}",
        slapd.root_dn,
        slapd.root_pw,
        size=4,
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=2, delay=0.0),
        failover=InOrder(cooldown=30),
    )
    with contextlib.ExitStack() as held:
        started = time.monotonic()
        held.enter_context(cm.connection())
        first = time.monotonic() - started
        later: list[float] = []
        for _ in range(3):  # three more new connections, while the first is held
            started = time.monotonic()
            conn = held.enter_context(cm.connection())
            later.append(time.monotonic() - started)
            assert whoami(conn) == slapd.root_dn
        assert slapd.client_connections() == 4
    print(
        f"FIGURE {driver} failover past a blackholed server: first {first:.2f} s,"
        f" then {max(later) * 1000:.0f} ms at most (quarantined)"
    )
    assert 2 * TIMEOUT * 0.9 <= first <= 2 * TIMEOUT + SLACK, first
    assert max(later) < TIMEOUT / 2, later
    assert dead.accepted == 2, "the quarantined server was tried again"
    assert cm.stats().failovers == 1


def test_quarantined_server_is_tried_again_after_its_cooldown(
    driver: str, slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    cooldown = 0.5
    primary = proxy_factory(slapd)
    primary.blackhole()
    cm = make_manager(
        f"{primary.uri} {slapd.ldap_uri}",
        slapd.root_dn,
        slapd.root_pw,
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=1, delay=0.0),
        failover=InOrder(cooldown=cooldown),
    )
    with contextlib.ExitStack() as held:
        held.enter_context(cm.connection())  # fails over; the primary is quarantined
        quarantined_at = time.monotonic()
        primary.pass_through()
        held.enter_context(cm.connection())  # still in quarantine: the second server
        assert primary.accepted == 1
        # The cooldown is the policy under test: wait for its deadline, then check.
        wait_until(lambda: time.monotonic() - quarantined_at > cooldown, timeout=cooldown + 1)
        conn = held.enter_context(cm.connection())
        assert whoami(conn) == slapd.root_dn
        assert (primary.accepted, primary.live()) == (2, 1), "back to the primary"


def test_failover_time_is_bounded_and_paid_once(
    driver: str,
    slapd: Slapd,
    fresh_slapd: Slapd,
    silent: SilentListener,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    """Three dead servers of three kinds before a live one: the first connection
    costs at most servers x attempts x timeout; the next ones nothing."""
    attempts = 2
    blackhole = proxy_factory(slapd)
    blackhole.blackhole()
    dead = [silent.uri, blackhole.uri, fresh_slapd.ldap_uri]  # SYN dropped, mute, SIGSTOP
    cm = make_manager(
        " ".join([*dead, slapd.ldap_uri]),
        slapd.root_dn,
        slapd.root_pw,
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=attempts, delay=0.0),
        failover=InOrder(cooldown=30),
    )
    fresh_slapd.suspend()
    try:
        with contextlib.ExitStack() as held:
            started = time.monotonic()
            held.enter_context(cm.connection())
            first = time.monotonic() - started
            started = time.monotonic()
            conn = held.enter_context(cm.connection())
            second = time.monotonic() - started
            assert whoami(conn) == slapd.root_dn
    finally:
        fresh_slapd.resume()
    bound = len(dead) * attempts * TIMEOUT
    print(
        f"FIGURE {driver} failover past {len(dead)} dead servers ({attempts} x {TIMEOUT} s"
        f" each): {first:.2f} s, next connection {second * 1000:.0f} ms"
    )
    assert bound * 0.9 <= first <= bound + SLACK, first
    assert second < TIMEOUT / 2, second
    stats = cm.stats()
    assert (stats.failovers, stats.connect_errors) == (len(dead), len(dead) * attempts)


def test_max_time_bounds_one_new_connection_on_all_servers(
    driver: str,
    slapd: Slapd,
    silent: SilentListener,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    """Generous retries on two dead servers, capped by ``FailoverPolicy(max_time=...)``:
    no attempt starts after it, so the checkout fails within max_time + one timeout."""
    max_time = 0.5
    blackhole = proxy_factory(slapd)
    blackhole.blackhole()
    cm = make_manager(
        f"{silent.uri} {blackhole.uri}",
        slapd.root_dn,
        slapd.root_pw,
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=10, delay=0.0),
        failover=InOrder(max_time=max_time),
    )
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError), cm.connection():
        pass
    elapsed = time.monotonic() - started
    print(f"FIGURE {driver} max_time={max_time} s, timeout={TIMEOUT} s: failed in {elapsed:.2f} s")
    assert max_time <= elapsed <= max_time + TIMEOUT + SLACK, elapsed
    assert cm.stats().connect_errors < 10, "max_time did not cut the retries short"
    assert len(cm) == 0


def test_in_order_returns_to_the_primary_as_connections_are_recycled(
    driver: str, fresh_slapd: Slapd, slapd: Slapd, make_manager: ManagerFactory
) -> None:
    primary, secondary = fresh_slapd, slapd
    size, cooldown, lifetime = 3, 0.5, 1.0
    cm = make_manager(
        f"{primary.ldap_uri} {secondary.ldap_uri}",
        primary.root_dn,
        primary.root_pw,
        size=size,
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=1, delay=0.0),
        failover=InOrder(cooldown=cooldown),
        lifetime=LifetimePolicy(max_lifetime=lifetime),
    )
    people = sorted(u.dn for u in primary.users.values())

    def use_every_slot() -> tuple[int, int]:
        """Hold ``size`` connections at once, read on each; (primary, secondary) counts."""
        with contextlib.ExitStack() as held:
            for _ in range(size):
                conn = held.enter_context(cm.connection())
                assert search(conn, primary.people_dn, "(uid=*)") == people
        return primary.client_connections(), secondary.client_connections()

    assert use_every_slot() == (size, 0)
    primary.halt()
    assert secondary.client_connections() == 0
    with contextlib.ExitStack() as held:  # the idle connections are stale: replaced
        for _ in range(size):
            assert whoami(held.enter_context(cm.connection())) == primary.root_dn
    assert secondary.client_connections() == size
    primary.start()
    back = time.monotonic()

    def all_on_primary() -> bool:
        return use_every_slot() == (size, 0)

    wait_until(all_on_primary, timeout=cooldown + lifetime + 3, interval=0.05)
    took = time.monotonic() - back
    print(
        f"FIGURE {driver} back on the primary {took:.2f} s after it returned"
        f" (cooldown {cooldown} s, max_lifetime {lifetime} s)"
    )
    assert took <= cooldown + lifetime + SLACK
