"""TLS per manager, verified by default: StartTLS, ldaps://, untrusted servers."""

from __future__ import annotations

import pytest

from ldappool import BackendError, InvalidCredentialsError
from tests.integration.harness import ManagerFactory, Slapd, whoami


def test_starttls_with_the_ca_works(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(
        slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_tls=True, tls_ca_file=slapd.ca_file
    )
    for _ in range(2):
        with cm.connection() as conn:
            assert whoami(conn) == slapd.root_dn
    assert slapd.client_connections() == 1


def test_ldaps_with_the_ca_works(slapd: Slapd, make_manager: ManagerFactory) -> None:
    cm = make_manager(slapd.ldaps_uri, slapd.root_dn, slapd.root_pw, tls_ca_file=slapd.ca_file)
    for _ in range(2):
        with cm.connection() as conn:
            assert whoami(conn) == slapd.root_dn
    assert slapd.client_connections() == 1


@pytest.mark.parametrize("scheme", ["ldaps", "starttls"])
def test_untrusted_certificate_is_refused(
    scheme: str, slapd: Slapd, untrusted_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    uri = untrusted_slapd.ldaps_uri if scheme == "ldaps" else untrusted_slapd.ldap_uri
    cm = make_manager(
        uri,
        untrusted_slapd.root_dn,
        untrusted_slapd.root_pw,
        use_tls=scheme == "starttls",
        tls_ca_file=slapd.ca_file,  # a CA that did not sign the untrusted server's cert
        retry_max=1,
    )
    binds = untrusted_slapd.binds()
    with pytest.raises(BackendError) as excinfo, cm.connection():
        pass
    assert not isinstance(excinfo.value, InvalidCredentialsError)
    assert len(cm) == 0
    assert untrusted_slapd.binds() == binds  # no credentials were sent to it


def test_certificates_are_verified_without_a_ca_file(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    """The default is to verify, against the system's CAs (which never signed ours)."""
    cm = make_manager(slapd.ldaps_uri, slapd.root_dn, slapd.root_pw, retry_max=1)
    with pytest.raises(BackendError), cm.connection():
        pass
    assert len(cm) == 0


def test_tls_settings_are_per_manager(slapd: Slapd, make_manager: ManagerFactory) -> None:
    """A manager without the CA does not inherit another manager's trust."""
    ca_file = slapd.ca_file
    trusting = make_manager(slapd.ldaps_uri, slapd.root_dn, slapd.root_pw, tls_ca_file=ca_file)
    with trusting.connection() as conn:
        assert whoami(conn) == slapd.root_dn
    untrusting = make_manager(slapd.ldaps_uri, slapd.root_dn, slapd.root_pw, retry_max=1)
    with pytest.raises(BackendError), untrusting.connection():
        pass
    with trusting.connection() as conn:  # and the first one still trusts its CA
        assert whoami(conn) == slapd.root_dn


def test_sockets_do_not_wait_for_delayed_acks(slapd: Slapd, make_manager: ManagerFactory) -> None:
    """Small writes must not wait for delayed ACKs: without TCP_NODELAY (ldap3 writes
    a request in pieces), each TLS round trip paid ~40 ms."""
    import os
    import socket

    import ldap

    cm = make_manager(
        slapd.ldap_uri, slapd.root_dn, slapd.root_pw, use_tls=True, tls_ca_file=slapd.ca_file
    )
    with cm.connection() as conn:
        if cm.driver.name == "ldap3":
            sock = socket.socket(fileno=os.dup(conn.socket.fileno()))
        else:
            sock = socket.socket(fileno=os.dup(conn.get_option(ldap.OPT_DESC)))
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
