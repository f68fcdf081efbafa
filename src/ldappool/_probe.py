"""The network steps of ``ldappool check``, below any LDAP library.

Name resolution, the TCP (or ldapi) connect and TLS are probed on raw sockets, so
that each has its own time and a failure names the step that failed, in words an
operator acts upon (refused, timed out, unknown issuer...). StartTLS is spoken here
with the two hand-encoded messages of :mod:`ldappool._asn1`: no driver would show a
certificate it refused, and this step must. Every step returns a small frozen record;
nothing here prints, and no record holds the password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ldappool._asn1 import BerError, message_length, parse_certificate, parse_extended_response
from ldappool._asn1 import starttls_request as _starttls_request
from ldappool._errors import LDAPPoolError
from ldappool._port import Server

__all__ = [
    "Address",
    "Certificate",
    "CheckOptions",
    "Connect",
    "Resolution",
    "StartTLSError",
    "Tls",
    "certificate",
    "check_tls",
    "close",
    "connect",
    "describe_error",
    "resolve",
    "starttls",
    "timed",
    "verify_reason",
]

T = TypeVar("T")
DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
_UNBIND = bytes.fromhex("30050201024200")  # LDAPMessage { 2, UnbindRequest }
_MAX_MESSAGE = 64 * 1024
#: OpenSSL verify codes and what they mean to an operator.
_VERIFY_REASONS = {
    2: "unknown issuer",  # unable to get issuer certificate
    18: "unknown issuer",  # self-signed certificate
    19: "unknown issuer",  # self-signed certificate in chain
    20: "unknown issuer",  # unable to get local issuer certificate
    21: "unknown issuer",  # unable to verify the first certificate
    9: "not yet valid",
    10: "expired",
    62: "host name mismatch",
    64: "IP address mismatch",
}
_RESULT_NAMES = {1: "operationsError", 2: "protocolError", 52: "unavailable", 53: "unwilling"}


@attrs.frozen
class CheckOptions:
    """How to probe: the command line, less the URIs. The password is never shown."""

    bind: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    starttls: bool = False
    timeout: float = 5.0
    driver: str = "python-ldap"
    whoami_rounds: int = 5


@attrs.frozen
class Resolution:
    """Name resolution: a slow or failing resolver delays every new connection."""

    ok: bool
    seconds: float
    addresses: tuple[str, ...] = ()
    error: str | None = None


@attrs.frozen
class Connect:
    """The TCP (or ldapi) connect: refused, timed out or unreachable says where to look."""

    ok: bool
    seconds: float
    #: Where it connected ("127.0.0.1:389", or the ldapi socket path).
    address: str | None = None
    error: str | None = None


@attrs.frozen
class Certificate:
    """What the server's certificate says; ``days_left`` is negative once it expired."""

    subject: str
    issuer: str
    serial: str
    not_before: str
    not_after: str
    days_left: float
    alt_names: tuple[str, ...]
    sha256: str


@attrs.frozen
class Tls:
    """The TLS step. ``certificate_source`` says how the certificate was read: by the
    verifying handshake, or, when that refused it, by a second one that does not verify."""

    ok: bool
    mode: str  # "ldaps" or "starttls"
    trust: str  # the CA file, or "system store"
    hostname: str | None  # the name checked against the certificate
    verified: bool = False
    verify_reason: str | None = None  # why verification failed: "unknown issuer: ..."
    verify_code: int | None = None
    seconds: float | None = None  # the handshake that completed
    starttls_seconds: float | None = None
    version: str | None = None
    cipher: str | None = None
    certificate: Certificate | None = None
    certificate_source: str | None = None
    error: str | None = None  # a failure other than verification


class StartTLSError(Exception):
    """The server did not agree to StartTLS (or did not answer in LDAP)."""


# -- helpers ---------------------------------------------------------------------------


def _deadline(func: Callable[[], T], timeout: float) -> T:
    """Run ``func`` (a blocking call without a timeout of its own) for ``timeout`` s at most."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, func()))
        except Exception as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="ldappool-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TimeoutError(f"no answer after {timeout:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """A short reason, the kind of failure first: what an operator acts upon."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable: {exc.strerror}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, LDAPPoolError) and cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


def verify_reason(exc: ssl.SSLCertVerificationError) -> str:
    """Why verification failed, the category first: "unknown issuer: self-signed ..."."""
    message = exc.verify_message or exc.reason or str(exc)
    category = _VERIFY_REASONS.get(exc.verify_code)
    return f"{category}: {message}" if category else str(message)


def timed(func: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def close(sock: socket.socket) -> None:
    """Unbind politely, then close: the server logs a clean end, not a lost connection."""
    with contextlib.suppress(OSError):
        sock.settimeout(0.5)
        sock.sendall(_UNBIND)
    with contextlib.suppress(OSError):
        sock.close()


# -- name resolution and TCP -----------------------------------------------------------


Address = tuple[int, Any]  # (family, sockaddr) as getaddrinfo gives them


def resolve(server: Server, timeout: float) -> tuple[Resolution, list[Address]]:
    """The addresses of ``server``'s host, in the order a client tries them."""
    port = server.port or DEFAULT_PORTS[server.scheme]
    start = time.perf_counter()
    try:
        infos = _deadline(
            lambda: socket.getaddrinfo(server.host, port, type=socket.SOCK_STREAM), timeout
        )
    except OSError as exc:
        return Resolution(
            False, time.perf_counter() - start, error=describe_error(exc, timeout)
        ), []
    seconds = time.perf_counter() - start
    found: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in found:
            found.append((family, sockaddr))
    shown = tuple(dict.fromkeys(str(sockaddr[0]) for _family, sockaddr in found))
    return Resolution(True, seconds, shown), found


def _label(family: int, sockaddr: Any) -> str:
    if family == socket.AF_UNIX:
        return str(sockaddr)
    host = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
    return f"{host}:{sockaddr[1]}"


def _dial(addresses: list[Address], timeout: float) -> tuple[socket.socket, str]:
    """Connect to the first address that answers, as ``socket.create_connection`` does."""
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, _label(family, sockaddr)
    raise error


def connect(addresses: list[Address], timeout: float) -> tuple[Connect, socket.socket | None]:
    """Open a TCP (or ldapi) connection; the caller closes the socket returned."""
    start = time.perf_counter()
    try:
        sock, label = _dial(addresses, timeout)
    except OSError as exc:
        return Connect(
            False, time.perf_counter() - start, error=describe_error(exc, timeout)
        ), None
    return Connect(True, time.perf_counter() - start, label), sock


# -- TLS ---------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise StartTLSError("the server closed the connection instead of answering StartTLS")
        data += chunk
    return data


def starttls(sock: socket.socket) -> None:
    """Send the StartTLS ExtendedRequest and read exactly its answer; raise unless success."""
    sock.sendall(_starttls_request(1))
    message = _recv_exact(sock, 2)
    try:
        while (size := message_length(message)) is None:
            message += _recv_exact(sock, 1)
        if size > _MAX_MESSAGE:
            raise BerError(f"a {size}-byte answer")
        answer = parse_extended_response(message + _recv_exact(sock, size - len(message)))
    except BerError as exc:
        raise StartTLSError(f"not an LDAP answer to StartTLS ({exc}): is this port TLS?") from exc
    if answer.message_id == 0:
        raise StartTLSError(
            f"the server disconnected: {answer.diagnostic or answer.response_name}"
        )
    if answer.result_code != 0:
        name = _RESULT_NAMES.get(answer.result_code, "error")
        detail = f": {answer.diagnostic}" if answer.diagnostic else ""
        raise StartTLSError(f"StartTLS refused, result {answer.result_code} ({name}){detail}")


def _context(options: CheckOptions, verify: bool, hostname: str | None) -> ssl.SSLContext:
    if verify:
        context = ssl.create_default_context(cafile=options.ca_file)
        context.check_hostname = hostname is not None
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file:
        context.load_cert_chain(options.cert_file, options.key_file)
    return context


def certificate(der: bytes, now: dt.datetime | None = None) -> Certificate:
    """The fields of a DER certificate, and the days left before it expires."""
    fields = parse_certificate(der)
    now = now or dt.datetime.now(dt.timezone.utc)
    digest = hashlib.sha256(der).hexdigest().upper()
    return Certificate(
        subject=fields.subject,
        issuer=fields.issuer,
        serial=f"{fields.serial:X}",
        not_before=fields.not_before.isoformat().replace("+00:00", "Z"),
        not_after=fields.not_after.isoformat().replace("+00:00", "Z"),
        days_left=round((fields.not_after - now).total_seconds() / 86400, 1),
        alt_names=fields.alt_names,
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
    )


def _handshake(
    sock: socket.socket, server: Server, options: CheckOptions, verify: bool
) -> tuple[ssl.SSLSocket, float, float | None]:
    """StartTLS if asked, then the TLS handshake on ``sock``; closes it on failure."""
    hostname = None if server.scheme == "ldapi" else server.host
    try:
        starttls_seconds = None
        if server.scheme != "ldaps":
            starttls_seconds = timed(lambda: starttls(sock))[1]
        context = _context(options, verify, hostname)
        wrapped, seconds = timed(lambda: context.wrap_socket(sock, server_hostname=hostname))
    except BaseException:
        close(sock)
        raise
    return wrapped, seconds, starttls_seconds


def check_tls(
    sock: socket.socket, server: Server, addresses: list[Address], options: CheckOptions
) -> Tls:
    """Handshake with verification on ``sock``; if the certificate is refused, read it
    through a second, non-verifying handshake on a new connection, so that the report
    shows what the server presents and why it was refused."""
    base = Tls(
        ok=False,
        mode="ldaps" if server.scheme == "ldaps" else "starttls",
        trust=options.ca_file or "system store",
        hostname=None if server.scheme == "ldapi" else server.host,
    )
    refused: ssl.SSLCertVerificationError | None = None
    try:
        wrapped, seconds, starttls_seconds = _handshake(sock, server, options, verify=True)
    except ssl.SSLCertVerificationError as exc:
        refused = exc
    except (OSError, StartTLSError) as exc:
        return attrs.evolve(base, error=describe_error(exc, options.timeout))
    if refused is not None:
        base = attrs.evolve(base, verify_reason=verify_reason(refused))
        base = attrs.evolve(base, verify_code=refused.verify_code)
        try:
            second, _ = _dial(addresses, options.timeout)
            wrapped, seconds, starttls_seconds = _handshake(second, server, options, verify=False)
        except (OSError, StartTLSError) as exc:
            error = f"certificate not readable: {describe_error(exc, options.timeout)}"
            return attrs.evolve(base, error=error)
    try:
        der = wrapped.getpeercert(binary_form=True)
        cipher, version = wrapped.cipher(), wrapped.version()
        try:
            cert = certificate(der) if der else None
        except BerError as exc:
            base = attrs.evolve(base, error=f"certificate not decodable: {exc}")
            cert = None
    finally:
        close(wrapped)
    verified = refused is None
    expired = cert is not None and cert.days_left < 0
    return attrs.evolve(
        base,
        ok=verified and not expired and base.error is None,
        verified=verified,
        seconds=seconds,
        starttls_seconds=starttls_seconds,
        version=version,
        cipher=cipher[0] if cipher else None,
        certificate=cert,
        certificate_source="verified handshake"
        if verified
        else "second handshake, NOT verified (read only to show it)",
    )
