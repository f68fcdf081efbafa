"""One checkout: the object behind ``with cm.connection() as conn``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from ldappool._auth import forget_locals
from ldappool._core.slots import Slot
from ldappool._identity import Credentials

__all__ = ["Lease", "Lender"]


class Lender(Protocol):
    """The runner a lease checks out from (``ThreadedPool``)."""

    def checkout(self, credentials: Credentials) -> Slot: ...

    def checkin(self, slot: Slot, error: BaseException | None) -> None: ...


#: Marks a lease whose block has ended: a lease is entered once.
_RETURNED = Slot(0, -1)


class Lease:
    """A single-use context manager lending one bound connection.

    It carries who the connection is for (a frozen :class:`Credentials`) until its block
    ends: then it drops them, and with them the password.
    """

    __slots__ = ("_credentials", "_lender", "_slot")

    def __init__(self, lender: Lender, credentials: Credentials) -> None:
        self._lender = lender
        self._credentials: Credentials | None = credentials
        self._slot: Slot | None = None

    def __enter__(self) -> Any:
        credentials = self._credentials
        if self._slot is not None or credentials is None:
            raise RuntimeError("a connection() context can be entered only once")
        try:
            slot = self._slot = self._lender.checkout(credentials)
        except BaseException as error:
            # Never entered, so never exited: the password goes now, from this lease and
            # from each frame the error passed through (the error outlives them).
            self._credentials = None
            del credentials
            forget_locals(error)
            raise
        return slot.native

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is not None and slot is not _RETURNED:
            self._slot = _RETURNED
            self._credentials = None
            self._lender.checkin(slot, exc)

    def __repr__(self) -> str:
        credentials = self._credentials
        who = credentials.who if credentials is not None else None
        return f"<Lease bind={who!r}>"
