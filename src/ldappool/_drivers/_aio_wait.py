"""Awaiting one python-ldap request's answer on the running event loop: no thread.

libldap's asynchronous calls send a request and return its message id; ``result4``
with a zero timeout then polls for the answer without blocking. In between, the task
waits on the loop: a reader on the connection's socket, or the operation's deadline,
wakes it. "The socket is readable" is not the same as "an answer is ready", both ways:

- libldap may hold complete messages it has already read (a search entry read along
  with the one asked for), and over TLS the TLS layer may hold decrypted bytes that
  the socket no longer shows (a record carrying more than the message read): the
  socket stays quiet while answers wait. So the socket is only waited on after a poll
  said nothing is ready: one poll before the first wait, and after each wake, polls
  until nothing is ready.
- The socket may be readable with nothing complete (half a message, an answer to an
  abandoned request, which libldap drops): the poll reads it, says "nothing", and the
  task waits again. The socket is level-triggered, so no wake is ever lost.

A request given up (the deadline passed, or the awaiting task was cancelled) is
abandoned and its connection marked lost: the server may still be working on it, or
its answer be on the way, so the pool must not lend the connection again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ldap

__all__ = ["Answer", "Turn", "exchange", "give_up"]

#: One message as ``_l.result4(msgid, 0, 0, 0, 0, 1)`` returns it: (type, data, msgid,
#: controls, extended response name, extended response value); the controls are the
#: raw ``(oid, criticality, value)`` tuples.
Answer = tuple[Any, Any, Any, Any, Any, Any]

#: Messages that are not the last of an answer: search entries and references,
#: intermediate responses. Any other type is the operation's result.
_PARTIAL = frozenset({ldap.RES_SEARCH_ENTRY, ldap.RES_SEARCH_REFERENCE, ldap.RES_INTERMEDIATE})
#: Messages drained in a row before the other tasks get a turn: a search whose entries
#: have piled up must not hold the loop for the whole of it.
BATCH = 64


class _Wake:
    """What the socket's reader and the deadline's timer call: they end the wait."""

    __slots__ = ("expired", "future")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.expired = False

    def ready(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    def expire(self) -> None:
        self.expired = True
        self.ready()


async def exchange(native: Any, msgid: int, timeout: float | None) -> list[Answer]:
    """Every message answering ``msgid``, in order, the operation's result last.

    An error result raises python-ldap's exception, as ``result4`` does (for a search,
    after its entries: they are dropped, as ``search_s`` drops them). ``timeout``
    (seconds; None: no limit) bounds the whole answer: when it passes, the request is
    abandoned, the connection marked lost and ``ldap.TIMEOUT`` raised. A cancelled
    task abandons it the same way before the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    call, result4 = native._ldap_call, native._l.result4
    wake = _Wake()
    timer = None if timeout is None else loop.call_later(timeout, wake.expire)
    fd = -1
    answers: list[Answer] = []
    try:
        while True:
            answer: Answer = call(result4, msgid, 0, 0, 0, 0, 1)
            kind = answer[0]
            if kind is None:  # nothing complete here nor in libldap: wait for the socket
                if wake.expired:
                    raise _given_up(native, msgid)
                if fd < 0:
                    fd = _socket(native, msgid)
                wake.future = loop.create_future()
                # Registered for this wait only: removing it also cancels a wake the
                # loop queued before this task drained the socket (else a second poll).
                loop.add_reader(fd, wake.ready)
                try:
                    await wake.future
                finally:
                    loop.remove_reader(fd)
                continue
            answers.append(answer)
            if kind not in _PARTIAL:
                return answers
            if wake.expired:  # a search still streaming when time is up
                raise _given_up(native, msgid)
            if len(answers) % BATCH == 0:
                await asyncio.sleep(0)
    except ldap.LDAPError:
        raise  # an answer (the operation is over), a dead link, or our own TIMEOUT
    except BaseException:  # cancelled (or worse) with the answer still to come
        give_up(native, msgid)
        raise
    finally:
        if timer is not None:
            timer.cancel()


def give_up(native: Any, msgid: int) -> None:
    """Abandon ``msgid`` (libldap drops its answer if it comes) and mark the connection
    lost: the server may still be working on it. Never raises."""
    native.__dict__["_ldappool_lost"] = True
    with contextlib.suppress(ldap.LDAPError):
        native._ldap_call(native._l.abandon_ext, msgid, None, None)


def _given_up(native: Any, msgid: int) -> ldap.TIMEOUT:
    give_up(native, msgid)
    return ldap.TIMEOUT({"desc": "Timed out", "msgid": msgid})


def _socket(native: Any, msgid: int) -> int:
    """The connection's socket; SERVER_DOWN (the connection marked lost) if it has none:
    libldap closes it after a failure."""
    fd = native._ldap_call(native._l.get_option, ldap.OPT_DESC)
    if isinstance(fd, int) and fd >= 0:
        return fd
    give_up(native, msgid)
    raise ldap.SERVER_DOWN({"desc": "Can't contact LDAP server", "msgid": msgid})


class Turn:
    """One operation at a time on a connection: an asyncio.Lock, which the task that
    holds it passes through again, so that a ``recover`` run under it may bind through
    the same connection object (the lock is not re-entrant).

    Whichever loop takes it first when contended owns it, as any asyncio.Lock.
    """

    __slots__ = ("_depth", "_holder", "_lock")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        self._depth = 0

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            self._depth += 1
            return
        await self._lock.acquire()
        self._holder = task

    async def __aexit__(self, *exc_info: object) -> None:
        if self._depth:
            self._depth -= 1
            return
        self._holder = None
        self._lock.release()
