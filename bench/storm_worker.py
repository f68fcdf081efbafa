"""One login-storm process: check passwords against a running slapd, print JSON.

Run as a script, in whichever virtualenv holds the implementation under test (the old
ldappool 3.0.0 has its own), like ``bench/worker.py``, whose timing (:class:`Crew`) and
bare connections it uses: only the standard library at the top, each library imported
when its contestant is set up.

Every contestant gets ``--threads`` threads; each thread works through the same list of
attempts for every contestant (a user drawn from ``--users`` with a fixed seed per
thread, every tenth attempt with a wrong password), so every contestant sees the same
mix. The contestants take turns in bursts (the mixed storm), then again with wrong
passwords only (the wrong storm). Between two bursts, all threads parked, the worker
reads slapd's counters over ldapi:// (anonymous, on one connection opened first and
kept: it never binds and opens nothing more), so the binds the server completed and
the connections it accepted in each burst belong to the contestant that ran it.

Output: one JSON line ``{"versions": {...}}``, then one line per contestant and storm:
``{"impl", "storm", "threads", "size", "ops", "errors", "wrong", "seconds", "binds",
"connections", "setup_binds", "setup_connections", "bursts", "cpu"}``: ``ops`` are attempts
that ended as they should (refused exactly when the password was wrong), ``errors``
the others by exception type, ``wrong`` how many attempts had a wrong password,
``binds`` and ``connections`` what the server counted during the timed bursts,
``setup_*`` what it counted while the contestant was set up and warmed up (before any
timing), ``bursts`` ``[turn, ops, seconds]`` as in ``worker.py``, ``cpu`` the CPU
seconds this process used in each of those bursts (all its threads: the client's cost).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

if __package__:  # imported as bench.storm_worker (type checks, tests)
    from bench.worker import BarePool, Crew, Target, bound, emit, versions
else:  # run as a script, bench/ is sys.path[0]: no package, whatever the venv
    from worker import (  # type: ignore[import-not-found,no-redef]
        BarePool,
        Crew,
        Target,
        bound,
        emit,
        versions,
    )

#: The contestants: see the functions below.
IMPLS = (
    "limit-python-ldap",
    "limit-ppolicy-python-ldap",
    "limit-ldap3",
    "floor-python-ldap",
    "ours-python-ldap",
    "ours-auth4-python-ldap",
    "ours-ldap3",
    "old",
)
#: Every WRONG_EVERY-th attempt of a thread has a wrong password.
WRONG_EVERY = 10
#: Attempts per thread before its list starts over (a multiple of WRONG_EVERY).
PLAN_LENGTH = 1000

#: One password check: True when the server accepted it, False when it refused it.
Check = Callable[[str, str], bool]


#: The password policy request control (draft-behera-ldap-password-policy).
PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"


def credentials(i: int) -> tuple[str, str]:
    """The uid and password of storm user ``i``."""
    return f"storm{i}", f"storm{i}-secret"


def user(people_dn: str, i: int) -> tuple[str, str]:
    """The DN and password of storm user ``i`` (``login_storm.add_users`` creates them)."""
    uid, password = credentials(i)
    return f"uid={uid},{people_dn}", password


def wrong_password(password: str) -> str:
    return password + "-wrong"


Attempt = tuple[str, str, bool]  # DN, password, whether the password is wrong


def plan(people_dn: str, users: int, thread: int, only_wrong: bool = False) -> list[Attempt]:
    """Thread ``thread``'s attempts: the same for every contestant and every run."""
    rng = random.Random(1000 + thread)
    found = []
    for n in range(PLAN_LENGTH):
        dn, password = user(people_dn, rng.randrange(users))
        wrong = only_wrong or n % WRONG_EVERY == WRONG_EVERY - 1
        found.append((dn, wrong_password(password) if wrong else password, wrong))
    return found


class UnexpectedOutcome(Exception):
    """A right password refused, or a wrong one accepted."""


@dataclass
class Plan:
    """What one thread of one contestant tries next, and how many wrong ones it tried."""

    attempts: list[Attempt]
    n: int = 0
    wrong: int = 0


def operation(check: Check, todo: Plan) -> Callable[[], None]:
    """The crew's operation: the thread's next attempt, which must end as it should."""

    def op() -> None:
        dn, password, wrong = todo.attempts[todo.n % PLAN_LENGTH]
        todo.n += 1
        if wrong:
            todo.wrong += 1
        if check(dn, password) is wrong:
            raise UnexpectedOutcome(f"{dn}: wrong password {'accepted' if wrong else 'refused'}")

    return op


# -- contestants: each yields one password check per thread ------------------------------


@contextmanager
def limit(
    uri: str, first: tuple[str, str], driver: str, threads: int, policy: bool = False
) -> Iterator[list[Check]]:
    """Each thread binds on its own connection, opened and bound (as the first user)
    before any timing, with the options our drivers set (worker.pl_connect, l3_connect).
    ``policy``: python-ldap only, each bind asks for the password policy answer, as
    ``authenticate()`` does."""
    target = Target(uri, first[0], first[1], "")
    with bound(target, False, driver, threads) as conns:
        if driver == "python-ldap":
            yield [_pl_check(conn, policy) for conn in conns]
        else:
            yield [_l3_check(conn) for conn in conns]


@contextmanager
def floor(uri: str, first: tuple[str, str], threads: int) -> Iterator[Check]:
    """The least any pool adds to the limit's bind: a lock, a list of as many bound
    connections as threads, a ``with`` block (``BarePool``), around ``simple_bind_s``."""
    import ldap

    target = Target(uri, first[0], first[1], "")
    refused = ldap.INVALID_CREDENTIALS
    with bound(target, False, "python-ldap", threads) as conns:
        pool = BarePool(conns)

        def check(dn: str, password: str) -> bool:
            with pool.connection() as conn:
                try:
                    conn.simple_bind_s(dn, password)
                except refused:
                    return False
                return True

        yield check


def _pl_check(conn: Any, policy: bool) -> Check:
    import ldap
    import ldap.controls

    bind, refused = conn.simple_bind_s, ldap.INVALID_CREDENTIALS
    controls = [ldap.controls.RequestControl(PPOLICY_OID, False)] if policy else None

    def check(dn: str, password: str) -> bool:
        try:
            bind(dn, password, controls)
        except refused:
            return False
        return True

    return check


def _l3_check(conn: Any) -> Check:
    def check(dn: str, password: str) -> bool:
        conn.user, conn.password = dn, password
        if conn.bind(read_server_info=False):
            return True
        if conn.result["result"] == 49:  # invalidCredentials
            return False
        raise PermissionError(f"bind failed: {conn.result}")

    return check


@contextmanager
def ours(uri: str, driver: str, size: int, auth_size: int | None) -> Iterator[Check]:
    """This project: ``cm.authenticate(dn, password)``."""
    from ldappool import ConnectionManager, InvalidCredentialsError

    cm = ConnectionManager(uri, size=size, auth_size=auth_size, driver=driver)
    authenticate = cm.authenticate

    def check(dn: str, password: str) -> bool:
        try:
            authenticate(dn, password)
        except InvalidCredentialsError:
            return False
        return True

    try:
        yield check
    finally:
        cm.close()


@contextmanager
def old(uri: str, size: int) -> Iterator[Check]:
    """ldappool 3.0.0 the way its programs checked a password: a bound connection.

    It logs every refused password at ERROR with a traceback: formatted as a program
    logging to a file would have it, then thrown away (not to flood the pipe).
    """
    import logging
    import os

    import ldap

    from ldappool import ConnectionManager

    sink = open(os.devnull, "w")  # noqa: SIM115 - closed with the contestant
    logger = logging.getLogger("ldappool")
    logger.addHandler(logging.StreamHandler(sink))
    logger.propagate = False
    cm: Any = ConnectionManager(uri, size=size)  # 3.0.0's: typed as ours here
    refused = ldap.INVALID_CREDENTIALS

    def check(dn: str, password: str) -> bool:
        try:
            with cm.connection(dn, password):
                pass
        except refused:
            return False
        return True

    try:
        yield check
    finally:
        # 3.0.0 has no close(), and its _pool is a list: unbind what it kept.
        for conn in list(cm._pool):
            try:
                conn.unbind_s()
            except Exception:  # noqa: S112 - best effort on a pool we are done with
                continue
        sink.close()


def checks(name: str, args: argparse.Namespace, stack: ExitStack) -> list[Check]:
    """One check per thread for contestant ``name``, set up now, torn down by ``stack``."""
    if name not in IMPLS:
        raise SystemExit(f"unknown contestant {name!r}; one of {', '.join(IMPLS)}")
    threads = args.threads
    if name.startswith("limit-"):
        first = user(args.people_dn, 0)
        driver = name.removeprefix("limit-").removeprefix("ppolicy-")
        policy = name.startswith("limit-ppolicy-")
        return stack.enter_context(limit(args.uri, first, driver, threads, policy))
    if name == "old":
        return [stack.enter_context(old(args.uri, args.size))] * threads
    if name == "floor-python-ldap":
        first = user(args.people_dn, 0)
        return [stack.enter_context(floor(args.uri, first, threads))] * threads
    auth_size = 4 if name.startswith("ours-auth4-") else args.size
    driver = name.removeprefix("ours-").removeprefix("auth4-")
    return [stack.enter_context(ours(args.uri, driver, args.size, auth_size))] * threads


# -- the server's counters ---------------------------------------------------------------


class Monitor:
    """slapd's Bind and connection counters, over one anonymous ldapi:// connection."""

    def __init__(self, ldapi_uri: str) -> None:
        import ldap

        self._ldap = ldap
        self._conn = ldap.initialize(ldapi_uri)
        self._conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        self._conn.set_option(ldap.OPT_TIMEOUT, 5.0)
        self._conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5.0)
        self.read()  # opens it: from here on, every connection counted is a contestant's

    def _read(self, dn: str, *names: str) -> list[int]:
        [(_dn, found)] = self._conn.search_s(dn, self._ldap.SCOPE_BASE, attrlist=list(names))
        return [int(found[name][0]) for name in names]

    def read(self) -> tuple[int, int]:
        """(binds completed, connections accepted) since slapd started, none in flight.

        slapd counts a bind as completed just after it sent the answer, so one the
        client already saw may not be counted yet: read until none is in flight.
        """
        for _ in range(1000):
            initiated, completed = self._read(
                "cn=Bind,cn=Operations,cn=Monitor", "monitorOpInitiated", "monitorOpCompleted"
            )
            if initiated == completed:
                break
        else:
            raise RuntimeError("binds still in flight after the burst")
        [accepted] = self._read("cn=Total,cn=Connections,cn=Monitor", "monitorCounter")
        return completed, accepted

    def close(self) -> None:
        self._conn.unbind_s()


# -- the storm ---------------------------------------------------------------------------


@dataclass
class Contestant:
    name: str
    plans: list[Plan]
    crew: Crew
    setup: tuple[int, int]  # binds, connections while set up and warmed up
    counted: list[int] = field(default_factory=lambda: [0, 0])  # in the timed bursts
    cpu: list[float] = field(default_factory=list)  # this process's CPU s, per burst


def storm(
    contestants: list[Contestant], monitor: Monitor, turns: int, burst: float, first_turn: int
) -> None:
    """``turns`` turns, each contestant one burst per turn in rotating order; what the
    server counted between two bursts goes to the contestant that ran the burst."""
    before = monitor.read()
    for turn in range(first_turn, first_turn + turns):
        shift = turn % len(contestants)
        for c in contestants[shift:] + contestants[:shift]:
            cpu = time.process_time()
            c.crew.burst(burst, turn)
            c.cpu.append(time.process_time() - cpu)
            now = monitor.read()
            c.counted[0] += now[0] - before[0]
            c.counted[1] += now[1] - before[1]
            before = now


def record(c: Contestant, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "impl": c.name,
        "storm": kind,
        "threads": args.threads,
        "size": args.size,
        "ops": c.crew.ops,
        "errors": dict(c.crew.errors),
        "wrong": sum(p.wrong for p in c.plans),
        "seconds": c.crew.busy,
        "binds": c.counted[0],
        "connections": c.counted[1],
        "setup_binds": c.setup[0],
        "setup_connections": c.setup[1],
        "bursts": c.crew.bursts,
        "cpu": c.cpu,
    }


def reset(c: Contestant) -> None:
    c.crew.reset()
    c.counted = [0, 0]
    c.cpu = []
    for p in c.plans:
        p.wrong = 0


def run(args: argparse.Namespace) -> None:
    emit({"versions": versions()})
    monitor = Monitor(args.ldapi)
    with ExitStack() as stack:
        stack.callback(monitor.close)
        contestants: list[Contestant] = []
        for name in args.impl.split(","):
            before = monitor.read()
            plans = [Plan(plan(args.people_dn, args.users, t)) for t in range(args.threads)]
            found = checks(name, args, stack)
            ops = [operation(check, p) for check, p in zip(found, plans, strict=True)]
            crew = Crew(ops)
            stack.callback(crew.close)
            crew.burst(args.burst)  # opens the pool's connections, warms the caches
            after = monitor.read()
            contestant = Contestant(
                name, plans, crew, (after[0] - before[0], after[1] - before[1])
            )
            reset(contestant)
            contestants.append(contestant)
        storm(contestants, monitor, args.turns, args.burst, 0)
        for c in contestants:
            emit(record(c, "mixed", args))
            reset(c)
            for t, p in enumerate(c.plans):
                p.attempts, p.n = plan(args.people_dn, args.users, t, only_wrong=True), 0
        storm(contestants, monitor, args.wrong_turns, args.burst, 100_000)
        for c in contestants:
            emit(record(c, "wrong", args))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True, help=f"comma-separated: {', '.join(IMPLS)}")
    parser.add_argument("--uri", required=True, help="ldap:// URI of the server")
    parser.add_argument("--ldapi", required=True, help="ldapi:// URI to read cn=Monitor")
    parser.add_argument("--people-dn", required=True, help="where the storm users are")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--size", type=int, default=8, help="pool size")
    parser.add_argument("--turns", type=int, default=8, help="turns of the mixed storm")
    parser.add_argument("--wrong-turns", type=int, default=2, help="turns of the wrong storm")
    parser.add_argument("--burst", type=float, default=0.1, help="seconds per burst")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
