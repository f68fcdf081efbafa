"""The ldap3 driver, without an LDAP server.

Binds run against ldap3's MOCK_SYNC strategy; timeouts, liveness, close and abandon
against plain loopback sockets that never answer, so the real SYNC code paths run.
The same checks against a real slapd live in tests/integration.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

ldap3 = pytest.importorskip("ldap3")

from ldap3.core import exceptions as lx  # noqa: E402
from ldap3.core.exceptions import communication_exception_factory  # noqa: E402

from ldappool._drivers.ldap3 import Ldap3Connection, Ldap3Driver, PooledConnection  # noqa: E402
from ldappool._port import (  # noqa: E402
    BindAnswer,
    ConnectSettings,
    ErrorKind,
    PasswordPolicy,
    PolicyError,
    Sasl,
    Server,
    TLSSettings,
)
from ldappool._registry import resolve  # noqa: E402
from tests.unit.polling import eventually  # noqa: E402

ALICE, ALICE_PW = "cn=alice,o=test", "alice-pw"
# Generous, not a benchmark: without a timeout these calls would never return.
BOUND = 5.0


def server(scheme: str = "ldap", host: str = "127.0.0.1", port: int | None = 389) -> Server:
    return Server(uri=f"{scheme}://{host}:{port}", scheme=scheme, host=host, port=port)


def merged(base: type[Exception], cause: BaseException, *args: object) -> Exception:
    """What ldap3 raises for a socket error: its class merged with the cause's."""
    return communication_exception_factory(base, cause)(*args)  # type: ignore[no-any-return,no-untyped-call]


def tls_failure(cause: BaseException, *args: object) -> Exception:
    """What ldap3 raises when the StartTLS handshake fails."""
    return lx.start_tls_exception_factory(cause)(*args)  # type: ignore[no-any-return,no-untyped-call]


@pytest.fixture
def mock() -> Ldap3Connection:
    """An adapter around a MOCK_SYNC native connection that knows alice."""
    native = PooledConnection(
        ldap3.Server("mock", get_info=ldap3.OFFLINE_SLAPD_2_4),  # lists WhoAmI
        client_strategy=ldap3.MOCK_SYNC,
        auto_bind=ldap3.AUTO_BIND_NONE,
    )
    native.strategy.add_entry(
        ALICE, {"objectClass": "person", "sn": "a", "userPassword": ALICE_PW}
    )
    return Ldap3Connection(native)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server that completes handshakes (kernel backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as sock:
        yield sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def accept(listener: socket.socket) -> socket.socket:
    listener.settimeout(2)
    peer, _ = listener.accept()
    peer.settimeout(2)
    return peer


# --- classify ---------------------------------------------------------------------

TIMEOUTS = [
    merged(lx.LDAPSocketReceiveError, TimeoutError("timed out"), "error receiving data"),
    merged(lx.LDAPSocketOpenError, TimeoutError("timed out"), "connect timed out"),
    merged(lx.LDAPSocketSendError, TimeoutError("timed out"), "send timed out"),
    tls_failure(TimeoutError(), "handshake timed out"),
    lx.LDAPSocketOpenError("unable to open socket", [(TimeoutError(), ("::1", 1))] * 2),
    lx.LDAPResponseTimeoutError("no response"),
    TimeoutError(),  # socket.timeout
]
DOWNS = [
    merged(lx.LDAPSocketOpenError, ConnectionRefusedError(111, "refused"), "refused"),
    lx.LDAPSocketOpenError("unable to open socket", [(TimeoutError(), 1), (OSError(), 2)]),
    lx.LDAPSocketOpenError("invalid server address"),
    merged(lx.LDAPSocketReceiveError, ConnectionResetError(104, "reset"), "reset"),
    lx.LDAPSocketSendError("socket sending error"),
    lx.LDAPSessionTerminatedByServerError("session terminated by server"),
    lx.LDAPStartTLSError("startTLS failed - protocolError"),
    tls_failure(ssl.SSLCertVerificationError(), "wrap socket error"),
    lx.LDAPCertificateError("hostname doesn't match"),
    lx.LDAPOperationResult(result=52, description="unavailable"),
    lx.LDAPOperationResult(result=51, description="busy"),
    ConnectionResetError(),
    OSError(),
]
CREDENTIALS = [
    lx.LDAPOperationResult(result=49, description="invalidCredentials"),
    lx.LDAPInvalidCredentialsResult(result=49),
    lx.LDAPOperationResult(result=48, description="inappropriateAuthentication"),
    lx.LDAPPasswordIsMandatoryError("password is mandatory in simple bind"),
    lx.LDAPUserNameIsMandatoryError("user name is mandatory in simple bind"),
]
OTHERS = [
    lx.LDAPOperationResult(result=32, description="noSuchObject"),
    lx.LDAPOperationResult(result=3, description="timeLimitExceeded"),  # the server's limit
    lx.LDAPOperationResult(result=4, description="sizeLimitExceeded"),
    lx.LDAPOperationResult(result=50, description="insufficientAccessRights"),
    lx.LDAPInvalidFilterError("bad filter"),
    lx.LDAPSSLConfigurationError("invalid CA public key file"),
    ValueError(),
    KeyError(),
]


@pytest.mark.parametrize(
    ("error", "kind"),
    [(e, ErrorKind.TIMEOUT) for e in TIMEOUTS]
    + [(e, ErrorKind.DOWN) for e in DOWNS]
    + [(e, ErrorKind.CREDENTIALS) for e in CREDENTIALS]
    + [(e, ErrorKind.OTHER) for e in OTHERS],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify(error: BaseException, kind: ErrorKind) -> None:
    assert Ldap3Driver().classify(error) is kind


# --- construction -----------------------------------------------------------------


def test_registry_builds_it_with_no_arguments() -> None:
    driver = resolve("ldap3")
    assert isinstance(driver, Ldap3Driver)
    assert driver.name == "ldap3"


def test_get_info_defaults_to_none_and_can_be_overridden() -> None:
    assert Ldap3Driver().get_info == ldap3.NONE
    assert Ldap3Driver(get_info=ldap3.SCHEMA).get_info == ldap3.SCHEMA
    built = Ldap3Driver(get_info=ldap3.DSA)._ldap3_server(server(), ConnectSettings())
    assert built.get_info == ldap3.DSA
    assert Ldap3Driver()._ldap3_server(server(), ConnectSettings()).get_info == ldap3.NONE


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"get_info": 1}, TypeError, "get_info"),
        ({"get_info": "EVERYTHING"}, ValueError, "get_info"),
        ({"connection_options": ["read_only"]}, TypeError, "connection_options"),
        ({"connection_options": {"password": "x"}}, ValueError, "connection_options"),
        (
            {"connection_options": {"client_strategy": "REUSABLE"}},
            ValueError,
            "connection_options",
        ),
        ({"connection_options": {"lazy": True}}, ValueError, "connection_options"),
        ({"connection_options": {"no_such_option": 1}}, ValueError, "no_such_option"),
        ({"connection_options": {"source_port": 1, "source_port_list": [2]}}, ValueError, "port"),
        ({"server_options": {"connect_timeout": 3}}, ValueError, "server_options"),
        ({"server_options": {"nope": 3}}, ValueError, "server_options"),
        ({"tls_options": {"validate": ssl.CERT_NONE}}, ValueError, "tls_options"),
        ({"tls_options": {"ca_certs_path": "/no/such/dir"}}, ValueError, "ldap3 options"),
        ({"tls_options": "x"}, TypeError, "tls_options"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], error: type, names: str) -> None:
    with pytest.raises(error, match=names):
        Ldap3Driver(**kwargs)  # type: ignore[arg-type]


def test_good_options_are_passed_through() -> None:
    driver = Ldap3Driver(
        connection_options={"read_only": True},
        server_options={"mode": ldap3.IP_V4_ONLY},
        tls_options={"ciphers": "HIGH", "local_private_key_password": "key-secret"},
    )
    built = driver._ldap3_server(server("ldaps", port=636), ConnectSettings())
    assert built.mode == ldap3.IP_V4_ONLY
    assert built.tls.ciphers == "HIGH"
    assert "key-secret" not in repr(driver)


# --- ldap3.Server and Tls built from the settings ----------------------------------


def test_tls_verifies_certificates_by_default() -> None:
    tls = TLSSettings(ca_file=__file__, cert_file="client.pem", key_file="client.key")
    built = Ldap3Driver()._ldap3_server(
        server("ldaps", "ldap.example.org", None), ConnectSettings(tls=tls)
    )
    assert built.ssl and built.port == 636
    assert built.tls.validate == ssl.CERT_REQUIRED  # ldap3's own default is CERT_NONE
    assert built.tls.ca_certs_file == __file__
    assert (built.tls.certificate_file, built.tls.private_key_file) == ("client.pem", "client.key")
    assert built.tls.sni == "ldap.example.org"


def test_tls_verification_can_be_turned_off() -> None:
    settings = ConnectSettings(use_tls=True, tls=TLSSettings(verify=False))
    built = Ldap3Driver()._ldap3_server(server(), settings)
    assert not built.ssl
    assert built.tls.validate == ssl.CERT_NONE


def test_no_tls_object_without_tls() -> None:
    built = Ldap3Driver()._ldap3_server(server(port=None), ConnectSettings(timeout=2.5))
    assert (built.tls, built.ssl, built.port, built.connect_timeout) == (None, False, 389, 2.5)


def test_ipv6_literal() -> None:
    built = Ldap3Driver()._ldap3_server(server(host="[::1]", port=1389), ConnectSettings())
    assert (built.host, built.port) == ("::1", 1389)


def test_ldapi_uses_the_socket_path() -> None:
    path = "/run/slapd/ldapi"
    ldapi = Server(uri="ldapi://%2Frun%2Fslapd%2Fldapi", scheme="ldapi", host=path, port=None)
    built = Ldap3Driver()._ldap3_server(ldapi, ConnectSettings())
    assert built.ipc and built.host == path
    assert tuple(built.address_info[0][:2]) == (socket.AF_UNIX, socket.SOCK_STREAM)
    assert built.address_info[0][4] == path


def test_ldapi_without_a_path_is_refused() -> None:
    ldapi = Server(uri="ldapi://", scheme="ldapi", host="", port=None)
    with pytest.raises(ValueError, match="socket path"):
        Ldap3Driver().connect(ldapi, ConnectSettings())


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_non_positive_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Ldap3Driver().connect(server(), ConnectSettings(timeout=timeout))


# --- bind, identity, ping (MOCK_SYNC) ---------------------------------------------


def test_native_is_a_plain_ldap3_connection(mock: Ldap3Connection) -> None:
    assert isinstance(mock.native, ldap3.Connection)
    mock.bind(ALICE, ALICE_PW)
    assert mock.native.search("o=test", "(objectClass=person)") is True
    assert mock.native.entries[0].entry_dn == ALICE


def test_bind_clears_the_password(mock: Ldap3Connection) -> None:
    mock.bind(ALICE, ALICE_PW)
    assert mock.native.bound
    assert mock.native.password is None
    assert mock.native.request is None  # ldap3 keeps the bind request, password included
    assert ALICE_PW not in repr(mock.native)


def test_failed_bind_raises_with_the_result(mock: Ldap3Connection) -> None:
    with pytest.raises(lx.LDAPInvalidCredentialsResult) as caught:
        mock.bind(ALICE, "wrong")
    assert caught.value.description == "invalidCredentials"
    assert Ldap3Driver().classify(caught.value) is ErrorKind.CREDENTIALS
    assert mock.native.password is None


@pytest.mark.parametrize(("who", "cred"), [(ALICE, None), (ALICE, ""), (None, ALICE_PW)])
def test_half_credentials_are_refused_client_side(
    mock: Ldap3Connection, who: str | None, cred: str | None
) -> None:
    # A DN with an empty password would be an unauthenticated bind: anonymous.
    with pytest.raises(lx.LDAPException) as caught:
        mock.bind(who, cred)
    assert Ldap3Driver().classify(caught.value) is ErrorKind.CREDENTIALS


def test_anonymous_bind(mock: Ldap3Connection) -> None:
    mock.bind(None, None)
    assert mock.native.bound and mock.native.authentication == ldap3.ANONYMOUS
    assert not mock.identity_changed()


def test_identity_changed_by_the_holder_only(mock: Ldap3Connection) -> None:
    mock.bind(ALICE, ALICE_PW)
    assert not mock.identity_changed()
    mock.native.rebind(ALICE, ALICE_PW)
    assert mock.identity_changed()
    mock.bind(ALICE, ALICE_PW)  # the pool's own bind resets it
    assert not mock.identity_changed()
    with pytest.raises(lx.LDAPPasswordIsMandatoryError):  # the password was not kept
        mock.native.bind()
    assert mock.identity_changed()
    mock.bind(ALICE, ALICE_PW)
    mock.native.unbind()
    assert mock.identity_changed()


def test_a_failed_pool_bind_counts_as_changed(mock: Ldap3Connection) -> None:
    mock.bind(ALICE, ALICE_PW)
    with pytest.raises(lx.LDAPInvalidCredentialsResult):
        mock.bind(ALICE, "wrong")
    assert mock.identity_changed()  # RFC 4511: a failed bind leaves it anonymous


def test_ping(mock: Ldap3Connection) -> None:
    mock.bind(ALICE, ALICE_PW)
    mock.ping()
    assert mock.native.result["responseValue"] == ALICE.encode()


def test_ping_raises_on_a_failed_result() -> None:
    native = PooledConnection(ldap3.Server("mock"), client_strategy=ldap3.MOCK_SYNC)
    conn = Ldap3Connection(native)
    conn.bind(None, None)
    with pytest.raises(lx.LDAPUnwillingToPerformResult):  # no server info: no WhoAmI
        conn.ping()


def test_close_and_abandon_never_raise(mock: Ldap3Connection) -> None:
    mock.bind(ALICE, ALICE_PW)
    mock.close()
    mock.close()
    mock.abandon()
    assert not mock.looks_alive()


# --- real sockets, no LDAP server ---------------------------------------------------


def test_refused_is_down() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = port_of(sock)  # closed below: nothing listens there any more
    with pytest.raises(lx.LDAPSocketOpenError) as caught:
        Ldap3Driver().connect(server(port=port), ConnectSettings(timeout=2))
    assert Ldap3Driver().classify(caught.value) is ErrorKind.DOWN


@pytest.mark.parametrize("use_tls", [False, True])
def test_silent_server_costs_at_most_timeout(listener: socket.socket, use_tls: bool) -> None:
    driver = Ldap3Driver()
    settings = ConnectSettings(timeout=0.3, use_tls=use_tls)
    start = time.monotonic()
    with pytest.raises(lx.LDAPException) as caught:
        driver.connect(server(port=port_of(listener)), settings).bind(ALICE, ALICE_PW)
    assert time.monotonic() - start < BOUND
    assert driver.classify(caught.value) is ErrorKind.TIMEOUT


def test_silent_server_ldaps_handshake_costs_at_most_timeout(listener: socket.socket) -> None:
    driver = Ldap3Driver()
    start = time.monotonic()
    with pytest.raises(lx.LDAPSocketOpenError) as caught:
        driver.connect(server("ldaps", port=port_of(listener)), ConnectSettings(timeout=0.3))
    assert time.monotonic() - start < BOUND
    assert driver.classify(caught.value) is ErrorKind.TIMEOUT


def test_failed_connect_closes_its_socket(listener: socket.socket) -> None:
    settings = ConnectSettings(timeout=0.2, use_tls=True)
    with pytest.raises(lx.LDAPException):
        Ldap3Driver().connect(server(port=port_of(listener)), settings)
    peer = accept(listener)
    assert peer.recv(1024)[:1] == b"\x30"  # the StartTLS request...
    assert peer.recv(1024) == b""  # ...then the client closed


def test_timeouts_apply_to_each_operation(listener: socket.socket) -> None:
    conn = Ldap3Driver().connect(server(port=port_of(listener)), ConnectSettings(timeout=0.25))
    assert conn.native.socket.gettimeout() == 0.25
    assert conn.native.receive_timeout == 1  # whole seconds, for ldap3's own reopen
    start = time.monotonic()
    with pytest.raises(lx.LDAPSocketReceiveError):
        conn.ping()
    assert time.monotonic() - start < BOUND
    assert not conn.looks_alive() and conn.identity_changed()


def test_looks_alive_until_the_server_closes_or_resets(listener: socket.socket) -> None:
    driver = Ldap3Driver()
    first = driver.connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    second = driver.connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer1, peer2 = accept(listener), accept(listener)
    assert first.looks_alive() and second.looks_alive()
    assert first.looks_alive()  # the cached probe, again
    peer1.close()
    peer2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer2.close()
    assert eventually(lambda: not first.looks_alive())
    assert eventually(lambda: not second.looks_alive())


def test_close_unbinds_and_closes(listener: socket.socket) -> None:
    conn = Ldap3Driver().connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer = accept(listener)
    conn.close()
    data = peer.recv(1024)
    assert data[:1] == b"\x30" and b"\x42\x00" in data  # UnbindRequest ::= [APPLICATION 2] NULL
    assert peer.recv(1024) == b""
    assert not conn.looks_alive()
    conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_abandon_in_a_child_leaves_the_parent_connection_alone(listener: socket.socket) -> None:
    conn = Ldap3Driver().connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer = accept(listener)
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            conn.abandon()
            conn.abandon()
            conn.close()  # after abandon: nothing left to send on
            code = 0 if conn.native.closed and not conn.looks_alive() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    peer.settimeout(0.2)
    with pytest.raises(TimeoutError):  # no unbind, no FIN: the child sent nothing
        peer.recv(1024)
    assert conn.looks_alive()
    conn.native.socket.sendall(b"still mine")
    peer.settimeout(2)
    assert peer.recv(1024) == b"still mine"
    conn.close()


# --- the password check and SASL binds ----------------------------------------------

PPOLICY_OID = b"1.3.6.1.4.1.42.2.27.8.5.1"


def ber(tag: int, body: bytes) -> bytes:
    """One short-form BER element."""
    return bytes([tag, len(body)]) + body


def next_id() -> int:
    """The message ID of ldap3's next request: one counter for the whole process."""
    return int(ldap3.Server._message_counter) + 1


def integer(number: int) -> bytes:
    return ber(0x02, number.to_bytes(number.bit_length() // 8 + 1, "big"))


def bind_response(msgid: int, result: int = 0, *controls: bytes) -> bytes:
    """A BindResponse, with ``[0] Controls`` when controls (their SEQUENCEs) are given."""
    op = ber(0x61, ber(0x0A, bytes([result])) + ber(0x04, b"") * 2)
    tail = ber(0xA0, b"".join(controls)) if controls else b""
    return ber(0x30, integer(msgid) + op + tail)


def one_bind_request(sent: bytes) -> bool:
    """Whether ``sent`` is exactly one LDAPMessage holding a BindRequest."""
    return sent[:2] == bytes([0x30, len(sent) - 2]) and sent[4 + sent[3]] == 0x60


def ppolicy_control(value: bytes) -> bytes:
    return ber(0x30, ber(0x04, PPOLICY_OID) + ber(0x04, value))


LOCKED = ppolicy_control(bytes.fromhex("3003810101"))  # error: accountLocked
EXPIRING = ppolicy_control(bytes.fromhex("3006a0048002012c"))  # 300 s before expiry
GRACE = ppolicy_control(bytes.fromhex("3008a003810102810100"))  # 2 graces, expired
# The request control as sent: the OID alone (criticality FALSE and no value omitted).
PPOLICY_REQUEST = ber(0xA0, ber(0x30, ber(0x04, PPOLICY_OID)))


def received(peer: socket.socket) -> bytes:
    peer.settimeout(0.2)
    try:
        return peer.recv(65536)
    except TimeoutError:
        return b""
    finally:
        peer.settimeout(2)


@pytest.fixture
def wire(listener: socket.socket) -> Iterator[tuple[Ldap3Connection, socket.socket]]:
    """A real SYNC connection whose server is the test: it writes canned answers (ahead
    of the request: the client reads after it writes) and reads what was sent."""
    conn = Ldap3Driver().connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer = accept(listener)
    yield conn, peer
    conn.close()
    peer.close()


def clean(conn: Ldap3Connection, secret: str) -> bool:
    """No password, request or SASL credentials left, nor the secret anywhere."""
    native = conn.native
    return (
        native.password is None
        and native.request is None
        and native.sasl_credentials is None
        and secret not in repr(vars(native))
    )


def test_check_password_bound_with_a_warning(wire: tuple[Ldap3Connection, socket.socket]) -> None:
    conn, peer = wire
    peer.sendall(bind_response(next_id(), 0, EXPIRING))
    assert conn.check_password(ALICE, ALICE_PW) == BindAnswer(policy=PasswordPolicy(300))
    sent = received(peer)
    assert one_bind_request(sent) and sent.endswith(PPOLICY_REQUEST)
    assert ALICE_PW.encode() in sent
    assert not conn.identity_changed()
    assert conn.native.bound and conn.native._connection_time is not None
    assert clean(conn, ALICE_PW)


def test_check_password_bound_without_a_policy_answer(mock: Ldap3Connection) -> None:
    assert mock.check_password(ALICE, ALICE_PW) == BindAnswer()
    assert not mock.identity_changed()
    assert clean(mock, ALICE_PW)
    mock.ping()  # bound as alice
    assert mock.native.result["responseValue"] == ALICE.encode()


@pytest.mark.parametrize(
    ("control", "policy"),
    [
        (LOCKED, PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)),
        (GRACE, PasswordPolicy(grace_logins_left=2, error=PolicyError.PASSWORD_EXPIRED)),
        (None, None),
        (ppolicy_control(b"\x30\x05\x81"), None),  # malformed: no policy, no exception
    ],
    ids=["locked", "grace", "no-control", "malformed"],
)
def test_check_password_refused(
    wire: tuple[Ldap3Connection, socket.socket],
    control: bytes | None,
    policy: PasswordPolicy | None,
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(next_id(), 49, *[c for c in [control] if c]))
    answer = conn.check_password(ALICE, "wrong")
    assert isinstance(answer.refusal, lx.LDAPInvalidCredentialsResult)
    assert Ldap3Driver().classify(answer.refusal) is ErrorKind.CREDENTIALS
    assert answer.policy == policy
    assert b"wrong" in received(peer)
    assert not conn.identity_changed()  # the pool's bind, refused or not
    assert clean(conn, "wrong")
    peer.sendall(bind_response(next_id()))  # still usable
    conn.bind(ALICE, ALICE_PW)


def test_check_password_refused_with_raise_exceptions(listener: socket.socket) -> None:
    driver = Ldap3Driver(connection_options={"raise_exceptions": True})
    conn = driver.connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer = accept(listener)
    try:
        peer.sendall(bind_response(next_id(), 49, LOCKED))
        answer = conn.check_password(ALICE, "wrong")  # ldap3 raised it: returned all the same
        assert isinstance(answer.refusal, lx.LDAPInvalidCredentialsResult)
        assert answer.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
        assert not conn.identity_changed() and clean(conn, "wrong")
    finally:
        conn.close()
        peer.close()


def test_check_password_refused_client_side(mock: Ldap3Connection) -> None:
    mock.native.result = {"result": 0, "controls": {PPOLICY_OID.decode(): {"value": b"0\x00"}}}
    answer = mock.check_password(ALICE, "")  # would be an unauthenticated bind
    assert isinstance(answer.refusal, lx.LDAPPasswordIsMandatoryError)
    assert answer.policy is None  # not the previous result's


def test_check_password_raises_a_lost_connection(
    wire: tuple[Ldap3Connection, socket.socket],
) -> None:
    conn, peer = wire
    peer.close()
    with pytest.raises(lx.LDAPException) as caught:
        conn.check_password(ALICE, ALICE_PW)
    assert Ldap3Driver().classify(caught.value) is ErrorKind.DOWN
    assert conn.identity_changed()
    assert clean(conn, ALICE_PW)


def test_check_password_raises_a_timeout(listener: socket.socket) -> None:
    conn = Ldap3Driver().connect(server(port=port_of(listener)), ConnectSettings(timeout=0.25))
    peer = accept(listener)
    try:
        with pytest.raises(lx.LDAPException) as caught:
            conn.check_password(ALICE, ALICE_PW)
        assert Ldap3Driver().classify(caught.value) is ErrorKind.TIMEOUT
        assert received(peer).count(ALICE_PW.encode()) == 1  # sent once, never repeated
        assert conn.identity_changed()  # the answer may still come
        assert clean(conn, ALICE_PW)
    finally:
        conn.close()
        peer.close()


def test_check_password_raises_a_busy_server(wire: tuple[Ldap3Connection, socket.socket]) -> None:
    conn, peer = wire
    peer.sendall(bind_response(next_id(), 51, LOCKED))
    with pytest.raises(lx.LDAPBusyResult):
        conn.check_password(ALICE, ALICE_PW)
    assert conn.identity_changed()


class BindCall:
    """Stands in for ldap3.Connection.bind: notes what the connection holds, answers."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or {"result": 0, "description": "success"}
        self.seen: list[tuple[Any, ...]] = []

    def __call__(self, native: Any, read_server_info: bool = True, controls: Any = None) -> bool:
        self.seen.append((native.authentication, native.sasl_mechanism, native.sasl_credentials))
        if native.closed:
            native.open(read_server_info=False)
        native.request = {"saslCredentials": repr(native.sasl_credentials)}
        native.result = self.answer
        return bool(self.answer["result"] == 0)


@pytest.fixture
def bind_call(monkeypatch: pytest.MonkeyPatch) -> BindCall:
    call = BindCall()
    monkeypatch.setattr(ldap3.Connection, "bind", call)
    return call


@pytest.mark.parametrize(
    ("sasl", "credentials"),
    [
        (Sasl.external(), ""),  # an empty initial response: never absent
        (Sasl.external(""), ""),
        (Sasl.external("dn:cn=x"), "dn:cn=x"),  # the credentials octet string itself
        (
            Sasl("DIGEST-MD5", "dn:cn=x", user="alice", secret=lambda: "s3cret"),
            (None, "alice", "s3cret", "dn:cn=x"),
        ),
        (
            Sasl("DIGEST-MD5", user="alice", secret=lambda: "s3cret"),
            (None, "alice", "s3cret", None),
        ),
        (Sasl("PLAIN", user="alice", secret=lambda: "s3cret"), (None, "alice", "s3cret")),
        (
            Sasl("PLAIN", "u:bob", user="alice", secret=lambda: "s3cret"),
            ("u:bob", "alice", "s3cret"),
        ),
    ],
    ids=[
        "external",
        "external-empty",
        "external-authz",
        "digest-authz",
        "digest",
        "plain",
        "plain-authz",
    ],
)
def test_sasl_bind_arguments(
    mock: Ldap3Connection, bind_call: BindCall, sasl: Sasl, credentials: object
) -> None:
    mock.native._ldappool_identity_changed = True  # e.g. a holder's bind before
    mock.sasl_bind(sasl)
    assert bind_call.seen == [(ldap3.SASL, sasl.mechanism, credentials)]
    assert not mock.identity_changed()
    assert mock.native._connection_time is not None
    assert clean(mock, "s3cret")


def test_sasl_bind_asks_for_the_secret_each_time(
    mock: Ldap3Connection, bind_call: BindCall
) -> None:
    asked: list[int] = []

    def secret() -> str:
        asked.append(1)
        return "s3cret"

    sasl = Sasl("DIGEST-MD5", user="alice", secret=secret)
    mock.sasl_bind(sasl)
    mock.sasl_bind(sasl)
    assert len(asked) == 2
    assert clean(mock, "s3cret")


def test_sasl_gssapi(mock: Ldap3Connection, bind_call: BindCall) -> None:
    try:
        import ldap3.protocol.sasl.kerberos
    except lx.LDAPPackageUnavailableError:
        with pytest.raises(ValueError, match="gssapi package"):
            mock.sasl_bind(Sasl("GSSAPI"))
        assert bind_call.seen == []
    else:
        mock.sasl_bind(Sasl("GSSAPI", "u:bob"))
        assert bind_call.seen == [(ldap3.SASL, "GSSAPI", (None, "u:bob"))]


@pytest.mark.parametrize(
    ("sasl", "complaint"),
    [
        (Sasl("CRAM-MD5", user="a", secret=lambda: "b"), "'CRAM-MD5'"),
        (Sasl("SCRAM-SHA-256", user="a", secret=lambda: "b"), "'SCRAM-SHA-256'"),
        (Sasl("DIGEST-MD5", user="alice"), "DIGEST-MD5 needs"),
        (Sasl("PLAIN", secret=lambda: "pw"), "PLAIN needs"),
    ],
)
def test_sasl_bind_refuses_what_it_cannot_do(
    mock: Ldap3Connection, bind_call: BindCall, sasl: Sasl, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        mock.sasl_bind(sasl)
    assert bind_call.seen == []


@pytest.mark.parametrize("authz_id", ["dn:cn=x", None])
def test_sasl_bind_on_the_wire(
    wire: tuple[Ldap3Connection, socket.socket], authz_id: str | None
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(next_id()))
    conn.sasl_bind(Sasl.external(authz_id))
    sent = received(peer)
    # The credentials are there even when empty: absent, slapd would ask for them.
    credentials = (authz_id or "").encode()
    assert sent.endswith(ber(0xA3, ber(0x04, b"EXTERNAL") + ber(0x04, credentials)))
    assert conn.native.bound and not conn.identity_changed()
    assert clean(conn, "dn:cn=x")


@pytest.mark.parametrize("raise_exceptions", [False, True])
def test_sasl_bind_refused(listener: socket.socket, raise_exceptions: bool) -> None:
    driver = Ldap3Driver(connection_options={"raise_exceptions": raise_exceptions})
    conn = driver.connect(server(port=port_of(listener)), ConnectSettings(timeout=2))
    peer = accept(listener)
    try:
        peer.sendall(bind_response(next_id(), 48))
        with pytest.raises(lx.LDAPInappropriateAuthenticationResult):
            conn.sasl_bind(Sasl("PLAIN", user="alice", secret=lambda: "s3cret"))
        assert not conn.identity_changed()  # the pool's bind, refused or not
        assert clean(conn, "s3cret")
    finally:
        conn.close()
        peer.close()


def test_sasl_bind_lost(wire: tuple[Ldap3Connection, socket.socket]) -> None:
    conn, peer = wire
    peer.close()
    with pytest.raises(lx.LDAPException) as caught:
        conn.sasl_bind(Sasl("PLAIN", user="alice", secret=lambda: "s3cret"))
    assert Ldap3Driver().classify(caught.value).transient
    assert conn.identity_changed()
    assert clean(conn, "s3cret")
