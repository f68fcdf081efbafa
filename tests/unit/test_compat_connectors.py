"""``StateConnector`` and ``connector_cls``, without a server: what 3.x programs read and pass.

The duck-typed class below has the shape of keystone's test double (``FakeLdapPool``):
not an LDAPObject, any URI scheme, built as ``cls(uri, retry_max=, retry_delay=)``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import ldap
import ldap.ldapobject
import ldap.resiter
import ldap3
import pytest

import ldappool
from ldappool import ConnectionManager, MaxConnectionReachedError, StateConnector
from ldappool._drivers.ldap3 import Ldap3Driver, PooledConnection
from ldappool._drivers.python_ldap import PythonLdapConnection, PythonLdapDriver

NOWHERE = "ldap://127.0.0.1:9"


class DuckConnector:
    """Speaks the part of python-ldap's API that 3.x used, and keeps a log of it."""

    made: list[DuckConnector] = []  # noqa: RUF012

    def __init__(self, uri: str, retry_max: int | None = None, retry_delay: float | None = None):
        self.uri, self.retry = uri, (retry_max, retry_delay)
        self.connected: bool | None = None
        self.calls: list[str] = []
        self.timeout: float | None = None
        DuckConnector.made.append(self)

    def simple_bind_s(self, who: str | None = None, cred: str | None = None) -> None:
        if cred == "wrong":
            raise ldap.INVALID_CREDENTIALS({"desc": "Invalid credentials"})
        self.calls.append(f"bind {who}")

    def start_tls_s(self) -> None:
        self.calls.append("starttls")

    def search_s(self, base: str, scope: int, filterstr: str = "(objectClass=*)") -> list[Any]:
        return [(base, {})]

    def unbind_ext_s(self) -> None:
        self.calls.append("unbind")


@pytest.fixture
def duck_cm() -> Any:
    DuckConnector.made.clear()
    managers: list[ConnectionManager] = []

    def make(**kwargs: Any) -> ConnectionManager:
        kwargs.setdefault("connector_cls", DuckConnector)
        cm = ConnectionManager("fakepool://memory", "cn=Admin", "password", **kwargs)
        managers.append(cm)
        return cm

    yield make
    for cm in managers:
        cm.close()


def test_state_connector_is_exported_and_is_an_ldapobject() -> None:
    assert ldappool.StateConnector is StateConnector
    assert issubclass(StateConnector, ldap.ldapobject.SimpleLDAPObject)
    assert not issubclass(StateConnector, ldap.ldapobject.ReconnectLDAPObject)
    assert "StateConnector" in ldappool.__all__


def test_state_connector_surface_before_any_bind() -> None:
    conn = StateConnector(NOWHERE, retry_max=3, retry_delay=0.1)
    assert (conn.connected, conn.who, conn.cred, conn.active) == (False, "", None, False)
    assert conn.get_lifetime() == 0
    assert (conn._retry_max, conn._retry_delay) == (3, 0.1)
    assert "disconnected" in str(conn)
    conn.unbind_ext()


def test_state_connector_never_keeps_a_password() -> None:
    conn = StateConnector(NOWHERE)
    conn.cred = "s3cret"  # what a 3.x subclass's simple_bind_s might do
    assert conn.cred is None
    assert "s3cret" not in repr(vars(conn))
    conn.unbind_ext()


def test_reconnect_ldap_objects_apply_method_s_is_a_plain_call() -> None:
    conn = StateConnector(NOWHERE)
    calls: list[tuple[object, ...]] = []
    assert conn._apply_method_s(lambda *args: calls.append(args) or "done", 1, 2) == "done"
    assert calls == [(conn, 1, 2)]
    conn.unbind_ext()


def test_holder_setting_connected_false_closes_it_at_checkin() -> None:
    conn = PythonLdapConnection(StateConnector(NOWHERE), NOWHERE)
    assert not conn.identity_changed()
    conn.native.connected = False
    assert conn.identity_changed()
    conn.close()


def test_options_set_by_the_holder_are_recorded_for_a_new_transport() -> None:
    conn = StateConnector(NOWHERE)
    conn.set_option(ldap.OPT_DEREF, ldap.DEREF_ALWAYS)
    conn.sizelimit = 7  # an option attribute: set_option too
    assert conn._ldappool_options[ldap.OPT_DEREF] == ldap.DEREF_ALWAYS
    assert conn._ldappool_options[ldap.OPT_SIZELIMIT] == 7
    conn.unbind_ext()


def test_an_ldapobject_connector_cls_gets_state_connector_mixed_in_under_it() -> None:
    class WithResults(ldap.ldapobject.SimpleLDAPObject, ldap.resiter.ResultProcessor):  # type: ignore[misc]
        def search_ext_s(self, *args: Any, **kwargs: Any) -> Any:
            return "own"

    driver = PythonLdapDriver(connector_cls=WithResults)
    cls = driver.connector_cls
    assert issubclass(cls, WithResults) and issubclass(cls, StateConnector)
    assert cls.__mro__.index(WithResults) < cls.__mro__.index(StateConnector)
    assert PythonLdapDriver(connector_cls=WithResults).connector_cls is cls  # made once
    native = cls(NOWHERE)
    assert native.search_ext_s("dc=x", 0) == "own"  # its own methods come first
    native.unbind_ext()


def test_a_state_connector_subclass_is_used_as_it_is() -> None:
    class Connector(StateConnector, ldap.resiter.ResultProcessor):  # type: ignore[misc]
        pass

    assert PythonLdapDriver(connector_cls=Connector).connector_cls is Connector


def test_reconnect_ldap_object_is_refused() -> None:
    with pytest.raises(TypeError, match="replays writes"):
        PythonLdapDriver(connector_cls=ldap.ldapobject.ReconnectLDAPObject)


def test_connector_cls_must_be_a_class() -> None:
    with pytest.raises(TypeError, match="connector_cls"):
        ConnectionManager(NOWHERE, connector_cls="StateConnector")  # type: ignore[arg-type]


def test_ldap3_connector_cls_must_be_an_ldap3_connection() -> None:
    with pytest.raises(TypeError, match=r"ldap3\.Connection subclass"):
        ConnectionManager(NOWHERE, connector_cls=StateConnector, driver="ldap3")

    class Mine(ldap3.Connection):  # type: ignore[misc]
        pass

    cls = Ldap3Driver(connector_cls=Mine).connector_cls
    assert issubclass(cls, Mine) and issubclass(cls, PooledConnection)


def test_connector_cls_is_refused_with_a_driver_object() -> None:
    with pytest.raises(TypeError, match="connector_cls"):
        ConnectionManager(NOWHERE, connector_cls=StateConnector, driver=PythonLdapDriver())


def test_duck_connector_is_built_and_driven_the_3x_way(duck_cm: Any) -> None:
    cm = duck_cm(retry_max=2, retry_delay=0.0, use_tls=True, timeout=3)
    with cm.connection() as conn:
        assert isinstance(conn, DuckConnector)
        assert (conn.uri, conn.retry, conn.timeout) == ("fakepool://memory", (2, 0.0), 3)
        assert conn.calls == ["starttls", "bind cn=Admin"]
        assert conn.active
        assert conn.search_s("dc=x", ldap.SCOPE_BASE) == [("dc=x", {})]
    assert not conn.active
    assert conn.connected  # set after the bind: it stays pooled
    with cm.connection() as again:
        assert again is conn
    cm.close()
    assert conn.calls[-1] == "unbind"


def test_duck_connector_not_connected_is_closed_at_checkin(duck_cm: Any) -> None:
    cm = duck_cm(size=3)
    for _ in range(2):  # keystone's test_pool_size_expands_correctly, in short
        with cm.connection() as c1:
            c1.connected = False
            with cm.connection() as c2:
                assert len(cm) == 2
                c2.connected = False
    assert len(cm) == 0
    assert [c.calls[-1] for c in DuckConnector.made] == ["unbind"] * 4


def test_duck_connector_cap_and_size_change(duck_cm: Any) -> None:
    cm = duck_cm(pool_timeout=0.0)
    cm.size = 2  # keystone's test_max_connection_error_raised
    with cm.connection(), cm.connection(), pytest.raises(MaxConnectionReachedError):
        with cm.connection():
            pass
    cm.size = 10
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(cm.connection())
        assert len(cm) == 3


def test_duck_connector_wrong_password_is_ldaps_own_error(duck_cm: Any) -> None:
    cm = duck_cm()
    with pytest.raises(ldap.INVALID_CREDENTIALS) as info, cm.connection("cn=x", "wrong"):
        pass
    assert isinstance(info.value, ldappool.InvalidCredentialsError)
    assert info.value.args[0]["desc"] == "Invalid credentials"
    assert len(cm) == 0
