"""Retry and failover: which servers are tried, how often, and what is raised."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from ldappool import (
    BackendError,
    BackendTimeoutError,
    ConnectionManager,
    InOrder,
    InvalidCredentialsError,
    RetryPolicy,
    RoundRobin,
    ServerDownError,
)
from tests.unit.fakes import FakeClock, FakeDown, FakeDriver, FakeServer

MakeCM = Callable[..., ConnectionManager]


@attrs.frozen
class RecordingRetry(RetryPolicy):
    calls: list[tuple[int, str]] = attrs.field(factory=list, eq=False)

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        self.calls.append((attempt, type(error).__name__))
        return super().should_retry(attempt, error)

    def backoff(self, attempt: int) -> float:
        return 0.5 * 2 ** (attempt - 1)


def test_retry_policy_is_consulted_after_each_failed_attempt(
    make_cm: MakeCM, driver: FakeDriver, server: FakeServer, clock: FakeClock
) -> None:
    retry = RecordingRetry(max_attempts=3)
    cm = make_cm(retry=retry)
    server.up = False
    with pytest.raises(ServerDownError) as info:
        cm.connection().__enter__()
    assert retry.calls == [(1, "FakeDown"), (2, "FakeDown"), (3, "FakeDown")]
    assert clock.sleeps == [0.5, 1.0]
    assert driver.connect_calls == ["ldap://a"] * 3
    assert isinstance(info.value.__cause__, FakeDown)
    assert "3 attempt" in str(info.value)


def test_retry_max_and_retry_delay_build_the_default_policy(
    make_cm: MakeCM, server: FakeServer, clock: FakeClock
) -> None:
    cm = make_cm(retry_max=2, retry_delay=0.25)
    assert cm.retry == RetryPolicy(max_attempts=2, delay=0.25)
    server.up = False
    with pytest.raises(ServerDownError):
        cm.connection().__enter__()
    assert clock.sleeps == [0.25]


def test_a_server_that_comes_back_between_attempts_is_used(
    make_cm: MakeCM, server: FakeServer
) -> None:
    @attrs.frozen
    class BringBack(RetryPolicy):
        def should_retry(self, attempt: int, error: BaseException) -> bool:
            server.up = True
            return True

    cm = make_cm(retry=BringBack())
    server.up = False
    with cm.connection() as conn:
        assert conn.search() == "result"


def test_failover_in_order_past_a_dead_server(server: FakeServer, clock: FakeClock) -> None:
    dead = FakeServer(up=False)
    driver = FakeDriver(dead=dead, a=server)
    cm = ConnectionManager("ldap://dead, ldap://a", driver=driver, retry_max=2, clock=clock)
    with cm.connection() as conn:
        assert conn.search() == "result"
    assert driver.connect_calls == ["ldap://dead", "ldap://dead", "ldap://a"]
    assert cm.stats().failovers == 1


def test_failed_server_is_quarantined_then_tried_again(
    server: FakeServer, clock: FakeClock
) -> None:
    first = FakeServer(up=False)
    driver = FakeDriver(first=first, a=server)
    cm = ConnectionManager(
        "ldap://first ldap://a",
        driver=driver,
        retry_max=1,
        clock=clock,
        failover=InOrder(cooldown=10),
        use_pool=False,
    )
    with cm.connection():
        pass
    with cm.connection():
        pass
    assert driver.connect_calls == ["ldap://first", "ldap://a", "ldap://a"]
    first.up = True
    clock.advance(11)
    with cm.connection():
        pass
    assert driver.connect_calls[-1] == "ldap://first"  # InOrder returns to the primary


def test_quarantined_server_is_still_tried_when_nothing_else_answers(
    server: FakeServer, clock: FakeClock
) -> None:
    driver = FakeDriver(a=server)
    cm = ConnectionManager("ldap://a", driver=driver, retry_max=1, clock=clock)
    server.up = False
    with pytest.raises(ServerDownError):
        cm.connection().__enter__()
    server.up = True
    with cm.connection() as conn:
        assert conn.search() == "result"


def test_round_robin_spreads_new_connections(clock: FakeClock) -> None:
    servers = {name: FakeServer() for name in "abc"}
    driver = FakeDriver(**servers)
    cm = ConnectionManager(
        "ldap://a ldap://b ldap://c", driver=driver, failover=RoundRobin(), size=3, clock=clock
    )
    leases = [cm.connection() for _ in range(3)]
    for lease in leases:
        lease.__enter__()
    assert sorted(driver.connect_calls) == ["ldap://a", "ldap://b", "ldap://c"]
    for lease in leases:
        lease.__exit__(None, None, None)


def test_timeouts_raise_backend_timeout_error(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(retry_max=1)
    server.timeout = True
    with pytest.raises(BackendTimeoutError):
        cm.connection().__enter__()


def test_other_errors_are_not_retried(make_cm: MakeCM, driver: FakeDriver) -> None:
    cm = make_cm(retry_max=5)

    def refuse(*_: object) -> None:
        raise ValueError("protocol error")

    driver.connect = refuse  # type: ignore[method-assign,assignment]
    with pytest.raises(BackendError) as info:
        cm.connection().__enter__()
    assert not isinstance(info.value, ServerDownError)
    assert isinstance(info.value.__cause__, ValueError)


def test_connect_errors_are_counted(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(retry_max=2)
    server.up = False
    with pytest.raises(ServerDownError):
        cm.connection().__enter__()
    assert cm.stats().connect_errors == 2


def test_bind_failure_closes_the_new_connection(make_cm: MakeCM, server: FakeServer) -> None:
    cm = make_cm(retry_max=1)
    with pytest.raises(InvalidCredentialsError):
        with cm.connection("cn=nobody", "x"):
            pass
    assert server.live == 0
    assert isinstance(FakeDown("x"), Exception)


def test_failover_max_time_bounds_one_connection_attempt(
    server: FakeServer, clock: FakeClock
) -> None:
    dead, spare = FakeServer(up=False), FakeServer(up=False)
    driver = FakeDriver(dead=dead, spare=spare)
    cm = ConnectionManager(
        "ldap://dead ldap://spare",
        driver=driver,
        retry_max=10,
        retry_delay=1.0,
        failover=InOrder(max_time=2.5),
        clock=clock,
    )
    start = clock.now
    with pytest.raises(ServerDownError, match="4 attempt"):
        cm.connection().__enter__()
    # t=0, 1, 2 on the first server; its next backoff would end past max_time, so the
    # spare gets one attempt at t=2 and no sleep follows
    assert driver.connect_calls == ["ldap://dead"] * 3 + ["ldap://spare"]
    assert clock.now - start == 2.0


def test_failover_max_time_is_validated() -> None:
    with pytest.raises(ValueError, match="max_time"):
        InOrder(max_time=0)
