"""Programs written for ldappool 3.x, in the shapes their public code has, on a real slapd.

keystone's PooledLDAPHandler, pyramid_ldap's and kinto-ldap's login checks, Flask apps'
``StateConnector + ResultProcessor`` classes. Each shape is reproduced here as it uses
the pool (not copied): the calls, the ``except`` clauses and the attribute reads.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
import weakref
from typing import Any

import ldap
import ldap.resiter
import ldap3
import pytest
from ldap3.core import exceptions as lx

import ldappool
from ldappool import BackendError, ConnectionManager, InvalidCredentialsError, StateConnector
from tests.integration.harness import ManagerFactory, Slapd, search, whoami


class KeystoneStyleHandler:
    """keystone's PooledLDAPHandler, as it uses the pool."""

    Connector = ldappool.StateConnector

    def __init__(self, manager: ConnectionManager) -> None:
        self.pool = manager
        self.who, self.cred = "", ""
        self.conn_options = {ldap.OPT_DEREF: ldap.DEREF_NEVER, ldap.OPT_REFERRALS: 0}

    def _apply_options(self, conn: Any) -> None:
        if conn.get_lifetime() > 30:  # already has them
            return
        for option, value in self.conn_options.items():
            conn.set_option(option, value)

    def simple_bind_s(self, who: str, cred: str) -> None:
        self.who, self.cred = who, cred
        with self.pool.connection(self.who, self.cred) as conn:
            self._apply_options(conn)

    def search_ext(self, base: str, scope: int, filterstr: str) -> tuple[Any, Any, Any]:
        context = self.pool.connection(self.who, self.cred)
        conn = context.__enter__()
        try:
            msgid = conn.search_ext(base, scope, filterstr, ["uid"])
        except Exception:
            context.__exit__(*sys.exc_info())
            raise
        return msgid, conn, context

    def result3(self, message: tuple[Any, Any, Any]) -> Any:
        msgid, conn, context = message
        try:
            return conn.result3(msgid, 1, None)
        finally:
            context.__exit__(None, None, None)


def keystone_manager(slapd: Slapd, **kwargs: Any) -> ConnectionManager:
    return ConnectionManager(
        slapd.ldap_uri,
        size=kwargs.pop("size", 10),
        retry_max=3,
        retry_delay=0.1,
        timeout=-1,
        connector_cls=KeystoneStyleHandler.Connector,
        use_tls=False,
        max_lifetime=600,
        **kwargs,
    )


def test_keystone_style_handler(slapd: Slapd) -> None:
    with keystone_manager(slapd) as cm:
        handler = KeystoneStyleHandler(cm)
        handler.simple_bind_s(slapd.root_dn, slapd.root_pw)
        message = handler.search_ext(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=alice)")
        assert message[1].active
        _, found, _, _ = handler.result3(message)
        assert [dn for dn, _ in found] == [slapd.users["alice"].dn]
        assert not message[1].active and len(cm) == 1
        with cm.connection(slapd.root_dn, slapd.root_pw) as conn:
            assert conn is message[1]
            assert 0 < conn.get_lifetime() < 30
            assert conn.get_option(ldap.OPT_DEREF) == ldap.DEREF_NEVER
        alice = slapd.users["alice"]
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            handler.simple_bind_s(alice.dn, "wrong")  # keystone: AssertionError for the user
        assert cm.stats().invalid_credentials == 1


def test_keystone_style_search_ext_error_returns_the_connection(slapd: Slapd) -> None:
    with keystone_manager(slapd, size=1, pool_timeout=1.0) as cm:
        handler = KeystoneStyleHandler(cm)
        handler.simple_bind_s(slapd.root_dn, slapd.root_pw)
        for _ in range(3):
            with pytest.raises(ldap.FILTER_ERROR):
                handler.search_ext(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=")
            assert len(cm) == 1 and cm.stats().in_use == 0
        assert slapd.client_connections() == 1


def test_keystone_style_message_released_by_its_finalizer(slapd: Slapd) -> None:
    """keystone releases an unread search's connection from a weakref finalizer."""

    class Message:
        pass

    with keystone_manager(slapd, size=1) as cm:
        handler = KeystoneStyleHandler(cm)
        handler.simple_bind_s(slapd.root_dn, slapd.root_pw)
        message = Message()
        _, conn, context = handler.search_ext(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=*)")
        weakref.finalize(message, context.__exit__, None, None, None)
        assert conn.active
        del message
        assert not conn.active and cm.stats().in_use == 0


def test_state_connector_with_result_processor_allresults(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    class Connector(ldappool.StateConnector, ldap.resiter.ResultProcessor):  # type: ignore[misc]
        pass

    cm = ConnectionManager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, connector_cls=Connector)
    try:
        with cm.connection() as conn:
            assert isinstance(conn, Connector)
            msgid = conn.search(slapd.people_dn, ldap.SCOPE_SUBTREE, "(uid=*)", ["uid"])
            found = [dn for _, data, _, _ in conn.allresults(msgid) for dn, _ in data]
            assert sorted(found) == sorted(u.dn for u in slapd.users.values())
            assert conn.connected and conn.who == slapd.root_dn and conn.cred is None
    finally:
        cm.close()


def test_pyramid_ldap_style_login(slapd: Slapd, driver: str) -> None:
    """pyramid_ldap: look the user up with the service identity, then bind as them; a
    failed login is whatever the driver's base error class catches."""
    base_error: type[Exception] = ldap.LDAPError if driver == "python-ldap" else lx.LDAPException
    cm = ConnectionManager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, 10, 3, 0.1, False, -1,
                           use_pool=True, driver=driver)  # fmt: skip

    def authenticate(login: str, password: str) -> str | None:
        with cm.connection() as conn:
            found = search(conn, slapd.people_dn, f"(uid={login})")
        if len(found) != 1:
            return None
        try:
            with cm.connection(found[0], password):
                return found[0]
        except base_error:
            return None

    try:
        alice = slapd.users["alice"]
        assert authenticate("alice", alice.password) == alice.dn
        assert authenticate("alice", "wrong") is None
        assert authenticate("nobody", "x") is None
    finally:
        cm.close()


def test_kinto_ldap_style_except_order(slapd: Slapd, make_manager: ManagerFactory) -> None:
    """kinto-ldap: ``except BackendError`` (logged as an outage) comes first, then
    ``except INVALID_CREDENTIALS`` (a wrong password, cached as such)."""
    cm = make_manager(slapd.ldap_uri, driver="python-ldap")

    def check(dn: str, password: str) -> str:
        try:
            with cm.connection(dn, password):
                return "ok"
        except BackendError:
            return "outage"
        except ldap.INVALID_CREDENTIALS:
            return "wrong password"

    alice = slapd.users["alice"]
    assert check(alice.dn, alice.password) == "ok"
    assert check(alice.dn, "wrong") == "wrong password"
    slapd.stop()
    try:
        assert check(alice.dn, alice.password) == "outage"
    finally:
        slapd.start()


def test_errors_are_also_the_drivers_own(
    slapd: Slapd, make_manager: ManagerFactory, driver: str
) -> None:
    cm = make_manager(slapd.ldap_uri, retry_max=1, retry_delay=0)
    alice = slapd.users["alice"]
    wrong, down = (
        (ldap.INVALID_CREDENTIALS, ldap.SERVER_DOWN)
        if driver == "python-ldap"
        else (lx.LDAPInvalidCredentialsResult, lx.LDAPCommunicationError)
    )
    with pytest.raises(wrong) as bad, cm.connection(alice.dn, "wrong"):
        pass
    assert isinstance(bad.value, InvalidCredentialsError)
    if driver == "python-ldap":
        assert bad.value.args[0]["desc"] == "Invalid credentials"
    else:
        assert bad.value.result == 49  # type: ignore[attr-defined]
    assert "wrong" not in str(bad.value) and "refused the credentials" in str(bad.value)
    slapd.stop()
    try:
        with pytest.raises(down) as lost, cm.connection(alice.dn, alice.password):
            pass
        assert isinstance(lost.value, ldappool.ServerDownError)
    finally:
        slapd.start()


def test_size_changed_under_load_holds_the_cap(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=6, pool_timeout=30)
    stop = threading.Event()
    errors: list[BaseException] = []
    peaks: list[tuple[int, int]] = []  # (size at the time, connections the server saw)

    def work() -> None:
        try:
            while not stop.is_set():
                with cm.connection() as conn:
                    whoami(conn)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(12)]
    for worker in workers:
        worker.start()
    try:
        for size in (6, 2, 4, 1, 3):
            cm.size = size
            settle = time.monotonic() + 5
            while len(cm) > size and time.monotonic() < settle:  # lent extras come back
                time.sleep(0.01)
            for _ in range(30):
                peaks.append((size, slapd.client_connections()))
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert errors == []
    assert all(seen <= size for size, seen in peaks), peaks
    assert slapd.client_connections() <= 3


def test_size_change_on_ldap3_too(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=2, driver="ldap3")
    with cm.connection() as a, cm.connection() as b:
        assert isinstance(a, ldap3.Connection) and a.active and b.active
        assert a.get_lifetime() >= 0
        cm.size = 1
    assert len(cm) == 1 and slapd.client_connections() == 1


def test_process_wide_tls_options_apply_without_tls_arguments(slapd: Slapd) -> None:
    """keystone sets the CA and tls_req_cert with ldap.set_option, as 3.x wanted."""
    saved = {opt: ldap.get_option(opt) for opt in (ldap.OPT_X_TLS_CACERTFILE,
                                                   ldap.OPT_X_TLS_REQUIRE_CERT)}  # fmt: skip
    try:
        ldap.set_option(ldap.OPT_X_TLS_CACERTFILE, slapd.ca_file)
        ldap.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        ldap.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        with ConnectionManager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_tls=True,
                               retry_max=1, timeout=5) as cm:  # fmt: skip
            with cm.connection() as conn:
                assert whoami(conn) == slapd.root_dn
        ldap.set_option(ldap.OPT_X_TLS_CACERTFILE, ssl.get_default_verify_paths().cafile or "")
        ldap.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        with ConnectionManager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_tls=True,
                               retry_max=1, timeout=5) as cm:  # fmt: skip
            with pytest.raises(BackendError), cm.connection():  # our CA is not trusted now
                pass
            # A tls_* argument: the manager's own context, whatever the globals say.
        with ConnectionManager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_tls=True,
                               tls_ca_file=slapd.ca_file, timeout=5) as cm:  # fmt: skip
            with cm.connection() as conn:
                assert whoami(conn) == slapd.root_dn
    finally:
        for option, value in saved.items():  # a CA file cannot be unset: the system's
            ldap.set_option(option, value or ssl.get_default_verify_paths().cafile or "")
        ldap.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    assert slapd.client_connections() == 0


def test_holder_options_survive_a_reconnect_under_a_read(fresh_slapd: Slapd) -> None:
    cm = ConnectionManager(fresh_slapd.ldap_uri, fresh_slapd.root_dn, fresh_slapd.root_pw,
                           connector_cls=StateConnector, timeout=5)  # fmt: skip
    try:
        with cm.connection() as conn:
            conn.set_option(ldap.OPT_DEREF, ldap.DEREF_ALWAYS)
            conn.sizelimit = 7
            handle, before = conn._l, conn.get_lifetime()
            fresh_slapd.restart()
            assert whoami(conn) == fresh_slapd.root_dn  # retried on a new transport
            assert conn._l is not handle
            assert conn.get_option(ldap.OPT_DEREF) == ldap.DEREF_ALWAYS
            assert conn.get_option(ldap.OPT_SIZELIMIT) == 7
            assert conn.get_lifetime() < before + 1  # bound anew
        assert cm.stats().recovered == 1
    finally:
        cm.close()


def test_a_plain_ldapobject_connector_cls_keeps_the_pools_promises(fresh_slapd: Slapd) -> None:
    """A SimpleLDAPObject subclass (not a StateConnector): liveness, read retry, cap."""

    class Connector(ldap.ldapobject.SimpleLDAPObject, ldap.resiter.ResultProcessor):  # type: ignore[misc]
        def __init__(self, uri: str, **kwargs: Any) -> None:
            super().__init__(uri, **kwargs)
            self.made_by_me = True

    cm = ConnectionManager(fresh_slapd.ldap_uri, fresh_slapd.root_dn, fresh_slapd.root_pw,
                           2, 3, 0.1, False, 5, Connector)  # fmt: skip
    try:
        with cm.connection() as conn:
            assert isinstance(conn, Connector) and conn.made_by_me and conn.active
            fresh_slapd.restart()
            assert whoami(conn) == fresh_slapd.root_dn  # the read is retried
        assert cm.stats().recovered == 1
        fresh_slapd.restart()  # closes the idle connection: noticed at checkout
        with cm.connection() as conn:
            msgid = conn.search(fresh_slapd.people_dn, ldap.SCOPE_ONELEVEL, "(uid=*)")
            assert len([1 for _, data, _, _ in conn.allresults(msgid) for _ in data]) == 3
        assert cm.stats().stale == 1
    finally:
        cm.close()
