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

import pytest

ldap = pytest.importorskip("ldap")
slapdtest = pytest.importorskip("slapdtest")

from ldappool._drivers import python_ldap  # noqa: E402
from ldappool._drivers.python_ldap import (  # noqa: E402
    PooledLDAPObject,
    PythonLdapConnection,
    PythonLdapDriver,
)
from ldappool._port import (  # noqa: E402
    Connection,
    ConnectSettings,
    Driver,
    ErrorKind,
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
    assert python_ldap._default_trust() in {
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
