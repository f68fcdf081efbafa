"""Where a pooled search's extra time goes, one thread, caches as cold as between searches.

Run from the repository root: ``python -m bench.hot_path [--driver ldap3]``. It starts
a slapd and times, in one process and taking turns, a search on a pre-bound connection
and the same search behind a series of ever fuller pools: a bare pool (a lock, a list,
a ``with`` block), the bare pool plus a liveness check of the socket (each kind the
drivers could use), the object our driver lends (its read-retry subclass) used without a
pool, ldappool 4 without its liveness check, and ldappool 4. Each step's
cost is what it adds to the pre-bound search, in wall time and in this thread's CPU
time (which leaves out the wait for slapd, and so most of the machine's noise).

A tight loop around ``with cm.connection(): pass`` says little here: between two
searches, libldap, the kernel and slapd evict the pool's code and data from the CPU
caches, which makes each line cost several times what it costs in a loop.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tests.integration.harness import Slapd

from bench.worker import BarePool, Target, bound, searcher

Op = Callable[[], None]
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)


PROBES = ("getsockopt(TCP_INFO)", "poll() (releases the GIL)", "getsockopt(SO_MEMINFO)")


def probes(sock: socket.socket) -> dict[str, Callable[[], bool]]:
    """The socket checks a driver could make at checkout, each one system call."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    get = sock.getsockopt
    return {
        "getsockopt(TCP_INFO)": lambda: get(socket.IPPROTO_TCP, _TCP_INFO, 1) == b"\x01",
        "poll() (releases the GIL)": lambda: not poller.poll(0),
        "getsockopt(SO_MEMINFO)": lambda: get(socket.SOL_SOCKET, _SO_MEMINFO, 4) == bytes(4),
    }


def fd_of(conn: Any, driver: str) -> int:
    if driver == "python-ldap":
        import ldap

        return int(conn.get_option(ldap.OPT_DESC))
    return int(conn.socket.fileno())


def steps(target: Target, driver: str, conns: list[Any], closing: ExitStack) -> dict[str, Op]:
    """Label -> one operation, from the pre-bound search to ldappool 4's."""
    from ldappool import ConnectionManager

    search, dn = searcher(driver), target.dn
    found: dict[str, Op] = {"pre-bound connection": lambda: search(conns[0], dn)}
    bare = BarePool([conns[1]])

    def bare_op() -> None:
        with bare.connection() as conn:
            search(conn, dn)

    found["bare pool"] = bare_op
    for i, name in enumerate(PROBES):
        conn = conns[2 + i]
        watched = socket.socket(fileno=os.dup(fd_of(conn, driver)))
        closing.callback(watched.close)
        check = probes(watched)[name]
        checked = BarePool([conn])

        def checked_op(pool: BarePool = checked, alive: Callable[[], bool] = check) -> None:
            with pool.connection() as conn:
                if not alive():
                    raise ConnectionError("closed")
                search(conn, dn)

        found[f"bare pool + {name}"] = checked_op
    native = ConnectionManager(target.uri, target.dn, target.password, size=1, driver=driver)
    closing.callback(native.close)
    with native.connection() as lent:
        pass  # back in the pool, and used here without it: the driver's subclass alone
    found["the driver's own connection object, no pool"] = lambda: search(lent, dn)
    for label, looks in (("ldappool 4, no liveness check", False), ("ldappool 4", True)):
        cm = ConnectionManager(target.uri, target.dn, target.password, size=1, driver=driver)
        closing.callback(cm.close)
        with cm.connection():
            pass
        if not looks:
            cm._pool._machine._slots[0].conn.looks_alive = lambda: True  # type: ignore[union-attr,method-assign]

        def pooled(cm: ConnectionManager = cm) -> None:
            with cm.connection() as conn:
                search(conn, dn)

        found[label] = pooled
    return found


def measure(ops: dict[str, Op], rounds: int, per_turn: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) microseconds per operation, the steps taking turns."""
    wall: dict[str, list[float]] = {k: [] for k in ops}
    cpu: dict[str, list[float]] = {k: [] for k in ops}
    items = list(ops.items())
    for rnd in range(rounds):
        for label, op in items[rnd % len(items) :] + items[: rnd % len(items)]:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            for _ in range(per_turn):
                op()
            cpu[label].append((time.thread_time_ns() - c0) / per_turn / 1000)
            wall[label].append((time.perf_counter_ns() - w0) / per_turn / 1000)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in ops}


Breakdown = dict[str, tuple[float, float]]  # step -> (wall, CPU) microseconds per search


def breakdown(slapd: Slapd, driver: str, rounds: int) -> tuple[Breakdown, int]:
    """Every step's cost against ``slapd``; and how many searches each turn ran."""
    per_turn = 300 if driver == "python-ldap" else 100
    user = slapd.users["alice"]
    target = Target(slapd.ldap_uri, user.dn, user.password, slapd.ca_file)
    with bound(target, False, driver, 2 + len(PROBES)) as conns, ExitStack() as closing:
        return measure(steps(target, driver, conns, closing), rounds, per_turn), per_turn


def table(driver: str, rounds: int, per_turn: int, result: Breakdown) -> str:
    """The breakdown as text: each step's time, and what it adds to the pre-bound search."""
    base_wall, base_cpu = next(iter(result.values()))
    width = max(map(len, result))
    lines = [
        f"{driver}, 1 thread, {rounds} turns of {per_turn} searches per step",
        f"{'':{width}} {'wall us':>9} {'added':>7} {'ratio':>6} {'CPU us':>8} {'added':>7}",
    ]
    for label, (wall, cpu) in result.items():
        lines.append(
            f"{label:{width}} {wall:9.1f} {wall - base_wall:+7.1f} {base_wall / wall:6.3f}"
            f" {cpu:8.1f} {cpu - base_cpu:+7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", choices=("python-ldap", "ldap3"), default="python-ldap")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    with Slapd() as slapd:
        result, per_turn = breakdown(slapd, args.driver, args.rounds)
    print(table(args.driver, args.rounds, per_turn, result))


if __name__ == "__main__":
    main()
