"""The drivers' password check and SASL binds against a real slapd with the ppolicy
overlay and SASL EXTERNAL mappings (``auth_slapd``), below the pool.

Each test drives ``check_password`` and ``sasl_bind`` on connections a driver opened
itself, on both drivers; slapd's own records (``binds()``, ``failures(uid)``) are the
witnesses that each check was one bind. Every connection is closed after the test and
the server must show no client connection left.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import ldap
import pytest
from ldap3.core.exceptions import LDAPException

from ldappool._drivers.ldap3 import Ldap3Driver
from ldappool._drivers.python_ldap import PythonLdapDriver
from ldappool._port import (
    BindAnswer,
    Connection,
    ConnectSettings,
    Driver,
    ErrorKind,
    PasswordPolicy,
    PolicyError,
    Sasl,
    Server,
    TLSSettings,
)
from ldappool._uris import parse_uris
from tests.integration.harness import AuthSlapd, User, wait_until, whoami

TIMEOUT = 5.0
Opener = Callable[..., Connection]
EMPTY = PasswordPolicy()  # the control came back with no warning and no error
REFUSALS = (ldap.LDAPError, LDAPException)  # each driver's own


@pytest.fixture(params=["python-ldap", "ldap3"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return PythonLdapDriver() if request.param == "python-ldap" else Ldap3Driver()


@pytest.fixture
def opened(auth_slapd: AuthSlapd, driver: Driver) -> Iterator[Opener]:
    """``opened(uri, tls=None, use_tls=False)``: a connection of the driver's own; all
    closed after the test, and none may be left open on the server."""
    conns: list[Connection] = []

    def open_(uri: str, tls: TLSSettings | None = None, use_tls: bool = False) -> Connection:
        [server] = parse_uris(uri)
        conn = driver.connect(server, ConnectSettings(timeout=TIMEOUT, use_tls=use_tls, tls=tls))
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        conn.close()
    wait_until(
        lambda: auth_slapd.client_connections() == 0,
        message=f"{auth_slapd}: client connections left open",
    )


def client_cert(server: AuthSlapd) -> TLSSettings:
    return TLSSettings(
        ca_file=server.ca_file, cert_file=server.client_cert_file, key_file=server.client_key_file
    )


def same_dn(left: str, right: str) -> bool:
    return left.lower() == right.lower()


def checked(
    server: AuthSlapd, conn: Connection, user: User, password: str | None = None
) -> BindAnswer:
    """check_password, asserting it made exactly one bind and left the flags clean."""
    before = server.binds()
    answer = conn.check_password(user.dn, user.password if password is None else password)
    assert server.binds() == before + 1
    assert not conn.identity_changed()
    return answer


def refused(driver: Driver, answer: BindAnswer) -> ErrorKind:
    assert answer.refusal is not None, answer
    return driver.classify(answer.refusal)


# -- check_password and the policy states ---------------------------------------------


def test_right_password(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    conn = opened(auth_slapd.ldap_uri)
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)
    assert same_dn(whoami(conn.native), policy_user.dn)  # bound as the user
    assert conn.looks_alive()
    conn.ping()


def test_wrong_password_then_the_right_one_on_the_same_connection(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver
) -> None:
    conn = opened(auth_slapd.ldap_uri)
    answer = checked(auth_slapd, conn, policy_user, "wrong")
    assert refused(driver, answer) is ErrorKind.CREDENTIALS
    assert answer.policy == EMPTY
    assert auth_slapd.failures(policy_user.uid) == 1
    assert whoami(conn.native) == ""  # anonymous after a refused bind, and usable
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)
    assert auth_slapd.failures(policy_user.uid) == 0


def test_wrong_passwords_lock_the_account(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver
) -> None:
    conn = opened(auth_slapd.ldap_uri)
    for count in range(1, auth_slapd.MAX_FAILURE + 1):
        answer = checked(auth_slapd, conn, policy_user, "wrong")
        assert refused(driver, answer) is ErrorKind.CREDENTIALS and answer.policy == EMPTY
        assert auth_slapd.failures(policy_user.uid) == count
    auth_slapd.wait_locked(policy_user.uid)
    answer = checked(auth_slapd, conn, policy_user)
    assert refused(driver, answer) is ErrorKind.CREDENTIALS
    assert answer.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)


def test_locked(auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver) -> None:
    auth_slapd.lock(policy_user.uid)
    conn = opened(auth_slapd.ldap_uri)
    for password in (policy_user.password, "wrong"):
        answer = checked(auth_slapd, conn, policy_user, password)
        assert refused(driver, answer) is ErrorKind.CREDENTIALS
        assert answer.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
    auth_slapd.unlock(policy_user.uid)
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)


def test_expired(auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver) -> None:
    auth_slapd.expire(policy_user.uid)
    answer = checked(auth_slapd, opened(auth_slapd.ldap_uri), policy_user)
    assert refused(driver, answer) is ErrorKind.CREDENTIALS
    assert answer.policy == PasswordPolicy(error=PolicyError.PASSWORD_EXPIRED)


def test_expired_with_grace_binds(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver
) -> None:
    auth_slapd.expire(policy_user.uid, grace=2)
    conn = opened(auth_slapd.ldap_uri)
    for left in (1, 0):
        answer = checked(auth_slapd, conn, policy_user)
        assert answer == BindAnswer(policy=PasswordPolicy(grace_logins_left=left))
        assert same_dn(whoami(conn.native), policy_user.dn)
    answer = checked(auth_slapd, conn, policy_user)
    assert refused(driver, answer) is ErrorKind.CREDENTIALS
    assert answer.policy == PasswordPolicy(error=PolicyError.PASSWORD_EXPIRED)


def test_reset(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.reset(policy_user.uid)
    conn = opened(auth_slapd.ldap_uri)
    answer = checked(auth_slapd, conn, policy_user)
    assert answer == BindAnswer(policy=PasswordPolicy(error=PolicyError.CHANGE_AFTER_RESET))
    assert same_dn(whoami(conn.native), policy_user.dn)  # bound, if restricted


def test_expiring(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.expiring(policy_user.uid)
    answer = checked(auth_slapd, opened(auth_slapd.ldap_uri), policy_user)
    assert answer.refusal is None and answer.policy is not None
    expires_in = answer.policy.expires_in
    assert expires_in is not None
    assert auth_slapd.EXPIRING_IN - 60 < expires_in <= auth_slapd.EXPIRING_IN
    assert (answer.policy.grace_logins_left, answer.policy.error) == (None, None)


def test_check_password_over_tls(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    tls = TLSSettings(ca_file=auth_slapd.ca_file)
    for conn in (opened(auth_slapd.ldaps_uri, tls), opened(auth_slapd.ldap_uri, tls, True)):
        assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)


def test_a_checked_connection_can_be_bound_again_by_the_pool(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldap_uri)
    alice = auth_slapd.users["alice"]
    conn.bind(alice.dn, alice.password)
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)
    conn.bind(alice.dn, alice.password)
    assert same_dn(whoami(conn.native), alice.dn)
    assert not conn.identity_changed()


# -- SASL EXTERNAL ---------------------------------------------------------------------


def test_external_over_ldapi(auth_slapd: AuthSlapd, opened: Opener) -> None:
    conn = opened(auth_slapd.ldapi_uri)
    conn.sasl_bind(Sasl.external())
    assert not conn.identity_changed()
    assert same_dn(whoami(conn.native), auth_slapd.ldapi_external_dn)
    conn.ping()


def test_external_over_ldaps_with_the_client_certificate(
    auth_slapd: AuthSlapd, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldaps_uri, client_cert(auth_slapd))
    conn.sasl_bind(Sasl.external())
    assert not conn.identity_changed()
    assert same_dn(whoami(conn.native), auth_slapd.cert_external_dn)


def test_external_over_starttls_with_the_client_certificate(
    auth_slapd: AuthSlapd, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldap_uri, client_cert(auth_slapd), True)
    conn.sasl_bind(Sasl.external())
    assert same_dn(whoami(conn.native), auth_slapd.cert_external_dn)


def test_external_asking_for_its_own_identity(auth_slapd: AuthSlapd, opened: Opener) -> None:
    conn = opened(auth_slapd.ldapi_uri)
    conn.sasl_bind(Sasl.external("dn:" + auth_slapd.ldapi_external_dn))
    assert same_dn(whoami(conn.native), auth_slapd.ldapi_external_dn)


def test_external_asking_for_another_identity_is_refused(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener, driver: Driver
) -> None:
    conn = opened(auth_slapd.ldapi_uri)
    with pytest.raises(REFUSALS) as caught:
        conn.sasl_bind(Sasl.external("dn:" + auth_slapd.users["alice"].dn))
    assert not driver.classify(caught.value).transient
    assert not conn.identity_changed()  # the pool's bind, refused or not
    assert whoami(conn.native) == ""  # anonymous, and usable
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)


def test_external_then_a_password_check_then_external_again(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldaps_uri, client_cert(auth_slapd))
    conn.sasl_bind(Sasl.external())
    assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)
    assert same_dn(whoami(conn.native), policy_user.dn)
    conn.sasl_bind(Sasl.external())
    assert same_dn(whoami(conn.native), auth_slapd.cert_external_dn)


def test_external_without_a_transport_identity_is_refused(
    auth_slapd: AuthSlapd, opened: Opener, driver: Driver
) -> None:
    # Plain TCP: nothing says who the client is. libsasl gives up before sending
    # (python-ldap: AUTH_UNKNOWN); ldap3 sends the bind and slapd refuses it.
    conn = opened(auth_slapd.ldap_uri)
    with pytest.raises(REFUSALS) as caught:
        conn.sasl_bind(Sasl.external())
    assert not driver.classify(caught.value).transient
    assert not conn.identity_changed()
    assert whoami(conn.native) == ""


# -- python-ldap: the check's two libldap calls, traced or polled ----------------------


def test_python_ldap_check_with_tracing_on_goes_through_ldap_call(
    auth_slapd: AuthSlapd, policy_user: User
) -> None:
    """With python-ldap's tracing on, the check's calls run through ``_ldap_call`` and
    leave their trace lines; the answers are the same."""
    conn = PythonLdapDriver().connect(*_settings(auth_slapd))
    try:
        trace = io.StringIO()
        conn.native._trace_level, conn.native._trace_file = 1, trace
        assert checked(auth_slapd, conn, policy_user) == BindAnswer(policy=EMPTY)
        assert refused(PythonLdapDriver(), checked(auth_slapd, conn, policy_user, "x")) is (
            ErrorKind.CREDENTIALS
        )
        assert trace.getvalue().count("simple_bind") == 2
        assert trace.getvalue().count("result4") == 2
    finally:
        conn.close()


def test_python_ldap_check_that_polls_without_an_answer_is_a_lost_timeout(
    auth_slapd: AuthSlapd, policy_user: User
) -> None:
    """A zero ``timeout`` set by hand makes the answer a poll: none yet is TIMEOUT, and
    the connection is lost to the pool (the answer may still come)."""
    conn = PythonLdapDriver().connect(*_settings(auth_slapd))
    try:
        conn.native.timeout = 0
        auth_slapd.suspend()
        try:
            with pytest.raises(ldap.TIMEOUT):
                conn.check_password(policy_user.dn, policy_user.password)
        finally:
            auth_slapd.resume()
        assert not conn.looks_alive()
    finally:
        conn.close()


def _settings(server: AuthSlapd) -> tuple[Server, ConnectSettings]:
    [found] = parse_uris(server.ldap_uri)
    return found, ConnectSettings(timeout=TIMEOUT)
