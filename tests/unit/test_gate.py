"""The gate in front of password checks, driven by random events (Hypothesis).

Checks arrive, end, wake and look, give up, time passes and the limit changes; after
each event the gate must still count exactly the checks that hold a place, never let
more in than its limit, never leave a free place unused while every queued check
sleeps, and hand places to a check that has waited ``handoff_after``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ldappool._core.gate import Gate
from ldappool._core.waiting import Waiter
from ldappool._identity import PASSWORD_CHECKS

HANDOFF = 0.05


class Check(Waiter):
    """A password check; counts its wake-ups instead of blocking."""

    __slots__ = ("pending", "wakes")

    def __init__(self, since: float) -> None:
        super().__init__(PASSWORD_CHECKS, since)
        self.wakes = 0
        #: Woken, and not yet back from its wait: a thread's lock released once.
        self.pending = False

    def wake(self) -> None:
        assert not self.pending, "woken twice in one wait"
        self.pending = True
        self.wakes += 1


events = st.lists(
    st.tuples(
        st.sampled_from(["arrive", "end", "look", "give_up", "wait", "resize", "close"]),
        st.integers(min_value=0, max_value=50),
    ),
    min_size=10,
    max_size=150,
)


@settings(max_examples=1500, deadline=None)
@given(limit=st.integers(min_value=1, max_value=4), events=events)
def test_random_events_keep_the_gate_s_promises(limit: int, events: list[tuple[str, int]]) -> None:
    gate = Gate(limit, HANDOFF)
    now = 0.0
    inside: list[Check] = []  # holding a place: let in at once, or passed later
    waiting: list[Check] = []  # queued, or woken to look
    for name, n in events:
        admitted = gate.inside
        if name == "arrive":
            check = Check(now)
            (inside if gate.enter(check) else waiting).append(check)
        elif name == "end" and inside:
            inside.pop(n % len(inside))
            oldest = gate.waiters[0] if gate.waiters else None
            frees = gate.inside - 1 < gate.limit
            gate.leave(now)
            if oldest is not None and frees and now - oldest.since >= HANDOFF:
                assert oldest.passed  # waited long enough: the place went to it
        elif name == "look" and waiting:
            # Mostly the woken one (the others just sleep on), at times any.
            check = gate.looking if gate.looking and n % 4 else waiting[n % len(waiting)]
            check.pending = False  # back from its wait
            woken = gate.looking is check
            if gate.look(check, now):
                assert woken
                waiting.remove(check)
                inside.append(check)
            else:
                assert check in gate.waiters  # (still) queued
        elif name == "give_up" and waiting:
            # At times the woken one, whose place must then go to the next.
            check = gate.looking if gate.looking and n % 3 == 0 else waiting[n % len(waiting)]
            waiting.remove(check)
            gate.cancel(check, now)
        elif name == "wait":
            now += n / 500  # up to 0.1 s: twice handoff_after
        elif name == "resize":
            limit = n % 4 + 1
            gate.resize(limit)
        elif name == "close":
            gate.fail_all(RuntimeError("closed"))
            for check in waiting:
                check.pending = False
                assert not gate.look(check, now) and check.error is not None
            waiting.clear()
        # A check the gate let in while it waited holds its place from then on.
        for check in [c for c in waiting if c.passed]:
            waiting.remove(check)
            inside.append(check)
            check.pending = False
        assert gate.inside == len(inside)
        if gate.inside > admitted:
            assert gate.inside <= gate.limit  # never lets in more than its limit
        assert gate.looking is None or gate.looking not in gate.waiters
        queued = {id(c) for c in gate.waiters}
        if gate.looking is not None:
            queued.add(id(gate.looking))
        assert queued == {id(c) for c in waiting} and len(gate) == len(waiting)
        if gate.inside < gate.limit and gate.waiters:
            assert gate.looking is not None  # a free place never waits for a sleeper


def test_one_check_is_woken_at_a_time_and_the_next_when_room_is_left() -> None:
    """Two places come free at once: one queued check is woken (not a herd); once it
    has taken its place, the next is woken for the one left."""
    gate = Gate(2, HANDOFF)
    assert gate.enter(Check(0.0)) and gate.enter(Check(0.0))
    first, second = Check(0.0), Check(0.0)
    assert not gate.enter(first) and not gate.enter(second)
    gate.leave(0.01)
    gate.leave(0.01)
    assert (first.wakes, second.wakes) == (1, 0)
    assert gate.look(first, 0.02)
    assert second.wakes == 1 and gate.look(second, 0.02)
    assert gate.inside == 2 and len(gate) == 0


def test_a_woken_check_that_gives_up_leaves_its_place_to_the_next() -> None:
    gate = Gate(1, HANDOFF)
    assert gate.enter(Check(0.0))
    woken, after = Check(0.0), Check(0.0)
    assert not gate.enter(woken) and not gate.enter(after)
    gate.leave(0.01)
    gate.cancel(woken, 0.01)
    assert after.wakes == 1 and gate.look(after, 0.02)
