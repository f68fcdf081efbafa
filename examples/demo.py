"""ldappool demo: a throwaway local slapd, a threaded workload on both drivers.

Run with ``make demo`` from the repository root. It starts its own slapd on
127.0.0.1 (nothing else is touched), then for each driver: 16 threads share a
pool of 4 connections, alternating the service account and two users; prints the
pool table and its counters; and measures a search done pooled vs on a fresh
connection (connect + bind + search + unbind) each time.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.integration

from tests.integration.harness import Slapd, search

from ldappool import ConnectionManager, InvalidCredentialsError

THREADS, SIZE, ROUNDS = 16, 4, 50


def workload(cm: ConnectionManager, server: Slapd) -> tuple[int, float]:
    """THREADS threads, each doing ROUNDS service searches (the manager's identity) and
    ROUNDS logins (alice's and bob's passwords checked with authenticate(), one in five
    wrong)."""
    users = [server.users["alice"], server.users["bob"]]
    done: list[int] = []
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for i in range(ROUNDS):
                with cm.connection() as conn:
                    found = search(conn, server.people_dn, "(uid=carol)")
                    assert found == [server.users["carol"].dn], found
                user = users[(n + i) % len(users)]
                wrong = (n + i) % 5 == 0
                try:
                    cm.authenticate(user.dn, "not it" if wrong else user.password)
                except InvalidCredentialsError:
                    assert wrong
                else:
                    assert not wrong
            done.append(2 * ROUNDS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return sum(done), time.perf_counter() - start


def per_search(cm: ConnectionManager, server: Slapd, n: int = 300) -> float:
    """Seconds per search through the pool (1 thread)."""
    start = time.perf_counter()
    for _ in range(n):
        with cm.connection() as conn:
            search(conn, server.users["carol"].dn)
    return (time.perf_counter() - start) / n


def main() -> None:
    with Slapd() as server:
        print(f"slapd started: {server.ldap_uri} (StartTLS with {server.ca_file})\n")
        speedups: list[tuple[str, float, float, float]] = []
        for driver in ("python-ldap", "ldap3"):
            common: dict[str, Any] = {
                "driver": driver,
                "use_tls": True,
                "tls_ca_file": server.ca_file,
                "timeout": 5,
            }
            with ConnectionManager(
                server.ldap_uri, server.root_dn, server.root_pw, size=SIZE, **common
            ) as cm:
                ops, seconds = workload(cm, server)
                print(
                    f"== {driver}: {ops} searches and password checks by {THREADS} threads "
                    f"through a pool of {SIZE}, {ops / seconds:,.0f} operations/s"
                )
                print(cm)
                stats = cm.stats()
                print(
                    f"stats: opened={stats.opened} reused={stats.reused} "
                    f"rebinds={stats.rebinds} password_checks={stats.password_checks} "
                    f"invalid_credentials={stats.invalid_credentials} waits={stats.waits} "
                    f"wait_timeouts={stats.wait_timeouts} closed={stats.closed}\n"
                )
                pooled = per_search(cm, server)
            with ConnectionManager(
                server.ldap_uri, server.root_dn, server.root_pw, use_pool=False, **common
            ) as fresh:
                unpooled = per_search(fresh, server, n=100)
            speedups.append((driver, pooled, unpooled, unpooled / pooled))
        print("Pooled vs a fresh connection per search (StartTLS, 1 thread):")
        for driver, pooled, unpooled, ratio in speedups:
            print(
                f"  {driver:12} pooled {pooled * 1e3:6.3f} ms   fresh {unpooled * 1e3:6.3f} ms"
                f"   speed-up x{ratio:.1f}"
            )
        left = server.client_connections()
        print(f"\nconnections left on the server after close(): {left}")


if __name__ == "__main__":
    main()
