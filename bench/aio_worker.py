"""One asyncio benchmark process: time pools for asyncio and threads on a slapd, print JSON.

Run as a script, in our virtualenv (ldappool's AsyncConnectionManager and
ConnectionManager) or in bonsai's (its ``AIOConnectionPool``), like ``bench/worker.py``:
only the standard library at the top, each library imported when its contestant is set
up. The workload is the server benchmark's: a base-scope search of one entry (``cn``
only), bound as one user, on pools of size 8, from 1 and from 64 concurrent callers:
tasks on one event loop for the asyncio pools, threads for the threaded ones.

Every contestant of a concurrency gets its tasks or threads and connections, then they
take turns in short bursts, in rotating order, as in ``worker.compare``: 20 ms with one
caller, 50 ms with 64 (every other turn). An asyncio contestant's burst is its tasks
let loose on the event loop of this process (in its main thread) for that long; a
threaded one's is ``worker.Crew``'s. Each process also runs the pre-bound python-ldap
limit (one connection per thread, no pool), so that contestants in two processes (ours
and bonsai's venv) can be compared through it.

Output: one JSON line ``{"versions": {...}}``, then one line per contestant and
concurrency: ``{"impl", "callers", "size", "ops", "errors", "seconds", "bursts"}``, as
``worker.py``'s (``callers`` for its ``threads``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import math
import platform
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

if __package__:  # imported as bench.aio_worker (type checks, tests)
    from bench.worker import (
        Crew,
        Scenario,
        Target,
        add_target_arguments,
        emit,
        ours,
        prebound,
        target_of,
    )
else:  # run as a script, bench/ is sys.path[0]: no package, whatever the venv
    from worker import (  # type: ignore[import-not-found,no-redef]
        Crew,
        Scenario,
        Target,
        add_target_arguments,
        emit,
        ours,
        prebound,
        target_of,
    )

#: The contestants: see :func:`contestant`.
IMPLS = (
    "limit-python-ldap",
    "threads-python-ldap",
    "threads-ldap3",
    "aio-python-ldap",
    "aio-ldap3",
    "bonsai-aio",
)
#: With many callers, a burst is MANY times the one-caller one, every other turn.
MANY = 2.5

AsyncOp = Callable[[], Awaitable[None]]


class Runner(Protocol):
    """What a contestant's callers offer the timing: bursts, and their counts."""

    ops: int
    errors: Counter[str]
    busy: float
    bursts: list[tuple[int, int, float]]

    def burst(self, seconds: float, turn: int = -1) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class Tasks:
    """One contestant's tasks on the process's event loop, let loose in bursts.

    As ``worker.Crew``: a burst runs from its first operation's start to its last one's
    end; an operation started in the burst is waited for.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, op: AsyncOp, count: int) -> None:
        self._loop = loop
        self._op = op
        self._count = count
        self.ops = 0
        self.errors: Counter[str] = Counter()
        self.busy = 0.0
        self.bursts: list[tuple[int, int, float]] = []

    def burst(self, seconds: float, turn: int = -1) -> None:
        self._loop.run_until_complete(self._burst(seconds, turn))

    async def _burst(self, seconds: float, turn: int) -> None:
        op, clock = self._op, time.perf_counter
        running = True
        first, last, done = math.inf, 0.0, 0

        async def caller() -> None:
            nonlocal first, last, done
            count, start = 0, clock()
            while running:
                try:
                    await op()
                except Exception as exc:
                    self.errors[type(exc).__name__] += 1
                else:
                    count += 1
            first, last, done = min(first, start), max(last, clock()), done + count

        callers = [asyncio.create_task(caller()) for _ in range(self._count)]
        await asyncio.sleep(seconds)
        running = False
        await asyncio.gather(*callers)
        if last > first:
            self.ops += done
            self.busy += last - first
            self.bursts.append((turn, done, last - first))

    def reset(self) -> None:
        self.ops, self.errors, self.busy, self.bursts = 0, Counter(), 0.0, []

    def close(self) -> None:
        return None


# -- the asyncio contestants -------------------------------------------------------------


@contextmanager
def aio_ours(
    loop: asyncio.AbstractEventLoop, target: Target, size: int, driver: str
) -> Iterator[AsyncOp]:
    """ldappool's AsyncConnectionManager, through the public API only."""
    from ldappool import AsyncConnectionManager

    cm = AsyncConnectionManager(target.uri, target.dn, target.password, size=size, driver=driver)
    dn = target.dn
    if driver == "python-ldap":
        import ldap

        scope = ldap.SCOPE_BASE

        async def op() -> None:
            async with cm.connection() as conn:
                found = await conn.search(dn, scope, "(objectClass=*)", ["cn"])
            if len(found) != 1:
                raise LookupError(f"expected one entry, got {len(found)}")

    else:
        import ldap3

        base = ldap3.BASE

        async def op() -> None:
            async with cm.connection() as conn:
                if not await conn.search(dn, "(objectClass=*)", base, attributes=["cn"]):
                    raise LookupError(f"search failed: {conn.result}")
                if len(conn.response) != 1:
                    raise LookupError(f"expected one entry, got {len(conn.response)}")

    try:
        yield op
    finally:
        loop.run_until_complete(cm.close())


@contextmanager
def aio_bonsai(loop: asyncio.AbstractEventLoop, target: Target, size: int) -> Iterator[AsyncOp]:
    """bonsai's ``AIOConnectionPool(client, minconn=size, maxconn=size)``, opened first;
    each search ``async with pool.spawn() as conn: await conn.search(...)``."""
    import bonsai  # type: ignore[import-not-found]
    from bonsai.asyncio import AIOConnectionPool  # type: ignore[import-not-found]

    client = bonsai.LDAPClient(target.uri)
    client.set_credentials("SIMPLE", user=target.dn, password=target.password)

    async def opened() -> Any:
        pool = AIOConnectionPool(client, minconn=size, maxconn=size)
        await pool.open()
        return pool

    pool = loop.run_until_complete(opened())
    dn, scope = target.dn, bonsai.LDAPSearchScope.BASE

    async def op() -> None:
        async with pool.spawn() as conn:
            found = await conn.search(dn, scope, "(objectClass=*)", attrlist=["cn"])
        if len(found) != 1:
            raise LookupError(f"expected one entry, got {len(found)}")

    try:
        yield op
    finally:
        loop.run_until_complete(pool.close())


def contestant(
    name: str, loop: asyncio.AbstractEventLoop, target: Target, callers: int, size: int
) -> AbstractContextManager[Runner]:
    """Contestant ``name``'s callers, ready to burst."""
    sc = Scenario(False, callers, size)
    kind, _, driver = name.partition("-")
    if name not in IMPLS:
        raise SystemExit(f"unknown contestant {name!r}; one of {', '.join(IMPLS)}")
    if kind == "limit":
        return _crew(prebound(target, sc, driver))
    if kind == "threads":
        return _crew(ours(target, sc, driver))
    if kind == "aio":
        return _tasks(loop, aio_ours(loop, target, size, driver), callers)
    return _tasks(loop, aio_bonsai(loop, target, size), callers)


@contextmanager
def _crew(ops: AbstractContextManager[list[Callable[[], None]]]) -> Iterator[Runner]:
    with ops as found:
        crew = Crew(found)
        try:
            yield crew
        finally:
            crew.close()


@contextmanager
def _tasks(
    loop: asyncio.AbstractEventLoop, op: AbstractContextManager[AsyncOp], callers: int
) -> Iterator[Runner]:
    with op as found:
        yield Tasks(loop, found, callers)


# -- timing ------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    callers: int
    runner: Runner
    length: float  # seconds per burst


def compare(
    target: Target,
    names: list[str],
    callers: int,
    size: int,
    seconds: float,
    burst: float,
) -> Iterator[dict[str, Any]]:
    """Every contestant at one concurrency, taking turns in bursts (see the module)."""
    loop = asyncio.new_event_loop()
    try:
        with ExitStack() as stack:
            entries: list[Entry] = []
            for name in names:
                runner = stack.enter_context(contestant(name, loop, target, callers, size))
                length = burst if callers == 1 else MANY * burst
                runner.burst(length)  # opens the connections, warms the caches
                runner.reset()
                entries.append(Entry(name, callers, runner, length))
            for turn in range(max(1, round(seconds / burst))):
                shift = turn % len(entries)
                for e in entries[shift:] + entries[:shift]:
                    if e.callers == 1 or turn % 2 == 0:
                        e.runner.burst(e.length, turn)
            for e in entries:
                yield {
                    "impl": e.name,
                    "callers": e.callers,
                    "size": size,
                    "ops": e.runner.ops,
                    "errors": dict(e.runner.errors),
                    "seconds": e.runner.busy,
                    "bursts": e.runner.bursts,
                }
    finally:
        loop.close()


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
    for callers in (int(c) for c in args.callers.split(",")):
        for record in compare(target, names, callers, args.size, args.seconds, args.burst):
            emit(record)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True, help=f"comma-separated: {', '.join(IMPLS)}")
    parser.add_argument("--callers", default="1,64", help="comma-separated concurrencies")
    parser.add_argument("--size", type=int, default=8, help="pool size")
    parser.add_argument(
        "--seconds", type=float, default=0.4, help="measured time per contestant, one caller"
    )
    parser.add_argument(
        "--burst", type=float, default=0.02, help="seconds per turn (x2.5 with many callers)"
    )
    add_target_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
