"""What the pool opens, reuses and closes, counted by the server (cn=Monitor)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from ldappool import LifetimePolicy, MaxConnectionReachedError, PoolClosedError
from tests.integration.harness import ManagerFactory, Slapd, search, wait_until, whoami


def all_people(slapd: Slapd) -> list[str]:
    return sorted(user.dn for user in slapd.users.values())


def test_sequential_reuse_opens_one_connection(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=5)
    binds = slapd.binds()
    for _ in range(10):
        with cm.connection() as conn:
            assert search(conn, slapd.people_dn, "(uid=*)") == all_people(slapd)
            assert slapd.client_connections() == 1
    assert slapd.client_connections() == 1
    assert slapd.binds() - binds == 1
    stats = cm.stats()
    assert (stats.opened, stats.reused, stats.checkouts) == (1, 9, 10)


def test_size_cap_holds_as_the_server_sees_it(slapd: Slapd, make_manager: ManagerFactory) -> None:
    size, threads, rounds = 4, 24, 20
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, size=size, pool_timeout=30)
    done = threading.Event()
    errors: list[BaseException] = []
    samples: list[int] = []

    def work(n: int) -> None:
        user = alice if n % 2 else bob
        try:
            for _ in range(rounds):
                with cm.connection(user.dn, user.password) as conn:
                    assert whoami(conn) == user.dn
        except BaseException as exc:
            errors.append(exc)

    def sample() -> None:
        while not done.is_set():
            samples.append(slapd.client_connections())

    sampler = threading.Thread(target=sample, daemon=True)
    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    sampler.start()
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    done.set()
    sampler.join(timeout=10)
    assert not any(w.is_alive() for w in workers), "workers still running after 60 s"
    assert errors == []
    assert len(samples) >= 10, f"only {len(samples)} samples while the workers ran"
    assert max(samples) <= size, f"server saw {max(samples)} connections, size={size}"
    assert slapd.client_connections() <= size
    assert cm.stats().checkouts == threads * rounds


def test_nothing_is_left_open_after_close(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=5)
    with contextlib.ExitStack() as stack:
        for _ in range(5):
            stack.enter_context(cm.connection())
        assert slapd.client_connections() == 5
    assert slapd.client_connections() == 5  # pooled, idle
    cm.close()
    wait_until(lambda: slapd.client_connections() == 0, message="server connections closed")
    assert len(cm) == 0
    with pytest.raises(PoolClosedError), cm.connection():
        pass


def test_close_closes_lent_connections_at_checkin(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw)
    with cm.connection() as conn:
        cm.close()
        assert whoami(conn) == slapd.root_dn  # still the holder's to use
    wait_until(lambda: slapd.client_connections() == 0, message="closed at checkin")


def test_purge_drops_idle_connections_of_that_identity(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, size=5)
    with cm.connection(alice.dn, alice.password), cm.connection(bob.dn, bob.password):
        pass
    assert sorted(slapd.client_identities()) == sorted([alice.dn, bob.dn])
    assert cm.purge(alice.dn) == 1
    wait_until(lambda: slapd.client_identities() == [bob.dn], message="alice's closed")
    with cm.connection(bob.dn, bob.password) as conn:
        assert whoami(conn) == bob.dn
    assert cm.stats().reused == 1  # bob's connection survived the purge


def test_purge_with_a_password_drops_only_that_identity(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, size=5)
    with cm.connection(alice.dn, alice.password):
        pass
    assert cm.purge(alice.dn, "another-password") == 0
    assert slapd.client_connections() == 1
    assert cm.purge(alice.dn, alice.password) == 1
    wait_until(lambda: slapd.client_connections() == 0, message="alice's closed")


def test_purge_drops_in_use_connections_at_checkin(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, size=5)
    with cm.connection(alice.dn, alice.password) as conn:
        assert cm.purge(alice.dn) == 0  # nothing idle to close now
        assert whoami(conn) == alice.dn  # the holder keeps a working connection
        assert slapd.client_connections() == 1
    wait_until(lambda: slapd.client_connections() == 0, message="closed at checkin")
    assert len(cm) == 0


def test_use_pool_false_opens_and_closes_a_connection_per_checkout(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_pool=False)
    binds = slapd.binds()
    seen: set[int] = set()
    for _ in range(3):
        with cm.connection() as conn:
            assert whoami(conn) == slapd.root_dn
            [number] = slapd.client_ids()
            seen.add(number)
        wait_until(lambda: slapd.client_connections() == 0, message="closed at checkin")
    assert len(seen) == 3
    assert slapd.binds() - binds == 3
    assert (cm.stats().opened, cm.stats().closed) == (3, 3)


def test_exception_in_block_returns_the_connection_to_the_pool(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw)
    with pytest.raises(KeyError), cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
        raise KeyError("the user's own bug")
    before = slapd.client_ids()
    assert len(before) == 1
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    assert slapd.client_ids() == before
    stats = cm.stats()
    assert (stats.opened, stats.reused, stats.lost) == (1, 1, 0)


def test_full_pool_waits_then_raises_max_connection_reached(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=1, pool_timeout=0.3)
    with cm.connection():
        started = time.monotonic()
        with pytest.raises(MaxConnectionReachedError), cm.connection():
            pass
        assert 0.25 <= time.monotonic() - started < 2.0
        assert slapd.client_connections() == 1
    with cm.connection() as conn:  # the slot is usable again
        assert whoami(conn) == slapd.root_dn


def test_full_pool_hands_a_returned_connection_to_the_waiter(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=1)
    got: list[str] = []
    holding = threading.Event()

    def waiter() -> None:
        holding.wait(5)
        with cm.connection() as conn:
            got.append(whoami(conn))

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    with cm.connection():
        holding.set()
        wait_until(lambda: cm.stats().waiting == 1, message="the other thread queued")
    thread.join(timeout=10)
    assert got == [slapd.root_dn]
    assert slapd.client_connections() == 1
    assert cm.stats().opened == 1


def test_full_pool_rebinds_an_idle_connection_of_another_identity(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, size=1, pool_timeout=0.5)
    with cm.connection(alice.dn, alice.password):
        pass
    before, binds = slapd.client_ids(), slapd.binds()
    with cm.connection(bob.dn, bob.password) as conn:
        assert whoami(conn) == bob.dn
        assert slapd.client_identities() == [bob.dn]
    assert slapd.client_ids() == before  # the same server connection, re-bound
    assert slapd.binds() - binds == 1
    assert cm.stats().rebinds == 1


def test_connection_past_max_lifetime_is_replaced(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, max_lifetime=0.2)
    with cm.connection():
        pass
    first = slapd.client_ids()
    opened_at = time.monotonic()
    wait_until(lambda: time.monotonic() - opened_at > 0.25, message="lifetime over")
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    wait_until(lambda: slapd.client_connections() == 1, message="the old one closed")
    assert slapd.client_ids().isdisjoint(first)
    assert cm.stats().expired == 1


def test_idle_connection_is_pinged_after_ping_after(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(
        slapd.ldap_uri, slapd.root_dn, slapd.root_pw, lifetime=LifetimePolicy(ping_after=0.1)
    )
    with cm.connection():
        pass
    idle_since = time.monotonic()
    wait_until(lambda: time.monotonic() - idle_since > 0.15, message="idle long enough")
    extended = slapd.completed("Extended")
    with cm.connection():
        pass
    assert slapd.completed("Extended") - extended == 1  # one WhoAmI on the wire
    assert cm.stats().pings == 1
    assert cm.stats().opened == 1
