"""AsyncLDAP (``ldappool._drivers._aio``) without an LDAP server.

Two stand-ins for the server:

- A fake LDAPObject (:class:`FakeNative`) whose handle's ``result4`` answers from a
  queue the test fills: ``arrive`` also makes the socket readable (a message came in),
  ``buffer`` does not (what libldap or the TLS layer already holds). The wait loop's
  bookkeeping (polls, readers, abandons, the lost flag, retries) is checked on it.
- The far end of a socketpair handed to libldap with ``fileno=`` (:func:`wire`): the
  real python-ldap and libldap code paths run on canned BER answers, written when the
  test chooses (half a message at a time, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

ldap = pytest.importorskip("ldap")

from ldappool._drivers._aio import AsyncLDAP  # noqa: E402
from ldappool._drivers._aio_wait import BATCH  # noqa: E402
from ldappool._drivers._ppolicy import PPOLICY_OID  # noqa: E402
from ldappool._drivers._shared import PAGED_RESULTS, WHOAMI  # noqa: E402
from ldappool._drivers._state_connector import StateConnector  # noqa: E402
from ldappool._port import BindAnswer, PasswordPolicy, PolicyError  # noqa: E402

T = TypeVar("T")
NOTHING = (None, None, None, None, None, None)
BOUND = 5.0  # seconds any test's coroutine may take


def run(main: Awaitable[T]) -> T:
    """asyncio.run, bounded: a hang fails the test."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, BOUND)

    return asyncio.run(bounded())


def registered(fd: int) -> bool:
    """Whether the running loop watches ``fd`` for reading now."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    with contextlib.suppress(KeyError):
        return selector.get_key(fd).data[0] is not None  # type: ignore[no-any-return]
    return False


# -- the fake LDAPObject ----------------------------------------------------------------


class FakeHandle:
    """libldap's side: requests get message ids; answers come from ``ready``."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.ready: deque[Any] = deque()
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.abandoned: list[int] = []
        self.polls = 0
        self.msgid = 0
        self.on_poll: Callable[[], None] | None = None

    def _request(self, name: str, args: tuple[Any, ...]) -> int:
        self.msgid += 1
        self.sent.append((name, args))
        return self.msgid

    def search_ext(self, *args: Any) -> int:
        return self._request("search_ext", args)

    def compare_ext(self, *args: Any) -> int:
        return self._request("compare_ext", args)

    def extop(self, *args: Any) -> int:
        return self._request("extop", args)

    def add_ext(self, *args: Any) -> int:
        return self._request("add_ext", args)

    def modify_ext(self, *args: Any) -> int:
        return self._request("modify_ext", args)

    def delete_ext(self, *args: Any) -> int:
        return self._request("delete_ext", args)

    def rename(self, *args: Any) -> int:
        return self._request("rename", args)

    def simple_bind(self, *args: Any) -> int:
        return self._request("simple_bind", args)

    def result4(self, msgid: int, all_: int, timeout: float, *adds: int) -> Any:
        assert (all_, timeout, adds) == (0, 0, (0, 0, 1))  # one message, a poll
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll()
        with contextlib.suppress(BlockingIOError):
            self.ours.recv(4096)  # libldap reads what came in
        if not self.ready:
            return NOTHING
        item = self.ready.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def abandon_ext(self, msgid: int, serverctrls: Any, clientctrls: Any) -> None:
        self.abandoned.append(msgid)

    def get_option(self, option: int) -> int:
        assert option == ldap.OPT_DESC
        return self.ours.fileno()

    @property
    def fd(self) -> int:
        return self.ours.fileno()

    def arrive(self, *answers: Any) -> None:
        """Messages that came in: the socket turns readable."""
        self.ready.extend(answers)
        self.theirs.send(b"x")

    def buffer(self, *answers: Any) -> None:
        """Messages libldap (or the TLS layer) already holds: the socket stays quiet."""
        self.ready.extend(answers)

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


class FakeNative:
    """The LDAPObject: ``_ldap_call`` marks it lost as StateConnector's does."""

    def __init__(self) -> None:
        self._l = FakeHandle()
        self._ldappool_lost = False
        self._ldappool_rebound = False
        self._connection_time: float | None = None
        self.connected = False
        self.who: str | None = ""

    def _ldap_call(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except (ldap.SERVER_DOWN, ldap.TIMEOUT):
            self._ldappool_lost = True
            raise


@pytest.fixture
def native() -> Iterator[FakeNative]:
    fake = FakeNative()
    yield fake
    fake._l.close()


def entry(dn: str) -> tuple[Any, ...]:
    return (ldap.RES_SEARCH_ENTRY, [(dn, {"cn": [b"x"]})], 1, [], None, None)


def done(kind: int = ldap.RES_SEARCH_RESULT, controls: Any = ()) -> tuple[Any, ...]:
    return (kind, [], 1, list(controls), None, None)


def down() -> Exception:
    return ldap.SERVER_DOWN({"desc": "Can't contact LDAP server"})


# -- arguments ----------------------------------------------------------------------------


def test_refuses_what_is_not_an_ldap_object() -> None:
    with pytest.raises(TypeError, match="LDAPObject"):
        AsyncLDAP(object())


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_timeout_is_checked(native: FakeNative, timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        AsyncLDAP(native, timeout=timeout)


def test_timeouts_accepted(native: FakeNative) -> None:
    assert AsyncLDAP(native).timeout is None
    assert AsyncLDAP(native, timeout=2).timeout == 2.0
    aio = AsyncLDAP(native, timeout=0.5)
    assert aio.timeout == 0.5 and aio.native is native and "0.5" in repr(aio)


def test_recover_must_be_callable(native: FakeNative) -> None:
    with pytest.raises(TypeError, match="recover"):
        AsyncLDAP(native, recover="again")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("page_size", "error"),
    [(0, ValueError), (-3, ValueError), (2**31, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_page_size_is_checked(native: FakeNative, page_size: Any, error: type[Exception]) -> None:
    aio = AsyncLDAP(native)
    with pytest.raises(error, match="page_size"):
        aio.search_pages("o=x", ldap.SCOPE_SUBTREE, page_size=page_size)  # at once
    with pytest.raises(error, match="page_size"):
        run(aio.search("o=x", ldap.SCOPE_SUBTREE, page_size=page_size))
    assert native._l.sent == []


def test_a_paged_control_and_page_size_are_one_too_many(native: FakeNative) -> None:
    aio = AsyncLDAP(native)
    control = (PAGED_RESULTS, True, b"")
    with pytest.raises(ValueError, match="one only"):
        run(aio.search("o=x", ldap.SCOPE_SUBTREE, serverctrls=[control], page_size=5))
    assert native._l.sent == []


# -- waiting ------------------------------------------------------------------------------


def test_an_answer_already_held_is_read_without_waiting(native: FakeNative) -> None:
    handle = native._l
    handle.buffer(entry("cn=a"), done())

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        added: list[int] = []
        original = loop.add_reader
        loop.add_reader = lambda fd, *a: (added.append(fd), original(fd, *a))  # type: ignore[method-assign]
        found = await AsyncLDAP(native).search("o=x", ldap.SCOPE_SUBTREE)
        return found, added

    found, added = run(main())
    assert found == [("cn=a", {"cn": [b"x"]})]
    assert added == []  # polled before the first wait: no reader needed
    assert handle.polls == 2


def test_waits_on_the_socket_and_polls_only_when_woken(native: FakeNative) -> None:
    """Readable with nothing complete (half a message) a few times, then the result."""
    handle = native._l

    async def main() -> bool:
        aio = AsyncLDAP(native)
        task = asyncio.create_task(aio.compare("cn=a", "cn", b"x"))
        for _ in range(3):
            await asyncio.sleep(0.05)
            assert registered(handle.fd) and not task.done()
            handle.arrive()  # bytes, but no complete message
        await asyncio.sleep(0.05)
        handle.arrive(ldap.COMPARE_TRUE({"desc": "Compare True"}))
        answer = await task
        assert not registered(handle.fd)
        return answer

    assert run(main()) is True
    assert handle.polls == 5  # one before waiting, one per wake: no busy polling
    assert handle.abandoned == [] and not native._ldappool_lost


def test_drains_what_is_buffered_before_waiting_again(native: FakeNative) -> None:
    """The TLS case: one wake, then the rest is held above the socket, which stays quiet."""
    handle = native._l

    async def main() -> Any:
        task = asyncio.create_task(AsyncLDAP(native).search("o=x", ldap.SCOPE_SUBTREE))
        await asyncio.sleep(0.05)
        handle.arrive(entry("cn=1"))
        handle.buffer(*(entry(f"cn={n}") for n in range(2, 6)), done())
        return await asyncio.wait_for(task, 1.0)  # waiting on the socket would hang here

    found = run(main())
    assert [dn for dn, _ in found] == [f"cn={n}" for n in range(1, 6)]


def test_a_long_answer_lets_other_tasks_run(native: FakeNative) -> None:
    handle = native._l
    count = BATCH * 4
    handle.buffer(*(entry(f"cn={n}") for n in range(count)), done())
    ticks: list[int] = []

    async def main() -> Any:
        async def ticker() -> None:
            while True:
                ticks.append(handle.polls)
                await asyncio.sleep(0)

        other = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            return await AsyncLDAP(native).search("o=x", ldap.SCOPE_SUBTREE)
        finally:
            other.cancel()

    assert len(run(main())) == count
    assert any(0 < polls < count for polls in ticks)  # the ticker ran mid-search


def test_an_error_result_is_raised_and_nothing_abandoned(native: FakeNative) -> None:
    handle = native._l

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=1)
        task = asyncio.create_task(aio.delete("cn=gone"))
        await asyncio.sleep(0.02)
        handle.arrive(ldap.NO_SUCH_OBJECT({"desc": "No such object"}))
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            await task
        assert not registered(handle.fd)

    run(main())
    assert handle.abandoned == [] and not native._ldappool_lost


def test_a_timeout_abandons_and_marks_the_connection_lost(native: FakeNative) -> None:
    handle = native._l

    async def main() -> float:
        aio = AsyncLDAP(native, timeout=0.1)
        started = time.monotonic()
        with pytest.raises(ldap.TIMEOUT) as caught:
            await aio.search("o=x", ldap.SCOPE_SUBTREE)
        assert caught.value.args[0]["msgid"] == 1
        assert not asyncio.get_running_loop().remove_reader(handle.fd)
        return time.monotonic() - started

    assert 0.09 <= run(main()) < 1.0
    assert handle.abandoned == [1] and native._ldappool_lost


def test_a_timeout_also_ends_a_search_that_keeps_streaming(native: FakeNative) -> None:
    handle = native._l
    handle.on_poll = lambda: handle.buffer(entry("cn=again"))  # never a final result

    async def main() -> None:
        with pytest.raises(ldap.TIMEOUT):
            await AsyncLDAP(native, timeout=0.1).search("o=x", ldap.SCOPE_SUBTREE)

    run(main())
    assert handle.abandoned == [1] and native._ldappool_lost


def test_cancelling_abandons_marks_lost_and_removes_the_reader(native: FakeNative) -> None:
    handle = native._l

    async def main() -> None:
        task = asyncio.create_task(AsyncLDAP(native).whoami())
        await asyncio.sleep(0.05)
        assert registered(handle.fd)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not registered(handle.fd)

    run(main())
    assert handle.abandoned == [1] and native._ldappool_lost


def test_no_socket_is_a_lost_connection(native: FakeNative) -> None:
    native._l.get_option = lambda option: -1  # type: ignore[method-assign]
    with pytest.raises(ldap.SERVER_DOWN):
        run(AsyncLDAP(native).whoami())
    assert native._ldappool_lost


def test_operations_take_turns(native: FakeNative) -> None:
    handle = native._l

    async def main() -> list[Any]:
        aio = AsyncLDAP(native)
        first = asyncio.create_task(aio.compare("cn=a", "cn", b"x"))
        second = asyncio.create_task(aio.whoami())
        await asyncio.sleep(0.05)
        assert [name for name, _ in handle.sent] == ["compare_ext"]  # the second waits
        handle.arrive(ldap.COMPARE_FALSE({"desc": "Compare False"}))
        await asyncio.sleep(0.05)
        assert [name for name, _ in handle.sent] == ["compare_ext", "extop"]
        handle.arrive((ldap.RES_EXTENDED, [], 2, [], None, b"dn:cn=me"))
        return [await first, await second]

    assert run(main()) == [False, "dn:cn=me"]


# -- what each operation sends and returns ----------------------------------------------


def test_requests_as_python_ldap_sends_them(native: FakeNative) -> None:
    handle = native._l
    extended = (ldap.RES_EXTENDED, [], 1, [], "1.2.3.4", b"out")
    replies = [done(ldap.RES_ADD), done(ldap.RES_MODIFY), done(ldap.RES_MODRDN)]
    handle.buffer(*replies, done(ldap.RES_DELETE), extended, done(ldap.RES_BIND))

    async def main() -> Any:
        aio = AsyncLDAP(native)
        await aio.add("cn=a", [("cn", [b"a"])])
        await aio.modify("cn=a", [(ldap.MOD_REPLACE, "cn", [b"b"])])
        await aio.modrdn("cn=a", "cn=b", delold=False, newsuperior="o=y")
        await aio.delete("cn=b")
        answer = await aio.extended("1.2.3.4", b"in")
        await aio.simple_bind(None, None)
        return answer

    assert run(main()) == ("1.2.3.4", b"out")
    assert handle.sent == [
        ("add_ext", ("cn=a", [("cn", [b"a"])], None, None)),
        ("modify_ext", ("cn=a", [(ldap.MOD_REPLACE, "cn", [b"b"])], None, None)),
        ("rename", ("cn=a", "cn=b", "o=y", 0, None, None)),
        ("delete_ext", ("cn=b", None, None)),
        ("extop", ("1.2.3.4", b"in", None, None)),
        ("simple_bind", (None, None, None, None)),
    ]


def test_search_sends_its_arguments_and_returns_references_too(native: FakeNative) -> None:
    handle = native._l
    reference = (ldap.RES_SEARCH_REFERENCE, [(None, ["ldap://elsewhere/"])], 1, [], None, None)
    handle.buffer(entry("cn=a"), reference, done())
    control = ldap.controls.SimplePagedResultsControl(False, 3, b"")

    async def main() -> Any:
        return await AsyncLDAP(native).search(
            "o=x", ldap.SCOPE_ONELEVEL, None, ["cn"], 1, [control], sizelimit=7
        )

    assert run(main()) == [("cn=a", {"cn": [b"x"]}), (None, ["ldap://elsewhere/"])]
    [(name, args)] = handle.sent
    assert name == "search_ext"
    sent_control = (PAGED_RESULTS, False, control.encodeControlValue())
    scope = ldap.SCOPE_ONELEVEL
    assert args == ("o=x", scope, "(objectClass=*)", ["cn"], 1, [sent_control], None, -1, 7)


def test_pages_carry_the_cookie_one_page_each(native: FakeNative) -> None:
    handle = native._l
    page = ldap.controls.SimplePagedResultsControl

    def last(cookie: bytes) -> tuple[Any, ...]:
        value = page(False, 0, cookie).encodeControlValue()
        return done(controls=[(PAGED_RESULTS, False, value)])

    handle.buffer(entry("cn=1"), entry("cn=2"), last(b"c1"), entry("cn=3"), last(b""))

    async def main() -> list[Any]:
        aio = AsyncLDAP(native)
        return [p async for p in aio.search_pages("o=x", ldap.SCOPE_SUBTREE, page_size=2)]

    pages = run(main())
    assert [[dn for dn, _ in p] for p in pages] == [["cn=1", "cn=2"], ["cn=3"]]
    cookies = []
    for _name, args in handle.sent:
        [(oid, critical, value)] = args[5]
        assert (oid, critical) == (PAGED_RESULTS, True)
        control = page()
        control.decodeControlValue(value)
        cookies.append((control.size, control.cookie))
    assert cookies == [(2, b""), (2, b"c1")]


def test_search_with_page_size_keeps_the_turn_for_every_page(native: FakeNative) -> None:
    handle = native._l
    value = ldap.controls.SimplePagedResultsControl(False, 0, b"c1").encodeControlValue()

    async def main() -> list[Any]:
        aio = AsyncLDAP(native)
        search = asyncio.create_task(aio.search("o=x", ldap.SCOPE_SUBTREE, page_size=1))
        whoami = asyncio.create_task(aio.whoami())
        await asyncio.sleep(0.02)
        handle.arrive(entry("cn=1"), done(controls=[(PAGED_RESULTS, False, value)]))
        await asyncio.sleep(0.02)
        handle.arrive(entry("cn=2"), done())
        await asyncio.sleep(0.02)
        handle.arrive(done(ldap.RES_EXTENDED))
        return [await search, await whoami]

    found, me = run(main())
    assert [dn for dn, _ in found] == ["cn=1", "cn=2"] and me == ""
    assert [name for name, _ in handle.sent] == ["search_ext", "search_ext", "extop"]


# -- reads retried once after recover, writes never ----------------------------------


class Recovery:
    """A recover that gives the object a new handle (a new transport)."""

    def __init__(self, native: FakeNative, fail: bool = False) -> None:
        self.native = native
        self.fail = fail
        self.calls = 0
        self.handles: list[FakeHandle] = []

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise ldap.SERVER_DOWN({"desc": "no server took it"})
        fresh = FakeHandle()
        self.handles.append(fresh)
        self.native._l = fresh
        self.native._ldappool_lost = False

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


@pytest.fixture
def recovery(native: FakeNative) -> Iterator[Recovery]:
    made = Recovery(native)
    yield made
    made.close()


READS: list[tuple[str, Callable[[AsyncLDAP], Awaitable[Any]], Any, Any]] = [
    ("search", lambda a: a.search("o=x", ldap.SCOPE_BASE), done(), []),
    ("compare", lambda a: a.compare("o=x", "o", b"x"), ldap.COMPARE_TRUE({}), True),
    ("whoami", lambda a: a.whoami(), done(ldap.RES_EXTENDED), ""),
    ("extended whoami", lambda a: a.extended(WHOAMI), done(ldap.RES_EXTENDED), (None, None)),
    (
        "first page",
        lambda a: a.search("o=x", ldap.SCOPE_BASE, page_size=5),
        done(),
        [],
    ),
]


@pytest.mark.parametrize(("name", "read", "answer", "expected"), READS, ids=[r[0] for r in READS])
def test_a_lost_read_runs_once_more_after_recover(
    native: FakeNative,
    recovery: Recovery,
    name: str,
    read: Callable[[AsyncLDAP], Awaitable[Any]],
    answer: Any,
    expected: Any,
) -> None:
    lost = native._l
    lost.buffer(down())

    async def main() -> Any:
        aio = AsyncLDAP(native, recover=recovery)
        asyncio.get_running_loop().call_later(0.05, lambda: recovery.handles[0].arrive(answer))
        return await read(aio)

    assert run(main()) == expected
    assert recovery.calls == 1
    assert len(lost.sent) == 1 and len(recovery.handles[0].sent) == 1  # on the new transport


WRITES: list[tuple[str, Callable[[AsyncLDAP], Awaitable[Any]]]] = [
    ("add", lambda a: a.add("cn=a", [("cn", [b"a"])])),
    ("modify", lambda a: a.modify("cn=a", [(ldap.MOD_REPLACE, "cn", [b"b"])])),
    ("delete", lambda a: a.delete("cn=a")),
    ("modrdn", lambda a: a.modrdn("cn=a", "cn=b")),
    ("extended", lambda a: a.extended("1.3.6.1.4.1.4203.1.11.1")),
    ("simple_bind", lambda a: a.simple_bind("cn=a", "pw")),
    ("check_password", lambda a: a.check_password("cn=a", "pw", None)),
]


@pytest.mark.parametrize(("name", "write"), WRITES, ids=[w[0] for w in WRITES])
def test_a_lost_write_is_never_replayed(
    native: FakeNative,
    recovery: Recovery,
    name: str,
    write: Callable[[AsyncLDAP], Awaitable[Any]],
) -> None:
    native._l.buffer(down())
    with pytest.raises(ldap.SERVER_DOWN):
        run(write(AsyncLDAP(native, recover=recovery)))
    assert recovery.calls == 0 and len(native._l.sent) == 1
    assert native._ldappool_lost


def test_a_later_page_is_not_retried(native: FakeNative, recovery: Recovery) -> None:
    value = ldap.controls.SimplePagedResultsControl(False, 0, b"c1").encodeControlValue()
    native._l.buffer(done(controls=[(PAGED_RESULTS, False, value)]), down())

    async def main() -> None:
        pages = AsyncLDAP(native, recover=recovery).search_pages(
            "o=x", ldap.SCOPE_SUBTREE, page_size=1
        )
        assert await anext(pages) == []
        with pytest.raises(ldap.SERVER_DOWN):
            await anext(pages)

    run(main())
    assert recovery.calls == 0


def test_a_search_continuing_a_paged_search_is_not_retried(
    native: FakeNative, recovery: Recovery
) -> None:
    native._l.buffer(down())
    control = ldap.controls.SimplePagedResultsControl(True, 5, b"cookie")
    with pytest.raises(ldap.SERVER_DOWN):
        run(AsyncLDAP(native, recover=recovery).search("o=x", 2, serverctrls=[control]))
    assert recovery.calls == 0


def test_a_failed_recover_raises_the_reads_own_error(native: FakeNative) -> None:
    lost = down()
    native._l.buffer(lost)
    recovery = Recovery(native, fail=True)
    with pytest.raises(ldap.SERVER_DOWN) as caught:
        run(AsyncLDAP(native, recover=recovery).whoami())
    assert caught.value is lost and recovery.calls == 1


def test_without_recover_a_lost_read_raises(native: FakeNative) -> None:
    native._l.buffer(down())
    with pytest.raises(ldap.SERVER_DOWN):
        run(AsyncLDAP(native).search("o=x", ldap.SCOPE_BASE))


def test_lost_again_after_recover_raises(native: FakeNative, recovery: Recovery) -> None:
    native._l.buffer(down())

    async def main() -> None:
        aio = AsyncLDAP(native, recover=recovery)
        asyncio.get_running_loop().call_later(0.05, lambda: recovery.handles[0].arrive(down()))
        await aio.whoami()

    with pytest.raises(ldap.SERVER_DOWN):
        run(main())
    assert recovery.calls == 1


def test_recover_may_bind_through_the_same_object(native: FakeNative) -> None:
    """recover runs in the read's turn, from the same task: no deadlock."""
    native._l.buffer(down())
    aio: AsyncLDAP

    async def recover() -> None:
        fresh = FakeHandle()
        fresh.buffer(done(ldap.RES_BIND), done(ldap.RES_EXTENDED, ()))
        native._l = fresh
        await aio.simple_bind("cn=svc", "pw", pooled=True)

    async def main() -> str:
        nonlocal aio
        aio = AsyncLDAP(native, recover=recover)
        return await aio.whoami()

    try:
        assert run(main()) == ""
        assert [name for name, _ in native._l.sent] == ["simple_bind", "extop"]
        assert not native._ldappool_rebound and native.who == "cn=svc"
    finally:
        native._l.close()


# -- binds: the connector's state, no secret kept ----------------------------------------


def test_a_holders_bind_changes_the_identity(native: FakeNative) -> None:
    native._l.buffer(done(ldap.RES_BIND))
    run(AsyncLDAP(native).simple_bind("cn=me", "pw"))
    assert (native.connected, native.who, native._ldappool_rebound) == (True, "cn=me", True)
    assert native._connection_time is not None


def test_the_pools_bind_does_not(native: FakeNative) -> None:
    native._l.buffer(done(ldap.RES_BIND))
    run(AsyncLDAP(native).simple_bind("cn=svc", "pw", pooled=True))
    assert (native.connected, native.who, native._ldappool_rebound) == (True, "cn=svc", False)


def test_a_failed_bind_counts_whoever_asked(native: FakeNative) -> None:
    native._l.buffer(ldap.INVALID_CREDENTIALS({"desc": "Invalid credentials"}))
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        run(AsyncLDAP(native).simple_bind("cn=svc", "pw", pooled=True))
    assert native._ldappool_rebound and native.who == ""


def ber(tag: int, body: bytes) -> bytes:
    """One BER element (short or long form length)."""
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def message(msgid: int, op: bytes, *controls: bytes) -> bytes:
    tail = ber(0xA0, b"".join(controls)) if controls else b""
    return ber(0x30, ber(0x02, bytes([msgid])) + op + tail)


def result_op(tag: int, code: int = 0) -> bytes:
    return ber(tag, ber(0x0A, bytes([code])) + ber(0x04, b"") + ber(0x04, b""))


def policy_control(value: bytes) -> bytes:
    return ber(0x30, ber(0x04, PPOLICY_OID.encode()) + ber(0x04, value))


EXPIRING = policy_control(bytes.fromhex("3006a0048002012c"))  # 300 s before expiry
LOCKED = policy_control(bytes.fromhex("3003810101"))  # error: accountLocked


@pytest.fixture
def wire() -> Iterator[tuple[StateConnector, socket.socket]]:
    """A StateConnector whose socket's far end is the test's: real libldap."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    native = StateConnector("ldap://127.0.0.1", fileno=ours.detach())
    yield native, theirs
    native.unbind_ext()
    theirs.close()


def later(peer: socket.socket, *chunks: bytes, every: float = 0.03) -> None:
    """Send ``chunks`` one at a time from the running loop, ``every`` seconds apart."""
    loop = asyncio.get_running_loop()
    for index, chunk in enumerate(chunks, 1):
        loop.call_later(every * index, peer.sendall, chunk)


def test_check_password_reads_the_policy_of_a_success(
    wire: tuple[StateConnector, socket.socket],
) -> None:
    native, peer = wire
    secret = "a-secret-" + "x" * 8

    async def main() -> BindAnswer:
        later(peer, message(1, result_op(0x61), EXPIRING))
        return await AsyncLDAP(native, timeout=2).check_password(
            "cn=alice", secret, [(PPOLICY_OID, False, None)], pooled=True
        )

    assert run(main()) == BindAnswer(policy=PasswordPolicy(expires_in=300))
    sent = peer.recv(4096)
    assert sent[5] == 0x60 and secret.encode() in sent  # one BindRequest
    assert PPOLICY_OID.encode() in sent
    assert (native.connected, native.who, native._ldappool_rebound) == (True, "cn=alice", False)
    assert all(secret not in repr(value) for value in vars(native).values())


def test_check_password_returns_a_refusal_with_its_policy(
    wire: tuple[StateConnector, socket.socket],
) -> None:
    native, peer = wire
    secret = "wrong-" + "y" * 8

    async def main() -> BindAnswer:
        later(peer, message(1, result_op(0x61, 49), LOCKED))
        return await AsyncLDAP(native, timeout=2).check_password("cn=alice", secret, None)

    answer = run(main())
    assert isinstance(answer.refusal, ldap.INVALID_CREDENTIALS)
    assert answer.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
    assert native.who is None and native._ldappool_rebound  # the holder's check
    assert PPOLICY_OID.encode() not in peer.recv(4096)  # no control asked for
    # Nothing on the refusal's way keeps the password: its frames dropped it once sent.
    traceback = answer.refusal.__traceback__
    while traceback is not None:
        assert secret not in traceback.tb_frame.f_locals.values()
        traceback = traceback.tb_next


def test_check_password_raises_a_transport_error(
    wire: tuple[StateConnector, socket.socket],
) -> None:
    native, peer = wire
    peer.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ldap.SERVER_DOWN):
        run(AsyncLDAP(native, timeout=2).check_password("cn=alice", "pw", None, pooled=True))
    assert native._ldappool_rebound and native._ldappool_lost


def test_a_search_answered_a_few_bytes_at_a_time(
    wire: tuple[StateConnector, socket.socket],
) -> None:
    """Real libldap: half messages make the socket readable with nothing complete."""
    native, peer = wire
    attributes = ber(0x30, ber(0x30, ber(0x04, b"cn") + ber(0x31, ber(0x04, b"v" * 300))))
    answer = b"".join(
        message(1, ber(0x64, ber(0x04, f"cn=e{n},o=x".encode()) + attributes)) for n in range(3)
    ) + message(1, result_op(0x65))

    async def main() -> Any:
        later(peer, *(answer[at : at + 97] for at in range(0, len(answer), 97)), every=0.01)
        return await AsyncLDAP(native, timeout=3).search("o=x", ldap.SCOPE_SUBTREE)

    found = run(main())
    assert found == [(f"cn=e{n},o=x", {"cn": [b"v" * 300]}) for n in range(3)]
    assert peer.recv(4096)[5] == 0x63  # one SearchRequest


def test_a_timeout_on_the_wire_sends_an_abandon(
    wire: tuple[StateConnector, socket.socket],
) -> None:
    native, peer = wire

    async def main() -> None:
        with pytest.raises(ldap.TIMEOUT):
            await AsyncLDAP(native, timeout=0.1).compare("cn=a,o=x", "cn", b"a")
        assert not asyncio.get_running_loop().remove_reader(native.fileno())

    run(main())
    assert native._ldappool_lost
    sent = peer.recv(4096)
    assert 0x6E in sent[:8] and b"\x50\x01\x01" in sent  # a CompareRequest, then Abandon(1)
