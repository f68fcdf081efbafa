"""The pool's own cost: one checkout + checkin, on the in-memory fake driver.

No network: what is measured is the pool's bookkeeping alone, the part that must not
grow with ``size``. Each pool is full of idle connections spread over many identities
(as for a service that checks end-user passwords), and every checkout asks for an
identity that has an idle connection: the common case, a reuse.

Run from the repository root: ``python -m bench.pool_micro``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack

from tests.unit.fakes import FakeDriver, FakeServer

from ldappool import ConnectionManager

SIZES = (10, 100, 1000)
IDENTITIES = 50


def user(i: int) -> tuple[str, str]:
    return f"uid=user{i},ou=people,dc=example", f"secret-{i}"


def filled_manager(size: int, identities: int) -> ConnectionManager:
    """A manager of ``size`` idle connections, bound round-robin as ``identities`` users."""
    users: dict[str | None, str | None] = dict(user(i) for i in range(identities))
    driver = FakeDriver(a=FakeServer(users={**users, None: None}))
    cm = ConnectionManager("ldap://a", size=size, retry_delay=0, driver=driver)
    with ExitStack() as held:  # check out ``size`` at once, so each one opens a connection
        for n in range(size):
            held.enter_context(cm.connection(*user(n % identities)))
    assert len(cm) == size
    return cm


def ns_per_pair(cm: ConnectionManager, callers: Sequence[tuple[str, str]], pairs: int) -> float:
    """Nanoseconds per ``with cm.connection(dn, pw): pass``, cycling over ``callers``."""
    count = len(callers)
    clock = time.perf_counter_ns
    began = clock()
    for n in range(pairs):
        with cm.connection(*callers[n % count]):
            pass
    return (clock() - began) / pairs


def measure(
    sizes: Sequence[int] = SIZES,
    identities: int = IDENTITIES,
    pairs: int = 20_000,
    rounds: int = 7,
) -> dict[int, float]:
    """Median ns per checkout + checkin for each size; sizes alternate round by round."""
    managers = {size: filled_manager(size, identities) for size in sizes}
    # Only identities that hold an idle connection at every size: always a reuse.
    callers = [user(i) for i in range(min(identities, *sizes))]
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    gc.collect()
    for cm in managers.values():
        ns_per_pair(cm, callers, pairs // 10)  # warm-up
    for turn in range(rounds):
        order = list(sizes[turn % len(sizes) :]) + list(sizes[: turn % len(sizes)])
        for size in order:
            samples[size].append(ns_per_pair(managers[size], callers, pairs))
    for cm in managers.values():
        cm.close()
    return {size: statistics.median(values) for size, values in samples.items()}


def main() -> None:
    result = measure()
    for size, ns in result.items():
        print(f"size {size:>5}: {ns / 1000:6.2f} us per checkout + checkin")
    print(f"size {SIZES[-1]} / size {SIZES[0]}: {result[SIZES[-1]] / result[SIZES[0]]:.2f}")


if __name__ == "__main__":
    main()
