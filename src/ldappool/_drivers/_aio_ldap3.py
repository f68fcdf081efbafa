"""Awaitable operations on an ldap3 Connection: each runs in the pool's worker threads.

ldap3 has no operation mode that an asyncio loop can drive (its ASYNC strategy is a
thread reading the socket), so an asyncio pool of ldap3 connections runs every
operation, as ldap3's own synchronous method, in a bounded set of worker threads
(``run``, the pool's): the event loop never blocks, at the cost of one thread hop per
operation. Results are what ldap3 returns (``True``/``False`` for most operations);
the entries, response and result are on the Connection, as with ldap3 itself:
``conn.entries``, ``conn.response``, ``conn.result`` here read ``conn.native``'s.

Reads lost with their connection are retried once through the pool, as in a
synchronous pool: the native class (``PooledConnection``) does it, in the worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import ldap3

from ldappool._drivers._shared import PAGED_RESULTS, WHOAMI

__all__ = ["AsyncLdap3"]

Run = Callable[..., Awaitable[Any]]


class AsyncLdap3:
    """An ldap3 Connection's operations, awaitable; ``native`` is the Connection.

    Each method takes the arguments of the ldap3 method of the same name and returns
    what it returns. An operation whose task is cancelled goes on in its thread; the
    pool then closes the connection (once the operation is over) instead of pooling it.
    """

    __slots__ = ("_run", "native")

    def __init__(self, native: ldap3.Connection, run: Run) -> None:
        self.native = native
        self._run = run

    def __repr__(self) -> str:
        return f"<AsyncLdap3 {self.native!r}>"

    # -- what ldap3 keeps on the Connection ------------------------------------------------

    @property
    def result(self) -> Any:
        """The last operation's result (``Connection.result``)."""
        return self.native.result

    @property
    def response(self) -> Any:
        """The last search's raw response (``Connection.response``)."""
        return self.native.response

    @property
    def entries(self) -> Any:
        """The last search's entries (``Connection.entries``)."""
        return self.native.entries

    # -- operations ---------------------------------------------------------------------

    async def search(self, search_base: str, search_filter: str, *args: Any, **kw: Any) -> Any:
        """``Connection.search``: True when entries were found (see ``entries``)."""
        return await self._call(self.native.search, search_base, search_filter, *args, **kw)

    async def search_pages(
        self,
        search_base: str,
        search_filter: str,
        search_scope: Any = ldap3.SUBTREE,
        *,
        page_size: int,
        **kw: Any,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A paged search (RFC 2696): one list of entries (ldap3's response items) per
        page. Only the first page is retried on a lost connection."""
        cookie: Any = None
        while True:
            await self._call(
                self.native.search,
                search_base,
                search_filter,
                search_scope,
                paged_size=page_size,
                paged_cookie=cookie,
                **kw,
            )
            found = [
                item for item in self.native.response or () if item.get("type") == "searchResEntry"
            ]
            cookie = _cookie(self.native.result)
            yield found
            if not cookie:
                return

    async def compare(self, dn: str, attribute: str, value: Any, *args: Any, **kw: Any) -> Any:
        """``Connection.compare``: True if the entry's attribute has the value."""
        return await self._call(self.native.compare, dn, attribute, value, *args, **kw)

    async def add(self, dn: str, *args: Any, **kw: Any) -> Any:
        """``Connection.add``."""
        return await self._call(self.native.add, dn, *args, **kw)

    async def modify(self, dn: str, changes: Any, *args: Any, **kw: Any) -> Any:
        """``Connection.modify``."""
        return await self._call(self.native.modify, dn, changes, *args, **kw)

    async def delete(self, dn: str, *args: Any, **kw: Any) -> Any:
        """``Connection.delete``."""
        return await self._call(self.native.delete, dn, *args, **kw)

    async def modify_dn(self, dn: str, relative_dn: str, *args: Any, **kw: Any) -> Any:
        """``Connection.modify_dn`` (rename, and with ``new_superior`` move)."""
        return await self._call(self.native.modify_dn, dn, relative_dn, *args, **kw)

    async def extended(self, request_name: str, *args: Any, **kw: Any) -> Any:
        """``Connection.extended``."""
        return await self._call(self.native.extended, request_name, *args, **kw)

    async def whoami(self) -> str:
        """The authzId (``"dn:..."``, ``""`` when anonymous): a WhoAmI round trip."""
        await self._call(self.native.extended, WHOAMI)
        value = (self.native.result or {}).get("responseValue")
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return str(value or "")

    async def bind(self, *args: Any, **kw: Any) -> Any:
        """``Connection.bind``: the holder's own bind (the pool will not pool the
        connection again: it no longer knows who it is bound as)."""
        return await self._call(self.native.bind, *args, **kw)

    async def rebind(self, *args: Any, **kw: Any) -> Any:
        """``Connection.rebind`` (the holder's, as :meth:`bind`)."""
        return await self._call(self.native.rebind, *args, **kw)

    async def _call(self, method: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await self._run(partial(method, *args, **kw))


def _cookie(result: Any) -> Any:
    """The paged results cookie of a search's result; empty at the last page."""
    controls = result.get("controls") if isinstance(result, dict) else None
    control = controls.get(PAGED_RESULTS) if isinstance(controls, dict) else None
    value = control.get("value") if isinstance(control, dict) else None
    return value.get("cookie") if isinstance(value, dict) else None
