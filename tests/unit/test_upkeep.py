"""Warm pools and the background upkeep, against the fake driver and a fake clock: each
round is run by the test (``run_once``), except where the thread itself is the point."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ldappool import BackendError, ConnectionManager, Event, EventKind, LifetimePolicy
from ldappool._upkeep import BACKOFF_CAP, Upkeep, next_delay
from tests.unit.fakes import FakeClock, FakeDriver, FakeServer, live_connections

MakeCM = Callable[..., ConnectionManager]


def upkeep(cm: ConnectionManager) -> Upkeep:
    keeper: Upkeep = cm._pool._upkeep
    return keeper


def test_open_wait_opens_min_size_connections_of_the_default_identity(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm(size=5, min_size=3)
    cm.open(wait=True)
    stats = cm.stats()
    assert (server.opened, stats.idle, stats.in_use, stats.checkouts) == (3, 3, 0, 0)
    assert all(c.bound_as == "cn=svc" for c in live_connections(driver))
    with cm.connection():
        pass
    assert server.opened == 3  # ready: no connect at the first checkout


def test_open_wait_raises_when_no_server_takes_a_connection(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    server.up = False
    cm = make_cm(min_size=2, retry_max=1)
    with pytest.raises(BackendError):
        cm.open(wait=True)
    assert cm.stats().connections == 0
    assert not list(live_connections(driver))


def test_a_connection_the_server_closed_is_replaced_before_anyone_asks(
    make_cm: MakeCM, server: FakeServer, driver: FakeDriver
) -> None:
    cm = make_cm(min_size=2)
    cm.open(wait=True)
    driver.connections[0].dropped = True  # a server restart, an idle timeout
    assert upkeep(cm).run_once()
    stats = cm.stats()
    assert (stats.stale, stats.idle, server.opened) == (1, 2, 3)
    assert all(not c.dropped for c in live_connections(driver))


def test_quiet_connections_get_a_keepalive_ping_that_is_not_a_use(
    make_cm: MakeCM, driver: FakeDriver, clock: FakeClock
) -> None:
    policy = LifetimePolicy(max_lifetime=None, max_idle=100, ping_after=None, jitter=0)
    cm = make_cm(size=2, keepalive=30, lifetime=policy)
    with cm.connection(), cm.connection("cn=alice", "alice-pw"):
        pass
    clock.advance(20)
    upkeep(cm).run_once()
    assert [c.pings for c in driver.connections] == [0, 0]  # not quiet long enough
    clock.advance(15)
    upkeep(cm).run_once()
    assert [c.pings for c in driver.connections] == [1, 1]
    clock.advance(10)
    upkeep(cm).run_once()
    assert [c.pings for c in driver.connections] == [1, 1]  # pinged 10 s ago
    clock.advance(60)  # idle 105 s: past max_idle, whatever the pings
    upkeep(cm).run_once()
    assert cm.stats().connections == 0
    assert cm.stats().pings == 2


def test_max_idle_shrinks_the_pool_down_to_min_size_only(
    make_cm: MakeCM, clock: FakeClock
) -> None:
    seen: list[Event] = []
    policy = LifetimePolicy(max_lifetime=None, max_idle=60, ping_after=None, jitter=0)
    cm = make_cm(size=4, min_size=2, lifetime=policy, listeners=[seen.append])
    with cm.connection(), cm.connection(), cm.connection(), cm.connection():
        pass
    clock.advance(61)
    upkeep(cm).run_once()
    assert cm.stats().idle == 2
    closed = [e.reason for e in seen if e.kind is EventKind.CLOSED]
    assert closed == ["idle", "idle"]


def test_expired_connections_are_replaced_in_the_background(
    make_cm: MakeCM, server: FakeServer, clock: FakeClock
) -> None:
    cm = make_cm(min_size=1, lifetime=LifetimePolicy(max_lifetime=60, jitter=0))
    cm.open(wait=True)
    clock.advance(61)
    upkeep(cm).run_once()
    stats = cm.stats()
    assert (stats.expired, stats.idle, server.opened) == (1, 1, 2)


def test_no_refill_for_an_unauthenticated_default_or_a_closed_pool(
    make_cm: MakeCM, server: FakeServer
) -> None:
    cm = make_cm(bind=None, passwd=None, min_size=1)
    cm.bind = "cn=alice"  # a DN without a password: refused, so nothing to open
    assert upkeep(cm).run_once()
    assert server.opened == 0
    closed = make_cm(min_size=1)
    closed.close()
    assert upkeep(closed).run_once()
    assert server.opened == 0


def test_a_failed_refill_backs_off_up_to_the_cap() -> None:
    delays = [1.0]
    for _ in range(8):
        delays.append(next_delay(delays[-1], 1.0, ready=False))
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_CAP]
    assert max(delays) == BACKOFF_CAP
    assert next_delay(BACKOFF_CAP, 1.0, ready=True) == 1.0


def test_the_thread_starts_with_the_first_connection_and_stops_with_close(
    make_cm: MakeCM,
) -> None:
    plain = make_cm()
    with plain.connection():
        pass
    assert not upkeep(plain).running  # neither min_size nor keepalive: no thread
    cm = make_cm(min_size=1)
    assert not upkeep(cm).running
    with cm.connection():
        pass
    assert upkeep(cm).running
    cm.close()
    assert not upkeep(cm).running


def test_the_thread_keeps_min_size_open_by_itself(driver: FakeDriver, server: FakeServer) -> None:
    cm = ConnectionManager(
        "ldap://a", "cn=svc", "svc-secret", min_size=2, keepalive=0.05, driver=driver
    )
    cm.open(wait=False)  # real clock: the thread opens them
    deadline = 200
    while cm.stats().idle < 2 and deadline:
        upkeep(cm)._stop.wait(0.01)
        deadline -= 1
    assert cm.stats().idle == 2
    driver.connections[0].dropped = True
    deadline = 200
    while server.opened < 3 and deadline:
        upkeep(cm)._stop.wait(0.01)
        deadline -= 1
    assert server.opened == 3 and cm.stats().stale == 1
    cm.close()
    assert not upkeep(cm).running
    assert not list(live_connections(driver))


def test_check_pings_every_idle_connection_and_closes_the_dead(
    make_cm: MakeCM, driver: FakeDriver, server: FakeServer
) -> None:
    cm = make_cm(size=3)
    with cm.connection(), cm.connection("cn=alice", "alice-pw"):
        pass
    server.up = False  # the socket looks fine, the ping fails
    assert cm.check() == 2
    assert cm.stats().connections == 0 and cm.stats().pings == 2


def test_drain_replaces_every_connection(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(size=3)
    with cm.connection():
        pass
    with cm.connection("cn=alice", "alice-pw"):
        assert cm.drain() == 1  # the idle one now; this one at checkin
    assert cm.stats().connections == 0
    with cm.connection():
        pass
    assert server.opened == 3


def test_min_size_and_keepalive_are_checked(make_cm: MakeCM) -> None:
    with pytest.raises(ValueError, match="min_size must be at most size"):
        make_cm(size=2, min_size=3)
    with pytest.raises(ValueError, match="min_size"):
        make_cm(min_size=-1)
    with pytest.raises(ValueError, match="keepalive"):
        make_cm(keepalive=0)
    assert make_cm(min_size=2).min_size == 2
