"""The python-ldap driver, without an LDAP server.

The "server" is the far end of a socketpair handed to libldap with ``fileno=``: the
real python-ldap and libldap code paths run, the test writes canned BER answers and
reads what the client sent. The same checks against a real slapd live in
tests/integration.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ldap = pytest.importorskip("ldap")
slapdtest = pytest.importorskip("slapdtest")

from ldappool._drivers import _python_ldap_setup, python_ldap  # noqa: E402
from ldappool._drivers.python_ldap import (  # noqa: E402
    PooledLDAPObject,
    PythonLdapConnection,
    PythonLdapDriver,
)
from ldappool._port import (  # noqa: E402
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
from ldappool._registry import resolve  # noqa: E402
from tests.unit.polling import eventually  # noqa: E402

CERTS = Path(slapdtest.__file__).parent / "certs"
# Never reached: connect() is lazy unless StartTLS is asked.
PLAIN = Server(uri="ldap://127.0.0.1:9", scheme="ldap", host="127.0.0.1", port=9)
LDAPS = Server(uri="ldaps://127.0.0.1:9", scheme="ldaps", host="127.0.0.1", port=9)
GLOBAL_OPTIONS = (
    ldap.OPT_PROTOCOL_VERSION,
    ldap.OPT_REFERRALS,
    ldap.OPT_NETWORK_TIMEOUT,
    ldap.OPT_TIMEOUT,
    ldap.OPT_SIZELIMIT,
    ldap.OPT_CONNECT_ASYNC,
    ldap.OPT_X_TLS_CACERTFILE,
    ldap.OPT_X_TLS_CERTFILE,
    ldap.OPT_X_TLS_KEYFILE,
    ldap.OPT_X_TLS_REQUIRE_CERT,
)


def ber(tag: int, body: bytes) -> bytes:
    """One short-form BER element."""
    return bytes([tag, len(body)]) + body


def bind_response(msgid: int, result: int = 0) -> bytes:
    """BER of a BindResponse: SEQUENCE { msgid, [APPLICATION 1] { result, "", "" } }."""
    return bytes([0x30, 0x0C, 0x02, 0x01, msgid, 0x61, 0x07, 0x0A, 0x01, result]) + bytes(
        [0x04, 0x00, 0x04, 0x00]
    )


@pytest.fixture
def wire() -> Iterator[tuple[PythonLdapConnection, socket.socket]]:
    """A connection whose socket's far end is the test's."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    native = PooledLDAPObject("ldap://127.0.0.1", fileno=ours.detach())
    native.set_option(ldap.OPT_TIMEOUT, 5.0)
    native.timeout = 5.0  # a missing answer fails the test instead of hanging it
    conn = PythonLdapConnection(native, "ldap://127.0.0.1")
    yield conn, theirs
    conn.close()
    theirs.close()


@pytest.fixture
def bound_wire(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> tuple[PythonLdapConnection, socket.socket]:
    """The wire, after an anonymous bind (answered), with nothing left to read."""
    conn, peer = wire
    peer.sendall(bind_response(1))
    conn.bind(None, None)
    drain(peer)
    return conn, peer


def drain(peer: socket.socket) -> bytes:
    peer.settimeout(0.2)
    try:
        return peer.recv(65536)
    except TimeoutError:
        return b""
    finally:
        peer.settimeout(5)


def global_options() -> dict[int, object]:
    return {option: ldap.get_option(option) for option in GLOBAL_OPTIONS}


# -- driver ---------------------------------------------------------------------------


def test_registry_builds_it_with_no_arguments() -> None:
    driver = resolve("python-ldap")
    assert isinstance(driver, PythonLdapDriver)
    assert isinstance(driver, Driver)
    assert driver.name == "python-ldap"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ldap.INVALID_CREDENTIALS({"result": 49}), ErrorKind.CREDENTIALS),
        (ldap.INAPPROPRIATE_AUTH({"result": 48}), ErrorKind.CREDENTIALS),
        (ldap.SERVER_DOWN({"result": -1}), ErrorKind.DOWN),
        (ldap.SERVER_DOWN({"result": -1, "errno": errno.ECONNREFUSED}), ErrorKind.DOWN),
        (ldap.CONNECT_ERROR({"result": -11}), ErrorKind.DOWN),
        (ldap.UNAVAILABLE({"result": 52}), ErrorKind.DOWN),
        (ldap.BUSY({"result": 51}), ErrorKind.DOWN),
        (ConnectionResetError(errno.ECONNRESET, "reset"), ErrorKind.DOWN),
        (OSError(errno.EPIPE, "broken pipe"), ErrorKind.DOWN),
        (ldap.TIMEOUT({"result": -5}), ErrorKind.TIMEOUT),
        (ldap.SERVER_DOWN({"result": -1, "errno": errno.ETIMEDOUT}), ErrorKind.TIMEOUT),
        (TimeoutError("socket timed out"), ErrorKind.TIMEOUT),
        # The server's own search time limit: the connection is fine.
        (ldap.TIMELIMIT_EXCEEDED({"result": 3}), ErrorKind.OTHER),
        (ldap.SIZELIMIT_EXCEEDED({"result": 4}), ErrorKind.OTHER),
        (ldap.NO_SUCH_OBJECT({"result": 32}), ErrorKind.OTHER),
        (ldap.INSUFFICIENT_ACCESS({"result": 50}), ErrorKind.OTHER),
        (ldap.LDAPError("anything else"), ErrorKind.OTHER),
        (ValueError("not LDAP at all"), ErrorKind.OTHER),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_classify(error: BaseException, kind: ErrorKind) -> None:
    assert PythonLdapDriver().classify(error) is kind


def test_options_are_set_per_connection_and_globals_untouched() -> None:
    before = global_options()
    tls = TLSSettings(
        ca_file=str(CERTS / "ca.pem"),
        cert_file=str(CERTS / "client.pem"),
        key_file=str(CERTS / "client.key"),
    )
    driver = PythonLdapDriver(options={ldap.OPT_SIZELIMIT: 7})
    conn = driver.connect(LDAPS, ConnectSettings(timeout=2.5, tls=tls))
    native = conn.native
    try:
        assert type(native) is PooledLDAPObject
        assert isinstance(native, ldap.ldapobject.SimpleLDAPObject)
        assert native.get_option(ldap.OPT_PROTOCOL_VERSION) == ldap.VERSION3
        assert native.get_option(ldap.OPT_REFERRALS) == 0
        assert native.get_option(ldap.OPT_NETWORK_TIMEOUT) == 2.5
        assert native.get_option(ldap.OPT_TIMEOUT) == 2.5
        assert native.timeout == 2.5
        assert native.get_option(ldap.OPT_CONNECT_ASYNC)  # bounds the TLS handshake
        assert native.get_option(ldap.OPT_X_TLS_CACERTFILE) == tls.ca_file
        assert native.get_option(ldap.OPT_X_TLS_CERTFILE) == tls.cert_file
        assert native.get_option(ldap.OPT_X_TLS_KEYFILE) == tls.key_file
        assert native.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_DEMAND
        assert native.get_option(ldap.OPT_SIZELIMIT) == 7
        assert native.get_option(ldap.OPT_DESC) == -1  # lazy: nothing opened yet
    finally:
        conn.close()
    assert global_options() == before


def test_no_limit_and_no_verification() -> None:
    before = global_options()
    settings = ConnectSettings(timeout=None, tls=TLSSettings(verify=False))
    conn = PythonLdapDriver().connect(LDAPS, settings)
    native = conn.native
    assert native.get_option(ldap.OPT_NETWORK_TIMEOUT) is None
    assert native.get_option(ldap.OPT_TIMEOUT) is None
    assert native.timeout == -1
    assert native.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_NEVER
    conn.close()
    assert global_options() == before


def test_plain_connection_gets_no_tls_material() -> None:
    settings = ConnectSettings(timeout=1.0, tls=TLSSettings(ca_file=str(CERTS / "ca.pem")))
    conn = PythonLdapDriver().connect(PLAIN, settings)
    native = conn.native
    assert native.get_option(ldap.OPT_X_TLS_CACERTFILE) is None
    assert not native.get_option(ldap.OPT_CONNECT_ASYNC)
    conn.close()


def test_verification_without_ca_file_uses_the_default_trust_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connection's own TLS context does not inherit ldap.conf's TLS_CACERT.
    conn = PythonLdapDriver().connect(LDAPS, ConnectSettings(timeout=1.0, tls=TLSSettings()))
    expected = ldap.get_option(ldap.OPT_X_TLS_CACERTFILE)
    if expected:
        assert conn.native.get_option(ldap.OPT_X_TLS_CACERTFILE) == expected
    conn.close()
    monkeypatch.setattr(ldap, "get_option", lambda option: None)
    assert _python_ldap_setup._default_trust() in {
        (ssl.get_default_verify_paths().cafile, None),
        (None, ssl.get_default_verify_paths().capath),
    }


def test_extra_options_come_after_ours() -> None:
    driver = PythonLdapDriver(options={ldap.OPT_NETWORK_TIMEOUT: 9.0})
    conn = driver.connect(PLAIN, ConnectSettings(timeout=1.0))
    assert conn.native.get_option(ldap.OPT_NETWORK_TIMEOUT) == 9.0
    assert conn.native.get_option(ldap.OPT_TIMEOUT) == 1.0
    conn.close()


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_zero_timeout_is_refused(timeout: float) -> None:
    # python-ldap would turn every synchronous call into a poll returning None.
    with pytest.raises(ValueError, match="timeout"):
        PythonLdapDriver().connect(PLAIN, ConnectSettings(timeout=timeout))


def test_failed_starttls_releases_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[PooledLDAPObject] = []

    def refuse(self: PooledLDAPObject) -> None:
        raise ldap.CONNECT_ERROR({"result": -11, "desc": "Connect error"})

    original = PooledLDAPObject.unbind_ext

    def unbind_ext(self: PooledLDAPObject, *args: object) -> object:
        released.append(self)
        return original(self, *args)

    monkeypatch.setattr(PooledLDAPObject, "start_tls_s", refuse)
    monkeypatch.setattr(PooledLDAPObject, "unbind_ext", unbind_ext)
    with pytest.raises(ldap.CONNECT_ERROR):
        PythonLdapDriver().connect(PLAIN, ConnectSettings(timeout=1.0, use_tls=True))
    assert len(released) == 1
    assert "_l" not in released[0].__dict__  # unbound: the C object is freed


def test_starttls_failure_keeps_the_ldap_exception() -> None:
    # Nothing listens on the port: StartTLS forces the (refused) connect.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(f"ldap://127.0.0.1:{port}", "ldap", "127.0.0.1", port)
    driver = PythonLdapDriver()
    with pytest.raises(ldap.LDAPError) as caught:
        driver.connect(server, ConnectSettings(timeout=2.0, use_tls=True))
    assert driver.classify(caught.value) in {ErrorKind.DOWN, ErrorKind.TIMEOUT}


# -- connection: fresh object, no socket ------------------------------------------------


def test_fresh_connection_lifecycle() -> None:
    conn = PythonLdapDriver().connect(PLAIN, ConnectSettings(timeout=1.0))
    assert isinstance(conn, Connection)
    assert conn.looks_alive()  # no socket yet: nothing the server could have closed
    assert not conn.identity_changed()
    conn.close()
    conn.close()
    assert not conn.looks_alive()


def test_fresh_connection_abandon() -> None:
    conn = PythonLdapDriver().connect(PLAIN, ConnectSettings(timeout=1.0))
    conn.abandon()
    conn.abandon()
    conn.close()
    assert not conn.looks_alive()


def test_looks_alive_is_false_when_the_object_is_unbound() -> None:
    conn = PythonLdapDriver().connect(PLAIN, ConnectSettings(timeout=1.0))
    conn.native.unbind_ext()  # by its holder: OPT_DESC now raises
    assert not conn.looks_alive()
    assert conn.identity_changed()
    conn.close()


# -- connection over a socketpair -----------------------------------------------------


def test_adapter_bind_is_not_an_identity_change(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1))
    conn.bind("cn=svc", "secret")
    assert b"cn=svc" in drain(peer)
    assert not conn.identity_changed()
    assert conn.looks_alive()


@pytest.mark.parametrize(
    "holder_bind",
    [
        lambda n: n.simple_bind_s("cn=other", "pw"),
        lambda n: n.bind_s("cn=other", "pw"),
        lambda n: n.result(n.simple_bind("cn=other", "pw")),
        lambda n: n.sasl_bind_s("", "PLAIN", b"\0other\0pw"),
    ],
    ids=["simple_bind_s", "bind_s", "simple_bind", "sasl_bind_s"],
)
def test_holder_bind_is_an_identity_change(
    wire: tuple[PythonLdapConnection, socket.socket], holder_bind: object
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1) + bind_response(2) + bind_response(3))
    conn.bind("cn=svc", "secret")
    assert callable(holder_bind)
    holder_bind(conn.native)
    assert conn.identity_changed()
    conn.bind("cn=svc", "secret")  # the pool's own rebind resets it
    assert not conn.identity_changed()


def test_failed_holder_bind_counts_too(wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1) + bind_response(2, result=49))
    conn.bind("cn=svc", "secret")
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        conn.native.simple_bind_s("cn=svc", "wrong")
    assert conn.identity_changed()  # a failed bind leaves the connection anonymous


def test_sasl_interactive_bind_is_an_identity_change(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1) + bind_response(2))
    conn.bind(None, None)
    # Whatever libsasl thinks of the canned answer, the attempt counts.
    with contextlib.suppress(ldap.LDAPError):
        conn.native.sasl_external_bind_s()  # through sasl_interactive_bind_s
    assert conn.identity_changed()


def test_holder_unbind_is_an_identity_change(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1))
    conn.bind("cn=svc", "secret")
    conn.native.unbind_s()
    assert conn.identity_changed()
    assert not conn.looks_alive()


def test_wrong_password_raises_invalid_credentials(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1, result=49))
    with pytest.raises(ldap.INVALID_CREDENTIALS) as caught:
        conn.bind("cn=svc", "wrong")
    assert PythonLdapDriver().classify(caught.value) is ErrorKind.CREDENTIALS


def test_looks_alive_false_when_the_connection_is_reset(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1))
    conn.bind(None, None)
    assert conn.looks_alive()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST, as from a load balancer's idle timeout
    assert eventually(lambda: not conn.looks_alive())


def test_looks_alive_false_when_the_server_closes(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1))
    conn.bind(None, None)
    peer.shutdown(socket.SHUT_RDWR)
    assert not conn.looks_alive()


def test_server_down_marks_the_connection_lost(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    peer.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ldap.SERVER_DOWN):
        conn.ping()
    assert conn.identity_changed()
    assert not conn.looks_alive()


def test_ping_is_one_whoami(bound_wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, peer = bound_wire
    # ExtendedResponse, success, no value
    peer.sendall(bytes.fromhex("300c020102780 70a01000400 0400".replace(" ", "")))
    conn.ping()
    assert b"1.3.6.1.4.1.4203.1.11.3" in drain(peer)  # the WhoAmI OID
    assert conn.looks_alive()


def test_close_sends_an_unbind(bound_wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, peer = bound_wire
    conn.close()
    assert drain(peer) == bytes.fromhex("30050201024200")  # UnbindRequest, msgid 2
    conn.close()
    assert not conn.looks_alive()


def test_abandon_sends_nothing(bound_wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, peer = bound_wire
    conn.abandon()
    assert peer.recv(100) == b""  # EOF without an unbind: our end was closed
    assert not conn.looks_alive()
    conn.close()


def test_abandon_when_a_vanished_thread_holds_the_object(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    native = conn.native
    lock = native._ldap_object_lock._lock
    lock.acquire()  # as if a thread of the parent were inside libldap at fork()
    try:
        conn.abandon()  # must neither wait for the lock nor call the C object
        assert peer.recv(100) == b""
        assert native in python_ldap._STRANDED
    finally:
        lock.release()
        python_ldap._STRANDED.remove(native)
    native.unbind_ext()  # goes to /dev/null, and frees the object


def test_abandon_in_a_forked_child_leaves_the_parent_connection(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            conn.abandon()
            del conn
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert drain(peer) == b""  # the child sent nothing
    assert conn.looks_alive()


def test_ldap_call_explains_errno_and_marks_the_connection_lost(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, _ = wire
    native = conn.native

    def refused() -> None:
        raise ldap.SERVER_DOWN({"desc": "Can't contact LDAP server", "errno": errno.ECONNRESET})

    with pytest.raises(ldap.SERVER_DOWN) as caught:
        native._ldap_call(refused)
    assert caught.value.args[0]["info"] == os.strerror(errno.ECONNRESET)  # as python-ldap's
    assert conn.identity_changed()
    assert native._ldap_object_lock._lock.acquire(False)  # released on the way out
    native._ldap_object_lock._lock.release()


def test_ldap_call_keeps_python_ldaps_trace_when_tracing(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, _ = wire
    native = conn.native
    trace = io.StringIO()
    native._trace_level, native._trace_file = 1, trace
    assert native._ldap_call(lambda: "answer") == "answer"
    with pytest.raises(ldap.TIMEOUT):
        native._ldap_call(lambda: (_ for _ in ()).throw(ldap.TIMEOUT({"desc": "Timed out"})))
    assert trace.getvalue().count("***") == 2  # python-ldap's own trace lines
    assert conn.identity_changed()  # a timed-out request may still be answered


def test_ldap_call_keeps_the_lock_trace_at_python_ldaps_module_level(
    wire: tuple[PythonLdapConnection, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, _ = wire
    trace = io.StringIO()
    monkeypatch.setattr(ldap, "_trace_level", ldap.LDAPLock._min_trace_level)
    monkeypatch.setattr(ldap, "_trace_file", trace)
    assert conn.native._ldap_call(lambda: "answer") == "answer"
    assert ".acquire()" in trace.getvalue() and ".release()" in trace.getvalue()


def test_search_ext_s_does_what_python_ldaps_does(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    # SearchResultEntry "cn=x" with cn: x, then SearchResultDone, for message 2
    attribute = ber(0x30, ber(0x04, b"cn") + ber(0x31, ber(0x04, b"x")))
    entry = ber(0x30, ber(0x02, b"\x02") + ber(0x64, ber(0x04, b"cn=x") + ber(0x30, attribute)))
    done = ber(0x30, ber(0x02, b"\x02") + ber(0x65, ber(0x0A, b"\0") + ber(0x04, b"") * 2))
    peer.sendall(entry + done)
    found = conn.native.search_ext_s("cn=x", ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])
    assert found == [("cn=x", {"cn": [b"x"]})]
    assert not conn.identity_changed()


# -- the password check and SASL binds ------------------------------------------------

PPOLICY_OID = b"1.3.6.1.4.1.42.2.27.8.5.1"
ALICE = "cn=alice,o=test"


def bind_response_with(msgid: int, result: int, *controls: bytes) -> bytes:
    """A BindResponse followed by ``[0] Controls`` (each control's SEQUENCE given)."""
    op = ber(0x61, ber(0x0A, bytes([result])) + ber(0x04, b"") * 2)
    return ber(0x30, ber(0x02, bytes([msgid])) + op + ber(0xA0, b"".join(controls)))


def ppolicy_control(value: bytes) -> bytes:
    return ber(0x30, ber(0x04, PPOLICY_OID) + ber(0x04, value))


LOCKED = ppolicy_control(bytes.fromhex("3003810101"))  # error: accountLocked
EXPIRING = ppolicy_control(bytes.fromhex("3006a0048002012c"))  # 300 s before expiry
GRACE = ppolicy_control(bytes.fromhex("3008a0038101028101" + "00"))  # 2 graces, expired
# The request control as sent: the OID alone (criticality FALSE and no value omitted).
PPOLICY_REQUEST = ber(0xA0, ber(0x30, ber(0x04, PPOLICY_OID)))


def keeps_no(secret: str, native: object) -> bool:
    return all(secret not in repr(value) for value in vars(native).values())


def test_check_password_bound_with_a_warning(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    import ldap.controls.ppolicy  # noqa: F401 - python-ldap's own decoder registered: unused

    peer.sendall(bind_response_with(2, 0, EXPIRING))
    answer = conn.check_password(ALICE, "alice-pw")
    assert answer == BindAnswer(policy=PasswordPolicy(expires_in=300))
    sent = drain(peer)
    assert sent[5] == 0x60 and sent.endswith(PPOLICY_REQUEST)  # a BindRequest...
    assert sent[:2] == bytes([0x30, len(sent) - 2])  # and nothing else
    assert b"alice-pw" in sent
    native = conn.native
    assert not conn.identity_changed()  # the pool's bind, not the holder's
    assert (native.connected, native.who, native.cred) == (True, ALICE, None)
    assert native.get_lifetime() >= 0 and native._connection_time is not None
    assert keeps_no("alice-pw", native)
    assert conn.looks_alive()


def test_check_password_bound_without_a_policy_answer(
    wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = wire
    peer.sendall(bind_response(1))
    assert conn.check_password(ALICE, "alice-pw") == BindAnswer()
    assert conn.native._connection_time is not None
    assert not conn.identity_changed()
    assert conn.looks_alive()  # the socket is watched from the first bind on


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
    bound_wire: tuple[PythonLdapConnection, socket.socket],
    control: bytes | None,
    policy: PasswordPolicy | None,
) -> None:
    conn, peer = bound_wire
    peer.sendall(bind_response(2))
    conn.native.simple_bind_s(ALICE, "x")  # the holder's bind would count...
    drain(peer)
    reply = bind_response_with(3, 49, control) if control else bind_response(3, 49)
    peer.sendall(reply)
    answer = conn.check_password(ALICE, "wrong")
    assert isinstance(answer.refusal, ldap.INVALID_CREDENTIALS)
    assert PythonLdapDriver().classify(answer.refusal) is ErrorKind.CREDENTIALS
    assert answer.policy == policy
    assert b"wrong" in drain(peer)
    assert not conn.identity_changed()  # ...but the pool's check resets it, refused or not
    assert conn.native.who is None  # RFC 4511: anonymous after a refused bind
    assert keeps_no("wrong", conn.native)
    assert conn.looks_alive()
    peer.sendall(bind_response(4))  # still usable
    conn.bind(ALICE, "alice-pw")


def test_check_password_malformed_control_on_success(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    peer.sendall(bind_response_with(2, 0, ppolicy_control(b"\x31\x00")))
    assert conn.check_password(ALICE, "alice-pw") == BindAnswer()


def test_check_password_raises_a_lost_connection(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    peer.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ldap.SERVER_DOWN) as caught:
        conn.check_password(ALICE, "alice-pw")
    assert PythonLdapDriver().classify(caught.value).transient
    assert conn.identity_changed()  # not to be pooled again
    assert not conn.looks_alive()


def test_check_password_raises_a_timeout(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    conn.native.timeout = 0.2
    with pytest.raises(ldap.TIMEOUT):
        conn.check_password(ALICE, "alice-pw")
    assert drain(peer).count(b"alice-pw") == 1  # sent once, never repeated
    assert conn.identity_changed()  # the answer may still come


def test_check_password_raises_an_unavailable_server(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, peer = bound_wire
    peer.sendall(bind_response_with(2, 52, LOCKED))
    with pytest.raises(ldap.UNAVAILABLE):
        conn.check_password(ALICE, "alice-pw")
    assert conn.identity_changed()


def test_check_password_with_a_zero_timeout_set_by_hand(
    bound_wire: tuple[PythonLdapConnection, socket.socket],
) -> None:
    conn, _ = bound_wire
    conn.native.timeout = 0  # a poll: python-ldap returns None rather than wait
    with pytest.raises(ldap.TIMEOUT):
        conn.check_password(ALICE, "alice-pw")
    assert conn.identity_changed()


class SaslCall:
    """What SimpleLDAPObject.sasl_interactive_bind_s was given, and what it does."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises
        self.calls: list[tuple[str, bytes, dict[int, str]]] = []
        self.auth: object = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def sasl_interactive_bind_s(native: object, who: str, auth: Any, *args: object) -> int:
            return self(who, auth)

        monkeypatch.setattr(
            ldap.ldapobject.SimpleLDAPObject, "sasl_interactive_bind_s", sasl_interactive_bind_s
        )

    def __call__(self, who: str, auth: Any) -> int:
        self.calls.append((who, auth.mech, dict(auth.cb_value_dict)))
        self.auth = auth
        if self.raises is not None:
            raise self.raises
        return 0


@pytest.fixture
def sasl_call(monkeypatch: pytest.MonkeyPatch) -> SaslCall:
    """Under StateConnector's override (which flags a holder's bind), python-ldap's."""
    call = SaslCall()
    call.install(monkeypatch)
    return call


def secret_once() -> tuple[list[int], Sasl]:
    asked: list[int] = []

    def secret() -> str:
        asked.append(1)
        return "s3cret"

    return asked, Sasl("DIGEST-MD5", authz_id="dn:cn=other", user="alice", secret=secret)


@pytest.mark.parametrize(
    ("sasl", "mech", "values"),
    [
        (Sasl.external(), b"EXTERNAL", {ldap.sasl.CB_USER: ""}),
        (Sasl.external("dn:cn=x"), b"EXTERNAL", {ldap.sasl.CB_USER: "dn:cn=x"}),
        (Sasl("GSSAPI"), b"GSSAPI", {ldap.sasl.CB_USER: ""}),
        (Sasl("GSSAPI", "u:bob"), b"GSSAPI", {ldap.sasl.CB_USER: "u:bob"}),
        (
            Sasl("SCRAM-SHA-256", user="alice", secret=lambda: "pw"),
            b"SCRAM-SHA-256",
            {ldap.sasl.CB_AUTHNAME: "alice", ldap.sasl.CB_PASS: "pw", ldap.sasl.CB_USER: ""},
        ),
    ],
    ids=["external", "external-authz", "gssapi", "gssapi-authz", "scram"],
)
def test_sasl_bind_arguments(
    wire: tuple[PythonLdapConnection, socket.socket],
    sasl_call: SaslCall,
    sasl: Sasl,
    mech: bytes,
    values: dict[int, str],
) -> None:
    conn, _ = wire
    conn.sasl_bind(sasl)
    assert sasl_call.calls == [("", mech, values)]
    assert not conn.identity_changed()  # the override flagged it; the pool's bind resets
    native = conn.native
    assert native.connected and native._connection_time is not None
    assert native.who == (sasl.authz_id or sasl.user or "")


def test_sasl_bind_asks_for_the_secret_each_time_and_keeps_it_nowhere(
    wire: tuple[PythonLdapConnection, socket.socket], sasl_call: SaslCall
) -> None:
    conn, _ = wire
    asked, sasl = secret_once()
    conn.sasl_bind(sasl)
    conn.sasl_bind(sasl)
    assert len(asked) == 2
    values = {
        ldap.sasl.CB_AUTHNAME: "alice",
        ldap.sasl.CB_PASS: "s3cret",
        ldap.sasl.CB_USER: "dn:cn=other",
    }
    assert sasl_call.calls == [("", b"DIGEST-MD5", values)] * 2
    assert sasl_call.auth.cb_value_dict == {}  # type: ignore[attr-defined]
    assert keeps_no("s3cret", conn.native)
    assert conn.native.who == "dn:cn=other"


def test_sasl_bind_refused(wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, _ = wire
    call = SaslCall(ldap.INVALID_CREDENTIALS({"result": 49, "desc": "Invalid credentials"}))
    _, sasl = secret_once()
    with pytest.MonkeyPatch.context() as patch:
        call.install(patch)
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            conn.sasl_bind(sasl)
    assert call.auth.cb_value_dict == {}  # type: ignore[attr-defined]
    assert not conn.identity_changed()  # the pool's bind: refused, still not the holder's
    assert conn.native.who is None


def test_sasl_bind_lost(wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, _ = wire
    call = SaslCall(ldap.SERVER_DOWN({"result": -1, "desc": "Can't contact LDAP server"}))
    with pytest.MonkeyPatch.context() as patch:
        call.install(patch)
        with pytest.raises(ldap.SERVER_DOWN):
            conn.sasl_bind(Sasl.external())
    assert conn.identity_changed()  # not to be pooled again


def test_sasl_plain_on_the_wire(wire: tuple[PythonLdapConnection, socket.socket]) -> None:
    conn, peer = wire
    # libldap's default security properties rule PLAIN out on a connection without TLS.
    conn.native.set_option(ldap.OPT_X_SASL_SECPROPS, "none")
    peer.sendall(bind_response(1))
    conn.sasl_bind(Sasl("PLAIN", "dn:cn=x", user="alice", secret=lambda: "s3cret"))
    sent = drain(peer)
    assert ber(0x04, b"PLAIN") + ber(0x04, b"dn:cn=x\0alice\0s3cret") in sent
    assert not conn.identity_changed()
    assert keeps_no("s3cret", conn.native)


@pytest.mark.parametrize(
    ("sasl", "complaint"),
    [
        (Sasl("OAUTHBEARER"), "'OAUTHBEARER'"),
        (Sasl("NTLM", user="a", secret=lambda: "b"), "'NTLM'"),
        (Sasl("DIGEST-MD5", user="alice"), "DIGEST-MD5 needs"),
        (Sasl("PLAIN", secret=lambda: "pw"), "PLAIN needs"),
    ],
)
def test_sasl_bind_refuses_what_it_cannot_do(
    wire: tuple[PythonLdapConnection, socket.socket], sasl: Sasl, complaint: str
) -> None:
    conn, peer = wire
    with pytest.raises(ValueError, match=complaint):
        conn.sasl_bind(sasl)
    assert drain(peer) == b""  # nothing sent
    assert not conn.identity_changed()


# -- the same on a duck-typed 3.x connector class -------------------------------------


class DuckConnector:
    """A 3.x connector class that is not an LDAPObject (keystone's test double's shape)."""

    def __init__(self, uri: str, **kwargs: object) -> None:
        self.connected = False
        self.binds: list[tuple[str | None, str | None]] = []

    def simple_bind_s(self, who: str | None = None, cred: str | None = None) -> None:
        self.binds.append((who, cred))
        if cred == "wrong":
            raise ldap.INVALID_CREDENTIALS({"desc": "Invalid credentials"})
        if cred == "down":
            raise ldap.SERVER_DOWN({"desc": "Can't contact LDAP server"})

    def unbind_ext_s(self) -> None:
        self.connected = False


@pytest.fixture
def duck() -> Iterator[Connection]:
    conn = PythonLdapDriver(connector_cls=DuckConnector).connect(PLAIN, ConnectSettings())
    yield conn
    conn.close()


def test_duck_check_password(duck: Connection) -> None:
    assert duck.check_password(ALICE, "alice-pw") == BindAnswer()
    answer = duck.check_password(ALICE, "wrong")
    assert isinstance(answer.refusal, ldap.INVALID_CREDENTIALS) and answer.policy is None
    assert duck.native.connected and not duck.identity_changed()  # usable, pooled again
    with pytest.raises(ldap.SERVER_DOWN):
        duck.check_password(ALICE, "down")
    assert duck.native.binds == [(ALICE, "alice-pw"), (ALICE, "wrong"), (ALICE, "down")]


def test_duck_sasl_bind_is_refused(duck: Connection) -> None:
    with pytest.raises(TypeError, match=r"DuckConnector.*StateConnector"):
        duck.sasl_bind(Sasl.external())
    assert duck.native.binds == []
