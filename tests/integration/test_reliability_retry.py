"""Transparent retry of reads, never of writes (issue 4, item 2).

A connection that dies during an idempotent read (search, compare, WhoAmI, the root
DSE, the schema) is reconnected through the pool's retry and failover policies,
re-bound as the same identity, and the read is sent once more: the holder never sees
the failure. A write whose connection dies raises, is never sent again, and its
connection is discarded.

The fault is precise: the proxy resets the connection that carries the next request
of one LDAP operation, either before the server sees it (the request is lost) or
once the server answered it (the answer is lost: the server did the work). The
proxy counts the requests it forwarded, which is how "retried once" and "never
replayed" are checked; cn=Monitor counts what the server completed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ldap
import pytest

from ldappool import LDAPPoolError, RetryPolicy
from tests.integration.harness import (
    ManagerFactory,
    Op,
    ProxyFactory,
    Slapd,
    search,
    wait_until,
    whoami,
)

#: An operation on a native connection against ``slapd``.
Call = Callable[[Any, Slapd], object]
#: What a read must return on ``slapd``.
Expect = Callable[[Slapd], object]


def _dns(found: list[tuple[str | None, Any]]) -> list[str]:
    return sorted(dn for dn, _attrs in found if dn is not None)


def _ldap3_dns(conn: Any) -> list[str]:
    return sorted(
        str(item["dn"]) for item in conn.response or [] if item["type"] == "searchResEntry"
    )


def _alice(slapd: Slapd) -> str:
    return slapd.users["alice"].dn


# -- python-ldap: the synchronous reads the pool retries -------------------------------


def _pl_search_s(conn: Any, slapd: Slapd) -> object:
    return _dns(conn.search_s(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid"]))


def _pl_search_st(conn: Any, slapd: Slapd) -> object:
    found = conn.search_st(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid"], timeout=3)
    return _dns(found)


def _pl_search_ext_s(conn: Any, slapd: Slapd) -> object:
    found = conn.search_ext_s(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid"])
    return _dns(found)


def _pl_read_s(conn: Any, slapd: Slapd) -> object:
    entry = conn.read_s(_alice(slapd), attrlist=["uid"])
    return entry["uid"] if entry else None


def _pl_rootdse(conn: Any, slapd: Slapd) -> object:
    return conn.read_rootdse_s(attrlist=["namingContexts"])["namingContexts"]


def _pl_schema(conn: Any, slapd: Slapd) -> object:
    entry = conn.read_subschemasubentry_s("cn=Subschema", attrs=["cn"])
    return entry["cn"] if entry else None


def _pl_compare_s(conn: Any, slapd: Slapd) -> object:
    return conn.compare_s(_alice(slapd), "uid", b"alice")


def _pl_compare_ext_s(conn: Any, slapd: Slapd) -> object:
    return conn.compare_ext_s(_alice(slapd), "uid", b"alice")


def _pl_whoami_s(conn: Any, slapd: Slapd) -> object:
    return conn.whoami_s()


# -- ldap3: search, compare, WhoAmI ----------------------------------------------------


def _l3_search(conn: Any, slapd: Slapd) -> object:
    import ldap3

    conn.search(slapd.people_dn, "(uid=alice)", ldap3.SUBTREE, attributes=["uid"])
    return _ldap3_dns(conn)


def _l3_rootdse(conn: Any, slapd: Slapd) -> object:
    import ldap3

    conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["namingContexts"])
    return [v.encode() for v in conn.response[0]["attributes"]["namingContexts"]]


def _l3_schema(conn: Any, slapd: Slapd) -> object:
    import ldap3

    conn.search("cn=Subschema", "(objectClass=subschema)", ldap3.BASE, attributes=["cn"])
    return [v.encode() for v in conn.response[0]["attributes"]["cn"]]


def _l3_compare(conn: Any, slapd: Slapd) -> object:
    return conn.compare(_alice(slapd), "uid", "alice")


def _l3_whoami(conn: Any, slapd: Slapd) -> object:
    return conn.extend.standard.who_am_i()


READS: dict[str, list[tuple[str, Op, Call, Expect]]] = {
    "python-ldap": [
        ("search_s", Op.SEARCH, _pl_search_s, lambda s: [_alice(s)]),
        ("search_st", Op.SEARCH, _pl_search_st, lambda s: [_alice(s)]),
        ("search_ext_s", Op.SEARCH, _pl_search_ext_s, lambda s: [_alice(s)]),
        ("read_s", Op.SEARCH, _pl_read_s, lambda s: [b"alice"]),
        ("read_rootdse_s", Op.SEARCH, _pl_rootdse, lambda s: [s.suffix.encode()]),
        ("read_subschemasubentry_s", Op.SEARCH, _pl_schema, lambda s: [b"Subschema"]),
        ("compare_s", Op.COMPARE, _pl_compare_s, lambda s: True),
        ("compare_ext_s", Op.COMPARE, _pl_compare_ext_s, lambda s: True),
        ("whoami_s", Op.EXTENDED, _pl_whoami_s, lambda s: f"dn:{_alice(s)}"),
    ],
    "ldap3": [
        ("search", Op.SEARCH, _l3_search, lambda s: [_alice(s)]),
        ("search root DSE", Op.SEARCH, _l3_rootdse, lambda s: [s.suffix.encode()]),
        ("search schema", Op.SEARCH, _l3_schema, lambda s: [b"Subschema"]),
        ("compare", Op.COMPARE, _l3_compare, lambda s: True),
        ("who_am_i", Op.EXTENDED, _l3_whoami, lambda s: f"dn:{_alice(s)}"),
    ],
}
READ_CASES = [
    pytest.param(driver, read, op, call, expected, id=f"{driver}-{read}")
    for driver, reads in READS.items()
    for read, op, call, expected in reads
]
LOST = pytest.mark.parametrize("answered", [False, True], ids=["request-lost", "answer-lost"])


@LOST
@pytest.mark.parametrize(("driver", "read", "op", "call", "expected"), READ_CASES)
def test_read_is_retried_once_on_a_new_connection_bound_as_the_same_identity(
    read: str,
    op: Op,
    call: Call,
    expected: Expect,
    answered: bool,
    slapd: Slapd,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    alice = slapd.users["alice"]
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, alice.dn, alice.password)
    with cm.connection() as conn:
        proxy.cut_on(op, answered=answered)
        assert call(conn, slapd) == expected(slapd)
        assert proxy.trapped == 1, "the fault was not injected"
        assert proxy.requests[op] == 2, f"{read}: sent {proxy.requests[op]} times, not twice"
        # The same object the holder has, now on a new connection bound as alice.
        assert whoami(conn) == alice.dn
        wait_until(
            lambda: slapd.client_identities() == [alice.dn],
            message="one connection, bound as alice, the lost one closed",
        )
    assert proxy.accepted == 2
    assert cm.stats().recovered == 1
    with cm.connection() as conn:  # and the pool goes on with it
        assert search(conn, slapd.people_dn, "(uid=bob)") == [slapd.users["bob"].dn]
    assert len(cm) == slapd.client_connections() == 1


@pytest.mark.parametrize(("driver", "read", "op", "call", "expected"), READ_CASES)
def test_read_is_retried_only_once(
    read: str,
    op: Op,
    call: Call,
    expected: Expect,
    slapd: Slapd,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    alice = slapd.users["alice"]
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, alice.dn, alice.password)
    with pytest.raises(Exception) as excinfo, cm.connection() as conn:
        proxy.cut_on(op, count=2)
        call(conn, slapd)
    assert not isinstance(excinfo.value, AssertionError)
    assert proxy.requests[op] == 2, f"{read}: sent {proxy.requests[op]} times, not twice"
    assert cm.stats().recovered == 1
    assert len(cm) == 0, "a connection lost twice must not be pooled"
    wait_until(lambda: slapd.client_connections() == 0, message="no connection left")


def test_read_retry_fails_over_to_the_next_server(
    driver: str, fresh_slapd: Slapd, slapd: Slapd, make_manager: ManagerFactory
) -> None:
    """The first server dies while a connection to it is lent: the read goes on
    against the second one (same data, same root DN), per the failover policy."""
    primary, secondary = fresh_slapd, slapd
    cm = make_manager(
        f"{primary.ldap_uri} {secondary.ldap_uri}",
        primary.root_dn,
        primary.root_pw,
        retry=RetryPolicy(max_attempts=2, delay=0.0),
    )
    people = sorted(u.dn for u in primary.users.values())
    with cm.connection() as conn:
        assert primary.client_connections() == 1
        primary.halt()
        assert search(conn, primary.people_dn, "(uid=*)") == people
        assert whoami(conn) == primary.root_dn
        assert secondary.client_identities() == [primary.root_dn]
    stats = cm.stats()
    assert (stats.failovers, stats.recovered) == (1, 1)
    assert stats.connect_errors == 2  # max_attempts on the dead server, then the next


def test_read_retry_waits_for_a_restarting_server_per_the_retry_policy(
    driver: str, fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    """The only server is down when the read needs it: the retry policy's attempts
    bridge the outage, the read succeeds once the server is back."""
    alice = fresh_slapd.users["alice"]
    cm = make_manager(
        fresh_slapd.ldap_uri,
        alice.dn,
        alice.password,
        retry=RetryPolicy(max_attempts=100, delay=0.05),
    )
    results: list[object] = []
    with cm.connection() as conn:
        fresh_slapd.halt()

        def read() -> None:
            try:
                results.append(search(conn, fresh_slapd.people_dn, "(uid=alice)"))
            except BaseException as exc:
                results.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: cm.stats().connect_errors >= 2, message="attempts on a dead server")
        finally:
            fresh_slapd.start()  # from the main thread: see Slapd's _die_with_parent
        reader.join(timeout=10)
        assert not reader.is_alive()
        assert results == [[alice.dn]]
        assert whoami(conn) == alice.dn


@pytest.mark.parametrize("driver", ["python-ldap"])
def test_python_ldap_asynchronous_calls_are_not_retried(
    driver: str, slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    """Only the synchronous ``*_s`` reads are retried: a message id sent on a dead
    connection means nothing on a new one."""
    alice = slapd.users["alice"]
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, alice.dn, alice.password)
    with pytest.raises(ldap.SERVER_DOWN), cm.connection() as conn:
        proxy.cut_on(Op.SEARCH, answered=True)
        msgid = conn.search_ext(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=alice)")
        conn.result3(msgid)
    assert proxy.requests[Op.SEARCH] == 1
    assert len(cm) == 0


# -- writes ----------------------------------------------------------------------------


def _pl_add(conn: Any, slapd: Slapd) -> None:
    conn.add_s(f"uid=dave,{slapd.people_dn}", _new_entry())


def _pl_modify(conn: Any, slapd: Slapd) -> None:
    conn.modify_s(_alice(slapd), [(ldap.MOD_ADD, "description", [b"once"])])


def _pl_delete(conn: Any, slapd: Slapd) -> None:
    conn.delete_s(slapd.users["carol"].dn)


def _pl_rename(conn: Any, slapd: Slapd) -> None:
    conn.rename_s(slapd.users["carol"].dn, "uid=caroline")


def _pl_passwd(conn: Any, slapd: Slapd) -> None:
    conn.passwd_s(slapd.users["bob"].dn, None, "bob-new-secret")


def _l3_checked(conn: Any, ok: object) -> None:
    if ok is not True:
        raise RuntimeError(f"ldap3 write failed: {conn.result}")


def _l3_add(conn: Any, slapd: Slapd) -> None:
    attrs = {k: [v.decode() for v in vs] for k, vs in _new_entry()}
    _l3_checked(conn, conn.add(f"uid=dave,{slapd.people_dn}", attributes=attrs))


def _l3_modify(conn: Any, slapd: Slapd) -> None:
    import ldap3

    _l3_checked(conn, conn.modify(_alice(slapd), {"description": [(ldap3.MODIFY_ADD, ["once"])]}))


def _l3_delete(conn: Any, slapd: Slapd) -> None:
    _l3_checked(conn, conn.delete(slapd.users["carol"].dn))


def _l3_rename(conn: Any, slapd: Slapd) -> None:
    _l3_checked(conn, conn.modify_dn(slapd.users["carol"].dn, "uid=caroline"))


def _l3_passwd(conn: Any, slapd: Slapd) -> None:
    done = conn.extend.standard.modify_password(slapd.users["bob"].dn, None, "bob-new-secret")
    _l3_checked(conn, done)


def _new_entry() -> list[tuple[str, list[bytes]]]:
    return [
        ("objectClass", [b"inetOrgPerson"]),
        ("uid", [b"dave"]),
        ("cn", [b"dave"]),
        ("sn", [b"dave"]),
    ]


#: (name, request, cn=Monitor operation, python-ldap call, ldap3 call)
WRITES: list[tuple[str, Op, str, Call, Call]] = [
    ("add", Op.ADD, "Add", _pl_add, _l3_add),
    ("modify", Op.MODIFY, "Modify", _pl_modify, _l3_modify),
    ("delete", Op.DELETE, "Delete", _pl_delete, _l3_delete),
    ("rename", Op.MODDN, "Modrdn", _pl_rename, _l3_rename),
    ("password-modify", Op.EXTENDED, "Extended", _pl_passwd, _l3_passwd),
]


@LOST
@pytest.mark.parametrize(
    ("write", "op", "monitor", "python_ldap", "ldap3_"),
    [pytest.param(*w, id=w[0]) for w in WRITES],
)
def test_write_is_never_replayed_and_its_connection_is_discarded(
    driver: str,
    write: str,
    op: Op,
    monitor: str,
    python_ldap: Call,
    ldap3_: Call,
    answered: bool,
    fresh_slapd: Slapd,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
) -> None:
    proxy = proxy_factory(fresh_slapd)
    cm = make_manager(proxy.uri, fresh_slapd.root_dn, fresh_slapd.root_pw)
    call = python_ldap if driver == "python-ldap" else ldap3_
    with cm.connection():
        pass
    done_before = fresh_slapd.completed(monitor)
    with pytest.raises(Exception) as excinfo, cm.connection() as conn:
        proxy.cut_on(op, answered=answered)
        call(conn, fresh_slapd)
    error = excinfo.value
    assert not isinstance(error, (AssertionError, LDAPPoolError, RuntimeError)), repr(error)
    assert proxy.trapped == 1
    assert proxy.requests[op] == 1, f"{write} sent {proxy.requests[op]} times"
    assert fresh_slapd.completed(monitor) - done_before == (1 if answered else 0)
    assert len(cm) == 0, "the connection that lost a write must be discarded"
    assert (cm.stats().lost, cm.stats().recovered) == (1, 0)
    wait_until(lambda: fresh_slapd.client_connections() == 0, message="lost connection closed")


# -- paged searches ---------------------------------------------------------------------


def test_a_later_page_of_a_paged_search_is_not_retried(
    slapd: Slapd, make_manager: ManagerFactory, proxy_factory: ProxyFactory
) -> None:
    """A paging cookie means nothing on another connection: retrying the page would
    only turn the lost connection into a protocol error."""
    alice = slapd.users["alice"]
    proxy = proxy_factory(slapd)
    cm = make_manager(proxy.uri, alice.dn, alice.password)
    with pytest.raises(Exception) as excinfo, cm.connection() as conn:
        if cm.driver.name == "python-ldap":
            from ldap.controls import SimplePagedResultsControl

            page = SimplePagedResultsControl(True, size=1, cookie=b"")
            msgid = conn.search_ext(
                slapd.people_dn, ldap.SCOPE_ONELEVEL, "(uid=*)", ["uid"], serverctrls=[page]
            )
            _, _, _, answer = conn.result3(msgid)
            page.cookie = answer[0].cookie
            assert page.cookie
            proxy.cut_on(Op.SEARCH)
            conn.search_ext_s(
                slapd.people_dn, ldap.SCOPE_ONELEVEL, "(uid=*)", ["uid"], serverctrls=[page]
            )
        else:
            conn.search(slapd.people_dn, "(uid=*)", search_scope="LEVEL", paged_size=1)
            cookie = conn.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
            assert cookie
            proxy.cut_on(Op.SEARCH)
            conn.search(
                slapd.people_dn, "(uid=*)", search_scope="LEVEL", paged_size=1, paged_cookie=cookie
            )
    assert (
        cm.driver.classify(excinfo.value).name == "DOWN"
    )  # the loss itself, not a protocol error
    assert proxy.requests[Op.SEARCH] == 2  # page 1, and page 2 once
    assert (cm.stats().recovered, len(cm)) == (0, 0)
