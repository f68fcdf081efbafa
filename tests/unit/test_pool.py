"""The pool core's promises, against the in-memory fake driver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest

from ldappool import (
    ConnectionManager,
    InvalidCredentialsError,
    LifetimePolicy,
    MaxConnectionReachedError,
    PoolClosedError,
)
from ldappool._threaded import _ThreadWaiter as Waiter
from tests.unit.fakes import FakeClock, FakeDown, FakeDriver, FakeNoSuchObject, FakeServer

MakeCM = Callable[..., ConnectionManager]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition set by another thread, with a deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def test_sequential_reuse_opens_one_connection(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    for _ in range(5):
        with cm.connection() as conn:
            assert conn.search() == "result"
    assert server.opened == 1
    assert server.binds == 1
    assert len(cm) == 1
    stats = cm.stats()
    assert (stats.checkouts, stats.opened, stats.reused) == (5, 1, 4)


def test_size_cap_holds_under_many_threads(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=4)
    barrier = threading.Barrier(24)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for i in range(20):
                who = ("cn=alice", "alice-pw") if i % 2 else ("cn=bob", "bob-pw")
                with cm.connection(*who) as conn:
                    assert conn.whoami == who[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert server.peak <= 4
    assert len(cm) <= 4


def test_full_pool_waits_first_come_first_served(make_cm: MakeCM) -> None:
    cm = make_cm(size=1)
    served: list[int] = []
    holder = cm.connection()
    holder.__enter__()

    def wait_turn(n: int) -> None:
        with cm.connection():
            served.append(n)

    threads = []
    for n in range(4):
        t = threading.Thread(target=wait_turn, args=(n,))
        t.start()
        threads.append(t)
        wait_until(lambda n=n: cm.stats().waiting == n + 1)
    holder.__exit__(None, None, None)
    for t in threads:
        t.join(10)
    assert served == [0, 1, 2, 3]
    assert cm.stats().waits == 4


def returner_against_waiter(cm: ConnectionManager, age: Callable[[], None]) -> list[str]:
    """Who gets a size-1 pool's connection first: a waiter, or the thread that returns
    it and asks for it again at once (it is running: it could take it first)."""
    served: list[str] = []
    holder = cm.connection()
    holder.__enter__()

    def wait_turn() -> None:
        with cm.connection():
            served.append("waiter")

    waiter = threading.Thread(target=wait_turn)
    waiter.start()
    wait_until(lambda: cm.stats().waiting == 1)
    age()
    holder.__exit__(None, None, None)
    with cm.connection():
        served.append("returner")
    waiter.join(10)
    return served


def test_waiter_passed_over_for_long_gets_the_next_connection_handed_over(
    make_cm: MakeCM, clock: FakeClock
) -> None:
    cm = make_cm(size=1)
    waited = partial(clock.advance, 2 * cm._pool.handoff_after)
    assert returner_against_waiter(cm, waited) == ["waiter", "returner"]


def test_handoff_after_zero_serves_waiters_strictly_first_come_first_served(
    make_cm: MakeCM,
) -> None:
    cm = make_cm(size=1, handoff_after=0)
    # handed over at once, however young the waiter
    assert returner_against_waiter(cm, lambda: None) == ["waiter", "returner"]


def test_full_pool_raises_after_pool_timeout(make_cm: MakeCM) -> None:
    cm = make_cm(size=1, pool_timeout=0.05)
    with cm.connection(), pytest.raises(MaxConnectionReachedError, match="pool_timeout"):
        cm.connection().__enter__()
    stats = cm.stats()
    assert stats.wait_timeouts == 1
    assert stats.waiting == 0
    with cm.connection() as conn:  # the timed-out waiter left nothing behind
        assert conn.search() == "result"


def test_waiter_is_served_when_holder_returns_within_pool_timeout(make_cm: MakeCM) -> None:
    cm = make_cm(size=1, pool_timeout=10.0)
    holder = cm.connection()
    holder.__enter__()
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(cm.connection().__enter__().search()))
    t.start()
    wait_until(lambda: cm.stats().waiting == 1)
    holder.__exit__(None, None, None)
    t.join(10)
    assert got == ["result"]


def test_idle_connection_of_other_identity_is_rebound_instead_of_waiting(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=2)
    with cm.connection("cn=alice", "alice-pw"):
        pass
    with cm.connection("cn=bob", "bob-pw"):
        pass
    with cm.connection("cn=svc", "svc-secret") as conn:  # full: rebinds alice's (LRU)
        assert conn.whoami == "cn=svc"
    assert server.opened == 2
    assert cm.stats().rebinds == 1
    with cm.connection("cn=bob", "bob-pw") as conn:  # bob's connection was kept
        assert conn.whoami == "cn=bob"
    assert cm.stats().rebinds == 1


def test_identities_never_mix(make_cm: MakeCM) -> None:
    cm = make_cm(size=1)
    for who, pw in [("cn=alice", "alice-pw"), ("cn=bob", "bob-pw")] * 3:
        with cm.connection(who, pw) as conn:
            assert conn.whoami == who


def test_same_dn_with_other_password_is_another_identity(make_cm: MakeCM) -> None:
    cm = make_cm(size=2)
    with cm.connection("cn=alice", "alice-pw"):
        pass
    with pytest.raises(InvalidCredentialsError):
        with cm.connection("cn=alice", "not-her-password"):
            pass


def test_invalid_credentials_raise_at_once_without_retry_or_failover(
    make_cm: MakeCM, server: FakeServer, clock: FakeClock
) -> None:
    second = FakeServer(users={"cn=alice": "alice-pw"})
    driver = FakeDriver(a=server, b=second)
    cm = make_cm(uri="ldap://a ldap://b", driver=driver, size=1, retry_max=5)
    with pytest.raises(InvalidCredentialsError) as info:
        with cm.connection("cn=alice", "wrong"):
            pass
    assert server.binds == 1
    assert second.binds == 0
    assert clock.sleeps == []
    assert isinstance(info.value.__cause__, Exception)
    assert len(cm) == 0  # the slot was freed
    with cm.connection("cn=alice", "alice-pw") as conn:
        assert conn.whoami == "cn=alice"


def test_wrong_password_on_rebind_frees_the_slot(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=1)
    with cm.connection("cn=alice", "alice-pw"):
        pass
    binds = server.binds
    with pytest.raises(InvalidCredentialsError):
        with cm.connection("cn=bob", "wrong"):
            pass
    assert server.binds == binds + 1
    assert len(cm) == 0
    assert server.live == 0


def test_exception_in_block_returns_connection_to_pool(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm()
    with pytest.raises(FakeNoSuchObject):
        with cm.connection():
            raise FakeNoSuchObject
    with cm.connection():
        pass
    assert server.opened == 1


def test_connection_lost_in_block_is_discarded(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    with pytest.raises(FakeDown):
        with cm.connection() as conn:
            conn._conn.dropped = True
            conn.modify()
    assert len(cm) == 0
    assert server.live == 0
    assert cm.stats().lost == 1
    with cm.connection() as conn:
        assert conn.search() == "result"


def test_holder_rebind_makes_connection_unpoolable(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    with cm.connection() as conn:
        conn.simple_bind_s("cn=alice", "alice-pw")
    assert len(cm) == 0
    with cm.connection() as conn:
        assert conn.whoami == "cn=svc"


def test_connection_closed_by_server_while_idle_is_replaced(
    make_cm: MakeCM, driver: FakeDriver
) -> None:
    cm = make_cm()
    with cm.connection():
        pass
    driver.connections[0].dropped = True
    with cm.connection() as conn:
        assert conn.search() == "result"
    assert cm.stats().stale == 1
    assert driver.connections[0].closed


def test_expired_connection_is_recycled(
    make_cm: MakeCM, driver: FakeDriver, clock: FakeClock
) -> None:
    cm = make_cm(max_lifetime=60)
    with cm.connection():
        pass
    clock.advance(59 * 0.94)  # before the earliest jittered expiry: reused
    with cm.connection():
        pass
    clock.advance(10)
    with cm.connection():
        pass
    assert len(driver.connections) == 2
    assert driver.connections[0].closed
    assert cm.stats().expired == 1


def test_idle_connection_is_pinged_before_lending(
    make_cm: MakeCM, driver: FakeDriver, clock: FakeClock, server: FakeServer
) -> None:
    cm = make_cm(lifetime=LifetimePolicy(ping_after=30, max_lifetime=None))
    with cm.connection():
        pass
    clock.advance(10)
    with cm.connection():
        pass
    assert driver.connections[0].pings == 0
    clock.advance(31)
    with cm.connection():
        pass
    assert driver.connections[0].pings == 1
    assert len(driver.connections) == 1


def test_failed_ping_replaces_connection(
    make_cm: MakeCM, driver: FakeDriver, clock: FakeClock
) -> None:
    cm = make_cm(lifetime=LifetimePolicy(ping_after=30))
    with cm.connection():
        pass
    driver.connections[0].ping = lambda: (_ for _ in ()).throw(FakeDown("silent peer"))  # type: ignore[method-assign]
    clock.advance(31)
    with cm.connection() as conn:
        assert conn.search() == "result"
    assert len(driver.connections) == 2
    assert cm.stats().stale == 1


def test_max_idle_closes_instead_of_lending(
    make_cm: MakeCM, driver: FakeDriver, clock: FakeClock
) -> None:
    cm = make_cm(lifetime=LifetimePolicy(max_idle=5))
    with cm.connection():
        pass
    clock.advance(6)
    with cm.connection():
        pass
    assert len(driver.connections) == 2


def test_use_pool_false_opens_and_closes_per_checkout(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(use_pool=False)
    for _ in range(3):
        with cm.connection():
            assert server.live == 1
        assert server.live == 0
    assert server.opened == 3
    assert len(cm) == 0


def test_purge_closes_idle_now_and_lent_at_checkin(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=3)
    lent = cm.connection("cn=alice", "alice-pw")
    lent.__enter__()
    with cm.connection("cn=alice", "alice-pw"):
        pass
    with cm.connection("cn=bob", "bob-pw"):
        pass
    assert server.live == 3
    assert cm.purge("cn=alice") == 1
    assert server.live == 2
    lent.__exit__(None, None, None)
    assert server.live == 1
    assert len(cm) == 1


def test_purge_with_password_only_drops_that_identity(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=3)
    with cm.connection("cn=alice", "alice-pw"):
        pass
    assert cm.purge("cn=alice", "other") == 0
    assert cm.purge("cn=alice", "alice-pw") == 1
    assert server.live == 0


def test_close_unbinds_idle_wakes_waiters_and_refuses_checkouts(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=1)
    lent = cm.connection()
    lent.__enter__()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            cm.connection().__enter__()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    wait_until(lambda: cm.stats().waiting == 1)
    cm.close()
    t.join(5)
    assert [type(e) for e in errors] == [PoolClosedError]
    assert server.live == 1  # the lent one stays with its holder...
    lent.__exit__(None, None, None)
    assert server.live == 0  # ...and is unbound when it comes back
    with pytest.raises(PoolClosedError):
        cm.connection().__enter__()


def test_manager_as_context_manager_closes(driver: FakeDriver, server: FakeServer) -> None:
    with ConnectionManager("ldap://a", driver=driver) as cm:
        with cm.connection():
            pass
        assert server.live == 1
    assert server.live == 0


def test_failed_open_frees_the_slot(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=1, retry_max=1)
    server.up = False
    for _ in range(3):
        with pytest.raises(Exception, match="could not connect"):
            cm.connection().__enter__()
    server.up = True
    with cm.connection() as conn:
        assert conn.search() == "result"


def test_lease_is_single_use(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    lease = cm.connection()
    with lease:
        with pytest.raises(RuntimeError):
            lease.__enter__()
    with pytest.raises(RuntimeError):
        lease.__enter__()  # its password is gone: it could not bind as it was made to
    lease.__exit__(None, None, None)  # a second exit gives nothing back twice
    assert cm.stats().idle == 1 and server.live == 1


@pytest.mark.parametrize("meanwhile", ["close", "purge"])
def test_connection_coming_back_while_the_pool_closes_or_purges_is_closed(
    make_cm: MakeCM, server: FakeServer, meanwhile: str
) -> None:
    cm = make_cm()
    lease = cm.connection()
    conn = lease.__enter__()._conn
    checked = conn.identity_changed

    def race() -> bool:  # runs in the checkin, before it takes the pool lock
        cm.close() if meanwhile == "close" else cm.purge("cn=svc")
        return checked()

    conn.identity_changed = race
    lease.__exit__(None, None, None)
    assert server.live == 0
    assert len(cm) == 0


def test_stats_snapshot_is_frozen(make_cm: MakeCM) -> None:
    cm = make_cm()
    stats = cm.stats()
    with pytest.raises(AttributeError):
        stats.checkouts = 5  # type: ignore[misc]


def test_held_too_long_warns_at_checkin_with_the_checkout_site(
    make_cm: MakeCM, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cm = make_cm(warn_held_after=2.0)
    with cm.connection():
        clock.advance(1.0)
    assert "checked out for" not in caplog.text
    with cm.connection():  # this line is named in the warning
        clock.advance(3.0)
    assert "checked out for 3.0s" in caplog.text
    assert "test_held_too_long_warns_at_checkin_with_the_checkout_site" in caplog.text


def test_held_too_long_warns_when_the_pool_is_full(
    make_cm: MakeCM, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cm = make_cm(size=1, warn_held_after=2.0, pool_timeout=0.01)
    forgotten = cm.connection()
    forgotten.__enter__()
    clock.advance(5.0)
    with pytest.raises(MaxConnectionReachedError):
        cm.connection().__enter__()
    assert caplog.text.count("checked out for 5.0s") == 1
    forgotten.__exit__(None, None, None)
    assert caplog.text.count("checked out for") == 1  # warned once per checkout


def test_held_warning_is_off_by_default(
    make_cm: MakeCM, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cm = make_cm()
    with cm.connection():
        clock.advance(1e6)
    assert "checked out for" not in caplog.text


def test_invalid_credentials_are_counted_on_open_and_on_rebind(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(size=1)
    with pytest.raises(InvalidCredentialsError):
        cm.connection("cn=alice", "wrong").__enter__()
    assert cm.stats().invalid_credentials == 1
    with cm.connection("cn=alice", "alice-pw"):
        pass
    with pytest.raises(InvalidCredentialsError):
        cm.connection("cn=bob", "wrong").__enter__()
    assert cm.stats().invalid_credentials == 2


def test_read_that_loses_its_connection_is_retried_on_a_new_one(
    make_cm: MakeCM, driver: FakeDriver, server: FakeServer
) -> None:
    cm = make_cm()
    with cm.connection() as conn:
        conn._conn.dropped = True
        assert conn.search() == "result"
        assert conn.whoami == "cn=svc"  # rebound as the same identity
    assert cm.stats().recovered == 1
    assert server.live == 1
    assert len(cm) == 1
    with cm.connection() as again:
        assert again is conn  # the recovered connection went back to the pool


def test_read_recovery_fails_over_to_another_server(server: FakeServer, clock: FakeClock) -> None:
    second = FakeServer(users={None: None})
    driver = FakeDriver(a=server, b=second)
    cm = ConnectionManager("ldap://a ldap://b", driver=driver, retry_max=1, clock=clock)
    with cm.connection() as conn:
        server.up = False
        assert conn.search() == "result"
    assert second.live == 1
    assert "ldap://b" in str(cm)


def test_read_recovery_failure_raises_the_original_error_and_discards(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(retry_max=2)
    with pytest.raises(FakeDown, match="connection lost"):
        with cm.connection() as conn:
            server.up = False
            conn.search()
    assert len(cm) == 0
    assert cm.stats().lost == 1


def test_writes_are_never_replayed(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm()
    with pytest.raises(FakeDown):
        with cm.connection() as conn:
            conn._conn.dropped = True
            conn.modify()
    assert cm.stats().recovered == 0
    assert server.opened == 1


def test_no_recovery_outside_the_block(make_cm: MakeCM) -> None:
    cm = make_cm()
    with cm.connection() as conn:
        pass
    conn._conn.dropped = True
    with pytest.raises(FakeDown):
        conn.search()  # a stray reference after checkin is not the pool's to mend


def test_interrupted_waiter_leaves_the_queue_without_losing_a_slot(make_cm: MakeCM) -> None:
    cm = make_cm(size=1)
    holder = cm.connection()
    holder.__enter__()
    pool = cm._pool
    real_wait = Waiter.wait

    def interrupted(self: Waiter, timeout: float | None = None) -> bool:
        # the slot is handed over just as the wait is interrupted: a race to survive
        holder.__exit__(None, None, None)
        raise KeyboardInterrupt

    Waiter.wait = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.checkout(cm._default)
    finally:
        Waiter.wait = real_wait  # type: ignore[method-assign]
    assert cm.stats().waiting == 0
    with cm.connection() as conn:  # the slot came back
        assert conn.search() == "result"


def test_lifetime_subclass_is_consulted_on_every_checkout(
    make_cm: MakeCM, driver: FakeDriver
) -> None:
    class PingAlways(LifetimePolicy):
        def should_ping(self, idle: float) -> bool:
            return True

    cm = make_cm(lifetime=PingAlways())
    for _ in range(3):
        with cm.connection():
            pass
    assert driver.connections[0].pings == 2  # every reuse, however short the idle time
