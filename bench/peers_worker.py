"""One peers process: time other pools beside ldappool against a running slapd, print JSON.

Run as a script, in whichever virtualenv holds the contestants (ldappool 4 in ours,
ldappool 3.0.0, ldap3 and bonsai each in one of their own), like ``bench/worker.py``,
whose timing (:class:`Crew`), bare connections and ldappool contestants it uses: only
the standard library at the top, each library imported when its contestant is set up.

The workload is the server benchmark's: a base-scope search of one entry (``cn``
only), bound as one user, from 1, 8 and 32 threads on pools of size 8. Every
contestant given gets its threads and connections, then they all take turns in short
bursts (the 1-thread contest on its own, 8 and 32 threads together), as in
``worker.compare`` but with shorter bursts for several threads; a contestant may set
something up before each of its bursts (ldap3's poll interval is a global of the
library).

Output: one JSON line ``{"versions": {...}}``, then one line per contestant and thread
count: ``{"impl", "threads", "size", "ops", "errors", "seconds", "bursts"}`` as in
``worker.py``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

if __package__:  # imported as bench.peers_worker (type checks, tests)
    from bench.worker import (
        Crew,
        Op,
        Scenario,
        Target,
        add_target_arguments,
        emit,
        old,
        ours,
        prebound,
        target_of,
    )
else:  # run as a script, bench/ is sys.path[0]: no package, whatever the venv
    from worker import (  # type: ignore[import-not-found,no-redef]
        Crew,
        Op,
        Scenario,
        Target,
        add_target_arguments,
        emit,
        old,
        ours,
        prebound,
        target_of,
    )

#: The contestants: see the functions below.
IMPLS = (
    "limit-python-ldap",
    "limit-ldap3",
    "ours-python-ldap",
    "ours-ldap3",
    "old",
    "reusable-ldap3",
    "reusable-1ms-ldap3",
    "prebound-bonsai",
    "bonsai",
)
#: ldap3's default RESPONSE_SLEEPTIME (ldap3.utils.config), and the short one tried.
LDAP3_SLEEP = 0.05
LDAP3_SHORT_SLEEP = 0.001
#: With several threads, a burst is MANY times the 1-thread one, every other turn.
MANY = 2.5


# -- ldap3's own pool: the REUSABLE strategy ---------------------------------------------


@contextmanager
def reusable(target: Target, sc: Scenario, sleeptime: float) -> Iterator[list[Op]]:
    """ldap3's REUSABLE strategy as its documentation shows it: one Connection whose
    strategy keeps ``pool_size`` connections, each served by a thread of its own.

    An operation returns a message id at once (the request goes on the pool's queue);
    ``get_response(msgid)`` returns ``(response, result)`` when a pool thread has
    answered it, polling the pool's answers every ``RESPONSE_SLEEPTIME`` seconds. The
    returned pair, not ``conn.response``, is what a thread may rely on: the Connection
    is shared. ``lazy`` is forced off by the strategy; ``auto_bind`` opens and binds
    every pooled connection when the pool starts.
    """
    import ldap3

    server = ldap3.Server(target.host, port=target.port, get_info=ldap3.NONE)
    conn = ldap3.Connection(
        server,
        user=target.dn,
        password=target.password,
        client_strategy=ldap3.REUSABLE,
        pool_name=f"bench-{sc.threads}-{sleeptime}",
        pool_size=sc.size,
        auto_bind=ldap3.AUTO_BIND_NO_TLS,
        auto_referrals=False,
    )
    dn, base = target.dn, ldap3.BASE

    def op() -> None:
        msgid = conn.search(dn, "(objectClass=*)", search_scope=base, attributes=["cn"])
        response, result = conn.get_response(msgid)
        if result["result"] != 0:
            raise LookupError(f"search failed: {result}")
        if len(response) != 1:
            raise LookupError(f"expected one entry, got {len(response)}")

    try:
        yield [op] * sc.threads
    finally:
        conn.unbind()
        conn.strategy.terminate()  # stops the pool's threads, which unbind theirs


def ldap3_sleeptime(seconds: float) -> Callable[[], None]:
    """Set ldap3's poll interval, a global of the library, before a contestant's burst."""

    def before() -> None:
        from ldap3.utils.config import set_config_parameter

        set_config_parameter("RESPONSE_SLEEPTIME", seconds)

    return before


# -- bonsai: a libldap client with a pool of its own --------------------------------------


def bonsai_client(target: Target) -> Any:
    import bonsai  # type: ignore[import-not-found]

    client = bonsai.LDAPClient(target.uri)
    client.set_credentials("SIMPLE", user=target.dn, password=target.password)
    return client


def bonsai_search(conn: Any, dn: str) -> None:
    import bonsai

    found = conn.search(dn, bonsai.LDAPSearchScope.BASE, "(objectClass=*)", attrlist=["cn"])
    if len(found) != 1:
        raise LookupError(f"expected one entry, got {len(found)}")


@contextmanager
def bonsai_pool(target: Target, sc: Scenario) -> Iterator[list[Op]]:
    """``bonsai.pool.ThreadedConnectionPool(client, minconn=size, maxconn=size)``,
    opened before the threads start (``spawn`` would open it on first use, unlocked);
    each search in ``with pool.spawn() as conn``, which blocks while all are lent."""
    from bonsai.pool import ThreadedConnectionPool  # type: ignore[import-not-found]

    pool = ThreadedConnectionPool(bonsai_client(target), minconn=sc.size, maxconn=sc.size)
    pool.open()
    dn = target.dn

    def op() -> None:
        with pool.spawn() as conn:
            bonsai_search(conn, dn)

    try:
        yield [op] * sc.threads
    finally:
        pool.close()


@contextmanager
def bonsai_prebound(target: Target, sc: Scenario) -> Iterator[list[Op]]:
    """bonsai without its pool: each thread its own connection, bound beforehand."""
    client = bonsai_client(target)
    conns = [client.connect() for _ in range(sc.threads)]
    try:
        yield [lambda c=c: bonsai_search(c, target.dn) for c in conns]  # type: ignore[misc]
    finally:
        for conn in conns:
            conn.close()


def nothing() -> None:
    return None


def contestant(
    name: str, target: Target, sc: Scenario
) -> tuple[AbstractContextManager[list[Op]], Callable[[], None]]:
    """Contestant ``name``'s operations (one per thread) and what to do before a burst."""
    if name.startswith("limit-"):
        return prebound(target, sc, name.removeprefix("limit-")), nothing
    if name.startswith("ours-"):
        return ours(target, sc, name.removeprefix("ours-")), nothing
    if name == "old":
        return old(target, sc, "python-ldap"), nothing
    if name == "reusable-ldap3":
        return reusable(target, sc, LDAP3_SLEEP), ldap3_sleeptime(LDAP3_SLEEP)
    if name == "reusable-1ms-ldap3":
        return reusable(target, sc, LDAP3_SHORT_SLEEP), ldap3_sleeptime(LDAP3_SHORT_SLEEP)
    if name == "prebound-bonsai":
        return bonsai_prebound(target, sc), nothing
    if name == "bonsai":
        return bonsai_pool(target, sc), nothing
    raise SystemExit(f"unknown contestant {name!r}; one of {', '.join(IMPLS)}")


# -- timing ------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    sc: Scenario
    crew: Crew
    length: float  # seconds per burst
    before: Callable[[], None]


def compare(
    target: Target, names: list[str], scenarios: list[Scenario], seconds: float, burst: float
) -> Iterator[dict[str, Any]]:
    """Every contestant at every scenario, taking turns as in ``worker.compare``: bursts
    of ``burst`` seconds with one thread; with several, :data:`MANY` times that every
    other turn (``worker.compare``: five times, every fifth turn), twice the pairs in
    the same time; one record per contestant and scenario."""
    with ExitStack() as stack:
        entries: list[Entry] = []
        for sc in scenarios:
            for name in names:
                ops, before = contestant(name, target, sc)
                crew = Crew(stack.enter_context(ops))
                stack.callback(crew.close)
                length = burst if sc.threads == 1 else MANY * burst
                before()
                crew.burst(length)  # opens the connections, warms the caches
                crew.reset()
                entries.append(Entry(name, sc, crew, length, before))
        for turn in range(max(1, round(seconds / burst))):
            shift = turn % len(entries)
            for e in entries[shift:] + entries[:shift]:
                if e.sc.threads == 1 or turn % 2 == 0:
                    e.before()
                    e.crew.burst(e.length, turn)
        for e in entries:
            yield {
                "impl": e.name,
                "threads": e.sc.threads,
                "size": e.sc.size,
                "ops": e.crew.ops,
                "errors": dict(e.crew.errors),
                "seconds": e.crew.busy,
                "bursts": e.crew.bursts,
            }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("ldappool", "python-ldap", "ldap3", "bonsai"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run(args: argparse.Namespace) -> None:
    target = target_of(args)
    names: list[str] = args.impl.split(",")
    for name in names:
        if name not in IMPLS:
            raise SystemExit(f"unknown contestant {name!r}; one of {', '.join(IMPLS)}")
    emit({"versions": versions()})
    threads = [int(t) for t in args.threads.split(",")]
    one = [Scenario(False, 1, args.size)] if 1 in threads else []
    many = [Scenario(False, t, args.size) for t in threads if t != 1]
    for scenarios in (one, many):
        if scenarios:
            for record in compare(target, names, scenarios, args.seconds, args.burst):
                emit(record)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True, help=f"comma-separated: {', '.join(IMPLS)}")
    parser.add_argument("--threads", default="1,8,32", help="comma-separated thread counts")
    parser.add_argument("--size", type=int, default=8, help="pool size")
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="measured time per contestant and scenario"
    )
    parser.add_argument(
        "--burst", type=float, default=0.02, help="seconds per turn (x2.5 with several threads)"
    )
    add_target_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
