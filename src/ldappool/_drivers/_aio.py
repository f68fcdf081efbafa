"""Awaitable LDAP operations on a python-ldap connection, on the running event loop.

Each operation sends its request with libldap's asynchronous call (a message id back
at once) and awaits the answer on the loop (``_aio_wait.exchange``): no thread per
operation, so a thousand connections can wait on one loop. Every call into libldap
goes through the object's ``_ldap_call``, so its lock and StateConnector's "lost"
bookkeeping (SERVER_DOWN, TIMEOUT) apply as to the synchronous calls.

What the synchronous pool does, done here too:

- Reads (searches, a paged search's first page, compare, WhoAmI) lost with their
  connection (SERVER_DOWN, UNAVAILABLE) are run once more after ``recover``, as
  StateConnector's reads are after ``Owner.recover()``; writes and binds never are.
- No password is kept: a bind's ``cred`` goes to libldap and is dropped from the frame
  once sent (a refusal's traceback would otherwise keep it alive).
- Binds keep StateConnector's ``who``, ``connected`` and ``_connection_time``, and its
  "identity changed" flag (``_ldappool_rebound``), which the pool reads at checkin.

Needs a loop with ``add_reader`` (any selector loop; not Windows' proactor).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import ldap
import ldap.controls.libldap

from ldappool._drivers._aio_wait import Answer, Turn, exchange
from ldappool._drivers._python_ldap_auth import BOUND, policy
from ldappool._drivers._shared import PAGED_RESULTS, WHOAMI
from ldappool._drivers._state_connector import continues_paging
from ldappool._port import BindAnswer

__all__ = ["AsyncLDAP", "Found"]

#: A search's results as ``search_s`` returns them: ``(dn, {attribute: [bytes, ...]})``
#: per entry, and ``(None, [uri, ...])`` per search reference (OPT_REFERRALS is off).
Found = list[tuple[str | None, Any]]

#: A lost connection, as StateConnector's reads see it: worth ``recover`` and one more try.
_LOST = (ldap.SERVER_DOWN, ldap.UNAVAILABLE)
#: What PythonLdapDriver.classify calls DOWN or TIMEOUT: check_password raises these
#: (the server never judged the password); any other error is the server's refusal.
_TRANSPORT = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.BUSY, ldap.TIMEOUT)
#: search_ext's server-side time limit: none (the operation's ``timeout`` is the client's).
_NO_LIMIT = -1
_MAX_INT = 2**31 - 1  # RFC 4511's maxInt: the largest page size RFC 2696 can carry


class AsyncLDAP:
    """Awaitable operations on one python-ldap LDAPObject (a StateConnector) with the
    running loop.

    ``timeout``: seconds each operation may take from its request's sending (per page
    for a paged search); None: no limit. When it passes, the request is abandoned, the
    connection marked lost (the pool discards it) and ``ldap.TIMEOUT`` raised. A
    cancelled operation is abandoned and marks the connection lost the same way.

    ``recover``: awaited when a read lost its connection, to give the object a new,
    bound transport (e.g. ``PythonLdapConnection.reconnect`` then a bind); the read is
    then run once more. If it raises, the read's own error is raised. It runs in the
    operation's turn: it may call this object's methods from the same task.

    Operations run one at a time: a second one started meanwhile (``gather`` on one
    connection) waits for its turn, in order. ``search_pages`` holds the turn for each
    page, not between pages, so that its consumer may use the connection; ``search``
    with ``page_size`` holds it for all of them.
    Errors are python-ldap's exceptions, as the synchronous calls raise them.

    The connection should be open (bound) already: the first request on a connection
    never opened makes libldap connect (and for TLS, handshake) inside the call,
    blocking the loop for as long (up to the network timeout).
    """

    def __init__(
        self,
        native: Any,
        *,
        timeout: float | None = None,
        recover: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if not callable(getattr(native, "_ldap_call", None)):
            raise TypeError(
                f"native must be a python-ldap LDAPObject, not {type(native).__name__}"
            )
        if recover is not None and not callable(recover):
            raise TypeError("recover must be an async callable (or None)")
        self._native = native
        self._timeout = _checked_timeout(timeout)
        self._recover = recover
        self._turn = Turn()

    def __repr__(self) -> str:
        return f"<AsyncLDAP {self._native!r} timeout={self._timeout!r}>"

    @property
    def native(self) -> Any:
        """The LDAPObject itself, for anything else (synchronous calls)."""
        return self._native

    @property
    def timeout(self) -> float | None:
        """Seconds each operation may take; None: no limit."""
        return self._timeout

    # -- binds: never replayed ------------------------------------------------------

    async def simple_bind(
        self, who: str | None, cred: str | None, *, pooled: bool = False
    ) -> None:
        """Simple bind (anonymous when both are None); raises python-ldap's error.

        As StateConnector's ``simple_bind_s``: bound, ``connected`` and ``who`` are set.
        The bind counts as the holder's (the pool will not lend the connection again)
        unless ``pooled``: the pool's own, as ``PythonLdapConnection.bind``. A failed
        bind always counts (RFC 4511: it leaves the connection anonymous).
        """
        state = self._native.__dict__
        async with self._turn:
            state["_ldappool_rebound"] = True  # until it succeeds
            msgid = self._send("simple_bind", who, cred, None, None)
            del cred
            await exchange(self._native, msgid, self._timeout)
        _bound(state, who, pooled)

    async def check_password(
        self, who: str, cred: str, controls: list[Any] | None, *, pooled: bool = False
    ) -> BindAnswer:
        """One simple bind with ``controls`` (the password policy request control, or
        None); a refusal is returned, transport errors (DOWN, TIMEOUT) are raised.

        As ``PythonLdapConnection.check_password``: the policy response control is read
        raw (from the result, or from a refusal's ``ctrls``) and decoded; bound as
        ``who`` after success, anonymous (``who`` None) after a refusal. ``controls``:
        ``(oid, criticality, value)`` tuples or python-ldap RequestControl objects.
        ``pooled``: the pool's own check (the connection may be lent again as it was
        checked out for); otherwise the holder's, which the pool notices at checkin.
        """
        native = self._native
        state = native.__dict__
        async with self._turn:
            try:
                msgid = self._send("simple_bind", who, cred, _control_tuples(controls), None)
                del cred
                answer = (await exchange(native, msgid, self._timeout))[-1]
            except ldap.LDAPError as error:
                if isinstance(error, _TRANSPORT):
                    state["_ldappool_rebound"] = True  # as simple_bind would have noted
                    raise
                details = error.args[0] if error.args else None
                refused = details.get("ctrls") if isinstance(details, dict) else None
                state["who"], state["_ldappool_rebound"] = None, not pooled
                return BindAnswer(refusal=error.with_traceback(None), policy=policy(refused))
        _bound(state, who, pooled)
        return BindAnswer(policy=policy(answer[3])) if answer[3] else BOUND

    # -- reads: once more after recover ------------------------------------------------

    async def whoami(self) -> str:
        """The authzId (``"dn:..."``, ``""`` when anonymous), as ``whoami_s()``."""
        async with self._turn:
            answer = (await self._read("extop", WHOAMI, None, None, None))[-1]
        value = answer[5]
        return value.decode("utf-8") if value else ""

    async def search(
        self,
        base: str,
        scope: int,
        filterstr: str | None = "(objectClass=*)",
        attrlist: list[str] | None = None,
        attrsonly: int = 0,
        serverctrls: list[Any] | None = None,
        *,
        sizelimit: int = 0,
        page_size: int | None = None,
    ) -> Found:
        """A search, its results as ``search_ext_s`` returns them (search references
        included, as ``(None, [uri, ...])``).

        ``page_size``: fetch every page of a paged search (RFC 2696) and return them
        together. A search with a paged results cookie in ``serverctrls`` (a page after
        the first, meaningless on another connection) is not retried.
        """
        if page_size is not None:
            _checked_page_size(page_size)
            found: Found = []
            pages = self._pages(
                base, scope, filterstr, attrlist, attrsonly, serverctrls, page_size, sizelimit
            )
            async with self._turn:  # every page: no other paged search in between
                async for page in pages:
                    found.extend(page)
            return found
        args = (base, scope, filterstr or "(objectClass=*)", attrlist, attrsonly)
        controls = _control_tuples(serverctrls)
        async with self._turn:
            run = self._answer if continues_paging(serverctrls) else self._read
            answers = await run("search_ext", *args, controls, None, _NO_LIMIT, sizelimit)
        return _entries(answers)

    def search_pages(
        self,
        base: str,
        scope: int,
        filterstr: str | None = "(objectClass=*)",
        attrlist: list[str] | None = None,
        *,
        page_size: int,
        attrsonly: int = 0,
        serverctrls: list[Any] | None = None,
        sizelimit: int = 0,
    ) -> AsyncIterator[Found]:
        """A paged search (RFC 2696): one list per page, as the server sends them.

        The cookie stays with this connection: only the first page is retried after
        ``recover``. The turn is held for each page, not between pages: the consumer
        (or another task) may use the connection meanwhile, but another paged search
        in between ends this one on servers that keep one paging state per connection
        (OpenLDAP). A consumer that stops early leaves that state to the next paged
        search or the connection's end. ``page_size`` is checked now, the rest when
        iterating.
        """
        _checked_page_size(page_size)
        return self._pages(
            base, scope, filterstr, attrlist, attrsonly, serverctrls, page_size, sizelimit
        )

    async def compare(self, dn: str, attr: str, value: bytes) -> bool:
        """True if the entry's ``attr`` has ``value`` (COMPARE_TRUE), else False."""
        async with self._turn:
            try:
                answers = await self._read("compare_ext", dn, attr, value, None, None)
            except ldap.COMPARE_TRUE:
                return True
            except ldap.COMPARE_FALSE:
                return False
        raise ldap.PROTOCOL_ERROR(f"Compare operation returned wrong result: {answers[-1]!r}")

    async def extended(
        self, oid: str, value: bytes | None = None
    ) -> tuple[str | None, bytes | None]:
        """An extended operation: ``(response name, response value)``, as ``extop_s``.

        WhoAmI (a read) is retried after ``recover``; any other is never replayed.
        """
        async with self._turn:
            run = self._read if oid == WHOAMI else self._answer
            answer = (await run("extop", oid, value, None, None))[-1]
        return answer[4], answer[5]

    # -- writes: never replayed ---------------------------------------------------------

    async def add(self, dn: str, modlist: list[tuple[str, list[bytes]]]) -> None:
        """Add an entry (``modlist`` as ``ldap.modlist.addModlist`` makes it)."""
        async with self._turn:
            await self._answer("add_ext", dn, modlist, None, None)

    async def modify(self, dn: str, modlist: list[tuple[int, str, Any]]) -> None:
        """Modify an entry: ``(op, attribute, values)`` items, as ``modify_s``."""
        async with self._turn:
            await self._answer("modify_ext", dn, modlist, None, None)

    async def delete(self, dn: str) -> None:
        """Delete an entry."""
        async with self._turn:
            await self._answer("delete_ext", dn, None, None)

    async def modrdn(
        self, dn: str, newrdn: str, delold: bool = True, newsuperior: str | None = None
    ) -> None:
        """Rename (and with ``newsuperior``, move) an entry, as ``rename_s``."""
        async with self._turn:
            await self._answer("rename", dn, newrdn, newsuperior, int(bool(delold)), None, None)

    # -- the machinery ----------------------------------------------------------------

    def _send(self, name: str, *args: Any) -> int:
        """Send a request with the handle's method ``name`` (the current transport's:
        ``recover`` replaces it): its message id."""
        native = self._native
        msgid: int = native._ldap_call(getattr(native._l, name), *args)
        return msgid

    async def _answer(self, name: str, *args: Any) -> list[Answer]:
        return await exchange(self._native, self._send(name, *args), self._timeout)

    async def _read(self, name: str, *args: Any) -> list[Answer]:
        """``_answer`` for a read: once more after ``recover`` if the connection was lost."""
        try:
            return await self._answer(name, *args)
        except _LOST as lost:
            if self._recover is None:
                raise
            try:
                await self._recover()
            except Exception:
                raise lost from None
        return await self._answer(name, *args)

    async def _pages(
        self,
        base: str,
        scope: int,
        filterstr: str | None,
        attrlist: list[str] | None,
        attrsonly: int,
        serverctrls: list[Any] | None,
        page_size: int,
        sizelimit: int,
    ) -> AsyncIterator[Found]:
        controls = _control_tuples(serverctrls) or []
        if any(control[0] == PAGED_RESULTS for control in controls):
            raise ValueError("page_size and a paged results control in serverctrls: one only")
        args = (base, scope, filterstr or "(objectClass=*)", attrlist, attrsonly)
        cookie = b""
        while True:
            page = ldap.controls.libldap.SimplePagedResultsControl(True, page_size, cookie)
            request = [*controls, (PAGED_RESULTS, True, page.encodeControlValue())]
            async with self._turn:  # not across the yield: the consumer may use us too
                run = self._answer if cookie else self._read
                answers = await run("search_ext", *args, request, None, _NO_LIMIT, sizelimit)
            cookie = _cookie(answers[-1][3])
            yield _entries(answers)
            if not cookie:
                return


def _bound(state: dict[str, Any], who: str | None, pooled: bool) -> None:
    """A successful bind's state, as StateConnector's ``simple_bind_s`` keeps it."""
    state["_ldappool_rebound"] = not pooled
    state["connected"], state["who"] = True, who
    if state.get("_connection_time") is None:
        state["_connection_time"] = time.time()


def _checked_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")
    return float(timeout)


def _checked_page_size(page_size: object) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise TypeError(f"page_size must be an int, not {page_size!r}")
    if not 0 < page_size <= _MAX_INT:
        raise ValueError(f"page_size must be between 1 and {_MAX_INT}, not {page_size}")


def _control_tuples(controls: list[Any] | None) -> list[tuple[str, bool, bytes | None]] | None:
    """libldap's ``(oid, criticality, value)`` tuples from tuples or RequestControls."""
    if controls is None:
        return None
    return [
        control
        if isinstance(control, tuple)
        else (control.controlType, control.criticality, control.encodeControlValue())
        for control in controls
    ]


def _entries(answers: list[Answer]) -> Found:
    """The entries and references among a search's messages (the result has none)."""
    return [item for answer in answers for item in answer[1] or ()]


def _cookie(controls: Any) -> bytes:
    """The paged results cookie among a result's raw controls; b"" at the last page (or
    when the server ignored the control)."""
    for oid, _criticality, value in controls or ():
        if oid == PAGED_RESULTS:
            control = ldap.controls.libldap.SimplePagedResultsControl()
            control.decodeControlValue(value)
            return bytes(control.cookie or b"")
    return b""
