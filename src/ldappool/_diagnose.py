"""``ldappool check``'s bind and WhoAmI through ldappool, and ``top``'s workload.

After the network steps of :mod:`ldappool._probe`, the bind goes through a real
:class:`~ldappool.ConnectionManager` and ``cm.connection()``, as an application's
would: what it reports is what the application will meet (the driver's TLS and
trust, ldappool's errors). Nothing here prints, and no record holds the password.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from typing import Any

import attrs

from ldappool._errors import InvalidCredentialsError, LDAPPoolError
from ldappool._manager import ConnectionManager
from ldappool._port import Server
from ldappool._probe import (
    Address,
    CheckOptions,
    Connect,
    Resolution,
    Tls,
    check_tls,
    close,
    connect,
    describe_error,
    resolve,
    timed,
)

__all__ = [
    "Bind",
    "ServerReport",
    "WhoAmI",
    "Workload",
    "WorkloadCounts",
    "check_bind",
    "check_server",
    "manager",
    "measure_whoami",
    "whoami",
]


@attrs.frozen
class Bind:
    """A bind through ldappool: what an application using the pool would get."""

    ok: bool
    result: str  # "ok", "invalid credentials", "error"
    seconds: float
    dn: str | None  # None: anonymous
    error: str | None = None


@attrs.frozen
class WhoAmI:
    """WhoAmI on the bound connection: who the server thinks we are, and the latency of
    a round trip (the median, so that one slow sample does not hide the usual one)."""

    ok: bool
    authzid: str | None = None
    median_seconds: float | None = None
    samples_seconds: tuple[float, ...] = ()
    error: str | None = None


@attrs.frozen
class ServerReport:
    """One server's steps; a step is None when it does not apply or could not run."""

    uri: str
    resolve: Resolution | None
    connect: Connect | None
    tls: Tls | None
    bind: Bind | None
    whoami: WhoAmI | None

    @property
    def ok(self) -> bool:
        steps = (self.resolve, self.connect, self.tls, self.bind, self.whoami)
        ran_all = None not in (self.connect, self.bind, self.whoami)
        return ran_all and all(step.ok for step in steps if step is not None)


# -- bind and WhoAmI, through ldappool ---------------------------------------------------


def whoami(native: Any) -> str:
    """WhoAmI on the driver's own connection: python-ldap's or ldap3's call."""
    if hasattr(native, "whoami_s"):
        return str(native.whoami_s() or "")
    answer = native.extend.standard.who_am_i()
    result = getattr(native, "result", None)
    if isinstance(result, dict) and result.get("result") not in (0, None):
        raise RuntimeError(f"WhoAmI failed: {result.get('description')} {result.get('message')}")
    return str(answer or "")


def measure_whoami(native: Any, rounds: int) -> WhoAmI:
    """``rounds`` WhoAmI round trips; the median is the latency shown."""
    samples = []
    try:
        for _ in range(rounds):
            authzid, seconds = timed(lambda: whoami(native))
            samples.append(seconds)
    except Exception as exc:
        return WhoAmI(False, samples_seconds=tuple(samples), error=describe_error(exc))
    return WhoAmI(True, authzid, statistics.median(samples), tuple(samples))


def manager(uri: str, options: CheckOptions, size: int = 1) -> ConnectionManager:
    """A manager with the command line's settings; certificates always verified."""
    return ConnectionManager(
        uri,
        options.bind,
        options.password,
        size=size,
        retry_max=1,
        timeout=options.timeout,
        use_tls=options.starttls,
        driver=options.driver,
        pool_timeout=options.timeout,
        tls_ca_file=options.ca_file,
        tls_cert_file=options.cert_file,
        tls_key_file=options.key_file,
        tls_verify=True,
    )


def check_bind(server: Server, options: CheckOptions) -> tuple[Bind, WhoAmI | None]:
    """A new pooled connection (connect, TLS, bind) through ``cm.connection()``, then WhoAmI."""
    start = time.perf_counter()

    def failed(result: str, exc: BaseException) -> tuple[Bind, None]:
        seconds = time.perf_counter() - start
        return Bind(False, result, seconds, options.bind, describe_error(exc)), None

    try:
        cm = manager(server.uri, options)
    except (LDAPPoolError, ValueError, TypeError) as exc:
        return failed("error", exc)
    try:
        start = time.perf_counter()
        lease = cm.connection()
        try:
            native = lease.__enter__()
        except InvalidCredentialsError as exc:
            return failed("invalid credentials", exc)
        except LDAPPoolError as exc:
            return failed("error", exc)
        bind = Bind(True, "ok", time.perf_counter() - start, options.bind)
        try:
            return bind, measure_whoami(native, options.whoami_rounds)
        finally:
            lease.__exit__(None, None, None)
    finally:
        cm.close()


def check_server(server: Server, options: CheckOptions) -> ServerReport:
    """Every step for one server, each run only if the steps it needs went well."""
    resolution: Resolution | None = None
    if server.scheme == "ldapi":
        addresses: list[Address] = [(socket.AF_UNIX, server.host)]
    else:
        resolution, addresses = resolve(server, options.timeout)
        if not resolution.ok:
            return ServerReport(server.uri, resolution, None, None, None, None)
    tcp, sock = connect(addresses, options.timeout)
    if sock is None:
        return ServerReport(server.uri, resolution, tcp, None, None, None)
    tls = None
    if server.scheme == "ldaps" or options.starttls:
        tls = check_tls(sock, server, addresses, options)
    else:
        close(sock)
    bind, who = check_bind(server, options)
    return ServerReport(server.uri, resolution, tcp, tls, bind, who)


# -- the workload of ``top`` -------------------------------------------------------------


def read_root_dse(native: Any) -> None:
    """A base search of the root DSE: the cheapest read every server answers."""
    if hasattr(native, "search_s"):
        native.search_s("", 0, "(objectClass=*)", ["supportedLDAPVersion"])  # 0: SCOPE_BASE
        return
    native.search("", "(objectClass=*)", search_scope="BASE", attributes=["supportedLDAPVersion"])


@attrs.frozen
class WorkloadCounts:
    """Operations and errors of the workload so far."""

    operations: int
    errors: int
    last_error: str | None


class Workload:
    """Threads that alternate WhoAmI and a root DSE read through ``cm.connection()``
    until :meth:`stop`: traffic for ``top`` to show, the way an application makes it."""

    def __init__(self, cm: ConnectionManager, threads: int) -> None:
        self._cm = cm
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._operations = self._errors = 0
        self._last_error: str | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"ldappool-top-{n}", daemon=True)
            for n in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop the threads; True if they all ended within ``timeout`` seconds."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def counts(self) -> WorkloadCounts:
        with self._lock:
            return WorkloadCounts(self._operations, self._errors, self._last_error)

    def _run(self) -> None:
        turn = 0
        while not self._stopping.is_set():
            turn += 1
            try:
                with self._cm.connection() as native:
                    (whoami if turn % 2 else read_root_dse)(native)
            except Exception as exc:
                with self._lock:
                    self._errors += 1
                    self._last_error = describe_error(exc)
                self._stopping.wait(0.1)  # a down server: do not spin
                continue
            with self._lock:
                self._operations += 1
