"""authenticate(): lockout-safe password checks on connections of their own, against the
in-memory fake driver (the real server's answers are in tests/integration)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType

import pytest

from ldappool import (
    AccountLockedError,
    AuthResult,
    BackendError,
    BindAnswer,
    ConnectionManager,
    InvalidCredentialsError,
    LifetimePolicy,
    PasswordExpiredError,
    PasswordPolicy,
    PolicyError,
    PoolClosedError,
    Sasl,
    ServerDownError,
)
from ldappool._auth import forget_locals
from tests.frames import frames_holding
from tests.unit.fakes import (
    FakeClock,
    FakeDriver,
    FakeNoSuchObject,
    FakeServer,
    live_connections,
)

MakeCM = Callable[..., ConnectionManager]


def test_right_password_returns_the_result_with_one_bind(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm()
    result = cm.authenticate("cn=alice", "alice-pw")
    assert result == AuthResult("cn=alice", "ldap://a", PasswordPolicy())
    assert (result.must_change, result.expires_in, result.grace_logins_left) == (
        False,
        None,
        None,
    )
    assert server.binds == 1  # the check's connection was opened without a bind
    assert cm.stats().password_checks == 1


def test_wrong_passwords_cost_one_bind_each_and_no_new_connection(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm()
    cm.authenticate("cn=alice", "alice-pw")
    for n in range(1, 11):
        with pytest.raises(InvalidCredentialsError) as caught:
            cm.authenticate("cn=alice", "wrong")
        assert server.binds == 1 + n
        assert "cn=alice" in str(caught.value) and "wrong" not in str(caught.value)
    assert server.opened == 1  # the connection stayed in service
    assert cm.stats().invalid_credentials == 10
    assert cm.authenticate("cn=bob", "bob-pw").dn == "cn=bob"
    assert server.opened == 1


def test_policy_answers_are_returned_or_raised(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    server.policies["cn=alice"] = PasswordPolicy(expires_in=3600)
    assert cm.authenticate("cn=alice", "alice-pw").expires_in == 3600
    server.policies["cn=alice"] = PasswordPolicy(grace_logins_left=2)
    assert cm.authenticate("cn=alice", "alice-pw").grace_logins_left == 2
    server.policies["cn=alice"] = PasswordPolicy(error=PolicyError.CHANGE_AFTER_RESET)
    assert cm.authenticate("cn=alice", "alice-pw").must_change

    expired = PasswordPolicy(error=PolicyError.PASSWORD_EXPIRED)
    server.policies["cn=bob"] = expired
    server.locked.add("cn=bob")
    with pytest.raises(PasswordExpiredError) as caught:
        cm.authenticate("cn=bob", "bob-pw")
    assert caught.value.policy == expired
    assert isinstance(caught.value, InvalidCredentialsError)

    locked = PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
    server.policies["cn=bob"] = locked
    with pytest.raises(AccountLockedError) as locked_error:
        cm.authenticate("cn=bob", "bob-pw")
    assert locked_error.value.policy == locked
    assert "account locked" in str(locked_error.value)

    del server.policies["cn=bob"]
    with pytest.raises(InvalidCredentialsError) as plain:
        cm.authenticate("cn=bob", "bob-pw")
    assert type(plain.value) is InvalidCredentialsError and plain.value.policy is None


def test_a_bind_that_got_no_answer_is_not_retried_nor_failed_over(clock: FakeClock) -> None:
    first, second = FakeServer(users={"cn=alice": "pw"}), FakeServer(users={"cn=alice": "pw"})
    driver = FakeDriver(a=first, b=second)
    cm = ConnectionManager(
        "ldap://a ldap://b", retry_max=3, retry_delay=0.0, driver=driver, clock=clock
    )
    first.drop_checks = True
    with pytest.raises(ServerDownError) as caught:
        cm.authenticate("cn=alice", "pw")
    assert "not retried" in str(caught.value)
    assert caught.value.__cause__ is not None  # the driver's own error
    assert not isinstance(caught.value.__cause__, ServerDownError)
    assert frames_holding(caught.value, "pw") == []  # nor the frames of the lost check
    assert (first.binds, second.binds, second.opened) == (1, 0, 0)
    assert cm.stats().connections == 0  # the lost connection was closed
    assert not list(live_connections(driver))
    cm.close()


def test_an_interrupt_during_a_check_comes_through_as_it_came(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    """Not an error of the driver's: raised as it came, not as a BackendError; the
    check's connection is closed (its answer may be lost on it), its place given back."""
    cm = make_cm(size=2, auth_size=1)
    cm.authenticate("cn=alice", "alice-pw")
    [checks] = live_connections(driver)

    def interrupted(who: str, cred: str) -> BindAnswer:
        raise KeyboardInterrupt

    checks.check_password = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt) as caught:
        cm.authenticate("cn=alice", "alice-pw")
    assert caught.value.__cause__ is None
    assert checks.closed and cm.stats().connections == 0
    assert cm.authenticate("cn=alice", "alice-pw").dn == "cn=alice"  # the gate's place back
    cm.close()


def test_a_check_moments_after_the_last_skips_the_socket_look(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver, clock: FakeClock
) -> None:
    cm = make_cm()  # LifetimePolicy's socket_check_after: 0.05 s
    cm.authenticate("cn=alice", "alice-pw")
    [checks] = live_connections(driver)
    checks.dropped = True  # the server closed it just after the check
    with pytest.raises(ServerDownError, match="not retried"):
        cm.authenticate("cn=alice", "alice-pw")  # sent without a look: lost, not resent
    assert server.binds == 2 and checks.closed
    cm.authenticate("cn=alice", "alice-pw")  # a new connection, then the same again
    [checks] = live_connections(driver)
    clock.advance(0.06)
    checks.dropped = True  # closed while idle 60 ms: the look catches it
    assert cm.authenticate("cn=alice", "alice-pw").dn == "cn=alice"
    assert (server.binds, server.opened, cm.stats().stale) == (4, 3, 1)


def test_socket_check_after_zero_looks_before_every_check(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm(lifetime=LifetimePolicy(socket_check_after=0))
    cm.authenticate("cn=alice", "alice-pw")
    [checks] = live_connections(driver)
    checks.dropped = True
    assert cm.authenticate("cn=alice", "alice-pw").dn == "cn=alice"  # replaced, unseen
    assert (server.binds, server.opened, cm.stats().stale) == (2, 2, 1)


def test_connecting_is_retried_and_failed_over_before_any_bind(clock: FakeClock) -> None:
    first, second = FakeServer(users={"cn=alice": "pw"}), FakeServer(users={"cn=alice": "pw"})
    first.up = False
    driver = FakeDriver(a=first, b=second)
    cm = ConnectionManager(
        "ldap://a ldap://b", retry_max=2, retry_delay=0.0, driver=driver, clock=clock
    )
    assert cm.authenticate("cn=alice", "pw").server == "ldap://b"
    assert driver.connect_calls == ["ldap://a", "ldap://a", "ldap://b"]
    assert (first.binds, second.binds) == (0, 1)
    cm.close()


def test_the_checks_connection_is_never_lent_as_the_user(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=3)
    cm.authenticate("cn=alice", "alice-pw")
    with cm.connection("cn=alice", "alice-pw") as conn:  # bound as alice, but not that one
        assert conn.whoami == "cn=alice"
    assert server.opened == 2
    with cm.connection() as conn:
        assert conn.whoami == "cn=svc"
    assert server.opened == 3
    assert "(password checks)" in str(cm)


def test_a_full_pool_rebinds_the_checks_connection_for_a_service_checkout(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=1)
    cm.authenticate("cn=alice", "alice-pw")
    with cm.connection() as conn:
        assert conn.whoami == "cn=svc"  # re-bound first: never lent bound as alice
    assert (server.opened, cm.stats().rebinds) == (1, 1)
    cm.authenticate("cn=bob", "bob-pw")  # takes it back, no connect
    assert server.opened == 1


def test_empty_passwords_and_dns_are_refused_before_anything_is_sent(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm()
    for dn, password in (("cn=alice", ""), ("", "alice-pw"), ("", "")):
        with pytest.raises(InvalidCredentialsError, match="without a password"):
            cm.authenticate(dn, password)
    with pytest.raises(InvalidCredentialsError, match="unauthenticated"):
        cm.connection("cn=alice", "")
    with pytest.raises(InvalidCredentialsError, match="unauthenticated"):
        make_cm(bind=None, passwd=None).connection("cn=alice")  # no default password either
    assert (server.binds, driver.connect_calls) == (0, [])
    with pytest.raises(TypeError, match="password must be a str"):
        cm.authenticate("cn=alice", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="passwd: a bind DN without a password"):
        make_cm(passwd=None)
    with pytest.raises(ValueError, match="passwd"):
        make_cm(passwd="")
    anonymous = make_cm(bind=None, passwd=None)
    with anonymous.connection() as conn:  # no DN, no password: anonymous, as asked
        assert conn.whoami is None


def test_an_unauthenticated_default_set_later_is_refused_at_checkout(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(bind=None, passwd=None)
    cm.bind = "cn=alice"
    with pytest.raises(InvalidCredentialsError):
        cm.connection()
    cm.passwd = "alice-pw"
    with cm.connection() as conn:
        assert conn.whoami == "cn=alice"


def test_the_password_is_not_kept(make_cm: MakeCM) -> None:
    cm = make_cm()
    password = "".join(["alice", "-pw"])  # an object of this test's own
    before = sys.getrefcount(password)
    cm.authenticate("cn=alice", password)
    with pytest.raises(InvalidCredentialsError):
        cm.authenticate("cn=alice", password + "!")
    assert sys.getrefcount(password) == before
    assert "alice-pw" not in repr(cm) + str(cm)


def test_forget_locals_clears_the_frames_an_error_and_its_causes_left() -> None:
    """What authenticate() and connection() do to the errors they raise: the locals of
    each returned frame of the error and of its causes are cleared, not the lines of its
    traceback; the running frame and ``__context__`` (the caller's) are left alone."""

    def check(password: str) -> None:
        raise ValueError("refused")

    def wrap(password: str) -> None:
        try:
            check(password)
        except ValueError as exc:
            raise BackendError("lost") from exc

    def callers_own() -> None:
        mine = "the caller's"
        raise KeyError(mine)

    running = "this frame's"
    caught: BaseException | None = None
    try:
        callers_own()
    except KeyError:
        try:
            wrap("s3cret")
        except BackendError as error:
            caught = error
    assert caught is not None and caught.__cause__ is not None
    forget_locals(caught)
    frames = [tb.tb_frame for tb in _tracebacks(caught) + _tracebacks(caught.__cause__)]
    names = [frame.f_code.co_name for frame in frames]
    assert names == [
        "test_forget_locals_clears_the_frames_an_error_and_its_causes_left",
        "wrap",
        "wrap",
        "check",
    ]
    assert all(frame.f_locals == {} for frame in frames[1:])
    assert frames[0].f_locals["running"] == running  # still running: kept
    context = caught.__cause__.__context__
    assert isinstance(context, KeyError)
    assert _tracebacks(context)[-1].tb_frame.f_locals == {"mine": "the caller's"}


def _tracebacks(error: BaseException) -> list[TracebackType]:
    found, tb = [], error.__traceback__
    while tb is not None:
        found.append(tb)
        tb = tb.tb_next
    return found


def test_checks_run_at_most_auth_size_at_once(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm(size=6, auth_size=2)
    inside = peak = 0
    lock = threading.Lock()
    original = driver.connect

    def counting_connect(*args: object) -> object:
        conn = original(*args)  # type: ignore[arg-type]
        check = conn.check_password

        def check_password(who: str, cred: str) -> object:
            nonlocal inside, peak
            with lock:
                inside += 1
                peak = max(peak, inside)
            try:
                return check(who, cred)
            finally:
                with lock:
                    inside -= 1

        conn.check_password = check_password  # type: ignore[method-assign,assignment]
        return conn

    driver.connect = counting_connect  # type: ignore[method-assign,assignment]
    errors: list[BaseException] = []

    def login(n: int) -> None:
        try:
            for i in range(30):
                wrong = (n + i) % 10 == 0
                try:
                    cm.authenticate("cn=alice", "nope" if wrong else "alice-pw")
                except InvalidCredentialsError:
                    assert wrong
                with cm.connection() as conn:
                    assert conn.whoami == "cn=svc"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=login, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert peak <= 2
    assert str(cm).count("(password checks)") <= 2  # connections kept for checks
    assert server.peak <= 6
    assert cm.stats().password_checks == 240


def test_auth_size_is_checked_and_settable(make_cm: MakeCM) -> None:
    with pytest.raises(ValueError, match="auth_size must be at most size"):
        make_cm(size=2, auth_size=3)
    with pytest.raises(ValueError, match="auth_size"):
        make_cm(auth_size=0)
    cm = make_cm(size=4)
    assert cm.auth_size is None
    cm.auth_size = 3
    assert cm.auth_size == 3
    with pytest.raises(ValueError, match="auth_size"):
        cm.auth_size = 5


def test_closed_manager_refuses_checks(make_cm: MakeCM) -> None:
    cm = make_cm()
    cm.close()
    with pytest.raises(PoolClosedError):
        cm.authenticate("cn=alice", "alice-pw")


def test_backend_refusals_other_than_credentials_are_backend_errors(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm()
    original = driver.connect

    def refusing_connect(*args: object) -> object:
        conn = original(*args)  # type: ignore[arg-type]
        conn.check_password = lambda who, cred: BindAnswer(FakeNoSuchObject("unwilling"))  # type: ignore[method-assign]
        return conn

    driver.connect = refusing_connect  # type: ignore[method-assign,assignment]
    with pytest.raises(BackendError, match="refused the password check"):
        cm.authenticate("cn=alice", "alice-pw")
    assert server.opened == 1 and cm.stats().idle == 1  # still in service


def test_sasl_binds_are_pooled_by_mechanism_and_identity(
    make_cm: MakeCM, server: FakeServer
) -> None:
    server.sasl[("EXTERNAL", None)] = "cn=peer"
    server.sasl[("EXTERNAL", "dn:cn=bob")] = "cn=bob"
    cm = make_cm(size=3)
    for _ in range(3):
        with cm.connection(sasl=Sasl.external()) as conn:
            assert conn.whoami == "cn=peer"
    with cm.connection(sasl=Sasl.external("dn:cn=bob")) as conn:
        assert conn.whoami == "cn=bob"
    assert server.opened == 2
    assert "SASL EXTERNAL dn:cn=bob" in str(cm)
    with pytest.raises(InvalidCredentialsError):
        with cm.connection(sasl=Sasl("EXTERNAL", "dn:cn=nobody")):
            pass
    with pytest.raises(ValueError, match="either sasl or bind"):
        cm.connection("cn=alice", "alice-pw", sasl=Sasl.external())


def test_a_manager_can_bind_with_sasl_by_default(
    driver: FakeDriver, server: FakeServer, clock: FakeClock
) -> None:
    server.sasl[("EXTERNAL", None)] = "cn=peer"
    cm = ConnectionManager("ldap://a", sasl=Sasl.external(), driver=driver, clock=clock)
    with cm.connection() as conn:
        assert conn.whoami == "cn=peer"
    assert cm.sasl == Sasl.external()
    with pytest.raises(ValueError, match="either sasl or bind"):
        ConnectionManager("ldap://a", "cn=x", "pw", sasl=Sasl.external(), driver=driver)
    with pytest.raises(TypeError, match=r"sasl must be an ldappool\.Sasl"):
        ConnectionManager("ldap://a", sasl="EXTERNAL", driver=driver)  # type: ignore[arg-type]
    cm.close()


def test_sasl_values_are_checked_and_hold_no_secret() -> None:
    with pytest.raises(ValueError, match="SASL mechanism name"):
        Sasl("external mechanism")
    with pytest.raises(TypeError, match="callable"):
        Sasl("DIGEST-MD5", user="alice", secret="pw")  # type: ignore[arg-type]
    digest = Sasl("DIGEST-MD5", user="alice", secret=lambda: "s3cret")
    assert "s3cret" not in repr(digest)


def test_the_result_is_immutable_and_compared_by_its_fields() -> None:
    policy = PasswordPolicy(expires_in=60)
    result = AuthResult("cn=alice", "ldap://a", policy)
    assert result == AuthResult("cn=alice", "ldap://a", policy)
    assert result != AuthResult("cn=alice", "ldap://b", policy)
    assert result != ("cn=alice", "ldap://a", policy)
    assert hash(result) == hash(AuthResult("cn=alice", "ldap://a", policy))
    assert AuthResult("cn=bob", None).policy == PasswordPolicy()  # empty by default
    assert repr(result) == f"AuthResult(dn='cn=alice', server='ldap://a', policy={policy!r})"
    with pytest.raises(AttributeError):
        result.dn = "cn=mallory"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.extra = 1  # type: ignore[attr-defined]
    match result:
        case AuthResult(dn, server, found):
            assert (dn, server, found) == ("cn=alice", "ldap://a", policy)
