"""``ldappool check`` / ``top`` without a server: arguments, output, BER, certificates.

Bad arguments must exit with status 2 and say why before any I/O; the password must
never reach stdout or stderr; the JSON document must keep its shape for scripts. The
StartTLS messages and the certificate decoder are pinned by hand-built bytes and
checked against independent decoders (pyasn1 with ldap3's RFC 4511 definitions, and
Python's own certificate decoder).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldappool import _report
from ldappool._asn1 import (
    STARTTLS_OID,
    BerError,
    encode_tlv,
    message_length,
    parse_certificate,
    parse_extended_response,
    starttls_request,
)
from ldappool._cli import main
from ldappool._diagnose import Bind, ServerReport
from ldappool._probe import (
    Certificate,
    CheckOptions,
    Connect,
    Resolution,
    StartTLSError,
    Tls,
    certificate,
    describe_error,
    starttls,
    verify_reason,
)

SECRET = "pw-0f3a9c-never-shown"
STARTTLS_REQUEST_HEX = "301d02010177188016" + STARTTLS_OID.encode().hex()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(SECRET + "\nsecond line is ignored\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "http://example.org"], "not an LDAP URI"),
        (["check", "ldap://host/dc=example"], "DN, query or fragment"),
        (["check", "ldap://host", "--bind", "cn=x"], "needs --password-file or --ask-password"),
        (["check", "ldap://host", "--bind", ""], "the DN is empty"),
        (["check", "ldap://host", "--password-file", "/etc/hostname"], "needs --bind"),
        (
            ["check", "ldap://host", "--bind", "cn=x", "--password-file", "/nonexistent/pw"],
            "--password-file: '/nonexistent/pw' is not a readable file",
        ),
        (
            ["check", "ldaps://host", "--tls-ca-file", "/nonexistent/ca.pem"],
            "--tls-ca-file: '/nonexistent/ca.pem' is not a readable file",
        ),
        (
            ["check", "ldaps://host", "--tls-key-file", "/etc/hostname"],
            "--tls-key-file needs --tls-cert-file",
        ),
        (["check", "ldap://host", "--password-file", "f", "--ask-password"], "not allowed with"),
        (["check", "ldap://host", "--timeout", "0"], "must be a number of seconds > 0"),
        (["check", "ldap://host", "--timeout", "soon"], "not a number"),
        (["check", "ldap://host", "--driver", "nope"], "invalid choice"),
        (["top", "ldap://host", "--threads", "0"], "must be at least 1"),
        (["top", "ldap://host", "--duration", "-1"], "must be a number of seconds > 0"),
        (["check"], "required: URI"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_an_empty_password_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\nsecret on the second line\n")
    code, _, err = run(
        capsys, "check", "ldap://h", "--bind", "cn=x", "--password-file", str(empty)
    )
    assert code == 2
    assert "is empty" in err


def test_help_says_why_there_is_no_password_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--help")
    assert code == 0
    assert "--password " not in out and "--password=" not in out
    assert "deliberately no option" in " ".join(out.split())
    assert "shell history" in " ".join(out.split())


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[CheckOptions]:
    """check_server replaced by a canned report; the options it was given, in order."""
    given: list[CheckOptions] = []

    def fake(server: Any, options: CheckOptions) -> ServerReport:
        given.append(options)
        return _report_for(server.uri)

    monkeypatch.setattr(_report, "check_server", fake)
    return given


def test_the_password_is_read_from_the_first_line_only(
    capsys: pytest.CaptureFixture[str], password_file: Path, seen: list[CheckOptions]
) -> None:
    run(capsys, "check", "ldap://h", "--bind", "cn=x", "--password-file", str(password_file))
    assert seen[0].password == SECRET
    assert SECRET not in repr(seen[0])


def test_ask_password_uses_getpass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seen: list[CheckOptions]
) -> None:
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return SECRET

    monkeypatch.setattr("getpass.getpass", getpass)
    code, out, err = run(capsys, "check", "ldap://h", "--bind", "cn=x", "--ask-password")
    assert code == 1  # the canned report fails its TLS step
    assert prompts == ["Password for cn=x: "]
    assert seen[0].password == SECRET
    assert SECRET not in out + err


# -- output ------------------------------------------------------------------------------


def _certificate() -> Certificate:
    return Certificate(
        subject="CN=localhost",
        issuer="CN=localhost",
        serial="1F",
        not_before="2026-01-01T00:00:00Z",
        not_after="2026-01-03T00:00:00Z",
        days_left=1.5,
        alt_names=("DNS:localhost", "IP:127.0.0.1"),
        sha256="AB:CD",
    )


def _report_for(uri: str, error: str | None = None) -> ServerReport:
    """A report as check_server makes them: a StartTLS server with an untrusted CA."""
    tls = Tls(
        ok=False,
        mode="starttls",
        trust="/etc/ca.pem",
        hostname="h",
        verify_reason="unknown issuer: self-signed certificate",
        verify_code=18,
        seconds=0.003,
        starttls_seconds=0.001,
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        certificate=_certificate(),
        certificate_source="second handshake, NOT verified (read only to show it)",
    )
    return ServerReport(
        uri=uri,
        resolve=Resolution(True, 0.001, ("127.0.0.1",)),
        connect=Connect(True, 0.0002, "127.0.0.1:389"),
        tls=tls,
        bind=Bind(False, "error", 0.004, "cn=x", error),
        whoami=None,
    )


def test_the_json_document_has_every_field_as_numbers_and_strings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_report, "check_server", lambda s, o: _report_for(s.uri, "TLS refused"))
    code, out, _ = run(capsys, "check", "ldap://h, ldap://g", "--starttls", "--json")
    assert code == 1
    document = json.loads(out)
    assert [server["uri"] for server in document] == ["ldap://h", "ldap://g"]
    server = document[0]
    assert set(server) == {"uri", "ok", "driver", "resolve", "connect", "tls", "bind", "whoami"}
    assert server["ok"] is False and server["driver"] == "python-ldap"
    assert server["resolve"] == {
        "ok": True,
        "seconds": 0.001,
        "addresses": ["127.0.0.1"],
        "error": None,
    }
    assert server["connect"]["address"] == "127.0.0.1:389"
    tls = server["tls"]
    assert tls["verified"] is False and tls["verify_code"] == 18
    assert tls["verify_reason"].startswith("unknown issuer")
    assert isinstance(tls["seconds"], float) and isinstance(tls["starttls_seconds"], float)
    assert tls["certificate"]["alt_names"] == ["DNS:localhost", "IP:127.0.0.1"]
    assert tls["certificate"]["days_left"] == 1.5
    assert server["bind"] == {
        "ok": False,
        "result": "error",
        "seconds": 0.004,
        "dn": "cn=x",
        "error": "TLS refused",
    }
    assert server["whoami"] is None


def test_the_human_report_marks_each_step_and_sums_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_report, "check_server", lambda s, o: _report_for(s.uri, "TLS refused"))
    code, out, _ = run(capsys, "check", "ldap://h", "--starttls")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "ldap://h  (driver python-ldap)"
    assert lines[1].startswith("  ✔ resolve") and lines[1].endswith("127.0.0.1")
    tls = next(line for line in lines if " tls " in line)
    assert tls.startswith("  ✘ tls") and "TLSv1.3" in tls
    assert any("NOT verified: unknown issuer" in line for line in lines)
    assert any(line.strip() == "subject   CN=localhost" for line in lines)
    assert any("skipped (no bound connection)" in line for line in lines)
    assert lines[-1] == "✘ FAIL: 1 of 1 server(s) failed: ldap://h"
    # Aligned: every step's detail starts in the same column.
    steps = [line for line in lines if line[2:3] in "✔✘-" and line.startswith("  ")]
    columns = {line.index("  ", 13) for line in steps if "ms" in line}
    assert len(steps) == 5 and len(columns) == 1


def test_the_password_is_masked_in_whatever_is_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], password_file: Path
) -> None:
    """Belt and braces: even a driver error text carrying it is masked."""
    leaked = f"server said: bad password {SECRET}"
    monkeypatch.setattr(_report, "check_server", lambda s, o: _report_for(s.uri, leaked))
    for extra in ([], ["--json"]):
        code, out, err = run(
            capsys,
            "check",
            "ldap://h",
            "--bind",
            "cn=x",
            "--password-file",
            str(password_file),
            *extra,
        )
        assert code == 1
        assert SECRET not in out + err
        assert "bad password ********" in out


def test_the_password_never_shows_on_a_real_refused_connect(
    capsys: pytest.CaptureFixture[str], password_file: Path
) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for extra in ([], ["--json"], ["-v"]):
        code, out, err = run(
            capsys,
            "check",
            f"ldap://127.0.0.1:{port}",
            "--bind",
            "cn=x",
            "--password-file",
            str(password_file),
            "--timeout",
            "2",
            *extra,
        )
        assert code == 1
        assert "connection refused" in out
        assert SECRET not in out + err


def test_ascii_terminals_get_ok_and_fail_instead_of_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class AsciiOut:
        encoding = "ascii"

    monkeypatch.setattr("sys.stdout", AsciiOut())
    assert _report.Output(None).marks == {True: "OK  ", False: "FAIL", None: "--  "}


# -- errors and reasons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        (18, "self-signed certificate", "unknown issuer: self-signed certificate"),
        (20, "unable to get local issuer certificate", "unknown issuer: unable to get local"),
        (10, "certificate has expired", "expired: certificate has expired"),
        (62, "Hostname mismatch, certificate is not valid for 'x'.", "host name mismatch: "),
        (99, "something new", "something new"),
    ],
)
def test_verification_failures_are_named(code: int, message: str, reason: str) -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code, error.verify_message = code, message
    assert verify_reason(error).startswith(reason)


def test_connect_errors_are_described_as_operators_say_them() -> None:
    assert describe_error(ConnectionRefusedError(111, "Connection refused")) == (
        "connection refused"
    )
    assert describe_error(TimeoutError("timed out"), 2.5) == "timed out after 2.5 s"
    assert describe_error(OSError(113, "No route to host")) == "unreachable: No route to host"
    assert describe_error(socket.gaierror(-2, "Name or service not known")).startswith(
        "cannot resolve"
    )


# -- BER: the StartTLS messages ----------------------------------------------------------


def test_the_starttls_request_is_the_rfc_4511_bytes() -> None:
    assert starttls_request(1).hex() == STARTTLS_REQUEST_HEX
    assert starttls_request(300)[2:6] == bytes([0x02, 0x02, 0x01, 0x2C])
    assert starttls_request(128)[2:6] == bytes([0x02, 0x02, 0x00, 0x80])  # stays positive
    with pytest.raises(ValueError, match="message_id"):
        starttls_request(0)


def test_pyasn1_reads_the_request_as_an_extended_request() -> None:
    rfc4511 = pytest.importorskip("ldap3.protocol.rfc4511")
    decoder = pytest.importorskip("pyasn1.codec.ber.decoder")
    for message_id in (1, 127, 128, 65535, 2**31 - 1):
        message, rest = decoder.decode(
            starttls_request(message_id), asn1Spec=rfc4511.LDAPMessage()
        )
        assert rest == b""
        assert int(message["messageID"]) == message_id
        request = message["protocolOp"]["extendedReq"]
        assert str(request["requestName"]) == STARTTLS_OID


def _response(
    message_id: int, code: int, matched: str, diagnostic: str, name: str | None
) -> bytes:
    """An ExtendedResponse encoded by pyasn1, with ldap3's RFC 4511 definitions."""
    rfc4511 = pytest.importorskip("ldap3.protocol.rfc4511")
    encoder = pytest.importorskip("pyasn1.codec.ber.encoder")
    response = rfc4511.ExtendedResponse()
    response["resultCode"] = code
    response["matchedDN"] = matched
    response["diagnosticMessage"] = diagnostic
    if name is not None:
        response["responseName"] = name
    message = rfc4511.LDAPMessage()
    message["messageID"] = message_id
    operation = rfc4511.ProtocolOp()
    operation["extendedResp"] = response
    message["protocolOp"] = operation
    encoded: bytes = encoder.encode(message)
    return encoded


@given(
    message_id=st.integers(0, 2**31 - 1),
    code=st.sampled_from([0, 1, 2, 52, 53, 80]),
    matched=st.text(max_size=40),
    diagnostic=st.text(max_size=300),
    name=st.one_of(st.none(), st.just(STARTTLS_OID), st.just("1.3.6.1.4.1.1466.20036")),
)
def test_extended_responses_decode_as_pyasn1_encodes_them(
    message_id: int, code: int, matched: str, diagnostic: str, name: str | None
) -> None:
    encoded = _response(message_id, code, matched, diagnostic, name)
    assert message_length(encoded) == len(encoded)
    answer = parse_extended_response(encoded)
    assert (answer.message_id, answer.result_code) == (message_id, code)
    assert (answer.matched_dn, answer.diagnostic, answer.response_name) == (
        matched,
        diagnostic,
        name,
    )


def test_long_form_lengths_and_truncation() -> None:
    assert encode_tlv(0x04, b"x" * 200)[:3] == bytes([0x04, 0x81, 200])
    assert encode_tlv(0x04, b"x" * 300)[:4] == bytes([0x04, 0x82, 0x01, 0x2C])
    assert message_length(b"\x30") is None
    assert message_length(b"\x30\x82\x01") is None
    assert message_length(b"\x30\x82\x01\x2c") == 4 + 300
    with pytest.raises(BerError, match="length form"):
        message_length(b"\x30\x80")  # indefinite length: not in LDAP
    whole = _response(1, 0, "", "", None)
    with pytest.raises(BerError):
        parse_extended_response(whole[:-1])
    with pytest.raises(BerError, match="ExtendedResponse"):
        parse_extended_response(bytes.fromhex("300c02010165070a010004000400"))  # a BindResponse


def _serve_once(answer: bytes) -> tuple[socket.socket, threading.Thread, list[bytes]]:
    """A socket pair: the far end reads one request and writes ``answer``."""
    near, far = socket.socketpair()
    near.settimeout(5)
    received: list[bytes] = []

    def serve() -> None:
        with far:
            received.append(far.recv(1024))
            far.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return near, thread, received


def test_starttls_reads_exactly_the_answer() -> None:
    answer = _response(1, 0, "", "", STARTTLS_OID)
    near, thread, received = _serve_once(answer + b"\x16\x03\x01 TLS would follow")
    with near:
        starttls(near)
        assert near.recv(1) == b"\x16"  # the byte after the answer is still unread
    thread.join(5)
    assert received == [bytes.fromhex(STARTTLS_REQUEST_HEX)]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            lambda: _response(1, 2, "", "unsupported extended operation", None),
            "StartTLS refused, result 2 (protocolError): unsupported extended operation",
        ),
        (
            lambda: _response(0, 52, "", "going away", "1.3.6.1.4.1.1466.20036"),
            "the server disconnected: going away",
        ),
        (lambda: b"\x16\x03\x01\x00\x05hello", "not an LDAP answer"),
        (lambda: b"", "closed the connection"),
    ],
)
def test_starttls_failures_say_what_the_server_did(answer: Any, message: str) -> None:
    near, thread, _ = _serve_once(answer())
    with near, pytest.raises(StartTLSError, match=message.replace("(", r"\(").replace(")", r"\)")):
        starttls(near)
    thread.join(5)


# -- certificates ------------------------------------------------------------------------


def _slapdtest_certs() -> Path:
    slapdtest = pytest.importorskip("slapdtest")
    return Path(slapdtest.__file__).resolve().parent / "certs"


def _der(path: Path) -> bytes:
    text = path.read_text()
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[begin:end])


def _python_decoded(path: Path) -> dict[str, Any]:
    """Python's own decoder (a private test helper of the ssl module) as the oracle."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        pytest.skip("this Python has no ssl._ssl._test_decode_cert")
    decoded: dict[str, Any] = decode(str(path))
    return decoded


def _rfc4514(name: Any) -> str:
    short = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
    }
    return ",".join(f"{short[k]}={v}" for rdn in reversed(name) for k, v in rdn)


def _openssl_time(text: str) -> dt.datetime:
    parsed = dt.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z")
    return parsed.replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("name", ["server.pem", "ca.pem", "client.pem"])
def test_certificates_decode_as_python_decodes_them(name: str) -> None:
    path = _slapdtest_certs() / name
    expected = _python_decoded(path)
    fields = parse_certificate(_der(path))
    assert fields.subject == _rfc4514(expected["subject"])
    assert fields.issuer == _rfc4514(expected["issuer"])
    assert fields.serial == int(expected["serialNumber"], 16)
    assert fields.not_before == _openssl_time(expected["notBefore"])
    assert fields.not_after == _openssl_time(expected["notAfter"])  # a year-3019 GeneralizedTime
    python_names = [
        f"IP:{__import__('ipaddress').ip_address(v)}" if k == "IP Address" else f"{k}:{v}"
        for k, v in expected.get("subjectAltName", ())
    ]
    assert list(fields.alt_names) == python_names


def test_an_openssl_certificate_with_utctime_and_an_expired_one(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, csr, cert = tmp_path / "k.pem", tmp_path / "r.csr", tmp_path / "c.pem"
    (tmp_path / "ext").write_text("subjectAltName=DNS:ldap.example.org,IP:::1,email:a@b.c\n")
    subprocess.run(
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-subj",
            "/C=FR/O=Ex, Inc./CN=ldap.example.org",
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-signkey",
            str(key),
            "-days",
            "-1",
            "-extfile",
            str(tmp_path / "ext"),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shown = certificate(_der(cert))
    assert shown.subject == "CN=ldap.example.org,O=Ex\\, Inc.,C=FR"
    assert shown.alt_names == ("DNS:ldap.example.org", "IP:::1", "email:a@b.c")
    assert -1.1 < shown.days_left < -0.9
    assert shown.not_after.endswith("Z") and shown.not_after.startswith("20")
    assert len(shown.sha256.split(":")) == 32


def test_days_left_counts_from_now() -> None:
    der = _der(_slapdtest_certs() / "server.pem")
    now = dt.datetime(3019, 2, 27, 18, 52, 38, tzinfo=dt.timezone.utc)
    assert certificate(der, now).days_left == 2.0
    assert certificate(der, now + dt.timedelta(days=3)).days_left == -1.0


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(BerError):
        parse_certificate(b"\x30\x03\x02\x01\x01")
    with pytest.raises(BerError):
        parse_certificate(b"not DER at all")
