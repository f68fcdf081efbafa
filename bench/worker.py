"""One benchmark process: time some implementations against a running slapd, print JSON.

Run as a script, in whichever virtualenv holds the implementation under test: the old
ldappool 3.0.0 lives in its own venv and must never share an interpreter with ours.
So this file imports only the standard library at the top, and each implementation's
library when it is set up.

For each ``--scenario`` (or scenarios joined by ``+``), every implementation given gets
its threads and connections, then they all take turns in short bursts (see
:class:`Crew`) until each has run about ``--seconds``.

Output: one JSON line ``{"versions": {...}}``, then one line per scenario and
implementation: ``{"impl", "tls", "threads", "size", "ops", "errors", "seconds",
"bursts"}``, where ``seconds`` is the time its bursts took, ``errors`` counts
exceptions by type and ``bursts`` lists ``[turn, ops, seconds]`` for each burst: the
implementations of one scenario run in the same turns, so their bursts pair up.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IMPLS = (
    "prebound-python-ldap",
    "prebound-ldap3",
    "floor-python-ldap",
    "floor-ldap3",
    "fifo-python-ldap",
    "fifo-ldap3",
    "fresh-python-ldap",
    "fresh-ldap3",
    "old",
    "ours-python-ldap",
    "ours-ldap3",
)

Op = Callable[[], None]


@dataclass(frozen=True)
class Target:
    """The server and the entry every operation reads (a base-scope search)."""

    uri: str
    dn: str
    password: str
    ca_file: str

    @property
    def host(self) -> str:
        return urlsplit(self.uri).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.uri).port or 389


@dataclass(frozen=True)
class Scenario:
    tls: bool
    threads: int
    size: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``plain:1:8`` or ``tls:32:8``: transport, threads, pool size."""
        mode, threads, size = text.split(":")
        if mode not in ("plain", "tls"):
            raise argparse.ArgumentTypeError(f"not plain or tls: {mode!r}")
        return cls(tls=mode == "tls", threads=int(threads), size=int(size))

    def __str__(self) -> str:
        return f"{'tls' if self.tls else 'plain'}:{self.threads}:{self.size}"


def contest(text: str) -> list[Scenario]:
    """``plain:8:8+plain:32:8``: scenarios whose runs take turns with each other."""
    return [Scenario.parse(part) for part in text.split("+")]


# -- the operation, per library ---------------------------------------------------------


def pl_search(conn: Any, dn: str) -> None:
    import ldap

    found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])
    if len(found) != 1:
        raise LookupError(f"expected one entry, got {len(found)}")


def l3_search(conn: Any, dn: str) -> None:
    import ldap3

    if not conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["cn"]):
        raise LookupError(f"search failed: {conn.result}")
    if len(conn.response) != 1:
        raise LookupError(f"expected one entry, got {len(conn.response)}")


# -- bare connections, configured as our drivers configure theirs ------------------------


def pl_connect(target: Target, tls: bool) -> Any:
    """A bound python-ldap connection with per-connection TLS options, like our driver."""
    import ldap
    import ldap.ldapobject

    conn = ldap.ldapobject.SimpleLDAPObject(target.uri)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    if tls:
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, target.ca_file)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.start_tls_s()
    conn.simple_bind_s(target.dn, target.password)
    return conn


def l3_connect(target: Target, tls: bool) -> Any:
    """A bound ldap3 connection with the options our driver uses (get_info=NONE, SYNC,
    TCP_NODELAY: without it, each StartTLS handshake and bind waits ~40 ms for a
    delayed ACK)."""
    import socket
    import ssl

    import ldap3

    tls_config = None
    if tls:
        tls_config = ldap3.Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=target.ca_file, sni=target.host
        )
    server = ldap3.Server(target.host, port=target.port, get_info=ldap3.NONE, tls=tls_config)
    conn = ldap3.Connection(
        server,
        user=target.dn,
        password=target.password,
        client_strategy=ldap3.SYNC,
        auto_bind=ldap3.AUTO_BIND_NONE,
        auto_referrals=False,
    )
    conn.open(read_server_info=False)
    conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls and not conn.start_tls(read_server_info=False):
        raise ConnectionError(f"StartTLS failed: {conn.result}")
    if not conn.bind(read_server_info=False):
        raise PermissionError(f"bind failed: {conn.result}")
    return conn


def searcher(driver: str) -> Callable[[Any, str], None]:
    return pl_search if driver == "python-ldap" else l3_search


@contextmanager
def bound(target: Target, tls: bool, driver: str, count: int) -> Iterator[list[Any]]:
    """``count`` connections opened and bound now, unbound on the way out."""
    connect = pl_connect if driver == "python-ldap" else l3_connect
    conns = [connect(target, tls) for _ in range(count)]
    try:
        yield conns
    finally:
        for conn in conns:
            if driver == "python-ldap":
                conn.unbind_s()
            else:
                conn.unbind()


# -- implementations: each yields one operation per thread -------------------------------


@contextmanager
def prebound(target: Target, sc: Scenario, driver: str) -> Iterator[list[Op]]:
    """The limit: each thread reuses its own bound connection, no pool in between."""
    search = searcher(driver)
    with bound(target, sc.tls, driver, sc.threads) as conns:
        yield [lambda c=c: search(c, target.dn) for c in conns]  # type: ignore[misc]


@contextmanager
def fresh(target: Target, sc: Scenario, driver: str) -> Iterator[list[Op]]:
    """No pool: connect (and StartTLS) and bind for every operation, then unbind."""
    if driver == "python-ldap":

        def op() -> None:
            conn = pl_connect(target, sc.tls)
            try:
                pl_search(conn, target.dn)
            finally:
                conn.unbind_s()

    else:

        def op() -> None:
            conn = l3_connect(target, sc.tls)
            try:
                l3_search(conn, target.dn)
            finally:
                conn.unbind()

    yield [op] * sc.threads


@contextmanager
def ours(
    target: Target, sc: Scenario, driver: str, handoff_after: float | None = None
) -> Iterator[list[Op]]:
    """This project's pool, through the public API only."""
    from ldappool import ConnectionManager

    search = searcher(driver)
    extra: dict[str, Any] = {} if handoff_after is None else {"handoff_after": handoff_after}
    cm = ConnectionManager(
        target.uri,
        target.dn,
        target.password,
        size=sc.size,
        use_tls=sc.tls,
        tls_ca_file=target.ca_file,
        driver=driver,
        **extra,
    )

    def op() -> None:
        with cm.connection() as conn:
            search(conn, target.dn)

    try:
        yield [op] * sc.threads
    finally:
        cm.close()


@contextmanager
def fifo(target: Target, sc: Scenario, driver: str) -> Iterator[list[Op]]:
    """Our pool with every returned connection handed to the oldest waiter: strict
    first come, first served, the alternative to its bounded barging."""
    with ours(target, sc, driver, handoff_after=0.0) as ops:
        yield ops


@contextmanager
def old(target: Target, sc: Scenario, driver: str) -> Iterator[list[Op]]:
    """ldappool 3.0.0 as its users run it: TLS options can only be set process-wide."""
    import ldap

    from ldappool import ConnectionManager

    if sc.tls:
        ldap.set_option(ldap.OPT_X_TLS_CACERTFILE, target.ca_file)
        ldap.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    cm = ConnectionManager(target.uri, target.dn, target.password, size=sc.size, use_tls=sc.tls)

    def op() -> None:
        with cm.connection() as conn:
            pl_search(conn, target.dn)

    try:
        yield [op] * sc.threads
    finally:
        # 3.0.0 has no close(), and its _pool is a list: unbind what it kept.
        for conn in list(cm._pool):  # type: ignore[call-overload]
            try:
                conn.unbind_s()
            except Exception:  # noqa: S112 - best effort on a pool we are done with
                continue


class BarePool:
    """The least any pool does: a lock, a list of bound connections, a context manager.

    No identities, no liveness check, no lifetime, no waiting, no bound on threads:
    not a pool to use, but the floor of what lending a connection costs in Python.
    """

    def __init__(self, conns: list[Any]) -> None:
        self._lock = threading.Lock()
        self._idle = conns

    def connection(self) -> BareLease:
        return BareLease(self)


class BareLease:
    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: BarePool) -> None:
        self._pool = pool

    def __enter__(self) -> Any:
        pool = self._pool
        with pool._lock:
            self._conn = pool._idle.pop()
        return self._conn

    def __exit__(self, *exc_info: object) -> None:
        pool = self._pool
        with pool._lock:
            pool._idle.append(self._conn)


@contextmanager
def floor(target: Target, sc: Scenario, driver: str) -> Iterator[list[Op]]:
    """:class:`BarePool` over ``size`` pre-bound connections (at most ``size`` threads)."""
    if sc.threads > sc.size:
        raise ValueError("the bare pool cannot wait: at most size threads")
    search = searcher(driver)
    with bound(target, sc.tls, driver, sc.size) as conns:
        pool = BarePool(list(conns))

        def op() -> None:
            with pool.connection() as conn:
                search(conn, target.dn)

        yield [op] * sc.threads


def implementation(name: str, target: Target, sc: Scenario) -> AbstractContextManager[list[Op]]:
    kind, _, driver = name.partition("-")
    factories = {
        "prebound": prebound,
        "floor": floor,
        "fifo": fifo,
        "fresh": fresh,
        "ours": ours,
        "old": old,
    }
    if name not in IMPLS:
        raise SystemExit(f"unknown implementation {name!r}; one of {', '.join(IMPLS)}")
    return factories[kind](target, sc, driver or "python-ldap")


# -- timing ------------------------------------------------------------------------------


class Crew:
    """One implementation's threads for one scenario, let loose in short bursts.

    Implementations of a scenario take turns, burst after burst, so that what the
    machine does meanwhile (a 2-core VM drifts by 20 % from second to second) hits
    them all alike. A burst's time runs from its first operation's start to its last
    one's end over all threads: an operation started in the burst is waited for, so a
    slow one (a full pool's sleep) is never hidden.
    """

    def __init__(self, ops: list[Op]) -> None:
        self.ops = 0
        self.errors: Counter[str] = Counter()
        self.busy = 0.0
        self.bursts: list[tuple[int, int, float]] = []  # (turn, ops, seconds)
        self._go = threading.Event()
        self._cond = threading.Condition()
        self._parked = 0
        self._first = math.inf
        self._last = 0.0
        self._closing = False
        self._threads = [
            threading.Thread(target=self._loop, args=(op,), daemon=True) for op in ops
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self, op: Op) -> None:
        go, clock = self._go, time.perf_counter
        while True:
            go.wait()
            if self._closing:
                return
            done, failed, start = 0, Counter[str](), clock()
            while go.is_set():
                try:
                    op()
                except Exception as exc:
                    failed[type(exc).__name__] += 1
                else:
                    done += 1
            end = clock()
            with self._cond:
                self.ops += done
                self.errors.update(failed)
                if done or failed:
                    self._first, self._last = min(self._first, start), max(self._last, end)
                self._parked += 1
                self._cond.notify_all()

    def burst(self, seconds: float, turn: int = -1) -> None:
        """Run every thread for about ``seconds``; return once all are parked again."""
        with self._cond:
            self._parked, self._first, self._last = 0, math.inf, 0.0
            ops_before = self.ops
        self._go.set()
        time.sleep(seconds)
        self._go.clear()
        with self._cond:
            self._cond.wait_for(lambda: self._parked == len(self._threads))
            if self._last > self._first:
                took = self._last - self._first
                self.busy += took
                self.bursts.append((turn, self.ops - ops_before, took))

    def reset(self) -> None:
        """Forget the counts so far (after the warm-up burst)."""
        self.ops, self.errors, self.busy, self.bursts = 0, Counter(), 0.0, []

    def close(self) -> None:
        self._closing = True
        self._go.set()
        for thread in self._threads:
            thread.join()


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The server and identity every worker (this one, the peers', asyncio's) is given."""
    parser.add_argument("--uri", required=True)
    parser.add_argument("--dn", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ca-file", required=True)


def target_of(args: argparse.Namespace) -> Target:
    return Target(args.uri, args.dn, args.password, args.ca_file)


def compare(
    target: Target,
    contest: list[tuple[str, Scenario]],
    seconds: float,
    burst: float,
    first_turn: int = 0,
) -> Iterator[dict[str, Any]]:
    """Run (implementation, scenario) pairs in turns; one record per pair.

    A burst is ``burst`` seconds with one thread, five times that with several: they
    need longer to all get going.
    """
    with ExitStack() as stack:
        crews: list[tuple[str, Scenario, Crew, float]] = []
        for name, sc in contest:
            crew = Crew(stack.enter_context(implementation(name, target, sc)))
            stack.callback(crew.close)
            length = burst if sc.threads == 1 else 5 * burst
            crew.burst(length)  # opens the connections, warms the caches
            crew.reset()
            crews.append((name, sc, crew, length))
        for turn in range(first_turn, first_turn + max(1, round(seconds / burst))):
            shift = turn % len(crews)
            for _, sc, crew, length in crews[shift:] + crews[:shift]:
                if sc.threads == 1 or turn % 5 == 0:
                    crew.burst(length, turn)
        for name, sc, crew, _ in crews:
            yield {
                "impl": name,
                "tls": sc.tls,
                "threads": sc.threads,
                "size": sc.size,
                "ops": crew.ops,
                "errors": dict(crew.errors),
                "seconds": crew.busy,
                "bursts": crew.bursts,
            }


def applies(name: str, sc: Scenario) -> bool:
    """The bare pool is the floor of the 1-thread cost (with threads it says little);
    strict hand-off only matters when threads queue, and plain LDAP shows it."""
    if name.startswith("floor-"):
        return sc.threads == 1
    if name.startswith("fifo-"):
        return sc.threads > sc.size and not sc.tls
    return True


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("ldappool", "python-ldap", "ldap3"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run(args: argparse.Namespace) -> None:
    target = target_of(args)
    impls: list[str] = args.impl.split(",")
    emit({"versions": versions()})
    for scenarios in args.scenario:
        contest = [(name, sc) for sc in scenarios for name in impls if applies(name, sc)]
        # One connection can be a few per cent faster or slower than another, for as long
        # as it lives: 1-thread contests start over with new connections several times.
        draws = args.draws if all(sc.threads == 1 for sc in scenarios) else 1
        merged: dict[tuple[str, bool, int], dict[str, Any]] = {}
        for draw in range(draws):
            seconds = args.seconds / draws
            for rec in compare(target, contest, seconds, args.burst, draw * 100_000):
                key = (rec["impl"], rec["tls"], rec["threads"])
                merged[key] = _merge(merged[key], rec) if key in merged else rec
        for record in merged.values():
            emit(record)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    errors = Counter(a["errors"])
    errors.update(b["errors"])
    return {
        **a,
        "ops": a["ops"] + b["ops"],
        "seconds": a["seconds"] + b["seconds"],
        "errors": dict(errors),
        "bursts": [*a["bursts"], *b["bursts"]],
    }


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True, help=f"comma-separated: {', '.join(IMPLS)}")
    parser.add_argument(
        "--scenario",
        type=contest,
        action="append",
        required=True,
        help="plain|tls:THREADS:SIZE, several joined by + to take turns; repeatable",
    )
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="measured time per implementation and scenario"
    )
    parser.add_argument(
        "--burst", type=float, default=0.02, help="seconds per turn (x5 with several threads)"
    )
    parser.add_argument(
        "--draws", type=int, default=1, help="1-thread contests: sets of new connections"
    )
    add_target_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
