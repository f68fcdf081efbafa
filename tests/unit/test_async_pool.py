"""AsyncConnectionManager on the in-memory fake driver: the sync manager's rules, on asyncio.

Each test runs its own event loop (``asyncio.run``) under a deadline: no plugin needed.
The fake driver has no ``aio``, so connections are lent as the generic
:class:`~ldappool._async_pool.AsyncNative` (every call in the pool's worker threads).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from ldappool import (
    AccountLockedError,
    AsyncConnectionManager,
    BackendError,
    ConnectionManager,
    Event,
    EventKind,
    InvalidCredentialsError,
    LifetimePolicy,
    MaxConnectionReachedError,
    PasswordPolicy,
    PolicyError,
    PoolClosedError,
    ServerDownError,
)
from ldappool._async_io import AsyncNative
from ldappool._port import ConnectSettings, Server
from tests.unit.fakes import (
    FakeClock,
    FakeConnection,
    FakeDriver,
    FakeServer,
    live_connections,
)
from tests.unit.test_arguments import BAD

T = TypeVar("T")
USERS = {None: None, "cn=svc": "svc-secret", "cn=alice": "alice-pw", "cn=bob": "bob-pw"}
#: No test may take longer than this.
DEADLINE = 20.0


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(bounded())


def make(driver: FakeDriver, **overrides: Any) -> AsyncConnectionManager:
    args: dict[str, Any] = {
        "uri": "ldap://a",
        "bind": "cn=svc",
        "passwd": "svc-secret",
        "retry_delay": 0.0,
        "driver": driver,
        "pool_timeout": 5.0,
    }
    args.update(overrides)
    return AsyncConnectionManager(**args)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer(users=dict(USERS))


@pytest.fixture
def driver(server: FakeServer) -> FakeDriver:
    return FakeDriver(a=server)


async def settled(cm: AsyncConnectionManager) -> None:
    """Let the closes started so far finish (they run in the worker threads)."""
    await cm._pool.settle()


# -- the cap, fairness, the loop ---------------------------------------------------------


def test_200_tasks_on_size_8_never_open_more_than_8(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver, size=8) as cm:
            held = 0
            most = 0

            async def work() -> str:
                nonlocal held, most
                async with cm.connection() as conn:
                    held += 1
                    most = max(most, held)
                    found: str = await conn.search()
                    await asyncio.sleep(0.001)
                    held -= 1
                    return found

            found = await asyncio.gather(*(work() for _ in range(200)))
            assert found == ["result"] * 200
            assert most == 8 and server.peak == 8
            stats = cm.stats()
            assert (stats.checkouts, stats.opened, stats.in_use, stats.waiting) == (200, 8, 0, 0)
        assert server.live == 0

    run(main())


def test_full_pool_serves_waiters_first_come_first_served(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver, size=1) as cm:
            served: list[int] = []

            async def work(n: int) -> None:
                async with cm.connection():
                    served.append(n)
                    await asyncio.sleep(0.002)

            tasks = []
            async with cm.connection():
                for n in range(20):
                    tasks.append(asyncio.create_task(work(n)))
                    await asyncio.sleep(0)  # queued in this order
                assert cm.stats().waiting == 20
            await asyncio.gather(*tasks)
            assert served == list(range(20))

    run(main())


def test_waiting_for_a_slot_never_blocks_the_loop(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver, size=1) as cm:
            ticks = 0
            stop = asyncio.Event()

            async def heartbeat() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.001)

            async def work() -> None:
                async with cm.connection():
                    await asyncio.sleep(0.001)

            beat = asyncio.create_task(heartbeat())
            async with cm.connection():
                waiters = [asyncio.create_task(work()) for _ in range(100)]
                await asyncio.sleep(0.2)  # 100 tasks wait meanwhile
                assert cm.stats().waiting == 100
                during = ticks
            await asyncio.gather(*waiters)
            stop.set()
            await beat
            assert during >= 20  # the loop kept running while they waited

    run(main())


def test_the_common_checkout_does_not_leave_the_loop(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            async with cm.connection():
                pass
            threads = {t.name for t in threading.enumerate()}
            async with cm.connection() as conn:
                assert isinstance(conn, AsyncNative)
                assert conn.native.whoami == "cn=svc"  # the native object, as is
            assert {t.name for t in threading.enumerate()} == threads
            assert cm.stats().reused == 1

    run(main())


def test_pool_timeout_raises_max_connection_reached(driver: FakeDriver) -> None:
    async def main() -> None:
        seen: list[Event] = []
        async with make(driver, size=1, pool_timeout=0.05, listeners=[seen.append]) as cm:
            async with cm.connection():
                started = time.monotonic()
                with pytest.raises(MaxConnectionReachedError):
                    async with cm.connection():
                        pass
                assert 0.04 < time.monotonic() - started < 2
            stats = cm.stats()
            assert (stats.wait_timeouts, stats.waiting, stats.in_use) == (1, 0, 0)
            kinds = [e.kind for e in seen]
            assert EventKind.WAIT_STARTED in kinds and EventKind.WAIT_TIMED_OUT in kinds

    run(main())


def test_close_wakes_waiters_with_pool_closed(driver: FakeDriver, server: FakeServer) -> None:
    async def main() -> None:
        cm = make(driver, size=1)

        async def work() -> None:
            async with cm.connection():
                pass

        async with cm.connection():
            waiters = [asyncio.create_task(work()) for _ in range(5)]
            await asyncio.sleep(0.01)
            await cm.close()
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert all(isinstance(r, PoolClosedError) for r in results)
        await settled(cm)  # the lent one closes at checkin
        assert server.live == 0 and len(cm) == 0
        with pytest.raises(PoolClosedError):
            async with cm.connection():
                pass

    run(main())


# -- cancellation ------------------------------------------------------------------------


def test_cancelled_waiting_tasks_lose_no_slot(driver: FakeDriver, server: FakeServer) -> None:
    async def main() -> None:
        async with make(driver, size=2) as cm:

            async def work() -> None:
                async with cm.connection():
                    await asyncio.sleep(0.001)

            release = asyncio.Event()

            async def hold() -> None:
                async with cm.connection():
                    await release.wait()

            holders = [asyncio.create_task(hold()) for _ in range(2)]
            await asyncio.sleep(0.01)
            waiters = [asyncio.create_task(work()) for _ in range(50)]
            await asyncio.sleep(0.01)
            for task in waiters[::2]:
                task.cancel()
            release.set()
            results = await asyncio.gather(*holders, *waiters, return_exceptions=True)
            cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
            assert len(cancelled) == 25
            assert all(r is None for r in results if r not in cancelled)
            stats = cm.stats()
            assert (stats.in_use, stats.waiting, stats.connections) == (0, 0, 2)
            assert server.live == 2
            await asyncio.gather(*(work() for _ in range(10)))  # both still lent at once
            assert cm.stats().opened == 2

    run(main())


def test_a_slot_handed_to_a_waiter_cancelled_before_it_runs_comes_back(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver, size=1, handoff_after=0) as cm:

            async def work() -> None:
                async with cm.connection():
                    pass

            async with cm.connection():
                waiter = asyncio.create_task(work())
                await asyncio.sleep(0.01)
                assert cm.stats().waiting == 1
            # The checkin handed the slot to the waiter (strict hand-off); it has not run.
            assert cm.stats().in_use == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            stats = cm.stats()
            assert (stats.in_use, stats.idle, stats.waiting) == (0, 1, 0)
            async with cm.connection():
                pass
            assert cm.stats().opened == 1 and server.live == 1

    run(main())


def test_a_woken_waiter_cancelled_passes_its_turn_on(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver, size=1, handoff_after=60) as cm:
            got: list[str] = []

            async def work(name: str) -> None:
                async with cm.connection():
                    got.append(name)

            async with cm.connection():
                first = asyncio.create_task(work("first"))
                await asyncio.sleep(0.01)
                second = asyncio.create_task(work("second"))
                await asyncio.sleep(0.01)
            first.cancel()  # woken by the checkin, cancelled before it looked
            await asyncio.wait_for(second, 2)  # not left waiting until pool_timeout
            assert got == ["second"]
            assert first.cancelled()
            assert cm.stats().in_use == 0

    run(main())


def test_a_holder_cancelled_in_its_block_gives_the_connection_back(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver, size=1) as cm:
            entered = asyncio.Event()

            async def hold() -> None:
                async with cm.connection():
                    entered.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(hold())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stats = cm.stats()
            assert (stats.in_use, stats.idle, stats.closed) == (0, 1, 0)  # pooled: healthy
            async with cm.connection() as conn:
                assert await conn.search() == "result"
            assert cm.stats().opened == 1 and server.live == 1

    run(main())


def test_a_holder_cancelled_in_an_operation_is_closed_once_it_is_over(
    driver: FakeDriver, server: FakeServer
) -> None:
    release = threading.Event()

    async def main() -> None:
        async with make(driver, size=1) as cm:
            started = asyncio.Event()

            async def hold() -> None:
                async with cm.connection() as conn:
                    conn.native.slow = lambda: release.wait(10)
                    started.set()
                    await conn.slow()

            task = asyncio.create_task(hold())
            await started.wait()
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            (conn,) = driver.connections
            assert not conn.closed  # its operation still runs in a worker thread
            assert cm.stats().connections == 1  # and its slot still counts
            release.set()
            await asyncio.sleep(0.05)
            await settled(cm)
            assert conn.closed and server.live == 0
            stats = cm.stats()
            assert (stats.connections, stats.closed, stats.in_use) == (0, 1, 0)
            async with cm.connection():  # a new one
                pass
            assert cm.stats().opened == 2

    try:
        run(main())
    finally:
        release.set()


class SlowDriver(FakeDriver):
    """Connecting waits for ``go``: a checkout can be cancelled while it connects."""

    def __init__(self, **servers: FakeServer) -> None:
        super().__init__(**servers)
        self.go = threading.Event()
        self.connecting = threading.Event()

    def connect(self, server: Server, settings: ConnectSettings) -> FakeConnection:
        self.connecting.set()
        self.go.wait(10)
        return super().connect(server, settings)


def test_a_checkout_cancelled_while_connecting_loses_no_slot(server: FakeServer) -> None:
    slow = SlowDriver(a=server)

    async def main() -> None:
        async with make(slow, size=1) as cm:

            async def work() -> None:
                async with cm.connection():
                    pass

            task = asyncio.create_task(work())
            await asyncio.to_thread(slow.connecting.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert cm.stats().connections == 1  # the connect goes on: its slot counts
            slow.go.set()
            for _ in range(200):
                if cm.stats().idle == 1:
                    break
                await asyncio.sleep(0.01)
            stats = cm.stats()
            assert (stats.idle, stats.in_use, stats.opened) == (1, 0, 1)  # pooled
            await work()
            assert cm.stats().opened == 1 and server.live == 1

    try:
        run(main())
    finally:
        slow.go.set()


# -- failures ----------------------------------------------------------------------------


def test_an_unreachable_server_frees_the_slot(driver: FakeDriver, server: FakeServer) -> None:
    async def main() -> None:
        async with make(driver, size=1, retry_max=2) as cm:
            server.up = False
            with pytest.raises(ServerDownError):
                async with cm.connection():
                    pass
            stats = cm.stats()
            assert (stats.connections, stats.in_use, stats.connect_errors) == (0, 0, 2)
            server.up = True
            async with cm.connection() as conn:
                assert await conn.search() == "result"

    run(main())


def test_a_connection_closed_by_the_server_is_replaced_at_checkout(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            async with cm.connection():
                pass
            driver.connections[0].dropped = True
            async with cm.connection() as conn:
                assert await conn.search() == "result"
            stats = cm.stats()
            assert (stats.stale, stats.opened, stats.connections) == (1, 2, 1)
            assert server.live == 1

    run(main())


def test_another_identity_rebinds_an_idle_connection_on_a_full_pool(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver, size=1) as cm:
            async with cm.connection():
                pass
            async with cm.connection("cn=alice", "alice-pw") as conn:
                assert conn.native.whoami == "cn=alice"
            with pytest.raises(InvalidCredentialsError):
                async with cm.connection("cn=bob", "wrong"):
                    pass
            await settled(cm)  # the refused bind's connection is closed, then its slot free
            stats = cm.stats()
            assert (stats.rebinds, stats.opened, stats.in_use) == (1, 1, 0)
            assert server.live == 0  # the refused bind's connection was closed

    run(main())


def test_a_lost_read_is_recovered_through_the_pool(driver: FakeDriver, server: FakeServer) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            async with cm.connection() as conn:
                driver.connections[0].dropped = True
                assert await conn.search() == "result"  # FakeNative's retry, via the pool
            assert cm.stats().recovered == 1 and server.live == 1

    run(main())


# -- password checks ---------------------------------------------------------------------


def test_authenticate_is_one_bind_and_a_refusal_keeps_the_connection(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            result = await cm.authenticate("cn=alice", "alice-pw")
            assert (result.dn, result.server) == ("cn=alice", "ldap://a")
            before = server.binds
            with pytest.raises(InvalidCredentialsError):
                await cm.authenticate("cn=alice", "wrong")
            assert server.binds - before == 1
            assert (await cm.authenticate("cn=bob", "bob-pw")).dn == "cn=bob"
            stats = cm.stats()
            assert (stats.opened, stats.password_checks, stats.in_use) == (1, 3, 0)
            assert server.live == 1

    run(main())


def test_authenticate_refuses_empty_passwords_before_sending_anything(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            for dn, password in (("cn=alice", ""), ("", "pw")):
                with pytest.raises(InvalidCredentialsError):
                    await cm.authenticate(dn, password)
            with pytest.raises(TypeError, match="password"):
                await cm.authenticate("cn=alice", None)  # type: ignore[arg-type]
            assert driver.connect_calls == [] and server.binds == 0

    run(main())


def test_authenticate_reports_the_password_policy(driver: FakeDriver, server: FakeServer) -> None:
    server.locked.add("cn=bob")
    server.policies["cn=bob"] = PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
    server.policies["cn=alice"] = PasswordPolicy(expires_in=3600)

    async def main() -> None:
        async with make(driver) as cm:
            assert (await cm.authenticate("cn=alice", "alice-pw")).expires_in == 3600
            with pytest.raises(AccountLockedError) as caught:
                await cm.authenticate("cn=bob", "bob-pw")
            assert caught.value.policy == server.policies["cn=bob"]

    run(main())


def test_a_password_check_without_an_answer_is_not_retried(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            await cm.authenticate("cn=alice", "alice-pw")
            server.drop_checks = True
            before = server.binds
            with pytest.raises(BackendError, match="not retried"):
                await cm.authenticate("cn=alice", "alice-pw")
            assert server.binds - before == 1
            await settled(cm)
            assert cm.stats().connections == 0 and server.live == 0

    run(main())


@pytest.mark.parametrize("window", [0.05, 0.0])
def test_a_password_check_moments_after_the_last_skips_the_socket_look(
    driver: FakeDriver, server: FakeServer, window: float
) -> None:
    async def main() -> None:
        lifetime = LifetimePolicy(socket_check_after=window)
        async with make(driver, clock=FakeClock(), lifetime=lifetime) as cm:
            await cm.authenticate("cn=alice", "alice-pw")
            [checks] = live_connections(driver)
            checks.dropped = True  # the server closed it just after the check
            if window:  # sent without a look: lost, not sent again
                with pytest.raises(BackendError, match="not retried"):
                    await cm.authenticate("cn=alice", "alice-pw")
            assert (await cm.authenticate("cn=alice", "alice-pw")).dn == "cn=alice"
            assert cm.stats().stale == (0 if window else 1)

    run(main())


def test_password_checks_queue_at_the_gate_and_all_get_through(
    driver: FakeDriver, server: FakeServer
) -> None:
    async def main() -> None:
        async with make(driver, size=4, auth_size=2) as cm:
            checks = [cm.authenticate("cn=alice", "alice-pw") for _ in range(30)]
            results = await asyncio.gather(*checks)
            assert {r.dn for r in results} == {"cn=alice"}
            stats = cm.stats()
            assert stats.password_checks == 30 and stats.opened <= 2 and server.peak <= 2

    run(main())


# -- events, the manager's surface --------------------------------------------------------


def test_listeners_are_told(driver: FakeDriver) -> None:
    async def main() -> None:
        seen: list[Event] = []
        cm = make(driver, listeners=[seen.append])
        async with cm.connection():
            pass
        await cm.close()
        kinds = [e.kind for e in seen]
        assert kinds == [
            EventKind.OPENED,
            EventKind.CHECKED_OUT,
            EventKind.CHECKED_IN,
            EventKind.CLOSED,
        ]
        assert seen[-1].reason == "closed"

    run(main())


def test_open_check_drain_and_the_table(driver: FakeDriver, server: FakeServer) -> None:
    async def main() -> None:
        async with make(driver, size=3, min_size=2) as cm:
            await cm.open()
            assert server.live == 2 and len(cm) == 2
            driver.connections[0].dropped = True
            assert await cm.check() == 1
            assert cm.drain() >= 1
            await settled(cm)
            assert "Slot (3 max)" in str(cm)
            assert repr(cm).startswith("<AsyncConnectionManager 'ldap://a' driver='fake'")
            assert "svc-secret" not in repr(cm) + str(cm)
            cm.size = 1
            assert cm.size == 1

    run(main())


def test_a_forked_child_forgets_the_parent_s_connections(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            async with cm.connection():
                pass
            cm._pool.after_fork_in_child()  # what the fork hook does in the child
            assert all(c.abandoned for c in driver.connections)
            assert len(cm) == 0
            async with cm.connection() as conn:
                assert await conn.search() == "result"

    run(main())


def test_a_lease_is_entered_once(driver: FakeDriver) -> None:
    async def main() -> None:
        async with make(driver) as cm:
            lease = cm.connection()
            async with lease:
                pass
            with pytest.raises(RuntimeError, match="only once"):
                async with lease:
                    pass

    run(main())


# -- the same arguments as ConnectionManager --------------------------------------------


def test_both_managers_take_the_same_arguments() -> None:
    sync = inspect.signature(ConnectionManager)
    assert inspect.signature(AsyncConnectionManager) == sync


MANAGERS: list[Callable[..., Any]] = [ConnectionManager, AsyncConnectionManager]


@pytest.mark.parametrize("manager", MANAGERS, ids=["sync", "async"])
@pytest.mark.parametrize(("name", "value", "error"), BAD)
def test_bad_argument_raises_the_same_error_naming_it(
    manager: Callable[..., Any], name: str, value: object, error: type
) -> None:
    args = {"uri": "ldap://a", "driver": FakeDriver(a=FakeServer()), name: value}
    with pytest.raises(error, match=name) as caught:
        manager(**args)
    with pytest.raises(error) as sync:
        ConnectionManager(**args)
    assert str(caught.value) == str(sync.value)


@pytest.mark.parametrize("manager", MANAGERS, ids=["sync", "async"])
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"bind": "cn=x"}, ValueError, "passwd"),
        ({"size": 2, "min_size": 3}, ValueError, "min_size"),
        ({"size": 2, "auth_size": 3}, ValueError, "auth_size"),
        ({"keepalive": 0}, ValueError, "keepalive"),
        ({"sasl": "EXTERNAL"}, TypeError, "sasl"),
        ({"listeners": [3]}, TypeError, "listeners"),
    ],
)
def test_cross_argument_rules_are_the_same(
    manager: Callable[..., Any], kwargs: dict[str, Any], error: type, name: str
) -> None:
    with pytest.raises(error, match=name):
        manager("ldap://a", driver=FakeDriver(a=FakeServer()), **kwargs)


def test_fixed_attributes_name_the_async_manager(driver: FakeDriver) -> None:
    cm = make(driver)
    with pytest.raises(AttributeError, match="AsyncConnectionManager"):
        cm.uri = "ldap://b"  # type: ignore[misc]
    cm.pool_timeout = 1.5
    assert cm.pool_timeout == 1.5


def test_held_too_long_warns_with_the_checkout_site(
    driver: FakeDriver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()

    async def main() -> None:
        async with make(driver, size=1, warn_held_after=2.0, pool_timeout=0.01, clock=clock) as cm:
            async with cm.connection():  # this function is named in the warning
                clock.advance(5.0)
                with pytest.raises(MaxConnectionReachedError):
                    async with cm.connection():
                        pass
            assert caplog.text.count("checked out for 5.0s") == 1  # once per checkout
            async with cm.connection():
                clock.advance(1.0)

    run(main())
    assert caplog.text.count("checked out for") == 1
    assert "in main" in caplog.text
