"""Events: what listeners are told, and that a listener cannot break the pool."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import pytest

from ldappool import (
    ConnectionManager,
    Event,
    EventKind,
    FailoverPolicy,
    InOrder,
    InvalidCredentialsError,
    LifetimePolicy,
    MaxConnectionReachedError,
    PasswordPolicy,
    PolicyError,
)
from tests.unit.fakes import FakeClock, FakeDown, FakeDriver, FakeServer

MakeCM = Callable[..., ConnectionManager]
E = EventKind


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]


@pytest.fixture
def seen() -> Recorder:
    return Recorder()


def test_a_checkout_and_checkin_tell_opened_out_and_in(
    make_cm: MakeCM, seen: Recorder, clock: FakeClock
) -> None:
    cm = make_cm(listeners=[seen])
    with cm.connection():
        clock.advance(2.5)
    with cm.connection():
        pass
    assert seen.kinds() == [E.OPENED, E.CHECKED_OUT, E.CHECKED_IN, E.CHECKED_OUT, E.CHECKED_IN]
    opened, out, back = seen.events[:3]
    assert (opened.slot, opened.server, opened.dn) == (1, "ldap://a", "cn=svc")
    assert (out.slot, out.dn, out.duration) == (1, "cn=svc", 0.0)
    assert back.duration == 2.5


def test_a_full_pool_tells_the_wait_and_its_time_out(make_cm: MakeCM, seen: Recorder) -> None:
    cm = make_cm(size=1, pool_timeout=0.01)
    cm.add_listener(seen)
    with cm.connection(), pytest.raises(MaxConnectionReachedError):
        with cm.connection("cn=alice", "alice-pw"):
            pass
    assert [e.kind for e in seen.events if e.kind.name.startswith("WAIT")] == [
        E.WAIT_STARTED,
        E.WAIT_TIMED_OUT,
    ]
    assert seen.of(E.WAIT_TIMED_OUT)[0].dn == "cn=alice"


def test_closed_connections_say_why(
    make_cm: MakeCM, seen: Recorder, server: FakeServer, clock: FakeClock
) -> None:
    cm = make_cm(size=2, listeners=[seen], lifetime=LifetimePolicy(max_lifetime=60, jitter=0))
    with pytest.raises(FakeDown), cm.connection() as conn:
        conn._conn.dropped = True
        conn.modify()
    with cm.connection() as conn:
        conn.simple_bind_s("cn=alice", "alice-pw")
    with cm.connection():
        clock.advance(61)
    with cm.connection("cn=alice", "alice-pw"):
        pass
    cm.purge("cn=alice")
    with cm.connection():
        pass
    cm.close()
    reasons = [e.reason for e in seen.of(E.CLOSED)]
    assert reasons == ["lost", "changed", "expired", "purged", "closed"]
    assert all(e.server == "ldap://a" for e in seen.of(E.CLOSED))


def test_stale_shrunk_and_not_pooled_connections_say_so(
    make_cm: MakeCM, seen: Recorder, driver: FakeDriver
) -> None:
    cm = make_cm(size=2, listeners=[seen])
    with cm.connection():
        pass
    driver.connections[0].dropped = True  # the server closed it while idle
    with cm.connection(), cm.connection("cn=alice", "alice-pw"):
        cm.size = 1
    unpooled = make_cm(use_pool=False, listeners=[seen])
    with unpooled.connection():
        pass
    assert [e.reason for e in seen.of(E.CLOSED)] == ["stale", "shrunk", "not pooled"]


def test_failover_quarantine_and_return_are_told(seen: Recorder, clock: FakeClock) -> None:
    first, second = FakeServer(), FakeServer()
    first.up = False
    driver = FakeDriver(a=first, b=second)
    cm = ConnectionManager(
        "ldap://a ldap://b",
        retry_max=1,
        driver=driver,
        clock=clock,
        failover=InOrder(cooldown=5),
        max_lifetime=None,
        listeners=[seen],
    )
    with cm.connection():
        pass
    assert [e.kind for e in seen.events][:3] == [E.SERVER_QUARANTINED, E.FAILOVER, E.OPENED]
    assert seen.of(E.FAILOVER)[0].server == "ldap://a" and seen.of(E.FAILOVER)[0].error
    first.up = True
    clock.advance(6)
    with cm.connection(), cm.connection():  # a second connection: ldap://a first again
        pass
    assert seen.of(E.SERVER_BACK)[0].server == "ldap://a"
    assert isinstance(cm.failover, FailoverPolicy)
    cm.close()


def test_refused_binds_are_told_with_the_policy_s_reason(
    make_cm: MakeCM, seen: Recorder, server: FakeServer
) -> None:
    cm = make_cm(listeners=[seen])
    with pytest.raises(InvalidCredentialsError), cm.connection("cn=alice", "nope"):
        pass
    server.locked.add("cn=bob")
    server.policies["cn=bob"] = PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
    with pytest.raises(InvalidCredentialsError):
        cm.authenticate("cn=bob", "bob-pw")
    refused = seen.of(E.BIND_REFUSED)
    assert [(e.dn, e.reason) for e in refused] == [
        ("cn=alice", "invalid credentials"),
        ("cn=bob", "account locked"),
    ]


def test_a_listener_that_raises_is_logged_and_changes_nothing(
    make_cm: MakeCM, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    cm = make_cm(listeners=[broken, seen])
    with caplog.at_level(logging.ERROR, logger="ldappool"), cm.connection() as conn:
        assert conn.search() == "result"
    assert seen.kinds() == [E.OPENED, E.CHECKED_OUT, E.CHECKED_IN]
    assert "listener bug" in caplog.text
    assert cm.stats().idle == 1


def test_no_event_carries_a_password(make_cm: MakeCM, seen: Recorder) -> None:
    cm = make_cm(listeners=[seen])
    for who, pw in (("cn=alice", "alice-pw"), ("cn=alice", "wrong-pw"), ("cn=bob", "bob-pw")):
        with contextlib.suppress(InvalidCredentialsError), cm.connection(who, pw):
            pass
        with contextlib.suppress(InvalidCredentialsError):
            cm.authenticate(who, pw)
    text = repr(seen.events)
    assert seen.events
    for secret in ("svc-secret", "alice-pw", "wrong-pw", "bob-pw"):
        assert secret not in text


def test_listeners_are_checked_added_and_removed(make_cm: MakeCM, seen: Recorder) -> None:
    with pytest.raises(TypeError, match="listeners"):
        make_cm(listeners=[print, "not callable"])
    with pytest.raises(TypeError, match="listeners must be an iterable"):
        make_cm(listeners=print)
    cm = make_cm()
    cm.add_listener(seen)
    with cm.connection():
        pass
    cm.remove_listener(seen)
    with cm.connection():
        pass
    assert len(seen.events) == 3
    with pytest.raises(ValueError):
        cm.remove_listener(seen)
    with pytest.raises(TypeError, match="callable"):
        cm.add_listener(42)  # type: ignore[arg-type]


def test_events_under_threads_balance_out_and_in(make_cm: MakeCM, seen: Recorder) -> None:
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            seen(event)

    cm = make_cm(size=3, listeners=[record])

    def work() -> None:
        for _ in range(50):
            with cm.connection():
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen.of(E.CHECKED_OUT)) == len(seen.of(E.CHECKED_IN)) == 400
    assert len(seen.of(E.OPENED)) == cm.stats().opened <= 3


def test_the_time_held_does_not_count_the_time_to_open(
    make_cm: MakeCM, seen: Recorder, clock: FakeClock, driver: FakeDriver
) -> None:
    cm = make_cm(listeners=[seen])
    original = driver.connect

    def slow_connect(*args: object) -> object:
        clock.advance(3.0)  # connecting takes 3 s
        return original(*args)  # type: ignore[arg-type]

    driver.connect = slow_connect  # type: ignore[method-assign,assignment]
    with cm.connection():
        clock.advance(1.0)
    opened, out, back = seen.events
    assert (opened.duration, out.duration, back.duration) == (3.0, 3.0, 1.0)
