"""Chaos soak (issue 4, item 5): 16 threads through a size-8 pool, slapd restarted
every ~2.5 s, on both drivers (~10 s each).

Guaranteed, and checked: every read returns the right entries and no exception
reaches a thread; the server never sees more than ``size`` connections from the pool
(cn=Monitor, polled all along); nothing is left open after ``close()``.

How the pool bridges a restart: idle connections the server closed are noticed at
checkout and replaced; a checkout's connect is retried per the RetryPolicy (here 20
attempts 50 ms apart: about a second, more than a restart takes); and a read whose
connection dies in the holder's hands is reconnected and sent again, once.

Figures are printed (``pytest -s``) for docs/reliability.rst.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback

import ldap
import pytest

from ldappool import RetryPolicy
from tests.integration.harness import ManagerFactory, Slapd, search, wait_until

THREADS = 16
SIZE = 8
RESTART_EVERY = 2.5  # seconds
RESTARTS = 3
DURATION = (RESTARTS + 1) * RESTART_EVERY  # seconds per driver: load before and after each
#: The retry policy that bridges a restart (documented in docs/reliability.rst).
BRIDGE = RetryPolicy(max_attempts=20, delay=0.05)
SAMPLE_EVERY = 0.01  # seconds between cn=Monitor polls


@pytest.mark.slow
def test_chaos_soak_restarts_lose_no_read_and_never_exceed_size(
    driver: str, fresh_slapd: Slapd, make_manager: ManagerFactory
) -> None:
    server = fresh_slapd
    users = sorted(server.users.values(), key=lambda u: u.uid)
    service = users[0]
    cm = make_manager(
        server.ldap_uri,
        service.dn,
        service.password,
        size=SIZE,
        retry=BRIDGE,
        timeout=5,
        pool_timeout=10,
    )
    stop = threading.Event()
    reads = [0] * THREADS
    failures: list[str] = []
    samples: list[int] = []

    def read(n: int) -> None:
        want = users[n % len(users)]  # a search whose right answer is known
        while not stop.is_set():
            try:
                with cm.connection() as conn:
                    found = search(conn, server.people_dn, f"(uid={want.uid})")
                if found != [want.dn]:
                    failures.append(f"thread {n}: wrong result {found!r}")
                reads[n] += 1
            except Exception:
                failures.append(f"thread {n}:\n{traceback.format_exc()}")

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(ldap.LDAPError):  # the server is restarting
                samples.append(server.client_connections())
            stop.wait(SAMPLE_EVERY)

    threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(THREADS)]
    threads.append(threading.Thread(target=sample, daemon=True))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    restart_took: list[float] = []
    try:
        wait_until(lambda: sum(reads) >= THREADS, message="reads under way")
        # A paced loop: restart at fixed times, from the main thread (slapd dies with it).
        for restart in range(1, RESTARTS + 1):
            stop.wait(max(0.0, started + restart * RESTART_EVERY - time.monotonic()))
            before = time.monotonic()
            server.restart()
            restart_took.append(time.monotonic() - before)
        stop.wait(max(0.0, started + DURATION - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    elapsed = time.monotonic() - started
    stats = cm.stats()
    print(
        f"FIGURE {driver} soak: {sum(reads)} reads in {elapsed:.1f} s"
        f" ({sum(reads) / elapsed:.0f}/s), {THREADS} threads, size {SIZE},"
        f" {len(restart_took)} restarts (each {max(restart_took):.2f} s at most),"
        f" {len(failures)} failed reads, peak {max(samples, default=-1)} connections"
        f" in {len(samples)} samples; opened={stats.opened} stale={stats.stale}"
        f" recovered={stats.recovered} lost={stats.lost} connect_errors={stats.connect_errors}"
        f" waits={stats.waits}"
    )
    assert not any(t.is_alive() for t in threads), "threads still running"
    assert failures == [], f"{len(failures)} failed reads; first:\n{failures[0]}"
    assert len(restart_took) == RESTARTS
    assert all(reads), f"a thread never completed a read: {reads}"
    assert len(samples) >= 20, f"only {len(samples)} cn=Monitor samples"
    assert max(samples) <= SIZE, f"server saw {max(samples)} connections, size={SIZE}"
    assert stats.stale + stats.recovered > 0, "the restarts did not touch the pool"
    cm.close()
    wait_until(
        lambda: server.client_connections() == 0,
        message="connections left open after close()",
    )
    assert len(cm) == 0
