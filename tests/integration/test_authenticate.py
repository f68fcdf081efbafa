"""authenticate() and SASL EXTERNAL on a real slapd with the ppolicy overlay, on both drivers.

slapd's own records are the witnesses: ``failures(uid)`` counts the failed binds the
password policy recorded for a user (one per wrong password that reached it), and
``binds()`` every bind the server completed.
"""

from __future__ import annotations

import ldap
import pytest
from ldap3.core import exceptions as ldap3_errors

from ldappool import (
    AccountLockedError,
    BackendError,
    InvalidCredentialsError,
    LifetimePolicy,
    PasswordExpiredError,
    PasswordPolicy,
    PolicyError,
    Sasl,
)
from tests.frames import frames_holding
from tests.integration.harness import AuthSlapd, ManagerFactory, ProxyFactory, User, whoami
from tests.integration.harness.proxy import Op

NATIVE_INVALID_CREDENTIALS = {
    "python-ldap": ldap.INVALID_CREDENTIALS,
    "ldap3": ldap3_errors.LDAPInvalidCredentialsResult,
}


def test_a_right_password_is_one_bind_on_a_connection_that_stays(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory
) -> None:
    cm = make_manager(auth_slapd.ldap_uri)
    before = auth_slapd.binds()
    for _ in range(5):
        result = cm.authenticate(policy_user.dn, policy_user.password)
        assert (result.dn, result.server) == (policy_user.dn, auth_slapd.ldap_uri)
        assert result.policy == PasswordPolicy()  # the control came back empty
    assert auth_slapd.binds() - before == 5
    assert auth_slapd.client_connections() == 1
    assert cm.stats().opened == 1


def test_a_wrong_password_is_one_failed_bind_and_keeps_the_connection(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory, driver: str
) -> None:
    cm = make_manager(auth_slapd.ldap_uri)
    for failures in (1, 2):
        with pytest.raises(InvalidCredentialsError) as caught:
            cm.authenticate(policy_user.dn, "not the password")
        assert isinstance(caught.value, NATIVE_INVALID_CREDENTIALS[driver])
        assert auth_slapd.failures(policy_user.uid) == failures
    assert cm.stats().opened == 1 and auth_slapd.client_connections() == 1
    assert cm.authenticate(policy_user.dn, policy_user.password).dn == policy_user.dn
    assert auth_slapd.failures(policy_user.uid) == 0  # a good bind clears them


def test_no_frame_a_refusal_passed_through_keeps_the_password(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory
) -> None:
    """An error is kept after it is raised (logged, sent to an error tracker that shows
    each frame's locals): no frame of ldappool's or the driver's that the error or its
    cause passed through holds the password, for authenticate() or connection()."""
    cm = make_manager(auth_slapd.ldap_uri)
    wrong = f"wrong-for-{policy_user.uid}"
    with pytest.raises(InvalidCredentialsError) as caught:
        cm.authenticate(policy_user.dn, wrong)
    assert frames_holding(caught.value, wrong) == []
    with pytest.raises(InvalidCredentialsError) as caught, cm.connection(policy_user.dn, wrong):
        pass
    assert caught.value.__cause__ is not None  # the driver's refusal, whose frames bound
    assert frames_holding(caught.value, wrong) == []


def test_wrong_passwords_lock_the_account_after_the_policy_s_count_exactly(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory
) -> None:
    cm = make_manager(auth_slapd.ldap_uri)
    for _ in range(AuthSlapd.MAX_FAILURE):
        with pytest.raises(InvalidCredentialsError):
            cm.authenticate(policy_user.dn, "guess")
    auth_slapd.wait_locked(policy_user.uid)
    with pytest.raises(AccountLockedError) as caught:
        cm.authenticate(policy_user.dn, policy_user.password)
    assert caught.value.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)


@pytest.mark.parametrize(
    ("state", "error"),
    [("lock", AccountLockedError), ("expire", PasswordExpiredError)],
)
def test_refusals_the_policy_explains_raise_their_own_error(
    auth_slapd: AuthSlapd,
    policy_user: User,
    make_manager: ManagerFactory,
    state: str,
    error: type[InvalidCredentialsError],
    driver: str,
) -> None:
    getattr(auth_slapd, state)(policy_user.uid)
    cm = make_manager(auth_slapd.ldap_uri)
    with pytest.raises(error) as caught:
        cm.authenticate(policy_user.dn, policy_user.password)
    assert isinstance(caught.value, NATIVE_INVALID_CREDENTIALS[driver])
    assert caught.value.policy is not None and caught.value.policy.error is not None
    assert cm.stats().idle == 1  # the connection stays in service


def test_successful_binds_carry_the_policy_s_warnings(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory
) -> None:
    cm = make_manager(auth_slapd.ldap_uri)
    auth_slapd.expiring(policy_user.uid, 3600)
    expiring = cm.authenticate(policy_user.dn, policy_user.password)
    assert expiring.expires_in is not None and 3000 < expiring.expires_in <= 3600

    auth_slapd.expire(policy_user.uid, grace=2)
    assert cm.authenticate(policy_user.dn, policy_user.password).grace_logins_left == 1
    assert cm.authenticate(policy_user.dn, policy_user.password).grace_logins_left == 0
    with pytest.raises(PasswordExpiredError):
        cm.authenticate(policy_user.dn, policy_user.password)

    auth_slapd.restore(policy_user.uid)
    auth_slapd.reset(policy_user.uid)
    reset = cm.authenticate(policy_user.dn, policy_user.password)
    assert reset.must_change and reset.policy.error is PolicyError.CHANGE_AFTER_RESET
    # The connection is restricted to a password change for that user: the next check
    # binds it again, as anybody.
    alice = auth_slapd.users["alice"]
    assert cm.authenticate(alice.dn, alice.password).policy == PasswordPolicy()
    assert cm.stats().opened == 1


def test_empty_passwords_are_refused_before_anything_is_sent(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory
) -> None:
    cm = make_manager(auth_slapd.ldap_uri)
    before = auth_slapd.binds()
    with pytest.raises(InvalidCredentialsError, match="without a password"):
        cm.authenticate(policy_user.dn, "")
    with pytest.raises(InvalidCredentialsError, match="unauthenticated"):
        cm.connection(policy_user.dn, "")
    assert auth_slapd.binds() == before
    assert auth_slapd.client_connections() == 0


@pytest.mark.parametrize("answered", [False, True], ids=["request-lost", "answer-lost"])
def test_a_check_whose_answer_never_comes_is_not_retried(
    auth_slapd: AuthSlapd,
    policy_user: User,
    make_manager: ManagerFactory,
    proxy_factory: ProxyFactory,
    answered: bool,
) -> None:
    proxy = proxy_factory(auth_slapd)
    cm = make_manager(proxy.uri, retry_max=3, retry_delay=0)
    cm.authenticate(policy_user.dn, policy_user.password)  # a connection for checks
    before = auth_slapd.binds()
    proxy.cut_on(Op.BIND, answered=answered)
    wrong = f"wrong-for-{policy_user.uid}"
    with pytest.raises(BackendError, match="not retried") as caught:
        cm.authenticate(policy_user.dn, wrong)
    assert frames_holding(caught.value, wrong) == []  # nor the lost check's frames
    assert auth_slapd.binds() - before == (1 if answered else 0)  # sent at most once
    assert auth_slapd.failures(policy_user.uid) == (1 if answered else 0)
    assert cm.stats().connections == 0  # that connection was closed
    assert cm.authenticate(policy_user.dn, policy_user.password).dn == policy_user.dn


@pytest.mark.parametrize("look", [True, False], ids=["looked-at", "used-as-is"])
def test_checks_after_a_restart(
    auth_slapd: AuthSlapd, policy_user: User, make_manager: ManagerFactory, look: bool
) -> None:
    """A restart takes far longer than ``socket_check_after``: the socket look catches the
    closed connection and the check reconnects unseen. Used as it is (a window longer
    than the restart), the check goes out on the dead connection: BackendError, once."""
    window = 0.05 if look else 3600.0
    cm = make_manager(auth_slapd.ldap_uri, lifetime=LifetimePolicy(socket_check_after=window))
    cm.authenticate(policy_user.dn, policy_user.password)
    auth_slapd.restart()
    if not look:
        with pytest.raises(BackendError, match="not retried"):
            cm.authenticate(policy_user.dn, policy_user.password)
    assert cm.authenticate(policy_user.dn, policy_user.password).dn == policy_user.dn
    assert cm.stats().opened == 2
    assert cm.stats().stale == (1 if look else 0)


def test_sasl_external_over_ldapi_binds_as_the_local_user(
    auth_slapd: AuthSlapd, make_manager: ManagerFactory
) -> None:
    cm = make_manager(auth_slapd.ldapi_uri, sasl=Sasl.external())
    for _ in range(3):
        with cm.connection() as conn:
            assert whoami(conn) == auth_slapd.ldapi_external_dn
    assert cm.stats().opened == 1


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_sasl_external_over_tls_binds_as_the_client_certificate(
    auth_slapd: AuthSlapd, make_manager: ManagerFactory, transport: str
) -> None:
    uri = auth_slapd.ldaps_uri if transport == "ldaps" else auth_slapd.ldap_uri
    cm = make_manager(
        uri,
        use_tls=transport == "starttls",
        tls_ca_file=auth_slapd.ca_file,
        tls_cert_file=auth_slapd.client_cert_file,
        tls_key_file=auth_slapd.client_key_file,
    )
    for _ in range(2):
        with cm.connection(sasl=Sasl.external()) as conn:
            assert whoami(conn) == auth_slapd.cert_external_dn
    alice = auth_slapd.users["alice"]
    with cm.connection(alice.dn, alice.password) as conn:  # another identity, same pool
        assert whoami(conn) == alice.dn
    assert cm.stats().opened == 2
