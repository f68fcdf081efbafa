"""AsyncConnectionManager: the pool for asyncio programs.

The arguments, settings, policies and attributes are ConnectionManager's
(:class:`~ldappool._base_manager.BaseManager`), and so are the rules: the hard cap,
first come first served, liveness at checkout, failover, lockout-safe password checks,
fork safety. The pooling is the asyncio runner's
(:class:`~ldappool._async_pool.AsyncPool`): waiting for a slot never blocks the event
loop, and a cancelled task loses no slot.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ldappool._async_pool import AsyncPool
from ldappool._auth import AuthResult, forget_locals
from ldappool._base_manager import BaseManager
from ldappool._core.slots import Slot
from ldappool._dialer import Dialer
from ldappool._identity import Credentials
from ldappool._port import Sasl

__all__ = ["AsyncConnectionManager", "AsyncLease"]

#: Marks a lease that was entered (its checkout under way, or its block over).
_USED = Slot(0, -1)


class AsyncLease:
    """A single-use async context manager lending one bound connection.

    It carries who the connection is for until its block ends, then drops the
    credentials. The checkin does not await: a task cancelled in its block still gives
    the connection back (and a connection in the middle of an interrupted operation is
    closed, not pooled).
    """

    __slots__ = ("_credentials", "_pool", "_slot")

    def __init__(self, pool: AsyncPool, credentials: Credentials) -> None:
        self._pool = pool
        self._credentials: Credentials | None = credentials
        self._slot: Slot | None = None

    async def __aenter__(self) -> Any:
        credentials = self._credentials
        if self._slot is not None or credentials is None:
            raise RuntimeError("a connection() context can be entered only once")
        self._slot = _USED
        try:
            slot = await self._pool.checkout(credentials)
        except BaseException as error:
            # Never entered, so never exited: the password goes now, from this lease and
            # from each frame the error passed through (the error outlives them).
            self._credentials = None
            del credentials
            forget_locals(error)
            raise
        self._slot = slot
        return self._pool.lend(slot)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot, self._slot = self._slot, _USED
        self._credentials = None
        if slot is not None and slot is not _USED:
            self._pool.checkin(slot, exc)

    def __repr__(self) -> str:
        credentials = self._credentials
        who = credentials.who if credentials is not None else None
        return f"<AsyncLease bind={who!r}>"


class AsyncConnectionManager(BaseManager):
    """A pool of bound LDAP connections for asyncio: ``async with cm.connection() as conn``.

    Takes exactly :class:`ConnectionManager`'s arguments, checked the same way. What is
    lent is an object with awaitable operations: on python-ldap they run on the
    connection's socket with the event loop, on ldap3 in the pool's worker threads (see
    :doc:`asyncio`); ``conn.native`` is the driver's own connection object.
    """

    _pool: AsyncPool

    def _runner(self, dialer: Dialer, **options: Any) -> AsyncPool:
        return AsyncPool(dialer, **options)

    def connection(
        self, bind: str | None = None, passwd: str | None = None, *, sasl: Sasl | None = None
    ) -> AsyncLease:
        """An async context manager lending a bound connection's awaitable object.

        ``bind``, ``passwd`` and ``sasl`` as in :meth:`ConnectionManager.connection`. The
        wait for a slot (up to ``pool_timeout``) never blocks the event loop; a task
        cancelled while it waits, or in its block, loses no slot.
        """
        default = self._default
        if bind is None and passwd is None and sasl is None and default is not None:
            return AsyncLease(self._pool, default)
        return AsyncLease(self._pool, self._credentials(bind, passwd, sasl))

    async def authenticate(self, dn: str, password: str) -> AuthResult:
        """Check ``dn``'s ``password`` with exactly one bind, as
        :meth:`ConnectionManager.authenticate` does (same rules, same errors); on
        python-ldap the bind does not block the event loop, on ldap3 it runs in a worker
        thread."""
        try:
            self._check_password_args(dn, password)
            answer, server = await self._pool.authenticate(dn, password)
        except BaseException as error:  # no frame the error passed through keeps password
            del password
            forget_locals(error)
            raise
        del password  # this frame would be in a refusal's traceback
        return self._auth_result(answer, server, dn)

    async def open(self, wait: bool = True) -> None:
        """Open ``min_size`` connections of the default identity now (``wait=True``,
        raising BackendError or InvalidCredentialsError if one cannot be opened), or in
        the background; either way the upkeep thread starts (with ``min_size`` or
        ``keepalive``)."""
        await self._pool.open(wait)

    async def check(self) -> int:
        """Look at every idle connection now: its socket, then one WhoAmI round trip.
        Close the dead ones; return how many were closed."""
        return await self._pool.check()

    async def close(self) -> None:
        """Unbind every idle connection and lend no more; lent ones close when they come
        back. Waiting checkouts get PoolClosedError. Returns once the unbinds are done."""
        await self._pool.close()

    async def __aenter__(self) -> AsyncConnectionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
