"""``ldappool check`` and ``ldappool top`` against real slapd servers.

The command runs in-process through ``main(argv)`` (its exit status returned, its
output captured), and once as ``python -m ldappool`` to prove the entry point. Every
run ends with no client connection left on the server: the probes unbind and close
their sockets, the managers are closed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ldappool._cli import main
from tests.integration.harness import SilentListener, Slapd, wait_until
from tests.integration.harness.slapd import free_port

SETTLE = 5.0  # seconds for the server to count a closed connection as gone


@pytest.fixture
def alice_password(slapd: Slapd, tmp_path: Path) -> Path:
    path = tmp_path / "alice.pw"
    path.write_text(slapd.users["alice"].password + "\n")
    return path


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any]]:
    code, out, _ = check(capsys, *argv, "--json")
    document: list[Any] = json.loads(out)
    return code, document


def no_connection_left(server: Slapd) -> None:
    wait_until(
        lambda: server.client_connections() == 0,
        timeout=SETTLE,
        message=f"{server}: connections left open by the command",
    )


def test_plain_ldap_with_a_good_bind(
    slapd: Slapd, driver: str, alice_password: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = slapd.users["alice"]
    args = [slapd.ldap_uri, "--bind", alice.dn, "--password-file", str(alice_password)]
    code, out, err = check(capsys, *args, "--driver", driver)
    assert code == 0, out + err
    assert "✔ bind" in out and f"ok as {alice.dn}" in out
    assert f"dn:{alice.dn}" in out and "median of 5 round trips" in out
    assert "not used (no ldaps://, no --starttls)" in out
    assert out.splitlines()[-1] == "✔ OK: 1 server(s), every step passed"
    assert alice.password not in out + err

    code, [server] = check_json(capsys, *args, "--driver", driver)
    assert code == 0 and server["ok"] is True and server["driver"] == driver
    assert server["resolve"]["addresses"] == ["127.0.0.1"]
    assert server["connect"]["address"] == f"127.0.0.1:{slapd.port}"
    assert server["tls"] is None
    assert server["bind"]["result"] == "ok" and server["bind"]["dn"] == alice.dn
    assert server["whoami"]["authzid"] == f"dn:{alice.dn}"
    assert len(server["whoami"]["samples_seconds"]) == 5
    for number in (
        server["resolve"]["seconds"],
        server["connect"]["seconds"],
        server["bind"]["seconds"],
        server["whoami"]["median_seconds"],
    ):
        assert isinstance(number, float) and 0 < number < 5
    no_connection_left(slapd)


def test_ldaps_with_the_right_ca_is_verified(
    slapd: Slapd, driver: str, alice_password: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = slapd.users["alice"]
    args = [slapd.ldaps_uri, "--bind", alice.dn, "--password-file", str(alice_password)]
    args += ["--tls-ca-file", slapd.ca_file, "--driver", driver]
    code, [server] = check_json(capsys, *args)
    assert code == 0, server
    tls = server["tls"]
    assert tls["ok"] is True and tls["verified"] is True and tls["mode"] == "ldaps"
    assert tls["verify_reason"] is None and tls["trust"] == slapd.ca_file
    assert tls["hostname"] == "127.0.0.1"
    assert tls["version"].startswith("TLSv1") and tls["cipher"]
    assert tls["certificate_source"] == "verified handshake"
    cert = tls["certificate"]
    assert cert["subject"] == "CN=server cert for localhost,OU=slapd-test,O=python-ldap,C=DE"
    assert cert["issuer"] == "CN=Python LDAP Test CA,OU=slapd-test,O=python-ldap,C=DE"
    assert cert["not_after"] == "3019-03-01T18:52:38Z" and cert["days_left"] > 300_000
    assert "IP:127.0.0.1" in cert["alt_names"]

    code, out, _ = check(capsys, *args)
    assert code == 0
    assert "verified (trust:" in out and "issuer    CN=Python LDAP Test CA" in out
    assert "expires   3019-03-01T18:52:38Z" in out
    no_connection_left(slapd)


def test_starttls_with_a_bad_ca_fails_and_still_shows_the_certificate(
    slapd: Slapd, untrusted_slapd: Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    # The untrusted server's certificate is self-signed; slapd's CA did not sign it.
    args = [untrusted_slapd.ldap_uri, "--starttls", "--tls-ca-file", slapd.ca_file]
    code, out, _ = check(capsys, *args)
    assert code == 1
    assert "✘ tls" in out and "starttls, TLSv1" in out
    assert "NOT verified: unknown issuer: self-signed certificate" in out
    assert "certificate from the second handshake, NOT verified" in out
    assert "subject   CN=localhost" in out and "alt names DNS:localhost, IP:127.0.0.1" in out
    assert "✘ bind" in out  # the pool refuses it too
    assert out.splitlines()[-1].startswith("✘ FAIL: 1 of 1 server(s) failed")

    code, [server] = check_json(capsys, *args)
    assert code == 1 and server["ok"] is False
    tls = server["tls"]
    assert tls["verified"] is False and tls["verify_code"] == 18
    assert tls["verify_reason"].startswith("unknown issuer")
    assert tls["certificate"]["issuer"] == "CN=localhost"
    assert 0 < tls["certificate"]["days_left"] <= 2
    assert server["bind"]["result"] == "error" and server["whoami"] is None
    no_connection_left(untrusted_slapd)


@pytest.fixture
def expired_slapd(slapd_installed: None, tmp_path: Path) -> Iterator[Slapd]:
    """A server whose (self-signed) certificate expired yesterday."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make an expired certificate")
    key, csr, cert = tmp_path / "key.pem", tmp_path / "req.csr", tmp_path / "cert.pem"
    (tmp_path / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    request = ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
    request += ["-keyout", str(key), "-out", str(csr)]
    expired = ["x509", "-req", "-in", str(csr), "-signkey", str(key), "-days", "-1"]
    expired += ["-extfile", str(tmp_path / "ext"), "-out", str(cert)]
    for command in (request, expired):
        subprocess.run([openssl, *command], check=True, capture_output=True, timeout=60)
    server = Slapd(cert_file=cert, key_file=key, ca_file=cert)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_an_expired_certificate_fails_and_says_so(
    expired_slapd: Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [expired_slapd.ldaps_uri, "--tls-ca-file", expired_slapd.ca_file]
    code, [server] = check_json(capsys, *args)
    assert code == 1
    tls = server["tls"]
    assert tls["verify_code"] == 10 and tls["verify_reason"].startswith("expired")
    assert tls["certificate"]["days_left"] < 0
    code, out, _ = check(capsys, *args)
    assert "NOT verified: expired: certificate has expired" in out and "(EXPIRED)" in out
    no_connection_left(expired_slapd)


def test_a_wrong_password_is_invalid_credentials(
    slapd: Slapd, driver: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "wrong-7c1e-password"
    path = tmp_path / "wrong.pw"
    path.write_text(wrong)
    alice = slapd.users["alice"]
    args = [slapd.ldap_uri, "--bind", alice.dn, "--password-file", str(path), "--driver", driver]
    code, out, err = check(capsys, *args)
    assert code == 1
    assert "✘ bind" in out and f"invalid credentials as {alice.dn}" in out
    assert "skipped (no bound connection)" in out
    assert wrong not in out + err
    code, [server] = check_json(capsys, *args)
    assert server["bind"]["result"] == "invalid credentials" and server["bind"]["ok"] is False
    no_connection_left(slapd)


def test_a_down_server_is_connection_refused(
    slapd: Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"ldap://127.0.0.1:{free_port()}"
    code, out, _ = check(capsys, f"{down},{slapd.ldap_uri}")
    assert code == 1
    assert "✘ connect" in out and "connection refused" in out
    assert "skipped (no connection)" in out
    assert out.splitlines()[-1] == f"✘ FAIL: 1 of 2 server(s) failed: {down}"
    code, document = check_json(capsys, down, slapd.ldap_uri)
    assert [s["ok"] for s in document] == [False, True]
    assert document[0]["connect"]["error"] == "connection refused"
    assert document[0]["bind"] is None and document[0]["tls"] is None


def test_a_silent_host_times_out_within_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with SilentListener() as silent:
        start = time.monotonic()
        code, out, _ = check(capsys, silent.uri, "--timeout", "0.5")
        elapsed = time.monotonic() - start
    assert code == 1
    assert "timed out after 0.5 s" in out
    assert elapsed < 3


def test_ldapi_anonymous(slapd: Slapd, driver: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, slapd.ldapi_uri, "--driver", driver)
    assert code == 0, out + err
    assert "skipped (ldapi://)" in out and "ok as anonymous" in out
    assert "(anonymous)  (median of 5 round trips)" in out
    code, [server] = check_json(capsys, slapd.ldapi_uri, "--driver", driver)
    assert server["resolve"] is None and server["bind"]["dn"] is None
    assert server["connect"]["address"] == str(slapd.rundir / "ldapi")
    assert server["whoami"]["authzid"] == ""
    no_connection_left(slapd)


def test_python_dash_m_ldappool_check(slapd: Slapd, alice_password: Path) -> None:
    alice = slapd.users["alice"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ldappool",
            "check",
            slapd.ldap_uri,
            "--bind",
            alice.dn,
            "--password-file",
            str(alice_password),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"dn:{alice.dn}" in result.stdout
    assert alice.password not in result.stdout + result.stderr
    no_connection_left(slapd)


def test_top_ends_by_itself_shows_the_pool_and_closes_it(
    slapd: Slapd, driver: str, alice_password: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = slapd.users["alice"]
    start = time.monotonic()
    argv = ["top", slapd.ldap_uri, "--bind", alice.dn, "--password-file", str(alice_password)]
    argv += ["--duration", "1", "--interval", "0.3", "--driver", driver, "--size", "2"]
    code = main(argv)
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert code == 0, out
    assert 1 <= elapsed < 10
    frames = out.split("ldappool top  ")[1:]
    assert 3 <= len(frames) <= 5  # every 0.3 s, and the last one at 1 s
    last = frames[-1]
    assert "Slot (2 max)" in last and alice.dn in last and "errors 0" in last
    assert "checkouts" in last and "\x1b[" not in out  # not a TTY: append-only
    no_connection_left(slapd)


def test_top_json_is_one_line_per_interval(
    slapd: Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["top", slapd.ldapi_uri, "--duration", "0.6", "--interval", "0.2", "--json"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert 2 <= len(records) <= 4
    last = records[-1]
    assert last["operations"] > 0 and last["errors"] == 0 and last["last_error"] is None
    assert last["stats"]["size"] == 4 and last["stats"]["checkouts"] >= last["operations"]
    assert isinstance(last["operations_per_second"], float)
    no_connection_left(slapd)


def test_top_stops_cleanly_on_ctrl_c(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ldappool import _report

    class CtrlC:
        """The time module of _report, whose first sleep is interrupted by Ctrl-C."""

        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(min(seconds, 0.2))  # let the workload run a little
            raise KeyboardInterrupt

    monkeypatch.setattr(_report, "time", CtrlC)
    start = time.monotonic()
    code = main(["top", slapd.ldap_uri, "--duration", "30", "--interval", "5"])
    assert code == 130
    assert time.monotonic() - start < 10
    assert "the workload stopped and the pool was closed" in capsys.readouterr().err
    no_connection_left(slapd)
