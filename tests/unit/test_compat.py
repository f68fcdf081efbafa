"""ldappool 3.x's manager surface: live attributes, resizing, errors, positional arguments."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable

import pytest

from ldappool import (
    BackendError,
    ConnectionManager,
    ErrorKind,
    InvalidCredentialsError,
    LDAPPoolError,
    MaxConnectionReachedError,
    RetryPolicy,
    ServerDownError,
)
from ldappool._errors import driver_flavoured
from tests.unit.fakes import FakeDriver, FakeServer, live_connections
from tests.unit.polling import eventually

MakeCM = Callable[..., ConnectionManager]


def test_the_positional_arguments_are_3x_ones(driver: FakeDriver) -> None:
    # uri, bind, passwd, size, retry_max, retry_delay, use_tls, timeout, connector_cls,
    # use_pool, max_lifetime
    cm = ConnectionManager(
        "ldap://a", "cn=svc", "svc-secret", 4, 2, 0.0, False, -1, None, False, 30, driver=driver
    )
    assert (cm.bind, cm.passwd, cm.size, cm.retry_max, cm.retry_delay) == (
        "cn=svc", "svc-secret", 4, 2, 0.0,
    )  # fmt: skip
    assert (cm.use_tls, cm.timeout, cm.connector_cls, cm.use_pool, cm.max_lifetime) == (
        False, -1, None, False, 30,
    )  # fmt: skip
    cm.close()


def test_timeout_reads_what_was_passed(make_cm: MakeCM) -> None:
    assert make_cm().timeout == -1
    assert make_cm(timeout=2.5).timeout == 2.5


def test_passwd_is_readable_but_never_shown(make_cm: MakeCM) -> None:
    cm = make_cm()
    assert cm.passwd == "svc-secret"
    assert "svc-secret" not in repr(cm)
    assert "svc-secret" not in str(cm)


@pytest.mark.parametrize(
    "name", ["uri", "servers", "use_tls", "timeout", "use_pool", "max_lifetime", "driver"]
)
def test_fixed_attributes_refuse_to_be_set(make_cm: MakeCM, name: str) -> None:
    cm = make_cm()
    before = getattr(cm, name)
    with pytest.raises(AttributeError, match=f"{name} is fixed"):
        setattr(cm, name, before)


def test_size_grows_and_wakes_a_waiting_checkout(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=1, pool_timeout=10.0)
    got: list[str | None] = []
    with cm.connection():
        waiter = threading.Thread(target=lambda: got.append(_checkout_whoami(cm)))
        waiter.start()
        assert eventually(lambda: cm.stats().waiting == 1)
        cm.size = 2  # the waiter gets the new slot while the first is still held
        waiter.join(timeout=5)
        assert got == ["cn=svc"]
        assert server.peak == 2


def test_shrinking_closes_idle_extras_now_and_lent_ones_at_checkin(
    make_cm: MakeCM, driver: FakeDriver
) -> None:
    cm = make_cm(size=4)
    held = [cm.connection() for _ in range(4)]
    for lease in held:
        lease.__enter__()
    for lease in held[:2]:
        lease.__exit__(None, None, None)  # two idle, two lent
    assert cm.resize(1) == 2  # both idle ones closed now
    assert len(list(live_connections(driver))) == 2
    held[2].__exit__(None, None, None)  # still over the size: closed, not pooled
    assert len(list(live_connections(driver))) == 1
    held[3].__exit__(None, None, None)  # within it: pooled
    assert len(cm) == 1 and len(list(live_connections(driver))) == 1
    cm.pool_timeout = 0.0
    with cm.connection(), pytest.raises(MaxConnectionReachedError):
        with cm.connection("cn=alice", "alice-pw"):
            pass


def test_a_shrunk_pool_never_opens_more_than_the_new_size(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=3, pool_timeout=5.0)
    holders = [cm.connection() for _ in range(3)]
    for lease in holders:
        lease.__enter__()
    cm.size = 2
    server.peak = server.live
    holders[0].__exit__(None, None, None)  # over the size: closed, not pooled
    assert server.live == 2
    done = threading.Event()

    def borrow() -> None:
        with cm.connection():
            done.set()

    thread = threading.Thread(target=borrow)
    thread.start()
    assert eventually(lambda: cm.stats().waiting == 1)  # two lent, size 2: it waits
    holders[1].__exit__(None, None, None)
    thread.join(timeout=5)
    assert done.is_set()
    holders[2].__exit__(None, None, None)
    assert server.peak == 3 and server.live <= 2
    assert len(cm) <= 2


def test_size_setter_validates(make_cm: MakeCM) -> None:
    cm = make_cm()
    with pytest.raises(ValueError, match="size"):
        cm.size = 0
    with pytest.raises(TypeError, match="size"):
        cm.resize("3")  # type: ignore[arg-type]
    assert cm.size == 10


def test_pool_timeout_is_live(make_cm: MakeCM) -> None:
    cm = make_cm(size=1, pool_timeout=30.0)
    cm.pool_timeout = 0.0
    with cm.connection(), pytest.raises(MaxConnectionReachedError), cm.connection():
        pass
    with pytest.raises(ValueError, match="pool_timeout"):
        cm.pool_timeout = -1


def test_retry_max_and_delay_are_live(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(retry_max=1)
    cm.retry_max, cm.retry_delay = 4, 0.0
    assert cm.retry == RetryPolicy(max_attempts=4, delay=0.0)
    server.up = False
    binds = server.binds
    with pytest.raises(ServerDownError, match="4 attempt"), cm.connection():
        pass
    assert server.binds == binds


def test_retry_max_refuses_when_a_policy_was_given(make_cm: MakeCM) -> None:
    cm = make_cm(retry=RetryPolicy(max_attempts=2))
    assert cm.retry_max == 2
    with pytest.raises(AttributeError, match=r"set cm\.retry"):
        cm.retry_max = 5


def test_bind_and_passwd_change_the_default_identity(make_cm: MakeCM) -> None:
    cm = make_cm()
    cm.bind, cm.passwd = "cn=alice", "alice-pw"
    with cm.connection() as conn:
        assert conn.whoami == "cn=alice"


def test_max_lifetime_zero_never_reuses(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(max_lifetime=0)
    for _ in range(3):
        with cm.connection():
            pass
    assert server.opened == 3
    assert server.live == 0


def test_backend_error_takes_3x_arguments() -> None:
    backend = object()
    error = BackendError("cannot connect", backend=backend)
    assert error.backend is backend and str(error) == "cannot connect"
    assert BackendError("down").backend is None
    assert BackendError("x", "ldap://a").server == "ldap://a"


def test_invalid_credentials_is_not_a_backend_error() -> None:
    # kinto-ldap: `except BackendError` (log it) comes before `except INVALID_CREDENTIALS`.
    assert not issubclass(InvalidCredentialsError, BackendError)
    assert issubclass(InvalidCredentialsError, LDAPPoolError)


class NativeDown(Exception):
    """Stands for a driver's own exception class."""


class NativeLDAPError(Exception):
    pass


class NativeDownChild(NativeLDAPError):
    pass


def test_driver_flavoured_error_is_both_and_carries_the_drivers_args() -> None:
    cause = NativeDownChild({"desc": "Can't contact LDAP server", "result": -1})
    cause.extra = "kept"  # type: ignore[attr-defined]
    error = driver_flavoured(
        ServerDownError, (NativeDownChild, NativeLDAPError), "no server", "ldap://a", cause
    )
    assert isinstance(error, ServerDownError) and isinstance(error, NativeDownChild)
    assert error.args[0]["desc"] == "Can't contact LDAP server"
    assert error.extra == "kept"  # type: ignore[attr-defined]
    assert str(error) == "no server" and error.server == "ldap://a"
    assert type(error) is type(driver_flavoured(ServerDownError, (NativeDownChild,), "y"))
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is ServerDownError and str(again) == "no server"


def test_flavoured_errors_come_from_the_drivers_error_bases(
    server: FakeServer, make_cm: MakeCM
) -> None:
    class FlavouredDriver(FakeDriver):
        def error_bases(
            self, kind: ErrorKind, cause: BaseException | None
        ) -> tuple[type[BaseException], ...]:
            return (NativeDown,) if kind is ErrorKind.DOWN else ()

    cm = make_cm(driver=FlavouredDriver(a=server), retry_max=1)
    server.up = False
    with pytest.raises(NativeDown) as info, cm.connection():
        pass
    assert isinstance(info.value, ServerDownError)


def test_error_bases_are_asked_once_per_kind_and_class(
    server: FakeServer, make_cm: MakeCM
) -> None:
    """The classes of the errors raised are made once per (kind, driver error class):
    a wrong password is not the place to rebuild them. Their number is bounded, for a
    driver that makes exception classes at run time."""
    asked: list[tuple[ErrorKind, type]] = []

    class CountingDriver(FakeDriver):
        def error_bases(
            self, kind: ErrorKind, cause: BaseException | None
        ) -> tuple[type[BaseException], ...]:
            asked.append((kind, type(cause)))
            return (NativeDown,) if kind is ErrorKind.DOWN else (NativeLDAPError,)

    cm = make_cm(driver=CountingDriver(a=server), retry_max=1)
    server.up = False
    for _ in range(3):
        with pytest.raises(NativeDown), cm.connection():
            pass
    assert len(asked) == 1
    dialer = cm._dialer
    for n in range(200):  # 200 classes made at run time
        made = type(f"Made{n}", (NativeLDAPError,), {})
        error = dialer.error(ErrorKind.OTHER, "refused", None, made("x"))
        assert isinstance(error, BackendError) and isinstance(error, NativeLDAPError)
        assert error.args == ("x",) and str(error) == "refused"
    assert len(asked) == 201 and len(dialer._flavours) <= 64


def _checkout_whoami(cm: ConnectionManager) -> str | None:
    with cm.connection() as conn:
        whoami: str | None = conn.whoami
        return whoami
