"""The sans-I/O pool state machine, driven event by event: no driver, no threads, no clock.

Every event takes ``now``; the tests play the runner's part (``_threaded``): they carry
out each slot's step by reporting an outcome (opened, rebound, discard, failed), check
slots in, close what the machine says to CLOSE, and stand in for blocked threads with
waiters that record their wake-ups.
"""

from __future__ import annotations

import math
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ldappool._core.machine import PoolMachine
from ldappool._core.slots import Slot, Step
from ldappool._core.waiting import Waiter
from ldappool._errors import MaxConnectionReachedError, PoolClosedError
from ldappool._identity import PASSWORD_CHECKS, Credentials, Identity, IdentityHasher
from ldappool._policies import LifetimePolicy
from ldappool._port import Connection, Server

HASHER = IdentityHasher()
SERVER = Server("ldap://a", "ldap", "a", None)


def credentials(dn: str | None, password: str | None) -> Credentials:
    return Credentials(HASHER.identity(dn, password), dn, password)


ALICE = credentials("cn=alice", "alice-pw")
BOB = credentials("cn=bob", "bob-pw")
CAROL = credentials("cn=carol", "carol-pw")
ANONYMOUS = credentials(None, None)


class FakeConn:
    """All the machine reads of a connection: its ``native`` object."""

    def __init__(self) -> None:
        self.native = object()


def new_conn() -> Connection:
    return cast("Connection", FakeConn())


class RecordingWaiter(Waiter):
    """A checkout queued on a full pool; counts its wake-ups instead of blocking."""

    __slots__ = ("wakes",)

    def __init__(self, credentials: Credentials, since: float) -> None:
        super().__init__(credentials, since)
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


def lifetime(
    max_lifetime: float | None = 600.0,
    max_idle: float | None = None,
    ping_after: float | None = None,
) -> LifetimePolicy:
    return LifetimePolicy(
        max_lifetime=max_lifetime, max_idle=max_idle, ping_after=ping_after, jitter=0.0
    )


def machine(
    size: int = 2,
    *,
    handoff_after: float = 0.05,
    policy: LifetimePolicy | None = None,
    reuse: bool = True,
) -> PoolMachine:
    return PoolMachine(
        size=size,
        lifetime=policy or lifetime(),
        reuse=reuse,
        handoff_after=handoff_after,
        pool_timeout=1.0,
    )


def carry_out(m: PoolMachine, slot: Slot, now: float) -> Slot:
    """Do what the slot's step says, successfully, as the runner would."""
    if slot.step is Step.REPLACE:
        assert m.discard(slot) is not None
    if slot.step is Step.OPEN:
        m.opened(slot, new_conn(), SERVER, now)
    elif slot.step is Step.REBIND:
        m.rebound(slot)
    assert slot.step in (Step.USE, Step.LEND, Step.PING)
    return slot


def lend(m: PoolMachine, who: Credentials, now: float) -> Slot:
    """A checkout that finds a slot at once, its step carried out."""
    slot = m.request(who, now)
    assert slot is not None
    return carry_out(m, slot, now)


def wait(m: PoolMachine, who: Credentials, now: float) -> RecordingWaiter:
    """A checkout on a full pool: request says None, so it queues."""
    assert m.request(who, now) is None
    waiter = RecordingWaiter(who, now)
    m.enqueue(waiter)
    return waiter


def close(m: PoolMachine, slot: Slot, now: float) -> None:
    """The runner closing a slot the machine said to CLOSE."""
    assert slot.step is Step.CLOSE
    m.closed_conn(slot, now)


def stats(m: PoolMachine) -> tuple[int, int, int, int]:
    """(connections, in_use, idle, waiting) as snapshot() reports them."""
    s = m.snapshot()[1]
    return s.connections, s.in_use, s.idle, s.waiting


# -- checkout and reuse ------------------------------------------------------------------


def test_request_on_an_empty_pool_opens_a_new_slot() -> None:
    m = machine()
    slot = m.request(ALICE, 1.0)
    assert slot is not None
    assert (slot.number, slot.step, slot.in_use) == (1, Step.OPEN, True)
    assert slot.credentials is ALICE
    assert slot.lent_at == 1.0
    assert m.counts.checkouts == 1
    assert stats(m) == (1, 1, 0, 0)  # a connection being opened counts already
    assert m.occupied == 1


def test_checked_in_connection_is_lent_again_to_the_same_identity() -> None:
    m = machine()
    slot = m.request(ALICE, 0.0)
    assert slot is not None
    conn = new_conn()
    m.opened(slot, conn, SERVER, 0.0)
    assert (slot.step, slot.identity, slot.conn) == (Step.LEND, ALICE.identity, conn)
    assert m.checkin(slot, 1.0) is Step.KEEP
    assert (slot.in_use, slot.credentials) == (False, None)
    assert stats(m) == (1, 0, 1, 0)

    again = m.request(credentials("cn=alice", "alice-pw"), 2.0)
    assert again is slot
    assert again.step is Step.LEND
    assert again.conn is conn
    assert (m.counts.checkouts, m.counts.reused, m.counts.opened) == (2, 1, 1)
    assert stats(m) == (1, 1, 0, 0)


def test_snapshot_views_show_the_occupied_slots() -> None:
    m = machine(size=3)
    alice = lend(m, ALICE, 0.0)
    anonymous = lend(m, ANONYMOUS, 0.0)
    m.checkin(anonymous, 1.0)
    views, _ = m.snapshot()
    assert [(v.number, v.connected, v.in_use, v.uri, v.dn, v.anonymous) for v in views] == [
        (alice.number, True, True, "ldap://a", "cn=alice", False),
        (anonymous.number, True, False, "ldap://a", None, True),
    ]


def test_same_identity_gets_its_most_recently_used_connection() -> None:
    m = machine(size=2)
    first, second = lend(m, ALICE, 0.0), lend(m, ALICE, 0.0)
    m.checkin(first, 1.0)
    m.checkin(second, 2.0)
    assert m.request(ALICE, 3.0) is second


def test_another_identity_gets_a_new_slot_while_there_is_room() -> None:
    m = machine(size=2)
    alice = lend(m, ALICE, 0.0)
    m.checkin(alice, 1.0)
    bob = m.request(BOB, 2.0)
    assert bob is not None and bob is not alice
    assert (bob.number, bob.step) == (2, Step.OPEN)
    assert stats(m) == (2, 1, 1, 0)


def test_full_pool_of_others_rebinds_the_least_recently_used_connection() -> None:
    m = machine(size=2)
    alice, bob = lend(m, ALICE, 0.0), lend(m, BOB, 0.0)
    m.checkin(alice, 1.0)
    m.checkin(bob, 2.0)
    carol = m.request(CAROL, 3.0)
    assert carol is alice
    assert carol.step is Step.REBIND
    assert carol.identity == ALICE.identity  # not rebound yet
    assert carol.credentials is CAROL
    assert m.counts.reused == 0
    m.rebound(carol)
    assert (carol.identity, carol.step, m.counts.rebinds) == (CAROL.identity, Step.LEND, 1)
    m.checkin(carol, 4.0)
    assert m.request(CAROL, 5.0) is carol  # pooled under its new identity
    assert m.request(ALICE, 5.0) is bob  # alice's is gone: bob's is the one left
    assert bob.step is Step.REBIND


def test_expired_connection_of_another_identity_is_replaced_not_rebound() -> None:
    m = machine(size=1, policy=lifetime(max_lifetime=10.0))
    alice = lend(m, ALICE, 0.0)
    m.checkin(alice, 1.0)
    slot = m.request(BOB, 11.0)
    assert slot is alice
    assert slot.step is Step.REPLACE
    assert m.counts.expired == 1


# -- the cap and the waiters ---------------------------------------------------------------


def test_full_pool_returns_none_and_enqueue_counts_the_wait() -> None:
    m = machine(size=2)
    lend(m, ALICE, 0.0)
    lend(m, BOB, 0.0)
    assert m.request(ALICE, 1.0) is None
    assert m.request(CAROL, 1.0) is None
    assert m.counts.checkouts == 2
    waiter = RecordingWaiter(ALICE, 1.0)
    m.enqueue(waiter)
    assert m.counts.waits == 1
    assert stats(m) == (2, 2, 0, 1)
    assert m.look(waiter, 1.01, timed_out=False) is None  # a stale wake-up: still queued
    assert stats(m)[3] == 1


def test_checkin_before_handoff_after_frees_the_slot_and_wakes_the_oldest() -> None:
    m = machine(size=1, handoff_after=0.05)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, BOB, 1.0)
    assert m.checkin(held, 1.01) is Step.KEEP
    assert (waiter.woken, waiter.wakes, waiter.slot) == (True, 1, None)
    assert not held.in_use  # free: anyone may take it
    assert stats(m) == (1, 0, 1, 1)  # woken, not looking yet, still counts as waiting
    slot = m.look(waiter, 1.02, timed_out=False)
    assert slot is held
    assert (slot.step, slot.credentials, waiter.woken) == (Step.REBIND, BOB, False)
    assert stats(m) == (1, 1, 0, 0)
    assert m.counts.checkouts == 2


def test_checkin_after_handoff_after_hands_the_slot_straight_over() -> None:
    m = machine(size=1, handoff_after=0.05)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 1.0)
    assert m.checkin(held, 1.05) is Step.KEEP
    assert waiter.slot is held
    assert (waiter.wakes, waiter.woken) == (1, False)
    assert held.in_use
    assert held.credentials is waiter.credentials
    assert (held.step, held.lent_at) == (Step.LEND, 1.05)
    assert (m.counts.checkouts, m.counts.reused) == (2, 1)
    assert stats(m) == (1, 1, 0, 0)
    assert m.request(ALICE, 1.06) is None  # nobody can take it first
    assert m.look(waiter, 1.07, timed_out=True) is held  # good even if time ran out


def test_handed_over_slot_of_another_identity_is_to_be_rebound() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, BOB, 0.0)
    m.checkin(held, 1.0)
    assert waiter.slot is held
    assert (held.step, held.credentials) == (Step.REBIND, BOB)
    assert m.counts.reused == 0


def test_empty_slot_handed_over_is_to_be_opened() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, BOB, 0.0)
    assert m.checkin(held, 1.0, lost=True) is Step.CLOSE
    assert waiter.slot is None  # not before the connection is closed
    close(m, held, 1.0)
    assert waiter.slot is held
    assert (held.step, held.conn, held.credentials) == (Step.OPEN, None, BOB)


def test_waiters_are_handed_slots_oldest_first() -> None:
    m = machine(size=3, handoff_after=0.0)
    held = [lend(m, ALICE, 0.0) for _ in range(3)]
    waiters = [wait(m, who, t) for who, t in ((BOB, 1.0), (CAROL, 2.0), (ALICE, 3.0))]
    for slot in reversed(held):
        m.checkin(slot, 4.0)
    assert [w.slot for w in waiters] == list(reversed(held))
    assert [w.wakes for w in waiters] == [1, 1, 1]


def test_waiters_are_woken_oldest_first_one_at_a_time() -> None:
    m = machine(size=3, handoff_after=math.inf)
    held = [lend(m, ALICE, 0.0) for _ in range(3)]
    first, second, third = (wait(m, BOB, t) for t in (1.0, 2.0, 3.0))
    for slot in held:  # a burst of checkins
        m.checkin(slot, 4.0)
    assert [w.wakes for w in (first, second, third)] == [1, 0, 0]  # no herd
    assert stats(m) == (3, 0, 3, 3)

    assert m.look(first, 4.1, timed_out=False) is held[0]  # least recently used
    assert [w.wakes for w in (first, second, third)] == [1, 1, 0]  # it woke the next
    assert m.look(second, 4.2, timed_out=False) is held[1]
    assert [w.wakes for w in (first, second, third)] == [1, 1, 1]
    assert m.look(third, 4.3, timed_out=False) is held[2]
    assert stats(m) == (3, 3, 0, 0)


def test_woken_waiter_does_not_wake_the_next_when_nothing_is_left() -> None:
    m = machine(size=2, handoff_after=math.inf)
    held = [lend(m, ALICE, 0.0) for _ in range(2)]
    first, second = wait(m, ALICE, 1.0), wait(m, ALICE, 2.0)
    m.checkin(held[0], 3.0)
    assert m.look(first, 3.1, timed_out=False) is held[0]
    assert second.wakes == 0
    m.checkin(held[1], 3.2)
    assert second.wakes == 1


def test_barged_woken_waiter_is_requeued_at_the_head_with_its_age() -> None:
    m = machine(size=1, handoff_after=0.05)
    held = lend(m, ALICE, 0.0)
    first, second = wait(m, ALICE, 0.0), wait(m, ALICE, 0.01)
    m.checkin(held, 0.02)
    assert (first.wakes, second.wakes) == (1, 0)
    barger = m.request(ALICE, 0.02)  # a running thread is quicker
    assert barger is held
    assert m.look(first, 0.03, timed_out=False) is None
    assert (first.woken, first.slot) == (False, None)
    assert stats(m)[3] == 2
    assert m.counts.waits == 2  # requeued, not counted again

    m.checkin(barger, 0.04)  # first waited 0.04 < 0.05: woken again, ahead of second
    assert (first.wakes, second.wakes) == (2, 0)
    m.request(ALICE, 0.04)
    assert m.look(first, 0.045, timed_out=False) is None

    m.checkin(held, 0.05)  # first has now waited 0.05 since it first queued
    assert first.slot is held
    assert (first.wakes, second.wakes, second.slot) == (3, 0, None)


def test_timed_out_waiter_raises_and_leaves_the_queue() -> None:
    m = machine(size=1)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, BOB, 0.0)
    with pytest.raises(MaxConnectionReachedError, match="all 1 connections"):
        m.look(waiter, 1.0, timed_out=True)
    assert m.counts.wait_timeouts == 1
    assert stats(m)[3] == 0
    m.checkin(held, 2.0)
    assert waiter.wakes == 0  # not served once gone
    assert stats(m) == (1, 0, 1, 0)


def test_woken_waiter_whose_time_ran_out_still_takes_a_free_slot() -> None:
    m = machine(size=1, handoff_after=math.inf)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 0.0)
    m.checkin(held, 0.5)
    assert m.look(waiter, 1.0, timed_out=True) is held
    assert m.counts.wait_timeouts == 0


def test_woken_waiter_that_finds_nothing_when_time_runs_out_raises() -> None:
    m = machine(size=1, handoff_after=math.inf)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 0.0)
    m.checkin(held, 0.5)
    m.request(ALICE, 0.5)  # barged
    with pytest.raises(MaxConnectionReachedError):
        m.look(waiter, 1.0, timed_out=True)
    assert m.counts.wait_timeouts == 1
    assert stats(m)[3] == 0


def test_cancelled_waiter_holding_a_slot_passes_it_to_the_next_waiter() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    first, second = wait(m, ALICE, 1.0), wait(m, BOB, 2.0)
    m.checkin(held, 3.0)
    assert first.slot is held
    assert m.counts.checkouts == 2
    m.cancel(first, 3.1)
    assert first.slot is None
    assert second.slot is held
    assert (held.credentials, held.step) == (BOB, Step.REBIND)
    assert m.counts.checkouts == 2  # one taken back, one given
    assert stats(m) == (1, 1, 0, 0)


def test_cancelled_waiter_holding_a_slot_gives_it_back_to_the_pool() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 1.0)
    m.checkin(held, 3.0)
    assert m.counts.checkouts == 2
    m.cancel(waiter, 3.1)
    assert (waiter.slot, held.in_use, held.credentials) == (None, False, None)
    assert m.counts.checkouts == 1
    assert stats(m) == (1, 0, 1, 0)
    assert m.request(BOB, 3.2) is held


def test_cancelled_woken_waiter_passes_the_wake_up_on() -> None:
    m = machine(size=1, handoff_after=math.inf)
    held = lend(m, ALICE, 0.0)
    first, second = wait(m, ALICE, 1.0), wait(m, ALICE, 2.0)
    m.checkin(held, 3.0)
    assert (first.wakes, second.wakes) == (1, 0)
    m.cancel(first, 3.1)
    assert (first.woken, second.woken, second.wakes) == (False, True, 1)
    assert stats(m)[3] == 1
    assert m.look(second, 3.2, timed_out=False) is held


def test_cancelled_queued_waiter_leaves_the_queue() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    first, second = wait(m, ALICE, 1.0), wait(m, ALICE, 2.0)
    m.cancel(first, 2.5)
    assert stats(m)[3] == 1
    m.checkin(held, 3.0)
    assert (first.wakes, first.slot) == (0, None)
    assert second.slot is held


def test_handoff_after_setter_reaches_the_queue() -> None:
    m = machine(size=1, handoff_after=math.inf)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 0.0)
    m.handoff_after = 0.5
    assert m.handoff_after == 0.5
    m.checkin(held, 0.5)
    assert waiter.slot is held


# -- the outcomes of a checkout's I/O ---------------------------------------------------------


def test_failed_open_frees_the_slot() -> None:
    m = machine(size=1)
    slot = m.request(ALICE, 0.0)
    assert slot is not None and slot.step is Step.OPEN
    assert m.failed(slot, 1.0) is Step.KEEP
    assert (slot.in_use, slot.credentials, m.counts.checkouts) == (False, None, 0)
    assert stats(m) == (0, 0, 0, 0)
    assert m.occupied == 0
    assert m.request(BOB, 2.0) is slot
    assert slot.step is Step.OPEN


def test_failed_open_hands_the_slot_to_a_waiter() -> None:
    m = machine(size=1, handoff_after=0.0)
    slot = m.request(ALICE, 0.0)
    assert slot is not None
    waiter = wait(m, BOB, 0.5)
    assert m.failed(slot, 1.0) is Step.KEEP
    assert waiter.slot is slot
    assert (slot.step, slot.credentials, slot.in_use) == (Step.OPEN, BOB, True)
    assert m.counts.checkouts == 1


def test_refused_rebind_closes_the_connection_then_frees_the_slot() -> None:
    m = machine(size=1)
    alice = lend(m, ALICE, 0.0)
    m.checkin(alice, 1.0)
    slot = m.request(BOB, 2.0)
    assert slot is alice and slot.step is Step.REBIND
    assert m.failed(slot, 2.1) is Step.CLOSE
    assert (slot.step, slot.in_use, m.counts.checkouts) == (Step.CLOSE, True, 1)
    assert stats(m) == (1, 1, 0, 0)  # still counted until closed
    assert m.request(CAROL, 2.2) is None
    m.closed_conn(slot, 2.3)
    assert (slot.conn, slot.identity, slot.in_use) == (None, None, False)
    assert m.counts.closed == 1
    assert stats(m) == (0, 0, 0, 0)
    again = m.request(CAROL, 2.4)
    assert again is slot and again.step is Step.OPEN


def test_discard_takes_the_connection_out_and_counts_the_reason() -> None:
    m = machine(size=1, policy=lifetime(ping_after=10.0))
    slot = lend(m, ALICE, 0.0)
    conn = slot.conn
    m.checkin(slot, 0.0)
    again = m.request(ALICE, 20.0)
    assert again is slot and slot.step is Step.PING
    assert m.discard(slot, "stale") is conn
    assert (slot.step, slot.conn, slot.identity, slot.in_use) == (Step.OPEN, None, None, True)
    assert (m.counts.stale, m.counts.closed) == (1, 1)


def test_recovered_connection_gets_a_new_lifetime() -> None:
    m = machine(size=1, policy=lifetime(max_lifetime=10.0))
    slot = lend(m, ALICE, 0.0)
    m.recovered(slot, SERVER, 8.0)
    assert (slot.opened_at, slot.expires_at, m.counts.recovered) == (8.0, 18.0, 1)
    assert m.checkin(slot, 12.0) is Step.KEEP


# -- lifetime --------------------------------------------------------------------------------


def test_connection_past_max_lifetime_closes_at_checkin() -> None:
    m = machine(policy=lifetime(max_lifetime=10.0))
    slot = lend(m, ALICE, 0.0)
    assert slot.expires_at == 10.0
    assert m.checkin(slot, 10.0) is Step.CLOSE
    assert m.counts.expired == 1
    close(m, slot, 10.0)
    assert m.counts.closed == 1


def test_pooled_connection_past_its_lifetime_is_replaced_at_checkout() -> None:
    m = machine(policy=lifetime(max_lifetime=10.0))
    slot = lend(m, ALICE, 0.0)
    conn = slot.conn
    assert m.checkin(slot, 5.0) is Step.KEEP
    assert m.request(ALICE, 9.9) is slot
    assert slot.step is Step.LEND
    m.checkin(slot, 9.9)
    again = m.request(ALICE, 10.0)
    assert again is slot
    assert again.step is Step.REPLACE
    assert m.counts.expired == 1
    assert m.discard(again) is conn
    assert (again.step, again.conn, m.counts.closed) == (Step.OPEN, None, 1)
    m.opened(again, new_conn(), SERVER, 10.5)
    assert (again.expires_at, m.counts.opened) == (20.5, 2)


def test_idle_connection_is_pinged_after_ping_after_and_a_recent_one_is_not() -> None:
    m = machine(policy=lifetime(ping_after=10.0))
    assert m.quiet_for == 10.0
    slot = lend(m, ALICE, 0.0)
    m.checkin(slot, 0.0)
    assert m.request(ALICE, 5.0) is slot
    assert slot.step is Step.LEND
    m.checkin(slot, 5.0)
    assert m.request(ALICE, 15.0) is slot
    assert slot.step is Step.LEND  # idle exactly ping_after: not more
    m.checkin(slot, 15.0)
    assert m.request(ALICE, 25.5) is slot
    assert slot.step is Step.PING


def test_connection_idle_past_max_idle_is_replaced() -> None:
    m = machine(policy=lifetime(max_idle=10.0, ping_after=5.0))
    slot = lend(m, ALICE, 0.0)
    m.checkin(slot, 0.0)
    assert m.request(ALICE, 7.0) is slot
    assert slot.step is Step.PING
    m.checkin(slot, 7.0)
    assert m.request(ALICE, 17.5) is slot
    assert slot.step is Step.REPLACE
    assert m.counts.expired == 1


def test_lifetime_policy_subclass_is_always_consulted() -> None:
    class PingAlways(LifetimePolicy):
        def should_ping(self, idle: float) -> bool:
            return True

    m = machine(policy=PingAlways(max_lifetime=None, ping_after=None, jitter=0.0))
    assert m.quiet_for == -math.inf
    slot = lend(m, ALICE, 0.0)
    m.checkin(slot, 0.0)
    assert m.request(ALICE, 0.001) is slot
    assert slot.step is Step.PING


def test_expire_closes_idle_connections_past_their_lifetime_or_too_idle() -> None:
    m = machine(size=4, policy=lifetime(max_lifetime=100.0, max_idle=30.0))
    old = lend(m, ALICE, 0.0)
    idle = lend(m, BOB, 60.0)
    fresh = lend(m, CAROL, 60.0)
    lent = lend(m, ALICE, 60.0)
    assert lent is not old
    m.checkin(idle, 65.0)
    m.checkin(old, 90.0)
    m.checkin(fresh, 90.0)
    assert m.expire(96.0) == [idle]  # idle 31s > max_idle
    assert m.counts.expired == 1
    assert m.expire(100.0) == [old]  # past max_lifetime
    assert m.counts.expired == 2
    for slot in (idle, old):
        assert (slot.step, slot.in_use) == (Step.CLOSE, True)
        close(m, slot, 100.0)
    assert stats(m) == (2, 1, 1, 0)
    assert m.request(CAROL, 100.0) is fresh


# -- checkin verdicts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reuse", "lost"),
    [
        ({"lost": True}, True, 1),
        ({"changed": True}, True, 0),
        ({}, False, 0),
        ({"lost": True, "changed": True}, True, 1),
    ],
)
def test_checkin_closes_lost_changed_or_unpooled_connections(
    kwargs: dict[str, bool], reuse: bool, lost: int
) -> None:
    m = machine(reuse=reuse)
    slot = lend(m, ALICE, 0.0)
    assert m.checkin(slot, 1.0, **kwargs) is Step.CLOSE
    assert (slot.step, slot.in_use, slot.credentials) == (Step.CLOSE, True, None)
    assert m.counts.lost == lost
    assert m.counts.expired == 0
    assert stats(m) == (1, 1, 0, 0)
    close(m, slot, 1.0)
    assert stats(m) == (0, 0, 0, 0)
    assert m.counts.closed == 1


def test_purge_closes_idle_matching_slots_and_marks_lent_ones() -> None:
    m = machine(size=5)
    idle_alice = lend(m, ALICE, 0.0)
    lent_alice = lend(m, ALICE, 0.0)
    idle_bob = lend(m, BOB, 0.0)
    lent_bob = lend(m, BOB, 0.0)
    m.checkin(idle_alice, 1.0)
    m.checkin(idle_bob, 1.0)

    def alice(identity: Identity) -> bool:
        return identity.matches_dn("cn=alice")

    assert m.purge(alice) == [idle_alice]
    assert (idle_alice.step, idle_alice.in_use) == (Step.CLOSE, True)
    assert (lent_alice.purge, lent_bob.purge, idle_bob.purge) == (True, False, False)
    assert stats(m) == (4, 3, 1, 0)
    other = m.request(ALICE, 2.0)  # neither purged one is lent again: a new one
    assert other is not None and (other.number, other.step) == (5, Step.OPEN)
    m.failed(other, 2.0)
    assert m.checkin(lent_alice, 2.0) is Step.CLOSE
    assert m.checkin(lent_bob, 2.0) is Step.KEEP
    close(m, idle_alice, 2.0)
    close(m, lent_alice, 2.0)
    assert lent_alice.purge is False  # the flag went with the connection
    assert stats(m) == (2, 0, 2, 0)


# -- resize ------------------------------------------------------------------------------


def test_shrinking_closes_the_least_recently_used_idle_slots_over_the_size() -> None:
    m = machine(size=3)
    slots = [lend(m, ALICE, 0.0) for _ in range(3)]
    for t, slot in zip((1.0, 2.0, 3.0), (slots[1], slots[2], slots[0]), strict=True):
        m.checkin(slot, t)
    doomed = m.resize(1, 4.0)
    assert doomed == [slots[1], slots[2]]
    assert all(s.step is Step.CLOSE and s.in_use for s in doomed)
    for slot in doomed:
        close(m, slot, 4.0)
    assert m.occupied == 1
    assert stats(m) == (1, 0, 1, 0)
    assert m.request(ALICE, 5.0) is slots[0]
    assert m.request(ALICE, 5.0) is None


def test_lent_slot_over_a_shrunk_size_closes_at_checkin() -> None:
    m = machine(size=2)
    first, second = lend(m, ALICE, 0.0), lend(m, ALICE, 0.0)
    assert m.resize(1, 1.0) == []
    assert m.checkin(first, 2.0) is Step.CLOSE
    close(m, first, 2.0)
    assert m.occupied == 1
    assert m.checkin(second, 3.0) is Step.KEEP
    assert m.occupied == 1


def test_empty_slot_after_a_shrink_is_not_handed_to_a_waiter_while_over_size() -> None:
    m = machine(size=3, handoff_after=0.0)
    held = [lend(m, ALICE, 0.0) for _ in range(3)]
    waiter = wait(m, ALICE, 0.5)
    m.resize(1, 1.0)
    assert m.checkin(held[0], 2.0) is Step.CLOSE
    close(m, held[0], 2.0)
    assert (waiter.slot, waiter.wakes) == (None, 0)  # occupancy 3 > 1 before
    slot = m.request(ALICE, 2.0)  # nor to anyone else
    assert slot is None
    assert m.checkin(held[1], 3.0) is Step.CLOSE
    close(m, held[1], 3.0)
    assert (waiter.slot, waiter.wakes) == (None, 0)
    assert m.occupied == 1
    assert m.checkin(held[2], 4.0) is Step.KEEP  # within size now: handed over
    assert waiter.slot is held[2]
    assert m.occupied == 1


def test_failed_open_after_a_shrink_does_not_refill_the_slot() -> None:
    m = machine(size=2, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    opening = m.request(ALICE, 0.0)
    assert opening is not None
    waiter = wait(m, ALICE, 0.5)
    m.resize(1, 1.0)
    assert m.failed(opening, 2.0) is Step.KEEP
    assert (waiter.slot, waiter.wakes, m.occupied) == (None, 0, 1)
    m.checkin(held, 3.0)
    assert waiter.slot is held


def test_growing_wakes_the_oldest_waiter_who_wakes_the_next_while_there_is_room() -> None:
    m = machine(size=1, handoff_after=math.inf)
    lend(m, ALICE, 0.0)
    first, second, third = (wait(m, BOB, t) for t in (1.0, 2.0, 3.0))
    assert m.resize(2, 4.0) == []
    assert [w.wakes for w in (first, second, third)] == [1, 0, 0]
    slot = m.look(first, 4.1, timed_out=False)
    assert slot is not None and slot.step is Step.OPEN and slot.number == 2
    assert [w.wakes for w in (first, second, third)] == [1, 0, 0]  # full again
    m.resize(4, 5.0)
    assert [w.wakes for w in (first, second, third)] == [1, 1, 0]
    assert m.look(second, 5.1, timed_out=False) is not None
    assert third.wakes == 1  # room for one more
    assert m.look(third, 5.2, timed_out=False) is not None
    assert m.occupied == 4


def test_resize_race_settles_within_the_new_size_and_serves_every_waiter() -> None:
    m = machine(size=3, handoff_after=0.05)
    held = [lend(m, who, 0.0) for who in (ALICE, BOB, CAROL)]
    waiters = [wait(m, who, t) for who, t in ((ALICE, 0.1), (BOB, 0.2), (CAROL, 0.3))]
    late = wait(m, ALICE, 0.39)  # young when its turn comes: woken, not handed
    everyone = [*waiters, late]
    shrinking: list[int] = []

    assert m.resize(1, 0.31) == []  # all three lent: they close at checkin
    assert m.checkin(held[0], 0.32) is Step.CLOSE  # over size: closed, nobody served
    shrinking.append(m.occupied)
    assert m.request(BOB, 0.32) is None  # a barging checkout finds no room either
    close(m, held[0], 0.33)
    shrinking.append(m.occupied)
    assert m.checkin(held[1], 0.34, changed=True) is Step.CLOSE
    shrinking.append(m.occupied)
    close(m, held[1], 0.35)
    shrinking.append(m.occupied)
    assert shrinking == [3, 2, 2, 1]
    assert all((w.wakes, w.slot) == (0, None) for w in everyone)
    assert stats(m) == (1, 1, 0, 4)

    settled: list[int] = []
    order: list[RecordingWaiter] = []
    holder, now = held[2], 0.40
    for _ in everyone:
        assert m.checkin(holder, now) is Step.KEEP
        settled.append(m.occupied)
        (turn,) = [w for w in everyone if w not in order and (w.slot is not None or w.woken)]
        order.append(turn)
        slot = m.look(turn, now, timed_out=False)
        assert slot is not None
        holder = carry_out(m, slot, now)
        settled.append(m.occupied)
        now += 0.01
    assert order == everyone  # every waiter served, oldest first
    assert [w.slot is not None for w in everyone] == [True, True, True, False]
    assert [w.wakes for w in everyone] == [1, 1, 1, 1]
    assert m.checkin(holder, now) is Step.KEEP
    settled.append(m.occupied)
    assert set(settled) == {1}
    assert stats(m) == (1, 0, 1, 0)
    assert (m.counts.waits, m.counts.checkouts, m.counts.closed) == (4, 7, 2)


# -- close and fork --------------------------------------------------------------------------


def test_close_closes_idle_slots_fails_waiters_and_refuses_checkouts() -> None:
    m = machine(size=2, handoff_after=math.inf)
    idle, lent = lend(m, ALICE, 0.0), lend(m, BOB, 0.0)
    woken, queued, last = wait(m, CAROL, 1.0), wait(m, CAROL, 2.0), wait(m, BOB, 2.5)
    m.checkin(idle, 3.0)  # free; the oldest waiter woken, not looking yet
    assert (woken.wakes, queued.wakes) == (1, 0)
    doomed = m.close()
    assert doomed == [idle]
    assert (idle.step, idle.in_use) == (Step.CLOSE, True)
    assert (woken.wakes, queued.wakes, last.wakes) == (1, 1, 1)
    assert isinstance(queued.error, PoolClosedError)
    assert isinstance(last.error, PoolClosedError)
    with pytest.raises(PoolClosedError):
        m.look(queued, 3.1, timed_out=False)
    with pytest.raises(PoolClosedError):
        m.look(woken, 3.1, timed_out=False)
    assert stats(m)[3] == 0
    with pytest.raises(PoolClosedError):
        m.request(ALICE, 3.2)
    with pytest.raises(PoolClosedError):
        m.request(BOB, 3.2)
    assert m.checkin(lent, 3.3) is Step.CLOSE
    close(m, lent, 3.3)
    close(m, idle, 3.3)
    assert stats(m) == (0, 0, 0, 0)
    assert m.counts.closed == 2
    with pytest.raises(PoolClosedError):
        m.request(ALICE, 3.4)  # nothing came back to be lent


def test_forked_abandons_every_connection_and_starts_anew() -> None:
    m = machine(size=2, handoff_after=math.inf)
    idle, lent = lend(m, ALICE, 0.0), lend(m, BOB, 0.0)
    waiter = wait(m, CAROL, 1.0)  # a thread of the parent's
    m.checkin(idle, 1.5)
    assert waiter.wakes == 1
    checkouts = m.counts.checkouts
    assert m.forked() == [idle.conn, lent.conn]
    assert m.generation == 1
    assert stats(m) == (0, 0, 0, 0)  # no connection, no waiter
    assert m.occupied == 0

    fresh = m.request(ALICE, 2.0)
    assert fresh is not None and fresh is not idle
    assert (fresh.number, fresh.generation, fresh.step) == (1, 1, Step.OPEN)
    m.opened(fresh, new_conn(), SERVER, 2.0)
    other = lend(m, BOB, 2.0)
    before = stats(m)
    assert m.checkin(lent, 3.0) is Step.ABANDON
    assert stats(m) == before  # the new pool is untouched
    assert lent.credentials is None
    assert m.occupied == 2
    assert m.request(BOB, 3.1) is None  # the parent's slot did not come back as room
    assert m.counts.checkouts == checkouts + 2
    assert m.checkin(other, 3.2) is Step.KEEP
    assert waiter.wakes == 1


# -- a cancelled handoff obeys what happened while the slot was on its way -----------------


def test_cancelled_handoff_after_close_closes_the_connection() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 0.5)
    m.checkin(held, 1.0)
    assert waiter.slot is held
    assert m.close() == []  # the handed slot is lent: it is to close at its checkin
    assert m.cancel(waiter, 1.1) == (held, Step.CLOSE)  # ...which this cancel stands for
    close(m, held, 1.2)
    assert stats(m) == (0, 0, 0, 0)
    with pytest.raises(PoolClosedError):
        m.request(ALICE, 1.3)


def test_cancelled_handoffs_after_a_shrink_bring_the_pool_down_to_size() -> None:
    m = machine(size=2, handoff_after=0.0)
    held = [lend(m, ALICE, 0.0) for _ in range(2)]
    waiters = [wait(m, ALICE, 0.5) for _ in range(2)]
    for slot in held:
        m.checkin(slot, 1.0)
    assert [w.slot for w in waiters] == held
    assert m.resize(1, 1.0) == []  # both lent (to the waiters): to close at checkin
    first = m.cancel(waiters[0], 1.1)
    assert first == (held[0], Step.CLOSE)
    close(m, held[0], 1.1)
    assert m.cancel(waiters[1], 1.2) == (held[1], Step.KEEP)  # at size now: pooled
    assert stats(m) == (1, 0, 1, 0)
    assert m.occupied == m.size == 1


def test_cancelled_handoff_of_a_purged_slot_closes_it() -> None:
    m = machine(size=1, handoff_after=0.0)
    held = lend(m, ALICE, 0.0)
    purged_conn = held.conn
    waiter = wait(m, ALICE, 0.5)
    m.checkin(held, 1.0)
    assert waiter.slot is held
    assert m.purge(lambda identity: identity == ALICE.identity) == []
    assert m.cancel(waiter, 1.1) == (held, Step.CLOSE)
    close(m, held, 1.1)
    slot = m.request(ALICE, 1.2)
    assert slot is not None
    assert (slot.step, slot.conn) == (Step.OPEN, None)
    assert slot.conn is not purged_conn


def test_cancel_without_a_handed_slot_gives_nothing_to_close() -> None:
    m = machine(size=1, handoff_after=math.inf)
    lend(m, ALICE, 0.0)
    waiter = wait(m, ALICE, 0.5)
    assert m.cancel(waiter, 1.0) == (None, Step.KEEP)


# -- property: random sequences of events keep the machine's books straight ----------------

WHO = (ALICE, BOB, CAROL, PASSWORD_CHECKS)
TICKS = (0.0, 0.02, 0.06, 0.7, 2.5)
OPS = (
    "request",
    "request",
    "prepare",
    "prepare",
    "checkin",
    "checkin",
    "close_conn",
    "look",
    "look",
    "cancel",
    "resize",
    "purge",
    "expire",
    "tick",
    "refill",
    "look_at_idle",
    "begin_check",
    "begin_check",
    "at_gate",
    "at_gate",
    "cancel_gate",
)
Op = tuple[str, int, bool, bool]


class LockWaiter(Waiter):
    """Stands for a thread blocked on a bare lock (``_ThreadWaiter``): a second wake()
    before the thread took the first would release an unlocked lock (RuntimeError), and a
    wake() after it stopped waiting would go to nobody."""

    __slots__ = ("done", "unconsumed")

    def __init__(self, credentials: Credentials, since: float) -> None:
        super().__init__(credentials, since)
        self.unconsumed = 0
        self.done = False

    def wake(self) -> None:
        assert not self.done, "woken after it stopped waiting"
        assert self.unconsumed == 0, "woken twice before it looked"
        self.unconsumed += 1


class Runner:
    """A deterministic stand-in for the threaded runner; the test picks each next event."""

    def __init__(self, size: int, handoff_after: float, auth_size: int | None = None) -> None:
        self.m = PoolMachine(
            size=size,
            lifetime=lifetime(max_lifetime=5.0, max_idle=3.0, ping_after=1.0),
            handoff_after=handoff_after,
            min_size=1,
            auth_size=auth_size,
        )
        self.now = 0.0
        self.pending: list[Slot] = []  # given to a checkout, step not carried out yet
        self.lent: list[Slot] = []
        self.closing: list[Slot] = []
        self.waiters: list[LockWaiter] = []  # still waiting
        self.succeeded = 0  # checkouts whose step was carried out
        self.over_size = False  # a shrink is pending
        self.checks: set[int] = set()  # ids of the slots lent through begin_check
        self.at_gate: list[LockWaiter] = []  # password checks queued at the gate

    def do(self, name: str, n: int, a: bool, b: bool) -> None:
        m = self.m
        if name == "request":
            who = WHO[n % len(WHO)]
            slot = m.request(who, self.now)
            if slot is not None:
                self.pending.append(slot)
            else:
                waiter = LockWaiter(who, self.now)
                m.enqueue(waiter)
                self.waiters.append(waiter)
        elif name == "prepare" and self.pending:
            self.prepare(self.pending.pop(n % len(self.pending)), ok=a, stale=b)
        elif name == "checkin" and self.lent:
            self.checkin(self.lent.pop(n % len(self.lent)), lost=a, changed=b and not a)
        elif name == "close_conn" and self.closing:
            slot = self.closing.pop(n % len(self.closing))
            assert slot.step is Step.CLOSE
            m.closed_conn(slot, self.now)
        elif name == "look" and self.waiters:
            self.look(self.waiters[n % len(self.waiters)], timed_out=a)
        elif name == "cancel" and self.waiters:
            waiter = self.waiters.pop(n % len(self.waiters))
            handed, step = m.cancel(waiter, self.now)
            waiter.done = True
            if step is Step.CLOSE:
                assert handed is not None
                self.closing.append(handed)
        elif name == "resize":
            size = n % 4 + 1
            self.closing.extend(m.resize(size, self.now))
        elif name == "purge":
            who = WHO[n % len(WHO)].identity
            self.closing.extend(m.purge(lambda identity: identity == who))
        elif name == "expire":
            self.closing.extend(m.expire(self.now))
        elif name == "tick":
            self.now += TICKS[n % len(TICKS)]
        elif name == "refill":  # the upkeep opens one (a: it worked)
            slot = m.refill(ALICE, self.now)
            if slot is not None:
                assert slot.step is Step.OPEN and slot.conn is None
                if a:
                    m.opened(slot, new_conn(), SERVER, self.now)
                if m.refilled(slot, self.now, opened=a) is Step.CLOSE:
                    self.closing.append(slot)
        elif name == "look_at_idle":  # the upkeep looks at one (a: alive, b: pinged)
            idle = m.idle_slots()
            if idle and m.borrow(idle[n % len(idle)], self.now, 0.0):
                slot = idle[n % len(idle)]
                assert slot.in_use
                if m.give_back(slot, self.now, a, pinged=b) is Step.CLOSE:
                    self.closing.append(slot)
        elif name == "begin_check":  # a password check; queued when the gate is full
            passed, slot = m.begin_check(self.now)
            if not passed:
                waiter = LockWaiter(PASSWORD_CHECKS, self.now)
                m.queue_gate(waiter)
                self.at_gate.append(waiter)
            else:
                self.checked(slot)
        elif name == "at_gate" and self.at_gate:  # a queued check wakes, or times out
            self.gate_look(self.at_gate[n % len(self.at_gate)], timed_out=a)
        elif name == "cancel_gate" and self.at_gate:  # a queued check is interrupted
            waiter = self.at_gate.pop(n % len(self.at_gate))
            m.cancel_gate(waiter, self.now)
            waiter.done = True
        if m.occupied > m.size:
            self.over_size = True
        elif self.over_size:
            self.over_size = False

    def checkin(self, slot: Slot, *, lost: bool = False, changed: bool = False) -> None:
        if id(slot) in self.checks:
            self.checks.discard(id(slot))
            step = self.m.end_check(slot, self.now, lost=lost)
        else:
            step = self.m.checkin(slot, self.now, lost=lost, changed=changed)
        assert step in (Step.KEEP, Step.CLOSE)
        if step is Step.CLOSE:
            self.closing.append(slot)

    def prepare(self, slot: Slot, *, ok: bool, stale: bool) -> None:
        m, now = self.m, self.now
        step = slot.step
        assert step in (Step.USE, Step.LEND, Step.PING, Step.REBIND, Step.REPLACE, Step.OPEN)
        if step is Step.REPLACE or (stale and slot.conn is not None):
            assert slot.conn is not None
            m.discard(slot, None if step is Step.REPLACE else "stale")
            assert slot.step is Step.OPEN
        if not ok:
            had_conn = slot.conn is not None
            if id(slot) in self.checks:  # the check's place at the gate is given up too
                self.checks.discard(id(slot))
                m.leave_gate(now)
            verdict = m.failed(slot, now)
            assert verdict is (Step.CLOSE if had_conn else Step.KEEP)
            if verdict is Step.CLOSE:
                self.closing.append(slot)
            return
        carry_out(m, slot, now)
        assert slot.credentials is not None
        assert slot.identity == slot.credentials.identity
        self.lent.append(slot)
        self.succeeded += 1

    def checked(self, slot: Slot | None) -> None:
        """A check past the gate, with the slot the machine gave it (None: the pool is
        full; it would wait as a checkout: here it gives its place up)."""
        if slot is None:
            self.m.leave_gate(self.now)
            return
        assert slot.step is not Step.USE or self.now - slot.last_used < 0.05
        self.checks.add(id(slot))
        self.pending.append(slot)

    @staticmethod
    def wakes_up(waiter: LockWaiter, *, timed_out: bool) -> bool:
        """Whether a blocked waiter gets to look now: woken (the wake-up consumed), or
        out of time."""
        if timed_out:
            return True
        if not waiter.unconsumed:
            return False  # blocked: only a wake-up or the time out lets it look
        waiter.unconsumed -= 1
        return True

    def gate_look(self, waiter: LockWaiter, *, timed_out: bool) -> None:
        if not self.wakes_up(waiter, timed_out=timed_out):
            return
        try:
            passed, slot = self.m.at_gate(waiter, self.now, timed_out=timed_out)
        except MaxConnectionReachedError:
            passed, slot = False, None
        else:
            if not passed:
                assert not timed_out
                assert waiter in self.m._gate.waiters  # requeued, or never woken
                return
            self.checked(slot)
        self.at_gate.remove(waiter)
        waiter.done = True

    def look(self, waiter: LockWaiter, *, timed_out: bool) -> None:
        if not self.wakes_up(waiter, timed_out=timed_out):
            return
        try:
            slot = self.m.look(waiter, self.now, timed_out=timed_out)
        except MaxConnectionReachedError:
            slot = None
        else:
            if slot is None:
                assert not timed_out
                assert waiter in self.m._queue.waiters  # requeued
                return
            self.pending.append(slot)
        self.waiters.remove(waiter)
        waiter.done = True

    def drain(self) -> None:
        """Let every checkout finish and come back: no waiter may be left stranded."""
        for _ in range(1000):
            inside = self.m._gate.inside
            if self.pending:
                self.prepare(self.pending.pop(0), ok=True, stale=False)
            elif self.lent:
                self.checkin(self.lent.pop(0))
            elif self.closing:
                self.m.closed_conn(self.closing.pop(0), self.now)
            elif self.waiters:
                ready = [w for w in self.waiters if w.unconsumed]
                assert ready, "waiters left with nobody to wake them"
                self.look(ready[0], timed_out=False)
            elif self.at_gate:
                ready = [w for w in self.at_gate if w.unconsumed]
                assert ready, "checks left at the gate with nobody to wake them"
                self.gate_look(ready[0], timed_out=False)
            else:
                return
            check(self, self.m.occupied, inside)
        raise AssertionError("the pool did not settle")


def check(runner: Runner, occupied_before: int, inside_before: int) -> None:
    m = runner.m
    slots = m._slots
    assert [s.number for s in slots] == list(range(1, len(slots) + 1))
    assert all(s.generation == m.generation for s in slots)
    empty = {id(s) for s in m._empty}
    assert len(empty) == len(m._empty)

    # The two idle indexes agree, and hold each idle slot once.
    lru = m._idle_lru
    assert all(slot.number == number for number, slot in lru.items())
    bucketed = [s for bucket in m._idle.values() for s in bucket]
    assert len({id(s) for s in bucketed}) == len(bucketed)
    assert {id(s) for s in bucketed} == {id(s) for s in lru.values()}
    for key, bucket in m._idle.items():
        assert all(s.identity is not None and s.identity.key == key for s in bucket)

    held_by_waiters = [w.slot for w in runner.waiters if w.slot is not None]
    held = [*runner.pending, *runner.lent, *runner.closing, *held_by_waiters]
    assert len({id(s) for s in held}) == len(held), "a slot is held twice"
    held_ids = {id(s) for s in held}
    for slot in slots:
        is_empty, is_idle = id(slot) in empty, lru.get(slot.number) is slot
        assert is_empty + is_idle + slot.in_use == 1, slot
        if is_empty:
            assert slot.conn is None and slot.identity is None
        if is_idle:
            assert slot.conn is not None and slot.identity is not None
            assert slot.credentials is None
        assert slot.in_use == (id(slot) in held_ids), slot
    assert all(any(s is h for s in slots) for h in held)
    # Each check under way holds one place, and so does one let in while it slept.
    gate = m._gate
    assert gate.inside == len(runner.checks) + sum(w.passed for w in runner.at_gate)
    # Over the limit only when a shrink lowered it under the checks already inside;
    # nobody is let in meanwhile.
    assert gate.inside <= max(gate.limit, inside_before)
    waiting = {id(w) for w in gate.waiters} | ({id(gate.looking)} if gate.looking else set())
    assert waiting == {id(w) for w in runner.at_gate if not w.passed}
    for waiter in runner.at_gate:  # told once: woken to look, or let in
        assert waiter.unconsumed == (waiter.passed or gate.looking is waiter)
    if gate.waiters and gate.inside < gate.limit:
        assert gate.looking is not None  # a free place never waits for a sleeper
    for slot in runner.closing:
        assert slot.step is Step.CLOSE and slot.conn is not None

    # The cap: occupancy only grows while under the size.
    assert m.occupied == len(slots) - len(m._empty)
    assert m.occupied <= max(m.size, occupied_before)
    if not runner.over_size:
        assert m.occupied <= m.size

    # Every waiter is queued, woken on its way, or holding a slot: exactly one.
    queue = m._queue
    queued = list(queue.waiters)
    assert len({id(w) for w in queued}) == len(queued)
    assert all(w in runner.waiters for w in queued)
    assert queue.woken is None or queue.woken in runner.waiters
    for waiter in runner.waiters:
        places = (waiter in queued, queue.woken is waiter, waiter.slot is not None)
        assert sum(places) == 1
        assert waiter.woken == (queue.woken is waiter)
        assert waiter.error is None
        assert waiter.unconsumed == (not places[0])  # woken or handed: told so, once
    # Nobody left waiting while a request would find a slot and nobody is on its way.
    if queued and queue.woken is None:
        assert not m._available()

    stats = m.snapshot()[1]
    assert stats.waiting == len(queued) + (queue.woken is not None) + len(waiting)
    assert stats.in_use == len(held)
    assert stats.idle == len(lru)
    assert stats.connections == sum(1 for s in slots if s.conn is not None or s.in_use)
    assert m.counts.checkouts == runner.succeeded + len(runner.pending) + len(held_by_waiters)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=3),
    handoff_after=st.sampled_from([0.0, 0.05, math.inf]),
    all_for_checks=st.booleans(),
    ops=st.lists(
        st.tuples(
            st.sampled_from(OPS),
            st.integers(min_value=0, max_value=7),
            st.booleans(),
            st.booleans(),
        ),
        max_size=60,
    ),
)
def test_random_events_keep_the_invariants(
    size: int, handoff_after: float, all_for_checks: bool, ops: list[Op]
) -> None:
    runner = Runner(size, handoff_after, size if all_for_checks else None)
    for name, n, a, b in ops:
        before, inside = runner.m.occupied, runner.m._gate.inside
        runner.do(name, n, a, b)
        check(runner, before, inside)
    runner.drain()
    assert runner.m.snapshot()[1].in_use == 0
    assert runner.m.snapshot()[1].waiting == 0


# -- password checks: the gate, and the lane's connections -----------------------------------

CHECKS = PASSWORD_CHECKS


def test_gate_lets_in_auth_size_checks_then_serves_the_queue_oldest_first() -> None:
    m = PoolMachine(size=4, lifetime=lifetime(), auth_size=2, pool_timeout=1.0)
    inside = [RecordingWaiter(CHECKS, 0.0) for _ in range(2)]
    assert all(m.enter_gate(w) for w in inside)
    first, second = RecordingWaiter(CHECKS, 0.1), RecordingWaiter(CHECKS, 0.2)
    assert not m.enter_gate(first) and not m.enter_gate(second)
    assert m.snapshot()[1].waiting == 2
    m.leave_gate(0.11)  # the place is free, the oldest woken to take it
    assert (first.wakes, second.wakes) == (1, 0)
    assert m.snapshot()[1].waiting == 2  # woken, not yet looking: still waiting
    passed, slot = m.at_gate(first, 0.12, timed_out=False)
    assert passed and slot is not None and slot.credentials is CHECKS
    assert m.at_gate(second, 0.12, timed_out=False) == (False, None)  # still queued
    with pytest.raises(MaxConnectionReachedError, match="auth_size"):
        m.at_gate(second, 1.2, timed_out=True)
    assert m.snapshot()[1].waiting == 0
    assert m.counts.wait_timeouts == 1


def test_a_free_place_goes_to_a_running_check_until_the_oldest_waited_handoff_after() -> None:
    """A check that ends frees its place and wakes the oldest queued one to take it; a
    check already running may take it first (the woken one goes back to the head,
    its age kept). Once the oldest has waited ``handoff_after``, places go to it."""
    m = PoolMachine(size=4, lifetime=lifetime(), auth_size=1, pool_timeout=1.0, handoff_after=0.05)
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.0))
    queued, later = RecordingWaiter(CHECKS, 0.0), RecordingWaiter(CHECKS, 0.01)
    assert not m.enter_gate(queued) and not m.enter_gate(later)
    m.leave_gate(0.01)
    assert (queued.wakes, later.wakes) == (1, 0)
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.01))  # running: takes the place first
    assert m.at_gate(queued, 0.02, timed_out=False) == (False, None)  # back at the head
    m.leave_gate(0.03)  # 30 ms of waiting: woken again, to look
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.03))
    assert m.at_gate(queued, 0.03, timed_out=False) == (False, None)
    m.leave_gate(0.06)  # 60 ms: the place is handed to it, nobody can take it first
    assert (queued.wakes, later.wakes) == (3, 0)
    assert not m.enter_gate(RecordingWaiter(CHECKS, 0.06))
    passed, slot = m.at_gate(queued, 0.07, timed_out=True)  # let in: good even late
    assert passed and slot is not None
    assert m.counts.password_checks == 3


def test_a_check_let_in_as_it_gives_up_passes_its_place_on() -> None:
    m = PoolMachine(size=2, lifetime=lifetime(), auth_size=1, pool_timeout=1.0)
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.0))
    late, next_one = RecordingWaiter(CHECKS, 0.1), RecordingWaiter(CHECKS, 0.11)
    m.enter_gate(late)
    m.enter_gate(next_one)
    m.leave_gate(0.12)  # wakes ``late`` to take the free place...
    m.cancel_gate(late, 0.12)  # ...which was interrupted meanwhile
    assert next_one.wakes == 1 and m.at_gate(next_one, 0.13, timed_out=False)[0]
    waited = RecordingWaiter(CHECKS, 0.2)
    m.enter_gate(waited)
    m.leave_gate(1.0)  # ``waited`` waited long enough: the place is handed to it...
    m.cancel_gate(waited, 1.0)  # ...and given up: free for the next check
    assert m.enter_gate(RecordingWaiter(CHECKS, 1.0))


def test_the_default_share_is_half_the_size_and_follows_a_resize() -> None:
    m = PoolMachine(size=4, lifetime=lifetime(), pool_timeout=1.0)
    assert [m.enter_gate(RecordingWaiter(CHECKS, 0.0)) for _ in range(3)] == [True, True, False]
    m.resize(6, 1.0)  # half of 6: one more place, handed to the queued check
    assert m.snapshot()[1].waiting == 0
    m.set_auth_size(1)
    m.leave_gate(2.0)
    m.leave_gate(2.0)
    assert not m.enter_gate(RecordingWaiter(CHECKS, 2.0))  # 1 inside, limit 1


def test_close_fails_the_checks_queued_at_the_gate() -> None:
    m = PoolMachine(size=1, lifetime=lifetime(), auth_size=1, pool_timeout=1.0)
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.0))
    queued, looking = RecordingWaiter(CHECKS, 0.1), RecordingWaiter(CHECKS, 0.1)
    assert not m.enter_gate(looking) and not m.enter_gate(queued)
    m.leave_gate(0.11)  # ``looking`` is woken to take the place...
    assert m.enter_gate(RecordingWaiter(CHECKS, 0.11))  # ...taken first
    m.close()
    assert (queued.wakes, looking.wakes) == (1, 1)  # woken once per wait
    for waiter in (queued, looking):
        with pytest.raises(PoolClosedError):
            m.at_gate(waiter, 0.2, timed_out=False)
    with pytest.raises(PoolClosedError):
        m.enter_gate(RecordingWaiter(CHECKS, 0.2))


def test_a_check_takes_another_identity_s_idle_connection_without_a_rebind() -> None:
    m = machine(size=1)
    alice = lend(m, ALICE, 0.0)
    m.checkin(alice, 1.0)
    slot = m.request(CHECKS, 2.0)
    assert slot is alice and slot.step is Step.LEND  # the check's own bind is enough
    assert slot.identity == CHECKS.identity
    m.checkin(slot, 3.0)
    again = m.request(ALICE, 4.0)  # never lent to alice as it is: bound as the last user
    assert again is slot and again.step is Step.REBIND


def test_a_check_within_socket_check_after_of_the_last_uses_it_without_a_look() -> None:
    policy = LifetimePolicy(max_lifetime=600.0, ping_after=60.0, socket_check_after=0.05)
    m = machine(size=2, policy=policy)
    passed, slot = m.begin_check(0.0)
    assert passed and slot is not None and slot.step is Step.OPEN
    carry_out(m, slot, 0.0)
    m.end_check(slot, 1.0, lost=False)
    passed, again = m.begin_check(1.04)  # 40 ms after the last check ended
    assert passed and again is slot and again.step is Step.USE
    m.end_check(again, 1.05, lost=False)
    passed, later = m.begin_check(1.1)  # 50 ms: look at the socket first
    assert passed and later is slot and later.step is Step.LEND
    m.end_check(later, 1.1, lost=False)
    assert (m.counts.checkouts, m.counts.reused, m.counts.password_checks) == (3, 2, 3)
    assert m.snapshot()[1].in_use == 0


def test_socket_check_after_zero_looks_before_every_check() -> None:
    m = machine(size=1, policy=LifetimePolicy(socket_check_after=0))
    _, slot = m.begin_check(0.0)
    assert slot is not None
    carry_out(m, slot, 0.0)
    m.end_check(slot, 0.0, lost=False)
    _, again = m.begin_check(0.0)
    assert again is slot and again.step is Step.LEND


def test_a_check_on_a_connection_due_for_a_ping_is_not_used_as_it_is() -> None:
    policy = LifetimePolicy(ping_after=1.0, socket_check_after=5.0)
    m = machine(size=1, policy=policy)
    _, slot = m.begin_check(0.0)
    assert slot is not None
    carry_out(m, slot, 0.0)
    m.end_check(slot, 0.0, lost=False)
    _, again = m.begin_check(2.0)  # idle past ping_after: the lifetime policy decides
    assert again is slot and again.step is Step.PING
