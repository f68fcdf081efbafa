"""AsyncLDAP against a real slapd: awaitable operations on python-ldap connections.

Connections are opened by the python-ldap driver (``PythonLdapDriver().connect``), bound
with its synchronous ``bind`` where convenient, and driven with ``asyncio.run`` inside
plain test functions (every coroutine bounded by ``run``). Each test's connections are
closed after it, and the servers it used must show no client connection left.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import ldap
import ldap.extop
import ldap.modlist
import pytest

from ldappool._drivers._aio import AsyncLDAP
from ldappool._drivers._ppolicy import PPOLICY_OID
from ldappool._drivers._shared import WHOAMI
from ldappool._drivers.python_ldap import PythonLdapConnection, PythonLdapDriver
from ldappool._port import BindAnswer, ConnectSettings, PasswordPolicy, PolicyError, TLSSettings
from ldappool._uris import parse_uris
from tests.integration.harness import (
    CERTS_DIR,
    AuthSlapd,
    Op,
    ProxyFactory,
    Slapd,
    User,
    wait_until,
)

T = TypeVar("T")
TIMEOUT = 5.0
BOUND = 30.0  # seconds any test's coroutine may take
PPOLICY = [(PPOLICY_OID, False, None)]
SERVERS = ("slapd", "fresh_slapd", "auth_slapd")
Opener = Callable[..., PythonLdapConnection]


def run(main: Awaitable[T], bound: float = BOUND) -> T:
    """asyncio.run, bounded: a hang fails the test."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, bound)

    return asyncio.run(bounded())


def registered(fd: int) -> bool:
    """Whether the running loop watches ``fd`` for reading now."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    key = selector.get_map().get(fd)
    return key is not None and key.data[0] is not None


@pytest.fixture
def opened(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """``opened(uri, bind=(dn, pw), use_tls=False, ca_file=None, timeout=TIMEOUT)``."""
    servers = [request.getfixturevalue(n) for n in SERVERS if n in request.fixturenames]
    conns: list[PythonLdapConnection] = []

    def open_(
        uri: str,
        bind: tuple[str | None, str | None] | None = None,
        *,
        use_tls: bool = False,
        ca_file: str | None = None,
        timeout: float = TIMEOUT,
    ) -> PythonLdapConnection:
        [server] = parse_uris(uri)
        tls = TLSSettings(ca_file=ca_file) if ca_file else None
        settings = ConnectSettings(timeout=timeout, use_tls=use_tls, tls=tls)
        conn = PythonLdapDriver().connect(server, settings)
        assert isinstance(conn, PythonLdapConnection)
        conns.append(conn)
        if bind is not None:
            conn.bind(*bind)
        return conn

    yield open_
    for conn in conns:
        conn.close()
    for server in servers:
        if isinstance(server, Slapd) and server.running and not server.suspended:
            wait_until(
                lambda s=server: s.client_connections() == 0,
                message=f"{server}: client connections left open",
            )


def root(server: Slapd) -> tuple[str, str]:
    return server.root_dn, server.root_pw


def person(uid: str, **extra: list[bytes]) -> list[tuple[str, list[bytes]]]:
    entry = {"objectClass": [b"inetOrgPerson"], "uid": [uid.encode()], "cn": [b"c"], "sn": [b"s"]}
    return ldap.modlist.addModlist({**entry, **extra})


def ordered(found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return sorted(found, key=lambda item: str(item[0]))


# -- results equal the synchronous calls' ----------------------------------------------


def test_reads_equal_the_sync_calls(slapd: Slapd, opened: Opener) -> None:
    conn = opened(slapd.ldap_uri, root(slapd))
    native = conn.native
    alice = slapd.users["alice"].dn
    sub = ldap.SCOPE_SUBTREE

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        assert await aio.search(slapd.suffix, sub) == native.search_s(slapd.suffix, sub)
        args = (slapd.people_dn, ldap.SCOPE_ONELEVEL, "(uid=b*)", ["cn", "uid"], 1)
        assert await aio.search(*args) == native.search_s(*args)
        assert await aio.search("", ldap.SCOPE_BASE, None, ["+"]) == native.search_s(
            "", ldap.SCOPE_BASE, None, ["+"]
        )
        for value in (b"alice", b"bob"):
            assert await aio.compare(alice, "cn", value) is native.compare_s(alice, "cn", value)
        assert await aio.whoami() == native.whoami_s() == f"dn:{slapd.root_dn}"
        request = ldap.extop.ExtendedRequest(WHOAMI, None)
        assert await aio.extended(WHOAMI) == native.extop_s(request)
        # Errors are python-ldap's own, as the synchronous calls raise them.
        for read, sync in [
            (
                aio.search(f"ou=nowhere,{slapd.suffix}", sub),
                lambda: native.search_s(f"ou=nowhere,{slapd.suffix}", sub),
            ),
            (
                aio.search(slapd.suffix, sub, sizelimit=1),
                lambda: native.search_ext_s(slapd.suffix, sub, sizelimit=1),
            ),
            (aio.compare(alice, "mail", b"x"), lambda: native.compare_s(alice, "mail", b"x")),
        ]:
            with pytest.raises(ldap.LDAPError) as async_error:
                await read
            with pytest.raises(ldap.LDAPError) as sync_error:
                sync()
            assert type(async_error.value) is type(sync_error.value)
        assert not conn.identity_changed()  # reads: no identity change, nothing lost

    run(main())


def test_anonymous_whoami(slapd: Slapd, opened: Opener) -> None:
    native = opened(slapd.ldap_uri, (None, None)).native
    assert run(AsyncLDAP(native).whoami()) == native.whoami_s() == ""


def test_writes_equal_the_sync_calls(fresh_slapd: Slapd, opened: Opener) -> None:
    server = fresh_slapd
    native = opened(server.ldap_uri, root(server)).native
    people = server.people_dn
    sub = ldap.SCOPE_SUBTREE

    def read(uid: str) -> Any:
        return native.search_s(people, sub, f"(uid={uid})", ["cn", "sn", "description", "uid"])

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        await aio.add(f"uid=w-async,{people}", person("w-async"))
        native.add_s(f"uid=w-sync,{people}", person("w-sync"))
        changes = [(ldap.MOD_REPLACE, "description", [b"changed"])]
        await aio.modify(f"uid=w-async,{people}", changes)
        native.modify_s(f"uid=w-sync,{people}", changes)
        shape = [(attrs["cn"], attrs["sn"], attrs["description"]) for _dn, attrs in read("w-*")]
        assert shape[0] == shape[1] == ([b"c"], [b"s"], [b"changed"])
        await aio.modrdn(f"uid=w-async,{people}", "uid=w-async2", delold=True)
        native.modrdn_s(f"uid=w-sync,{people}", "uid=w-sync2", 1)
        renamed = sorted(dn for dn, _ in read("w-*2"))
        assert renamed == [f"uid=w-async2,{people}", f"uid=w-sync2,{people}"]
        await aio.modrdn(f"uid=w-async2,{people}", "uid=w-moved", newsuperior=server.suffix)
        assert native.search_s(f"uid=w-moved,{server.suffix}", ldap.SCOPE_BASE)
        await aio.delete(f"uid=w-moved,{server.suffix}")
        native.delete_s(f"uid=w-sync2,{people}")
        assert read("w-*") == []
        for write, sync in [
            (
                aio.delete(f"uid=w-moved,{people}"),
                lambda: native.delete_s(f"uid=w-moved,{people}"),
            ),
            (
                aio.add(server.users["alice"].dn, person("alice")),
                lambda: native.add_s(server.users["alice"].dn, person("alice")),
            ),
        ]:
            with pytest.raises(ldap.LDAPError) as async_error:
                await write
            with pytest.raises(ldap.LDAPError) as sync_error:
                sync()
            assert type(async_error.value) is type(sync_error.value)

    run(main())


def test_binds_keep_the_connectors_state(slapd: Slapd, opened: Opener) -> None:
    conn = opened(slapd.ldap_uri)
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    native = conn.native

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        await aio.simple_bind(alice.dn, alice.password, pooled=True)
        assert (native.connected, native.who) == (True, alice.dn)
        assert not conn.identity_changed() and native.get_lifetime() >= 0
        assert await aio.whoami() == f"dn:{alice.dn}"
        await aio.simple_bind(bob.dn, bob.password)  # a holder's bind
        assert native.who == bob.dn and conn.identity_changed()
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            await aio.simple_bind(alice.dn, "wrong", pooled=True)
        assert conn.identity_changed()
        assert await aio.whoami() == ""  # anonymous after a refused bind
        assert native.cred is None
        assert all(alice.password not in repr(v) for v in vars(native).values())

    run(main())


# -- paged search ------------------------------------------------------------------------


def test_paged_search_returns_every_entry_in_pages(fresh_slapd: Slapd, opened: Opener) -> None:
    server = fresh_slapd
    native = opened(server.ldap_uri, root(server)).native
    scope, match = ldap.SCOPE_ONELEVEL, "(uid=*)"

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        for n in range(25):
            await aio.add(f"uid=paged-{n},{server.people_dn}", person(f"paged-{n}"))
        expected = native.search_s(server.people_dn, scope, match)
        assert len(expected) == 28  # with alice, bob and carol
        pages = []
        async for page in aio.search_pages(server.people_dn, scope, match, page_size=10):
            pages.append(page)
            assert await aio.whoami()  # the connection is free between pages
        assert [len(page) for page in pages] == [10, 10, 8]
        assert ordered([item for page in pages for item in page]) == ordered(expected)
        everything = await aio.search(server.people_dn, scope, match, page_size=7)
        assert ordered(everything) == ordered(expected)

    run(main())


# -- TLS: libldap may hold decrypted answers the socket no longer shows --------------


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_a_long_search_over_tls_completes(
    fresh_slapd: Slapd, opened: Opener, transport: str
) -> None:
    server = fresh_slapd
    uri = server.ldaps_uri if transport == "ldaps" else server.ldap_uri
    conn = opened(uri, root(server), use_tls=transport == "starttls", ca_file=server.ca_file)
    native = conn.native

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        for n in range(300):
            # Small entries (many messages per read) and some of 40 KB (several TLS
            # records per message).
            extra = {"description": [b"d" * 40_000]} if n % 25 == 0 else {}
            await aio.add(f"uid=tls-{n},{server.people_dn}", person(f"tls-{n}", **extra))
        expected = native.search_s(server.people_dn, ldap.SCOPE_SUBTREE, "(uid=tls-*)")
        found = await aio.search(server.people_dn, ldap.SCOPE_SUBTREE, "(uid=tls-*)")
        assert len(found) == 300 and found == expected
        pages = [p async for p in aio.search_pages(server.suffix, 2, "(uid=tls-*)", page_size=64)]
        assert sum(len(page) for page in pages) == 300

    run(main())


def ber(tag: int, body: bytes) -> bytes:
    """One BER element (short or long form length)."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    octets = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def search_answer(msgid: int, dns: list[str]) -> bytes:
    """SearchResultEntry messages (no attributes) and a successful SearchResultDone."""
    messages = [ber(0x64, ber(0x04, dn.encode()) + ber(0x30, b"")) for dn in dns]
    messages.append(ber(0x65, ber(0x0A, b"\x00") + ber(0x04, b"") + ber(0x04, b"")))
    return b"".join(ber(0x30, ber(0x02, bytes([msgid])) + op) for op in messages)


class OneWriteTLSServer:
    """An ldaps:// server answering one search with a single TLS write: one TLS record
    carries many LDAP messages, which libldap's TLS layer then holds decrypted while
    the socket has nothing more to read. slapd writes one record per message, so it
    never shows this; other servers (and proxies) do."""

    def __init__(self, dns: list[str]) -> None:
        self.dns = dns
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(CERTS_DIR / "server.pem", CERTS_DIR / "server.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.uri = f"ldaps://127.0.0.1:{self.listener.getsockname()[1]}"
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
            with self.context.wrap_socket(raw, server_side=True) as tls:
                tls.settimeout(5)
                request = tls.recv(65536)
                assert request[5] == 0x63, request  # a SearchRequest, message id 1
                tls.sendall(search_answer(1, self.dns))
                with contextlib.suppress(OSError):
                    tls.recv(65536)  # until the client unbinds or closes
        except BaseException as exc:  # reported by close()
            self.error = exc

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)
        if self.error is not None:
            raise self.error


def test_answers_held_in_the_tls_layer_are_read(opened: Opener) -> None:
    dns = [f"cn=entry-{n},o=test" for n in range(40)]
    server = OneWriteTLSServer(dns)
    conn = None
    try:
        conn = opened(server.uri, ca_file=str(CERTS_DIR / "ca.pem"))
        native = conn.native
        handle = native._l
        quiet: list[bool] = []

        class Watched:
            """The handle, noting for each message read whether the socket was quiet."""

            def __getattr__(self, name: str) -> Any:
                return getattr(handle, name)

            def result4(self, *args: Any) -> Any:
                fd = handle.get_option(ldap.OPT_DESC)
                readable = bool(select.select([fd], [], [], 0)[0])
                answer = handle.result4(*args)
                if answer[0] is not None:
                    quiet.append(not readable)
                return answer

        native.__dict__["_l"] = Watched()
        found = run(AsyncLDAP(native, timeout=TIMEOUT).search("o=test", ldap.SCOPE_SUBTREE), 10)
        native.__dict__["_l"] = handle
        assert found == [(dn, {}) for dn in dns]
        assert sum(quiet) >= len(dns) // 2, quiet  # read while the socket showed nothing
    finally:
        if conn is not None:
            conn.close()  # the server waits for the client to go
        server.close()


# -- many connections on one loop ---------------------------------------------------------


def test_fifty_connections_progress_together(
    slapd: Slapd, proxy_factory: ProxyFactory, opened: Opener
) -> None:
    proxy = proxy_factory(slapd)
    conns = [opened(proxy.uri, root(slapd)) for _ in range(50)]
    expected = conns[0].native.search_s(slapd.people_dn, ldap.SCOPE_ONELEVEL)
    delay = 0.3
    proxy.add_delay(delay)  # each request and each answer held 0.3 s: >= 0.6 s per search
    events: list[tuple[str, int]] = []

    async def one(index: int, conn: PythonLdapConnection) -> None:
        aio = AsyncLDAP(conn.native, timeout=TIMEOUT)
        events.append(("sent", index))
        found = await aio.search(slapd.people_dn, ldap.SCOPE_ONELEVEL)
        events.append(("answered", index))
        assert found == expected

    async def main() -> float:
        started = time.monotonic()
        await asyncio.gather(*(one(i, conn) for i, conn in enumerate(conns)))
        return time.monotonic() - started

    elapsed = run(main())
    assert len(events) == 100
    kinds = [kind for kind, _ in events]
    assert kinds == ["sent"] * 50 + ["answered"] * 50  # all waiting at once
    assert elapsed < 10 * delay  # one after another: at least 50 * 2 * delay = 30 s
    proxy.pass_through()


# -- timeouts and cancellation ------------------------------------------------------------


def test_a_timeout_against_a_suspended_server(fresh_slapd: Slapd, opened: Opener) -> None:
    server = fresh_slapd
    conn = opened(server.ldap_uri, root(server))
    fd = conn.native.fileno()
    server.suspend()
    try:

        async def main() -> float:
            aio = AsyncLDAP(conn.native, timeout=0.5)
            started = time.monotonic()
            with pytest.raises(ldap.TIMEOUT):
                await aio.search(server.suffix, ldap.SCOPE_SUBTREE)
            elapsed = time.monotonic() - started
            assert not asyncio.get_running_loop().remove_reader(fd)
            return elapsed

        assert 0.45 <= run(main()) < 2.5
        assert conn.native._ldappool_lost and conn.identity_changed()
    finally:
        server.resume()


def test_a_password_check_times_out_too(fresh_slapd: Slapd, opened: Opener) -> None:
    server = fresh_slapd
    conn = opened(server.ldap_uri, root(server))
    alice = server.users["alice"]
    server.suspend()
    try:
        aio = AsyncLDAP(conn.native, timeout=0.3)
        with pytest.raises(ldap.TIMEOUT):
            run(aio.check_password(alice.dn, alice.password, PPOLICY, pooled=True))
        assert conn.identity_changed()
    finally:
        server.resume()


async def until_registered(fd: int) -> None:
    while not registered(fd):
        await asyncio.sleep(0.01)


def test_cancelling_while_the_server_is_suspended(fresh_slapd: Slapd, opened: Opener) -> None:
    server = fresh_slapd
    conn = opened(server.ldap_uri, root(server))
    native = conn.native
    fd = native.fileno()
    alice = server.users["alice"].dn
    server.suspend()
    resumed = False
    try:

        async def main() -> None:
            nonlocal resumed
            aio = AsyncLDAP(native, timeout=TIMEOUT)
            task = asyncio.create_task(aio.search(server.suffix, ldap.SCOPE_SUBTREE))
            await asyncio.wait_for(until_registered(fd), 2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not registered(fd)
            assert native._ldappool_lost
            server.resume()
            resumed = True
            # The cancelled search's answer (if the server sends one) is never read as
            # another operation's.
            assert await aio.compare(alice, "cn", b"alice") is True
            assert await aio.whoami() == f"dn:{server.root_dn}"
            assert await aio.search(alice, ldap.SCOPE_BASE, attrlist=["cn"]) == [
                (alice, {"cn": [b"alice"]})
            ]

        run(main())
    finally:
        if not resumed:
            server.resume()


def test_cancelling_behind_a_slow_link(
    slapd: Slapd, proxy_factory: ProxyFactory, opened: Opener
) -> None:
    proxy = proxy_factory(slapd)
    conn = opened(proxy.uri, root(slapd))
    native = conn.native
    fd = native.fileno()
    people = slapd.people_dn

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)
        proxy.add_delay(0.4)
        task = asyncio.create_task(aio.search(people, ldap.SCOPE_ONELEVEL))
        await asyncio.wait_for(until_registered(fd), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not registered(fd) and native._ldappool_lost
        # The delayed answer to the cancelled search arrives during these: dropped.
        assert await aio.whoami() == f"dn:{slapd.root_dn}"
        proxy.pass_through()
        await asyncio.sleep(0.5)
        found = await aio.search(people, ldap.SCOPE_BASE, attrlist=["ou"])
        assert found == [(people, {"ou": [b"people"]})]

    run(main())


# -- reads retried once through recover; writes never -----------------------------------


class Recover:
    """What the pool's recover does: a new transport (reconnect), bound again."""

    def __init__(self, conn: PythonLdapConnection, uri: str, bind: tuple[str, str]) -> None:
        self.conn, self.bind = conn, bind
        [self.server] = parse_uris(uri)
        self.calls = 0
        self.fail = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise ldap.SERVER_DOWN({"desc": "no server took the connection"})
        self.conn.reconnect(self.server, ConnectSettings(timeout=TIMEOUT))
        self.conn.bind(*self.bind)


def test_a_read_on_a_cut_connection_is_retried_once(
    fresh_slapd: Slapd, proxy_factory: ProxyFactory, opened: Opener
) -> None:
    server = fresh_slapd
    proxy = proxy_factory(server)
    conn = opened(proxy.uri, root(server))
    native = conn.native
    alice = server.users["alice"].dn
    recover = Recover(conn, proxy.uri, root(server))
    expected = native.search_s(server.people_dn, ldap.SCOPE_ONELEVEL)
    reads: list[Callable[[AsyncLDAP], Awaitable[Any]]] = [
        lambda aio: aio.search(server.people_dn, ldap.SCOPE_ONELEVEL),
        lambda aio: aio.search(server.people_dn, ldap.SCOPE_ONELEVEL, page_size=2),
        lambda aio: aio.compare(alice, "cn", b"alice"),
        lambda aio: aio.whoami(),
        lambda aio: aio.extended(WHOAMI),
    ]
    answers = [expected, expected, True, f"dn:{server.root_dn}"]
    answers.append((None, f"dn:{server.root_dn}".encode()))

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT, recover=recover)
        for calls, (read, answer) in enumerate(zip(reads, answers, strict=True), 1):
            assert proxy.cut() == 1
            result = await read(aio)
            if isinstance(result, list):  # a paged search's order is the server's own
                assert ordered(result) == ordered(answer)
            else:
                assert result == answer
            assert recover.calls == calls and not native._ldappool_lost
        # The server did it, the answer was lost: the read is run again all the same.
        before = server.completed("Search")
        proxy.cut_on(Op.SEARCH, answered=True)
        assert await aio.search(alice, ldap.SCOPE_BASE, attrlist=["cn"]) == [
            (alice, {"cn": [b"alice"]})
        ]
        assert server.completed("Search") - before == 2 + 1  # both, and completed()'s own
        # A recover that fails: the read's own error.
        recover.fail = True
        proxy.cut()
        with pytest.raises(ldap.SERVER_DOWN):
            await aio.whoami()
        recover.fail = False

    run(main())


def test_a_write_on_a_cut_connection_raises(
    fresh_slapd: Slapd, proxy_factory: ProxyFactory, opened: Opener
) -> None:
    server = fresh_slapd
    proxy = proxy_factory(server)
    conn = opened(proxy.uri, root(server))
    recover = Recover(conn, proxy.uri, root(server))
    alice, dn = server.users["alice"], f"uid=cut,{server.people_dn}"
    writes: list[Callable[[AsyncLDAP], Awaitable[Any]]] = [
        lambda aio: aio.add(dn, person("cut")),
        lambda aio: aio.modify(alice.dn, [(ldap.MOD_REPLACE, "description", [b"x"])]),
        lambda aio: aio.modrdn(alice.dn, "uid=alice2"),
        lambda aio: aio.delete(alice.dn),
        lambda aio: aio.simple_bind(alice.dn, alice.password),
        lambda aio: aio.check_password(alice.dn, alice.password, PPOLICY),
    ]

    async def main() -> None:
        for write in writes:
            conn.reconnect(recover.server, ConnectSettings(timeout=TIMEOUT))
            conn.bind(*root(server))
            aio = AsyncLDAP(conn.native, timeout=TIMEOUT, recover=recover)
            assert proxy.cut() >= 1  # and the connection closed by reconnect, if not reaped
            with pytest.raises(ldap.SERVER_DOWN):
                await write(aio)
            assert recover.calls == 0 and conn.identity_changed()

    run(main())
    # Nothing was written behind our back.
    with server.admin() as admin:
        assert admin.search_s(alice.dn, ldap.SCOPE_BASE, attrlist=["description"]) == [
            (alice.dn, {})
        ]
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            admin.search_s(dn, ldap.SCOPE_BASE)


# -- password checks with a password policy ------------------------------------------


def test_check_password_returns_the_policy_answer(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    server, user = auth_slapd, policy_user
    conn = opened(server.ldap_uri)
    native = conn.native
    empty = PasswordPolicy()

    async def main() -> None:
        aio = AsyncLDAP(native, timeout=TIMEOUT)

        async def check(password: str, controls: list[Any] | None = PPOLICY) -> BindAnswer:
            before = server.binds()
            answer = await aio.check_password(user.dn, password, controls, pooled=True)
            assert server.binds() == before + 1  # one bind, never repeated
            assert not conn.identity_changed()
            return answer

        assert await check(user.password) == BindAnswer(policy=empty)
        assert native.who == user.dn and await aio.whoami() == f"dn:{user.dn}"
        assert await check(user.password, None) == BindAnswer()  # no control asked for
        answer = await check("wrong")
        assert isinstance(answer.refusal, ldap.INVALID_CREDENTIALS) and answer.policy == empty
        assert native.who is None and await aio.whoami() == ""
        assert server.failures(user.uid) == 1
        for _ in range(server.MAX_FAILURE - 1):
            await check("wrong")
        server.wait_locked(user.uid)
        answer = await check(user.password)
        assert isinstance(answer.refusal, ldap.INVALID_CREDENTIALS)
        assert answer.policy == PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)
        server.unlock(user.uid)
        server.expiring(user.uid)
        answer = await check(user.password)
        assert answer.refusal is None and answer.policy is not None
        expires_in = answer.policy.expires_in
        assert expires_in is not None
        assert server.EXPIRING_IN - 60 < expires_in <= server.EXPIRING_IN

    run(main())


def test_check_password_answers_as_the_sync_check(
    auth_slapd: AuthSlapd, policy_user: User, opened: Opener
) -> None:
    """The same policy states through both paths: the same answers."""
    server, user = auth_slapd, policy_user
    sync = opened(server.ldap_uri)
    aio = AsyncLDAP(opened(server.ldaps_uri, ca_file=server.ca_file).native, timeout=TIMEOUT)
    server.expire(user.uid, grace=2)
    grace = sync.check_password(user.dn, user.password)
    assert grace == BindAnswer(policy=PasswordPolicy(grace_logins_left=1))
    answer = run(aio.check_password(user.dn, user.password, PPOLICY, pooled=True))
    assert answer == BindAnswer(policy=PasswordPolicy(grace_logins_left=0))
    expired_sync = sync.check_password(user.dn, user.password)
    expired_async = run(aio.check_password(user.dn, user.password, PPOLICY, pooled=True))
    assert type(expired_async.refusal) is type(expired_sync.refusal)
    assert expired_async.policy == expired_sync.policy
    assert expired_async.policy == PasswordPolicy(error=PolicyError.PASSWORD_EXPIRED)
