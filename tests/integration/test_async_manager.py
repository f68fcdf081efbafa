"""AsyncConnectionManager on a real slapd, both drivers: operations through the lent
object, the cap under 200 tasks as cn=Monitor counts it, restarts, time-outs, a
suspended server, cancellation, password checks with the password policy.

Each test runs its own event loop (``asyncio.run``) under a deadline. On python-ldap the
lent object is an AsyncLDAP (libldap's asynchronous calls on the loop); on ldap3 an
AsyncLdap3 (ldap3's calls in the pool's worker threads): the helpers below are the only
place that tells them apart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ldap
import ldap3
import pytest

from ldappool import (
    AsyncConnectionManager,
    BackendError,
    InvalidCredentialsError,
    LifetimePolicy,
)
from ldappool._drivers._aio import AsyncLDAP
from tests.frames import frames_holding
from tests.integration.harness import AuthSlapd, Slapd, User, wait_until

T = TypeVar("T")
MakeAsync = Callable[..., AsyncConnectionManager]
#: No test's loop may run longer than this.
DEADLINE = 60.0


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(bounded())


# -- the only place that cares which driver's object was lent --------------------------


async def search(conn: Any, base: str, filterstr: str = "(objectClass=*)") -> list[str]:
    """A subtree search: the DNs found, sorted."""
    if isinstance(conn, AsyncLDAP):
        found = await conn.search(base, ldap.SCOPE_SUBTREE, filterstr, ["1.1"])
        return sorted(dn for dn, _attrs in found if dn is not None)
    await conn.search(base, filterstr, search_scope=ldap3.SUBTREE, attributes=["1.1"])
    return sorted(str(e["dn"]) for e in conn.response or () if e["type"] == "searchResEntry")


async def pages(conn: Any, base: str, size: int) -> list[list[str]]:
    """A paged search of the people under ``base``: the DNs of each page."""
    found: list[list[str]] = []
    if isinstance(conn, AsyncLDAP):
        iterator = conn.search_pages(
            base, ldap.SCOPE_ONELEVEL, "(objectClass=inetOrgPerson)", ["1.1"], page_size=size
        )
        async for page in iterator:
            found.append([dn for dn, _attrs in page if dn is not None])
        return found
    iterator = conn.search_pages(
        base, "(objectClass=inetOrgPerson)", ldap3.LEVEL, page_size=size, attributes=["1.1"]
    )
    async for page in iterator:
        found.append([str(entry["dn"]) for entry in page])
    return found


def _ok(conn: Any, done: object) -> None:
    if not isinstance(conn, AsyncLDAP) and done is not True:
        raise RuntimeError(f"ldap3 operation failed: {conn.result}")


async def add_person(conn: Any, dn: str, uid: str) -> None:
    if isinstance(conn, AsyncLDAP):
        entry = [("objectClass", [b"inetOrgPerson"]), ("cn", [uid.encode()])]
        await conn.add(dn, [*entry, ("sn", [uid.encode()]), ("uid", [uid.encode()])])
        return
    attributes = {"cn": uid, "sn": uid, "uid": uid}
    _ok(conn, await conn.add(dn, ["inetOrgPerson"], attributes))


async def describe(conn: Any, dn: str, text: str) -> None:
    if isinstance(conn, AsyncLDAP):
        await conn.modify(dn, [(ldap.MOD_REPLACE, "description", [text.encode()])])
        return
    _ok(conn, await conn.modify(dn, {"description": [(ldap3.MODIFY_REPLACE, [text])]}))


async def compare(conn: Any, dn: str, attr: str, value: str) -> bool:
    if isinstance(conn, AsyncLDAP):
        same: bool = await conn.compare(dn, attr, value.encode())
        return same
    return bool(await conn.compare(dn, attr, value))


async def rename(conn: Any, dn: str, newrdn: str) -> None:
    if isinstance(conn, AsyncLDAP):
        await conn.modrdn(dn, newrdn)
        return
    _ok(conn, await conn.modify_dn(dn, newrdn))


async def delete(conn: Any, dn: str) -> None:
    if isinstance(conn, AsyncLDAP):
        await conn.delete(dn)
        return
    _ok(conn, await conn.delete(dn))


# -- operations --------------------------------------------------------------------------


def test_every_operation_through_the_lent_object(
    fresh_slapd: Slapd, make_async_manager: MakeAsync, driver: str
) -> None:
    server = fresh_slapd
    cm = make_async_manager(server.ldap_uri, server.root_dn, server.root_pw)
    alice = server.users["alice"]
    dn = f"uid=dave,{server.people_dn}"

    async def main() -> None:
        async with cm.connection() as conn:
            assert (conn.native is not None) and (
                isinstance(conn, AsyncLDAP) == (driver == "python-ldap")
            )
            assert await conn.whoami() == f"dn:{server.root_dn}"
            assert await search(conn, server.people_dn, "(uid=alice)") == [alice.dn]
            assert await compare(conn, alice.dn, "sn", "alice")
            assert not await compare(conn, alice.dn, "sn", "bob")
            await add_person(conn, dn, "dave")
            await describe(conn, dn, "added through the pool")
            assert await compare(conn, dn, "description", "added through the pool")
            await rename(conn, dn, "uid=erin")
            renamed = f"uid=erin,{server.people_dn}"
            assert await search(conn, server.people_dn, "(uid=erin)") == [renamed]
            await delete(conn, renamed)
            assert await search(conn, server.people_dn, "(uid=erin)") == []
        assert cm.stats().opened == 1 and cm.stats().in_use == 0
        async with cm.connection(alice.dn, alice.password) as conn:  # another identity
            assert await conn.whoami() == f"dn:{alice.dn}"

    run(main())


def test_a_paged_search_returns_every_page(
    fresh_slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    server = fresh_slapd
    for n in range(10):
        server.add_user(f"paged{n}", "secret")
    alice = server.users["alice"]
    cm = make_async_manager(server.ldap_uri, alice.dn, alice.password)

    async def main() -> None:
        async with cm.connection() as conn:
            found = await pages(conn, server.people_dn, 4)
        assert [len(page) for page in found] == [4, 4, 4, 1]  # 13 people
        assert len({dn for page in found for dn in page}) == 13

    run(main())


# -- the cap, as the server counts it ------------------------------------------------------


def test_200_tasks_on_size_8_never_open_more_than_8_connections(
    slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    alice = slapd.users["alice"]
    cm = make_async_manager(slapd.ldap_uri, alice.dn, alice.password, size=8)
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(slapd.client_connections())
            time.sleep(0.005)

    async def main() -> None:
        async def work() -> list[str]:
            async with cm.connection() as conn:
                return await search(conn, slapd.people_dn, "(uid=alice)")

        for _round in range(3):
            found = await asyncio.gather(*(work() for _ in range(200)))
            assert found == [[alice.dn]] * 200

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run(main())
    finally:
        stop.set()
        sampler.join(5)
    assert seen and max(seen) <= 8
    stats = cm.stats()
    assert stats.opened <= 8 and stats.checkouts == 600 and stats.lost == 0


def test_a_server_restart_between_checkouts_is_invisible(
    fresh_slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    server = fresh_slapd
    alice = server.users["alice"]
    cm = make_async_manager(server.ldap_uri, alice.dn, alice.password, size=4)

    async def main() -> None:
        async def work() -> list[str]:
            async with cm.connection() as conn:
                return await search(conn, server.people_dn, "(uid=alice)")

        assert await asyncio.gather(*(work() for _ in range(8))) == [[alice.dn]] * 8
        server.restart()  # in the main thread (the server dies with the thread that starts it)
        assert await asyncio.gather(*(work() for _ in range(8))) == [[alice.dn]] * 8

    run(main())
    assert cm.stats().stale >= 1


# -- time-outs, a server that does not answer, cancellation ----------------------------


def test_a_timeout_on_a_suspended_server_raises_in_time_and_the_pool_recovers(
    fresh_slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    server = fresh_slapd
    alice = server.users["alice"]
    cm = make_async_manager(server.ldap_uri, alice.dn, alice.password, timeout=1, retry_max=1)

    async def main() -> None:
        async with cm.connection() as conn:
            await search(conn, server.people_dn)
        await asyncio.to_thread(server.suspend)
        started = time.monotonic()
        with pytest.raises((ldap.TIMEOUT, ldap3.core.exceptions.LDAPException)):
            async with cm.connection() as conn:
                await search(conn, server.people_dn)
        assert 0.5 < time.monotonic() - started < 4
        await asyncio.to_thread(server.resume)
        async with cm.connection() as conn:
            assert await search(conn, server.people_dn, "(uid=alice)") == [alice.dn]
        stats = cm.stats()
        assert stats.lost == 1 and stats.in_use == 0

    run(main())


def test_tasks_cancelled_on_a_suspended_server_lose_no_slot_and_leave_no_connection(
    fresh_slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    server = fresh_slapd
    alice = server.users["alice"]
    cm = make_async_manager(server.ldap_uri, alice.dn, alice.password, size=2, timeout=2)

    async def main() -> None:
        async def work() -> list[str]:
            async with cm.connection() as conn:
                return await search(conn, server.people_dn)

        await asyncio.gather(work(), work())  # two pooled connections
        await asyncio.to_thread(server.suspend)
        tasks = [asyncio.create_task(work()) for _ in range(6)]  # 2 stuck, 4 waiting
        await asyncio.sleep(0.3)
        assert cm.stats().waiting == 4
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        await asyncio.to_thread(server.resume)
        # The interrupted connections are closed (once their calls are over), not pooled.
        for _ in range(500):
            stats = cm.stats()
            if stats.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert (stats.connections, stats.in_use, stats.waiting) == (0, 0, 0)
        found = await asyncio.gather(*(work() for _ in range(4)))
        assert all(alice.dn in dns for dns in found)
        await cm.close()

    run(main())
    wait_until(lambda: server.client_connections() == 0, timeout=5)


def test_a_checkout_cancelled_while_connecting_to_a_silent_server_loses_no_slot(
    fresh_slapd: Slapd, make_async_manager: MakeAsync
) -> None:
    server = fresh_slapd
    alice = server.users["alice"]
    cm = make_async_manager(
        server.ldap_uri, alice.dn, alice.password, size=1, timeout=1, retry_max=1
    )

    async def main() -> None:
        await asyncio.to_thread(server.suspend)

        async def work() -> None:
            async with cm.connection():
                pass

        task = asyncio.create_task(work())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(server.resume)
        await work()  # the slot came back once the attempt ended
        assert cm.stats().in_use == 0 and cm.stats().connections == 1

    run(main())


# -- password checks -----------------------------------------------------------------------


def test_authenticate_wrong_password_is_exactly_one_failure(
    auth_slapd: AuthSlapd, policy_user: User, make_async_manager: MakeAsync
) -> None:
    cm = make_async_manager(auth_slapd.ldap_uri)

    async def main() -> None:
        result = await cm.authenticate(policy_user.dn, policy_user.password)
        assert result.server == auth_slapd.ldap_uri and not result.must_change
        for failures in (1, 2):
            with pytest.raises(InvalidCredentialsError) as caught:
                await cm.authenticate(policy_user.dn, "not the password")
            assert frames_holding(caught.value, "not the password") == []
            assert await asyncio.to_thread(auth_slapd.failures, policy_user.uid) == failures
        checks = [cm.authenticate(policy_user.dn, policy_user.password) for _ in range(20)]
        assert {r.dn for r in await asyncio.gather(*checks)} == {policy_user.dn}
        assert await asyncio.to_thread(auth_slapd.failures, policy_user.uid) == 0
        with pytest.raises(InvalidCredentialsError):
            await cm.authenticate(policy_user.dn, "")  # never sent
        with pytest.raises(InvalidCredentialsError) as caught:
            async with cm.connection(policy_user.dn, "not the password"):
                pass
        assert frames_holding(caught.value, "not the password") == []

    run(main())
    assert cm.stats().opened <= 6  # auth_size (half of 10), and the one that could not bind
    assert cm.stats().invalid_credentials == 3  # counted as the checks ended, and at bind


@pytest.mark.parametrize("look", [True, False], ids=["looked-at", "used-as-is"])
def test_authenticate_after_a_restart(
    auth_slapd: AuthSlapd, policy_user: User, make_async_manager: MakeAsync, look: bool
) -> None:
    """As ConnectionManager's: a restart outlasts ``socket_check_after``, the look
    catches the closed connection; used as it is, the check is lost once."""
    window = 0.05 if look else 3600.0
    lifetime = LifetimePolicy(socket_check_after=window)
    cm = make_async_manager(auth_slapd.ldap_uri, lifetime=lifetime)

    async def main() -> None:
        await cm.authenticate(policy_user.dn, policy_user.password)
        auth_slapd.restart()  # in this thread: slapd dies with the thread that started it
        if not look:
            with pytest.raises(BackendError, match="not retried"):
                await cm.authenticate(policy_user.dn, policy_user.password)
        result = await cm.authenticate(policy_user.dn, policy_user.password)
        assert result.dn == policy_user.dn

    run(main())
    assert (cm.stats().opened, cm.stats().stale) == (2, 1 if look else 0)
