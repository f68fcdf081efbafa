"""len(cm), str(cm), repr(cm) and stats() against what the server sees."""

from __future__ import annotations

import contextlib
import logging

import pytest

from ldappool import InvalidCredentialsError
from tests.integration.harness import ManagerFactory, Slapd


def test_len_counts_the_connections_the_pool_holds(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=3)
    assert len(cm) == 0
    with cm.connection():
        assert len(cm) == 1
        with cm.connection():
            assert len(cm) == 2 == slapd.client_connections()
    assert len(cm) == 2 == slapd.client_connections()  # idle, still held
    cm.close()
    assert len(cm) == 0


def test_str_is_a_table_of_slots(slapd: Slapd, make_manager: ManagerFactory) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=3, max_lifetime=600)
    with cm.connection(alice.dn, alice.password):
        with cm.connection():
            table = str(cm)
        idle_table = str(cm)
    header = table.splitlines()[1]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == [
        "Slot (3 max)",
        "Connected",
        "Active",
        "URI",
        "Lifetime (600 max)",
        "Bind DN",
    ]
    assert alice.dn in table and slapd.root_dn in table
    assert slapd.ldap_uri in table
    assert table.count(" active ") == 2
    assert idle_table.count(" inactive ") == 1 and idle_table.count(" active ") == 1


def test_repr_str_and_logs_never_show_a_password(
    slapd: Slapd, make_manager: ManagerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=1)
    with cm.connection(alice.dn, alice.password):
        shown = [repr(cm), str(cm), repr(cm.stats())]
        lease = cm.connection(alice.dn, alice.password)
        shown.append(repr(lease))
    # A wrong password on the rebind path (size=1: alice's idle connection), then on
    # a new connection (the failed rebind closed it).
    for who in (alice.dn, slapd.root_dn):
        with contextlib.suppress(InvalidCredentialsError), cm.connection(who, "wrong-secret"):
            pass
    shown += [repr(cm), str(cm), caplog.text]
    for text in shown:
        for secret in (slapd.root_pw, alice.password, "wrong-secret"):
            assert secret not in text, f"{secret!r} shown in {text!r}"
    assert len(repr(cm)) < 200


def test_stats_counters_move_as_expected(slapd: Slapd, make_manager: ManagerFactory) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=2)
    start = cm.stats()
    assert (start.size, start.connections, start.checkouts, start.opened) == (2, 0, 0, 0)
    with cm.connection():
        during = cm.stats()
        assert (during.connections, during.in_use, during.idle) == (1, 1, 0)
    with cm.connection():
        pass
    with cm.connection(alice.dn, alice.password):
        pass
    after = cm.stats()
    assert (after.checkouts, after.opened, after.reused) == (3, 2, 1)
    assert (after.connections, after.in_use, after.idle) == (2, 0, 2)
    with cm.connection(bob.dn, bob.password):  # the pool is full: rebind the LRU idle one
        pass
    assert (cm.stats().rebinds, cm.stats().opened) == (1, 2)
    with pytest.raises(InvalidCredentialsError), cm.connection(alice.dn, "wrong"):
        pass
    cm.close()
    final = cm.stats()
    assert final.connections == 0
    assert final.closed == final.opened
    assert final.invalid_credentials == 1
    assert slapd.binds() > 0
