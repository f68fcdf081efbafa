"""The asyncio runner's parts: how a task waits, and what runs in the worker threads.

- :class:`FutureWaiter`: a queued checkout awaiting a future that :meth:`wake` resolves
  without blocking (directly on the loop's thread, with ``call_soon_threadsafe`` from a
  worker or the upkeep thread);
- :class:`Workers`: the pool's few threads, where the blocking steps run (connect, TLS,
  bind, ping, unbind), and the closes under way;
- :class:`Jobs`: the blocking calls of one lent connection in those threads, and
  whether a caller gave up on one midway;
- :class:`Holdings`: what is lent for each connection (the driver's awaitable object,
  or :class:`AsyncNative` when the driver offers nothing better), made once per
  connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ldappool._clock import Clock
from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot
from ldappool._core.waiting import Waiter
from ldappool._events import Events
from ldappool._identity import Credentials
from ldappool._port import Connection, Driver
from ldappool._slot_io import SlotIO, SlotOwner

__all__ = ["AsyncNative", "FutureWaiter", "Holdings", "Jobs", "Workers"]


class FutureWaiter(Waiter):
    """A waiter that awaits a future, resolved by wake(), which never blocks: directly on
    the loop's thread, through ``call_soon_threadsafe`` from any other."""

    __slots__ = ("_future", "_loop", "_thread")

    def __init__(self, credentials: Credentials, since: float) -> None:
        super().__init__(credentials, since)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._future: asyncio.Future[None] = self._loop.create_future()

    def wake(self) -> None:
        if threading.get_ident() == self._thread:
            self._resolve()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, deadline: float) -> bool:
        """Until woken (True) or ``deadline`` (a ``time.monotonic()``, False). Re-arms.

        A cancellation leaves the future alone: the machine may still wake it.
        """
        future = self._future
        if not future.done():
            if deadline == math.inf:
                await asyncio.shield(future)
            else:
                left = deadline - time.monotonic()
                if left > 0:
                    await asyncio.wait((future,), timeout=left)
                if not future.done():
                    return False
        self._future = self._loop.create_future()
        return True


class Workers:
    """The worker threads of one pool (at most ``count``, made on first need), and the
    closes running in them.

    A slot's connection is unbound here, then the slot freed: only once the server has
    been told, so ``size`` holds as the server counts. Once the pool is closed and no
    slot is occupied any more, the threads are let go.
    """

    def __init__(
        self,
        machine: PoolMachine,
        io: SlotIO,
        events: Events,
        clock: Clock,
        count: int,
        lent: dict[int, tuple[Connection, Any, Jobs]],
    ) -> None:
        self._machine = machine
        self._io = io  # its ``lock`` is the pool's (replaced in a forked child)
        self._events = events
        self._now = clock.monotonic
        self._count = count
        #: The pool's record of what is lent per slot number: forgotten at close.
        self._lent = lent
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closing: set[concurrent.futures.Future[None]] = set()

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads (made anew after a fork, or after they were let go)."""
        with self._io.lock:
            executor = self._executor
            if executor is None:
                executor = self._executor = concurrent.futures.ThreadPoolExecutor(
                    self._count, thread_name_prefix="ldappool-aio"
                )
            return executor

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Await a blocking call in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor(), fn, *args)

    def close_after(self, slot: Slot, jobs: Jobs | None) -> None:
        """Close a slot's connection (CLOSE) once the call running on it, if any, is over."""
        pending = jobs.pending if jobs is not None else None
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _job: self.close_later(slot))
        else:
            self.close_later(slot)

    def close_later(self, slot: Slot) -> None:
        """Close a slot's connection (CLOSE) in a worker thread."""
        job = self.executor().submit(self.close, slot)
        self._closing.add(job)
        job.add_done_callback(self._closing.discard)

    def close(self, slot: Slot) -> None:
        """Unbind (blocking), then free the slot; let the threads go if all is over."""
        conn: Connection | None = slot.conn
        server, identity = slot.server, slot.identity
        self._lent.pop(slot.number, None)
        if conn is not None:
            conn.close()  # never raises
        with self._io.lock:
            self._machine.closed_conn(slot, self._now())
            executor = self._let_go()
        if executor is not None:
            executor.shutdown(wait=False)  # (maybe this very thread's: it ends after)
        if conn is not None:
            self._events.closed(slot.number, server, identity.dn if identity else None, slot.why)

    async def settle(self) -> None:
        """Return once every close started so far is done."""
        while self._closing:
            pending = [asyncio.wrap_future(job) for job in list(self._closing)]
            await asyncio.gather(*pending, return_exceptions=True)

    def let_go(self) -> None:
        """Shut the threads down if the pool is closed and nothing is occupied."""
        with self._io.lock:
            executor = self._let_go()
        if executor is not None:
            executor.shutdown(wait=False)

    def _let_go(self) -> concurrent.futures.ThreadPoolExecutor | None:
        """(Lock held.) The executor to shut down, if its time has come."""
        if not self._machine.closed or self._machine.occupied:
            return None
        executor, self._executor = self._executor, None
        return executor

    def forked(self) -> None:
        """In a forked child: the parent's threads do not exist here."""
        self._executor = None
        self._closing = set()


class Jobs:
    """The blocking calls of one lent connection, run in the pool's worker threads.

    Remembers the last one, and whether its caller stopped waiting for it (cancelled)
    while it ran: that connection may be in the middle of a request, so it is not pooled
    again, and it is closed only once the call is over.
    """

    __slots__ = ("_workers", "interrupted", "pending")

    def __init__(self, workers: Workers) -> None:
        self._workers = workers
        self.interrupted = False
        self.pending: asyncio.Future[Any] | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        job = asyncio.get_running_loop().run_in_executor(self._workers.executor(), fn, *args)
        self.pending = job
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            if not job.done():
                self.interrupted = True
            raise


class AsyncNative:
    """The generic lent object (a driver without ``aio``): the native connection's
    methods, each awaited in the pool's worker threads; ``native`` is the object."""

    __slots__ = ("_run", "native")

    def __init__(self, native: Any, run: Jobs) -> None:
        self.native = native
        self._run = run

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.native, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(partial(method, *args, **kwargs))

        return call

    def __repr__(self) -> str:
        return f"<AsyncNative {self.native!r}>"


class Holdings:
    """What is lent for each slot's connection, made the first time it is lent.

    The driver's ``aio`` object if it has one (its ``recover`` runs the pool's read
    recovery in a worker thread), else an :class:`AsyncNative`; with the connection's
    :class:`Jobs`. Kept per slot number until the connection is closed.
    """

    def __init__(
        self,
        driver: Driver,
        io: SlotIO,
        workers: Workers,
        timeout: float | None,
        lent: dict[int, tuple[Connection, Any, Jobs]],
    ) -> None:
        self._aio = getattr(driver, "aio", None)
        self._io = io
        self._workers = workers
        self._timeout = timeout
        #: Shared with the workers, which forget a connection once closed.
        self.lent = lent

    def lend(self, slot: Slot) -> Any:
        """What a checkout of ``slot`` gets: its connection's awaitable object."""
        return self.held(slot)[1]

    def jobs(self, slot: Slot) -> Jobs | None:
        """The calls of the slot's connection, if it was lent."""
        found = self.lent.get(slot.number)
        return found[2] if found is not None and found[0] is slot.conn else None

    def held(self, slot: Slot) -> tuple[Connection, Any, Jobs]:
        """The slot's connection, what is lent for it, and its calls."""
        conn = slot.conn
        found = self.lent.get(slot.number)
        if found is not None and found[0] is conn:
            return found
        assert conn is not None
        jobs = Jobs(self._workers)
        owner = SlotOwner(self._io, slot, conn)

        async def recover() -> None:
            await jobs(owner.recover)

        aio = self._aio
        lent = aio(conn, timeout=self._timeout, recover=recover, run=jobs) if aio else None
        found = self.lent[slot.number] = (conn, lent or AsyncNative(conn.native, jobs), jobs)
        return found
