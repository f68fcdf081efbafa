"""AuthSlapd checked with raw python-ldap: each password policy state answers what its
method's docstring says, and SASL EXTERNAL binds map to the documented DNs.

If these fail, the password policy and SASL tests of the pool cannot be trusted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import attrs
import ldap
import ldap.controls
import ldap.controls.ppolicy
import ldap.sasl
import pytest

from tests.integration.harness import AuthSlapd, User, search, wait_until, whoami

TIMEOUT = 2.0
Opener = Callable[[str], ldap.ldapobject.LDAPObject]

PASSWORD_EXPIRED = 0
ACCOUNT_LOCKED = 1
CHANGE_AFTER_RESET = 2


@pytest.fixture
def opened(auth_slapd: AuthSlapd) -> Iterator[Opener]:
    """Open python-ldap connections; after the test, unbind them all and check that
    the server shows no client connection left (what the pool's tests demand too)."""
    conns: list[ldap.ldapobject.LDAPObject] = []

    def open_(uri: str) -> ldap.ldapobject.LDAPObject:
        conn = ldap.initialize(uri)
        conns.append(conn)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
        conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
        return conn

    yield open_
    for conn in conns:
        with contextlib.suppress(ldap.LDAPError, AttributeError):  # AttributeError: unbound
            conn.unbind_s()
    wait_until(
        lambda: auth_slapd.client_connections() == 0,
        message=f"{auth_slapd}: client connections left open",
    )


@attrs.frozen
class Answer:
    """A bind's result code and what its password policy response control said."""

    result: int
    error: int | None = None
    time_before_expiration: int | None = None
    grace_remaining: int | None = None
    control: bool = True  # whether the response control came back at all


def _answer(result: int, ctrls: list[ldap.controls.ResponseControl]) -> Answer:
    found = [c for c in ctrls if isinstance(c, ldap.controls.ppolicy.PasswordPolicyControl)]
    if not found:
        return Answer(result, control=False)
    [ctrl] = found
    return Answer(result, ctrl.error, ctrl.timeBeforeExpiration, ctrl.graceAuthNsRemaining)


def policy_bind(conn: ldap.ldapobject.LDAPObject, dn: str, password: str) -> Answer:
    """A simple bind with the password policy request control.

    On success python-ldap returns the response controls decoded; on failure they
    are in the exception's ``ctrls`` as raw (oid, criticality, value) tuples.
    """
    request = [ldap.controls.ppolicy.PasswordPolicyControl()]
    try:
        _type, _data, _msgid, ctrls = conn.simple_bind_s(dn, password, serverctrls=request)
    except ldap.LDAPError as exc:
        info = exc.args[0]
        return _answer(info["result"], ldap.controls.DecodeControlTuples(info.get("ctrls")))
    return _answer(ldap.SUCCESS, ctrls)


def bind_as(opened: Opener, server: AuthSlapd, user: User, password: str | None = None) -> Answer:
    return policy_bind(opened(server.ldap_uri), user.dn, password or user.password)


OK = Answer(ldap.SUCCESS)
INVALID = ldap.INVALID_CREDENTIALS.errnum


# -- password policy ---------------------------------------------------------------


def test_a_fresh_user_binds_with_an_empty_policy_control(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    assert bind_as(opened, auth_slapd, policy_user) == OK
    assert auth_slapd.failures(policy_user.uid) == 0


def test_seeded_users_bind_too(auth_slapd: AuthSlapd, opened: Opener) -> None:
    alice = auth_slapd.users["alice"]
    assert bind_as(opened, auth_slapd, alice) == OK


def test_wrong_password_is_one_bind_and_one_failure(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    binds = auth_slapd.binds()
    assert bind_as(opened, auth_slapd, policy_user, "wrong") == Answer(INVALID)
    assert auth_slapd.failures(policy_user.uid) == 1
    assert auth_slapd.binds() == binds + 1
    # A successful bind clears the recorded failures.
    assert bind_as(opened, auth_slapd, policy_user) == OK
    assert auth_slapd.failures(policy_user.uid) == 0


def test_max_failure_wrong_passwords_lock_the_account(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldap_uri)
    for count in range(1, auth_slapd.MAX_FAILURE + 1):
        if count == auth_slapd.MAX_FAILURE:
            with pytest.raises(AssertionError, match="not locked"):
                auth_slapd.wait_locked(policy_user.uid)  # one wrong password short
        assert policy_bind(conn, policy_user.dn, "wrong") == Answer(INVALID)
        assert auth_slapd.failures(policy_user.uid) == count
    auth_slapd.wait_locked(policy_user.uid)
    locked = Answer(INVALID, ACCOUNT_LOCKED)
    assert policy_bind(conn, policy_user.dn, policy_user.password) == locked
    assert policy_bind(conn, policy_user.dn, "wrong") == locked
    assert auth_slapd.failures(policy_user.uid) == auth_slapd.MAX_FAILURE  # no more counted
    auth_slapd.unlock(policy_user.uid)
    assert auth_slapd.failures(policy_user.uid) == 0
    assert policy_bind(conn, policy_user.dn, policy_user.password) == OK


def test_locked(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.lock(policy_user.uid)
    locked = Answer(INVALID, ACCOUNT_LOCKED)
    assert bind_as(opened, auth_slapd, policy_user) == locked
    assert bind_as(opened, auth_slapd, policy_user, "wrong") == locked
    assert auth_slapd.failures(policy_user.uid) == 0
    auth_slapd.unlock(policy_user.uid)
    assert bind_as(opened, auth_slapd, policy_user) == OK


def test_expired_without_grace(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.expire(policy_user.uid)
    assert bind_as(opened, auth_slapd, policy_user) == Answer(INVALID, PASSWORD_EXPIRED)


def test_expired_with_grace_binds(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    auth_slapd.expire(policy_user.uid, grace=2)
    first = opened(auth_slapd.ldap_uri)
    assert policy_bind(first, policy_user.dn, policy_user.password) == Answer(
        ldap.SUCCESS, grace_remaining=1
    )
    # A grace bind is a full session: the connection is not restricted.
    assert whoami(first) == policy_user.dn
    assert search(first, policy_user.dn) == [policy_user.dn]
    assert bind_as(opened, auth_slapd, policy_user) == Answer(ldap.SUCCESS, grace_remaining=0)
    assert bind_as(opened, auth_slapd, policy_user) == Answer(INVALID, PASSWORD_EXPIRED)


def test_expired_with_one_grace_bind(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    auth_slapd.expire(policy_user.uid, grace=1)
    assert bind_as(opened, auth_slapd, policy_user) == Answer(ldap.SUCCESS, grace_remaining=0)
    assert bind_as(opened, auth_slapd, policy_user) == Answer(INVALID, PASSWORD_EXPIRED)


@pytest.mark.parametrize("grace", [-1, AuthSlapd.GRACE_LIMIT + 1])
def test_expire_refuses_impossible_grace(
    auth_slapd: AuthSlapd, policy_user: User, grace: int
) -> None:
    with pytest.raises(ValueError, match="grace"):
        auth_slapd.expire(policy_user.uid, grace=grace)


def test_reset(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.reset(policy_user.uid)
    conn = opened(auth_slapd.ldap_uri)
    answer = policy_bind(conn, policy_user.dn, policy_user.password)
    assert answer == Answer(ldap.SUCCESS, CHANGE_AFTER_RESET)
    assert whoami(conn) == policy_user.dn
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):  # restricted to changing the password
        search(conn, policy_user.dn)
    conn.passwd_s(policy_user.dn, policy_user.password, "changed-secret")
    assert "pwdReset" not in auth_slapd.policy_attributes(policy_user.uid)
    assert policy_bind(conn, policy_user.dn, "changed-secret") == OK


def test_expiring(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    auth_slapd.expiring(policy_user.uid)
    answer = bind_as(opened, auth_slapd, policy_user)
    assert answer.result == ldap.SUCCESS
    assert answer.error is None and answer.grace_remaining is None
    assert answer.time_before_expiration is not None
    # Seconds may pass between the call and the bind on a loaded machine.
    assert auth_slapd.EXPIRING_IN - 60 < answer.time_before_expiration <= auth_slapd.EXPIRING_IN


def test_expiring_refuses_a_time_outside_the_warning(
    auth_slapd: AuthSlapd, policy_user: User
) -> None:
    with pytest.raises(ValueError, match="seconds"):
        auth_slapd.expiring(policy_user.uid, auth_slapd.EXPIRE_WARNING)


@pytest.mark.parametrize(
    "into",
    [
        AuthSlapd.lock,
        AuthSlapd.expire,
        AuthSlapd.reset,
        AuthSlapd.expiring,
        lambda server, uid: server.expire(uid, grace=1),
    ],
    ids=["locked", "expired", "reset", "expiring", "grace"],
)
def test_restore(
    auth_slapd: AuthSlapd,
    policy_user: User,
    opened: Opener,
    into: Callable[[AuthSlapd, str], None],
) -> None:
    into(auth_slapd, policy_user.uid)
    assert bind_as(opened, auth_slapd, policy_user) != OK
    auth_slapd.restore(policy_user.uid)
    assert bind_as(opened, auth_slapd, policy_user) == OK
    assert set(auth_slapd.policy_attributes(policy_user.uid)) == {"pwdChangedTime"}


def test_restore_after_a_lockout(auth_slapd: AuthSlapd, policy_user: User, opened: Opener) -> None:
    conn = opened(auth_slapd.ldap_uri)
    for _ in range(auth_slapd.MAX_FAILURE):
        policy_bind(conn, policy_user.dn, "wrong")
    auth_slapd.restore(policy_user.uid)
    assert auth_slapd.failures(policy_user.uid) == 0
    assert policy_bind(conn, policy_user.dn, policy_user.password) == OK


def test_without_the_request_control_no_response_control(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    auth_slapd.expiring(policy_user.uid)
    _type, _data, _msgid, ctrls = opened(auth_slapd.ldap_uri).simple_bind_s(
        policy_user.dn, policy_user.password
    )
    assert ctrls == []


def test_policy_user_is_new_each_time(auth_slapd: AuthSlapd, policy_user: User) -> None:
    assert policy_user.uid.startswith("policy-")
    assert auth_slapd.users[policy_user.uid] == policy_user
    assert set(auth_slapd.policy_attributes(policy_user.uid)) == {"pwdChangedTime"}


# -- SASL EXTERNAL -----------------------------------------------------------------


def _external(conn: ldap.ldapobject.LDAPObject, server: AuthSlapd) -> None:
    """whoami and a search: the mapped identity is bound and reads the tree."""
    assert server.users["alice"].dn in search(conn, server.people_dn, "(uid=*)")


def test_peercred_dn_names_this_process(auth_slapd: AuthSlapd) -> None:
    assert auth_slapd.peercred_dn == (
        f"gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"
    )


def test_external_over_ldapi_maps_the_peer_credentials(
    auth_slapd: AuthSlapd, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldapi_uri)
    conn.sasl_external_bind_s()
    assert conn.whoami_s() == "dn:" + auth_slapd.ldapi_external_dn
    _external(conn, auth_slapd)


def _with_client_cert(conn: ldap.ldapobject.LDAPObject, server: AuthSlapd) -> None:
    conn.set_option(ldap.OPT_X_TLS_CERTFILE, server.client_cert_file)
    conn.set_option(ldap.OPT_X_TLS_KEYFILE, server.client_key_file)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, server.ca_file)
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)


def test_external_over_ldaps_maps_the_client_certificate(
    auth_slapd: AuthSlapd, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldaps_uri)
    _with_client_cert(conn, auth_slapd)
    conn.sasl_external_bind_s()
    assert conn.whoami_s() == "dn:" + auth_slapd.cert_external_dn
    _external(conn, auth_slapd)


def test_external_over_starttls_maps_the_client_certificate(
    auth_slapd: AuthSlapd, opened: Opener
) -> None:
    conn = opened(auth_slapd.ldap_uri)
    _with_client_cert(conn, auth_slapd)
    conn.start_tls_s()
    conn.sasl_interactive_bind_s("", ldap.sasl.external())
    assert conn.whoami_s() == "dn:" + auth_slapd.cert_external_dn
    _external(conn, auth_slapd)


def test_a_client_certificate_is_optional(auth_slapd: AuthSlapd, opened: Opener) -> None:
    conn = opened(auth_slapd.ldaps_uri)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, auth_slapd.ca_file)
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    # Without a certificate EXTERNAL has no identity over TLS (the client library
    # refuses the mechanism) ...
    with pytest.raises(ldap.AUTH_UNKNOWN):
        conn.sasl_external_bind_s()
    # ... and a simple bind works as on any server.
    bob = auth_slapd.users["bob"]
    conn.simple_bind_s(bob.dn, bob.password)
    assert whoami(conn) == bob.dn


def test_the_mapped_identities_have_no_password(auth_slapd: AuthSlapd, opened: Opener) -> None:
    """So a whoami naming them proves an EXTERNAL bind: no simple bind can pose as them."""
    conn = opened(auth_slapd.ldap_uri)
    for dn in (auth_slapd.ldapi_external_dn, auth_slapd.cert_external_dn):
        assert policy_bind(conn, dn, "anything").result == INVALID
    assert auth_slapd.cert_subject_dn == "CN=client,OU=slapd-test,O=python-ldap,C=DE"
