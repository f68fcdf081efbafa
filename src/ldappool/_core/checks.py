"""The state machine's decisions about password checks: the gate, and their slots.

A part of :class:`~ldappool._core.machine.PoolMachine` (a mixin of it), in a file of its
own: ``authenticate()`` passes the gate (at most ``auth_size`` checks at once, the others
queued oldest first, :class:`~ldappool._core.gate.Gate`) and takes a slot in one call,
:meth:`CheckDecisions.begin_check`, and gives both back in one, :meth:`end_check`. The
same rules as the rest of the machine: called under the runner's lock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from ldappool._core.gate import Gate
from ldappool._core.slots import Slot, Step
from ldappool._core.waiting import Waiter
from ldappool._errors import MaxConnectionReachedError, PoolClosedError
from ldappool._identity import PASSWORD_CHECKS, Credentials
from ldappool._stats import Counters

__all__ = ["CheckDecisions"]

_USE, _LEND, _KEEP = Step.USE, Step.LEND, Step.KEEP
_CHECKS = PASSWORD_CHECKS.identity


class CheckDecisions:
    """PoolMachine's password-check events: ``begin_check``/``end_check``, the gate's."""

    # The machine's state these read and write (PoolMachine sets them).
    size: int
    auth_size: int | None
    pool_timeout: float | None
    closed: bool
    counts: Counters
    use_within: float
    reuse: bool
    quiet_for: float
    generation: int
    _gate: Gate
    _idle: dict[bytes, list[Slot]]
    _idle_lru: OrderedDict[int, Slot]
    _slots: list[Slot]
    _empty: list[Slot]
    _waiters: deque[Waiter]

    if TYPE_CHECKING:  # PoolMachine's, used here

        def request(self, credentials: Credentials, now: float) -> Slot | None: ...

        def checkin(
            self, slot: Slot, now: float, lost: bool = False, changed: bool = False
        ) -> Step: ...

    def enter_gate(self, waiter: Waiter) -> bool:
        """A password check asks to start: True if it may, else it is queued (``waiter``)."""
        if self.closed:
            raise PoolClosedError("this ConnectionManager is closed")
        if self._gate.enter(waiter):
            return True
        self.counts.waits += 1
        return False

    def begin_check(self, now: float) -> tuple[bool, Slot | None]:
        """A password check asks to start, in one step: ``(True, slot)`` past the gate
        with a slot lent to ``PASSWORD_CHECKS`` (its ``step`` says what to do first);
        ``(True, None)`` past the gate but the pool is full (check out as usual);
        ``(False, None)`` the gate is full: queue a waiter with :meth:`queue_gate`.

        A check that finds a free place takes it, even while others queue asleep
        (:mod:`~ldappool._core.gate` says why).
        """
        if self.closed:
            raise PoolClosedError("this ConnectionManager is closed")
        gate = self._gate
        if gate.inside >= gate.limit:
            return False, None
        gate.inside += 1
        return True, self._check_slot(now)

    def _check_slot(self, now: float) -> Slot | None:
        """A slot for a check past the gate, or None when the pool is full. The common
        case, the last connection a check used, fit, is :meth:`request`'s first branch
        written out: USE when that check ended moments ago."""
        bucket = self._idle.get(_CHECKS.key)
        if bucket and now < bucket[-1].fit_until:
            slot = bucket.pop()
            del self._idle_lru[slot.number]
            counts = self.counts
            counts.reused += 1
            counts.checkouts += 1
            slot.step = _USE if now - slot.last_used < self.use_within else _LEND
            slot.in_use = True
            slot.credentials = PASSWORD_CHECKS
            slot.lent_at = now
            return slot
        return self.request(PASSWORD_CHECKS, now)

    def queue_gate(self, waiter: Waiter) -> None:
        """Queue a password check behind the gate (after ``begin_check`` said so)."""
        self._gate.waiters.append(waiter)
        self.counts.waits += 1

    def end_check(self, slot: Slot, now: float, *, lost: bool, refused: bool = False) -> Step:
        """A password check is done: its slot checked in (CLOSE if the answer was lost),
        its place at the gate passed on; ``refused``: a wrong password, counted here.

        The common case (the slot goes back to the checks' bucket) is :meth:`checkin`'s,
        written out for the slots of checks: one frame fewer on every login.
        """
        counts = self.counts
        counts.password_checks += 1
        if refused:
            counts.invalid_credentials += 1
        expires = slot.expires_at
        bucket = self._idle.get(_CHECKS.key)
        if (
            lost
            or bucket is None
            or slot.identity is not _CHECKS
            or now >= expires
            or slot.purge
            or slot.generation != self.generation
            or self._waiters
            or self.closed
            or not self.reuse
            or len(self._slots) - len(self._empty) > self.size
        ):
            step = self.checkin(slot, now, lost)
        else:
            slot.credentials = None
            slot.last_used = now
            fit = now + self.quiet_for
            slot.fit_until = fit if fit < expires else expires
            slot.in_use = False
            bucket.append(slot)
            self._idle_lru[slot.number] = slot
            step = _KEEP
        gate = self._gate  # leave_gate(), inline
        gate.inside -= 1
        if gate.waiters:
            gate.serve(now)
        return step

    def at_gate(self, waiter: Waiter, now: float, *, timed_out: bool) -> tuple[bool, Slot | None]:
        """A queued password check woke up (or its time ran out): ``(True, slot)`` once
        past the gate, with a slot as :meth:`begin_check` gives one; ``(False, None)``:
        wait again (a running check took the free place first).

        Raises MaxConnectionReachedError when time is up, PoolClosedError if closed.
        """
        if self._gate.look(waiter, now):  # good even if time ran out meanwhile
            return True, self._check_slot(now)
        if waiter.error is not None:
            raise waiter.error
        if not timed_out:
            return False, None
        self._gate.cancel(waiter, now)
        self.counts.wait_timeouts += 1
        raise MaxConnectionReachedError(
            f"all {self._gate.limit} places for password checks (auth_size) stayed in use for "
            f"pool_timeout={self.pool_timeout}s; raise auth_size, size or pool_timeout"
        )

    def cancel_gate(self, waiter: Waiter, now: float) -> None:
        """A queued password check was interrupted: out of the queue, its place passed on."""
        self._gate.cancel(waiter, now)

    def leave_gate(self, now: float) -> None:
        """A password check that passed the gate is done (whatever its outcome)."""
        self.counts.password_checks += 1
        self._gate.leave(now)

    def set_auth_size(self, auth_size: int | None) -> None:
        """A new share for password checks (None: half of ``size``), in force now."""
        self.auth_size = auth_size
        self._gate.resize(self._auth_limit())

    def _auth_limit(self) -> int:
        share = self.auth_size if self.auth_size is not None else max(1, self.size // 2)
        return min(share, self.size)
