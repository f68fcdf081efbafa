"""A checkout is bound as whoever asked: on the connection and as the server sees it."""

from __future__ import annotations

import threading
import time

from tests.integration.harness import ManagerFactory, Slapd, whoami


def test_identities_never_mix(slapd: Slapd, make_manager: ManagerFactory) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, size=1)
    for _ in range(5):
        for user in (alice, bob):
            with cm.connection(user.dn, user.password) as conn:
                assert whoami(conn) == user.dn
                assert slapd.client_identities() == [user.dn]
    assert slapd.client_connections() == 1  # one connection, re-bound each time


def test_default_identity_and_explicit_ones_never_mix(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=2)
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    with cm.connection(alice.dn, alice.password) as conn:
        assert whoami(conn) == alice.dn
    with cm.connection() as conn:
        assert whoami(conn) == slapd.root_dn


def test_anonymous_checkout_is_anonymous(slapd: Slapd, make_manager: ManagerFactory) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, size=1)
    with cm.connection(alice.dn, alice.password):
        pass
    with cm.connection() as conn:  # no default identity: an anonymous bind
        assert whoami(conn) == ""
        assert slapd.client_identities() == [""]


def test_identities_never_mix_under_threads(slapd: Slapd, make_manager: ManagerFactory) -> None:
    users = [slapd.users[uid] for uid in ("alice", "bob", "carol")]
    cm = make_manager(slapd.ldap_uri, size=2, pool_timeout=30)
    holders: dict[int, int] = {}  # id(native connection) -> thread number while lent
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        user = users[n % len(users)]
        try:
            for _ in range(10):
                with cm.connection(user.dn, user.password) as conn:
                    with lock:
                        assert id(conn) not in holders, "one connection lent to two holders"
                        holders[id(conn)] = n
                    try:
                        assert whoami(conn) == user.dn
                    finally:
                        with lock:
                            del holders[id(conn)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(9)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert slapd.client_connections() <= 2
