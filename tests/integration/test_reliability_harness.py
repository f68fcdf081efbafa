"""The fault harness additions, checked with raw python-ldap (no ldappool involved).

The reliability tests count on them: the proxy's operation traps, the port where
connects hang, and halting a server without losing its data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import ldap
import pytest

from tests.integration.harness import FaultProxy, Op, SilentListener, Slapd, request_ops

TIMEOUT = 0.5


@pytest.fixture
def proxy(slapd: Slapd) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", slapd.port) as proxied:
        yield proxied


@pytest.fixture
def root_conn(slapd: Slapd, proxy: FaultProxy) -> Iterator[ldap.ldapobject.LDAPObject]:
    conn = ldap.initialize(proxy.uri)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
    conn.simple_bind_s(slapd.root_dn, slapd.root_pw)
    yield conn
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def test_request_ops_reads_the_operation_of_each_message() -> None:
    # An anonymous bind (id 1) then an unbind (id 2), as libldap encodes them.
    bind = bytes.fromhex("300c020101600702010304008000")
    unbind = bytes.fromhex("30050201024200")
    assert request_ops(bind + unbind) == [Op.BIND, Op.UNBIND]
    assert request_ops(b"") == request_ops(b"\x00junk") == []


def test_trap_drops_the_request_with_its_connection(
    slapd: Slapd, proxy: FaultProxy, root_conn: ldap.ldapobject.LDAPObject
) -> None:
    proxy.cut_on(Op.SEARCH)
    with pytest.raises(ldap.SERVER_DOWN):
        root_conn.search_s(slapd.suffix, ldap.SCOPE_BASE)
    assert (proxy.trapped, proxy.requests[Op.SEARCH], proxy.live()) == (1, 1, 0)


def test_answered_trap_lets_the_server_act_and_loses_the_answer(
    fresh_slapd: Slapd,
) -> None:
    with FaultProxy("127.0.0.1", fresh_slapd.port) as proxy:
        conn = ldap.initialize(proxy.uri)
        conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
        conn.simple_bind_s(fresh_slapd.root_dn, fresh_slapd.root_pw)
        done = fresh_slapd.completed("Modify")
        proxy.cut_on(Op.MODIFY, answered=True)
        dn = fresh_slapd.users["alice"].dn
        with pytest.raises(ldap.SERVER_DOWN):
            conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [b"done"])])
        assert fresh_slapd.completed("Modify") == done + 1
        with fresh_slapd.admin() as admin:
            [(_dn, found)] = admin.search_s(dn, ldap.SCOPE_BASE, attrlist=["description"])
        assert found["description"] == [b"done"]


def test_trap_counts_down_then_disarms(
    slapd: Slapd, proxy: FaultProxy, root_conn: ldap.ldapobject.LDAPObject
) -> None:
    proxy.cut_on(Op.COMPARE, count=1)
    root_conn.search_s(slapd.suffix, ldap.SCOPE_BASE)  # another operation: untouched
    with pytest.raises(ldap.SERVER_DOWN):
        root_conn.compare_s(slapd.root_dn, "cn", b"Manager")
    conn = ldap.initialize(proxy.uri)
    conn.simple_bind_s(slapd.root_dn, slapd.root_pw)
    assert conn.whoami_s() == f"dn:{slapd.root_dn}"  # the trap fired once, no more
    conn.unbind_s()


def test_connects_to_a_silent_listener_hang_until_the_timeout() -> None:
    with SilentListener() as silent:
        conn = ldap.initialize(silent.uri)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
        started = time.monotonic()
        with pytest.raises(ldap.SERVER_DOWN):
            conn.simple_bind_s("", "")
        assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 1


def test_halt_keeps_ports_and_data(fresh_slapd: Slapd) -> None:
    port, dn = fresh_slapd.port, fresh_slapd.add_user("dave", "dave-secret")
    fresh_slapd.halt()
    assert not fresh_slapd.running
    fresh_slapd.start()
    assert fresh_slapd.port == port
    conn = ldap.initialize(fresh_slapd.ldap_uri)
    conn.simple_bind_s(dn, "dave-secret")
    conn.unbind_s()
