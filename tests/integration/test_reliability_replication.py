"""A replicated pair under fire (issue 4, item 4).

Two slapd servers in multi-provider replication (see harness/replication.py). The
first is killed (SIGKILL) while threads read through the pool: reads go on against
the second without a failure, a write succeeds once the pool has failed over, and the
killed server, started again, catches up with what was written meanwhile.

Figures are printed (``pytest -s``) for docs/reliability.rst.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator

import pytest

from ldappool import InOrder, RetryPolicy
from tests.integration.harness import ManagerFactory, describe, search, wait_until, whoami
from tests.integration.harness.replication import ReplicatedPair, read_attribute

THREADS = 6
SIZE = 4
TIMEOUT = 2.0
#: Reads to see complete before and after the kill: proof that the load ran.
READS = 200


@pytest.fixture
def pair(slapd_installed: None) -> Iterator[ReplicatedPair]:
    with ReplicatedPair() as servers:
        yield servers


def test_pair_replicates_both_ways_and_a_killed_server_catches_up(pair: ReplicatedPair) -> None:
    """The harness itself, without the pool: what the next test relies on."""
    first, second = pair.servers
    pair.wait_replicated(second.add_user("dave", "dave-secret"), on=first)
    pair.wait_replicated(first.add_user("erin", "erin-secret"), on=second)
    pair.kill(first)
    written_meanwhile = second.add_user("fay", "fay-secret")
    first.start()
    pair.wait_replicated(written_meanwhile, on=first)
    assert first.client_connections() == second.client_connections() == 0


def test_killing_the_first_server_under_load(
    driver: str, pair: ReplicatedPair, make_manager: ManagerFactory
) -> None:
    first, second = pair.servers
    alice, bob = first.users["alice"], first.users["bob"]
    policies = {
        "timeout": TIMEOUT,
        "retry": RetryPolicy(max_attempts=3, delay=0.05),
        "failover": InOrder(cooldown=5),
    }
    readers = make_manager(pair.uris, alice.dn, alice.password, size=SIZE, **policies)
    writer = make_manager(pair.uris, first.root_dn, first.root_pw, size=1, **policies)
    stop = threading.Event()
    reads = [0] * THREADS
    failures: list[str] = []

    def read(n: int) -> None:
        while not stop.is_set():
            try:
                with readers.connection() as conn:
                    found = search(conn, first.people_dn, "(uid=alice)")
                if found != [alice.dn]:
                    failures.append(f"thread {n}: wrong result {found!r}")
                reads[n] += 1
            except Exception:
                failures.append(f"thread {n}:\n{traceback.format_exc()}")

    def write(text: str) -> None:
        with writer.connection() as conn:
            describe(conn, bob.dn, text)

    threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(reads) >= READS, message="reads against the first server")
        write("before")
        assert second.client_connections() == 0  # InOrder: everything on the first
        wait_until(lambda: read_attribute(second, bob.dn, "description") == ["before"])

        pair.kill(first)
        killed = time.monotonic()
        at_kill = sum(reads)
        wait_until(lambda: sum(reads) >= at_kill + READS, message="reads go on on the second")
        reads_resumed = time.monotonic() - killed
        write("after")  # the writer's connection died with the first: failed over
        write_ok = time.monotonic() - killed
        assert read_attribute(second, bob.dn, "description") == ["after"]
        with writer.connection() as conn:
            assert whoami(conn) == first.root_dn

        first.start()
        restarted = time.monotonic()
        wait_until(
            lambda: read_attribute(first, bob.dn, "description") == ["after"],
            timeout=10,
            message="the killed server caught up with the write made while it was down",
        )
        rejoined = time.monotonic() - restarted
        at_rejoin = sum(reads)
        wait_until(lambda: sum(reads) >= at_rejoin + READS, message="reads after the rejoin")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    print(
        f"FIGURE {driver} replicated pair: first killed; {READS} reads done on the second"
        f" {reads_resumed:.2f} s later, a write {write_ok:.2f} s after the kill, caught up"
        f" {rejoined:.2f} s after restart; {sum(reads)} reads, {len(failures)} failed;"
        f" readers recovered={readers.stats().recovered} failovers={readers.stats().failovers}"
    )
    assert not any(t.is_alive() for t in threads)
    assert failures == [], f"{len(failures)} failed reads; first:\n{failures[0]}"
    assert second.client_connections() >= 1
    readers.close()
    writer.close()
    for server in pair.servers:
        wait_until(
            lambda server=server: server.client_connections() == 0,  # type: ignore[misc]
            message=f"{server}: connections left open after close()",
        )
