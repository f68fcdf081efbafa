"""One checkout: the object behind ``with cm.connection() as conn``."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from ldappool.identity import Identity
from ldappool.slots import Slot

if TYPE_CHECKING:
    from ldappool.pool import Pool

__all__ = ["Lease"]

#: Marks a lease whose block has ended: a lease is entered once.
_RETURNED = Slot(0, -1)


class Lease:
    """A single-use context manager lending one bound connection.

    It carries who the connection is for. The password stays here only while the
    connection is lent: the pool's read recovery may need it to bind a new connection
    under the holder's object.
    """

    __slots__ = ("_pool", "_slot", "cred", "identity", "who")

    def __init__(self, pool: Pool, identity: Identity, who: str | None, cred: str | None) -> None:
        self._pool = pool
        self.identity = identity
        self.who = who
        self.cred = cred
        self._slot: Slot | None = None

    def __enter__(self) -> Any:
        if self._slot is not None:
            raise RuntimeError("a connection() context can be entered only once")
        slot = self._slot = self._pool.checkout(self)
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
            self.cred = None
            self._pool.checkin(slot, exc)

    def __repr__(self) -> str:
        return f"<Lease bind={self.who!r}>"
