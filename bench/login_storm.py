"""The login storm: many users' passwords checked at once, some of them wrong.

50 users; 8 threads, each trying one user after another (the same list for every
contestant, see ``bench/storm_worker.py``), every tenth attempt with a wrong password;
pools of size 8. The contestants: one pre-bound connection per thread that binds as
each user (the limit), ldappool 4's ``authenticate()``, and ldappool 3.0.0's ``with
cm.connection(dn, password)``; and a bare pool (a lock, a list, a ``with`` block)
around the limit's bind, the floor of what any pool adds. Per contestant: attempts per
second, binds the server completed per attempt, binds per wrong password (a second
storm of wrong passwords only), and connections the server accepted per attempt, all
from slapd's cn=Monitor, read between bursts so that each count belongs to one
contestant.

``make bench`` runs it (``bench/run.py``); alone: ``python -m bench.run --only
login-storm``.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

from bench.cores import split_cores
from bench.results import Check, errors_note, spread_note
from bench.spawn import run_script
from bench.storm_worker import credentials

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "storm_worker.py"
USERS = 50
THREADS = 8
SIZE = 8
#: Turns of the mixed storm and of the wrong one, per round; seconds per burst.
TURNS = 32
WRONG_TURNS = 2
BURST = 0.1

#: (group, contestant) -> row label, in table order.
LABELS = {
    ("python-ldap", "limit-python-ldap"): "pre-bound python-ldap, simple_bind_s (the limit)",
    ("python-ldap", "limit-ppolicy-python-ldap"): "pre-bound python-ldap + policy control",
    ("python-ldap", "floor-python-ldap"): "bare pool around simple_bind_s (the floor)",
    ("python-ldap", "ours-python-ldap"): "ldappool 4 python-ldap, auth_size 8",
    ("python-ldap", "ours-auth4-python-ldap"): "ldappool 4 python-ldap, auth_size 4 (default)",
    ("old", "limit-python-ldap"): "pre-bound python-ldap (the limit), 3.0.0's venv",
    ("old", "old"): "ldappool 3.0.0, with cm.connection(dn, pw)",
    ("ldap3", "limit-ldap3"): "pre-bound ldap3, bind (the limit)",
    ("ldap3", "ours-ldap3"): "ldappool 4 ldap3, auth_size 8",
}
Cell = tuple[str, str]  # group, contestant
PL_LIMIT: Cell = ("python-ldap", "limit-python-ldap")
PL_POLICY: Cell = ("python-ldap", "limit-ppolicy-python-ldap")
PL_FLOOR: Cell = ("python-ldap", "floor-python-ldap")
PL_OURS: Cell = ("python-ldap", "ours-python-ldap")
PL_OURS4: Cell = ("python-ldap", "ours-auth4-python-ldap")
L3_LIMIT: Cell = ("ldap3", "limit-ldap3")
L3_OURS: Cell = ("ldap3", "ours-ldap3")
OLD_LIMIT: Cell = ("old", "limit-python-ldap")
OLD: Cell = ("old", "old")
_FLOOR = "a lock, a list, a with block"


@dataclass(frozen=True)
class Group:
    """One worker process of a round: its interpreter and contestants (taking turns)."""

    name: str
    python: Path
    impls: tuple[str, ...]


def groups(old: Path | None) -> list[Group]:
    found = [
        Group(
            "python-ldap", Path(sys.executable), tuple(i for g, i in LABELS if g == "python-ldap")
        ),
        Group("ldap3", Path(sys.executable), (L3_LIMIT[1], L3_OURS[1])),
    ]
    if old is not None:
        found.append(Group("old", old, (OLD_LIMIT[1], OLD[1])))
    return found


def add_users(slapd: Slapd) -> None:
    """The storm's users, with the passwords the worker knows."""
    for i in range(USERS):
        uid, password = credentials(i)
        if uid not in slapd.users:
            slapd.add_user(uid, password)


def run_worker(group: Group, slapd: Slapd) -> list[dict[str, Any]]:
    argv = ["--impl", ",".join(group.impls)]
    argv += ["--uri", slapd.ldap_uri, "--ldapi", slapd.ldapi_uri, "--people-dn", slapd.people_dn]
    argv += ["--users", str(USERS), "--threads", str(THREADS), "--size", str(SIZE)]
    argv += ["--turns", str(TURNS), "--wrong-turns", str(WRONG_TURNS), "--burst", str(BURST)]
    return run_script(f"storm worker {group.name}", group.python, WORKER, argv)


def measure(
    slapd: Slapd, old: Path | None, rounds: int, split: bool = True
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Every round's records (with "round" and "group" added), the settings (what goes
    in the results file), and each group's versions.

    ``split``: slapd on a core of its own and the workers on the others
    (:mod:`bench.cores`), as a server and its clients on machines of their own."""
    add_users(slapd)
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    assert slapd.pid is not None, "slapd is not running"
    with split_cores(slapd.pid, split) as cores:
        print(f"  login storm: {cores.describe()}", flush=True)
        for rnd in range(rounds):
            todo = groups(old)
            todo = todo[rnd % len(todo) :] + todo[: rnd % len(todo)]
            for group in todo:
                print(f"  login storm, round {rnd + 1}/{rounds}: {group.name}", flush=True)
                for rec in run_worker(group, slapd):
                    if "versions" in rec:
                        venv = "ldappool 3.0.0 venv" if group.name == "old" else "our venv"
                        versions[venv] = rec["versions"]
                    else:
                        records.append({**rec, "round": rnd, "group": group.name})
    saved = {
        "cores": cores.describe(),
        "users": USERS,
        "threads": THREADS,
        "size": SIZE,
        "rounds": rounds,
        "turns": TURNS,
        "wrong_turns": WRONG_TURNS,
        "burst": BURST,
        "records": records,
    }
    return saved, versions


@dataclass(frozen=True)
class Totals:
    """One contestant's counts over every round of one storm."""

    ops: int = 0
    errors: int = 0
    wrong: int = 0  # attempts with a wrong password
    binds: int = 0
    connections: int = 0

    @property
    def attempts(self) -> int:
        return self.ops + self.errors

    def per_attempt(self, count: int) -> float | None:
        return count / self.attempts if self.attempts else None

    def binds_per_wrong_at_least(self) -> float | None:
        """Binds per wrong password in this storm, at least: if no right password costs
        more than one bind, the wrong ones cost the rest."""
        right = self.attempts - self.wrong
        return (self.binds - right) / self.wrong if self.wrong else None


class Storm:
    """The storm's records, queried by (group, contestant)."""

    def __init__(self, saved: Mapping[str, Any] | None) -> None:
        self.settings = {k: v for k, v in (saved or {}).items() if k != "records"}
        records: Sequence[Mapping[str, Any]] = (saved or {}).get("records", [])
        self._rates: dict[Cell, dict[int, float]] = {}
        self._bursts: dict[Cell, dict[tuple[int, int], float]] = {}
        #: The client's CPU seconds and attempts, burst by burst (records that have it).
        self._cpu: dict[Cell, dict[tuple[int, int], tuple[float, int]]] = {}
        self._totals: dict[tuple[Cell, str], Totals] = {}
        self._errors: dict[tuple[Cell, str], dict[str, int]] = {}
        for rec in records:
            cell, storm = (rec["group"], rec["impl"]), rec["storm"]
            errors = self._errors.setdefault((cell, storm), {})
            for kind, count in rec["errors"].items():
                errors[kind] = errors.get(kind, 0) + count
            was = self._totals.get((cell, storm), Totals())
            self._totals[(cell, storm)] = Totals(
                was.ops + rec["ops"],
                was.errors + sum(rec["errors"].values()),
                was.wrong + rec["wrong"],
                was.binds + rec["binds"],
                was.connections + rec["connections"],
            )
            if storm != "mixed":
                continue
            if rec["seconds"] > 0:
                self._rates.setdefault(cell, {})[rec["round"]] = rec["ops"] / rec["seconds"]
            bursts = self._bursts.setdefault(cell, {})
            for turn, ops, seconds in rec["bursts"]:
                if seconds > 0:
                    bursts[(rec["round"], turn)] = ops / seconds
            cpu = self._cpu.setdefault(cell, {})
            for (turn, ops, _), used in zip(rec["bursts"], rec.get("cpu", []), strict=False):
                if ops > 0:
                    cpu[(rec["round"], turn)] = (used, ops)

    def __bool__(self) -> bool:
        return bool(self._totals)

    def cells(self) -> list[Cell]:
        return [cell for cell in LABELS if (cell, "mixed") in self._totals]

    def rate(self, cell: Cell) -> float | None:
        """Attempts per second that ended as they should, median over the rounds."""
        rates = self._rates.get(cell)
        return statistics.median(rates.values()) if rates else None

    def pairs(self, a: Cell, b: Cell) -> list[float]:
        """The ratios of the bursts of ``a`` and ``b`` in the same round and turn (the
        same process: their group must be the same)."""
        ba, bb = self._bursts.get(a, {}), self._bursts.get(b, {})
        return [ba[k] / bb[k] for k in sorted(ba.keys() & bb.keys()) if bb[k] > 0]

    def ratio(self, a: Cell, b: Cell) -> float | None:
        pairs = self.pairs(a, b)
        return statistics.median(pairs) if pairs else None

    def cpu(self, cell: Cell) -> float | None:
        """The client's CPU microseconds per attempt, over all the timed bursts."""
        bursts = self._cpu.get(cell, {}).values()
        ops = sum(n for _, n in bursts)
        return sum(used for used, _ in bursts) / ops * 1e6 if ops else None

    def cpu_pairs(self, a: Cell, b: Cell) -> list[float]:
        """Like :meth:`pairs`, for the client's CPU per attempt."""
        ca, cb = self._cpu.get(a, {}), self._cpu.get(b, {})
        per = {k: (used / ops) for k, (used, ops) in cb.items()}
        return [ca[k][0] / ca[k][1] / per[k] for k in sorted(ca.keys() & per.keys()) if per[k] > 0]

    def totals(self, cell: Cell, storm: str = "mixed") -> Totals:
        return self._totals.get((cell, storm), Totals())

    def errors(self, cell: Cell, storm: str = "mixed") -> dict[str, int]:
        return dict(self._errors.get((cell, storm), {}))


def _spread(storm: Storm, a: Cell, b: Cell) -> str:
    return spread_note(storm.pairs(a, b))


def checks(storm: Storm) -> list[Check]:
    """The login storm's targets and information lines; none without a storm."""
    if not storm:
        return []
    found: list[Check] = []
    for name, cell, limit_cell, limit in (
        ("python-ldap", PL_OURS, PL_LIMIT, 0.95),
        ("python-ldap, default auth_size 4", PL_OURS4, PL_LIMIT, None),
        ("ldap3", L3_OURS, L3_LIMIT, None),
    ):
        errors = storm.errors(cell)
        found.append(
            Check(
                f"login storm: authenticate() / pre-bound bind, {name}, 8 threads",
                None if errors else storm.ratio(cell, limit_cell),
                limit,
                note=f"{errors_note(errors)}; {_spread(storm, cell, limit_cell)}",
                floor=storm.ratio(PL_FLOOR, PL_LIMIT) if limit is not None else None,
            )
        )
    for name, cell, limit_cell, what in (
        ("bare pool / pre-bound bind, python-ldap, 8 threads", PL_FLOOR, PL_LIMIT, _FLOOR),
        (
            "pre-bound bind with / without the password policy control, python-ldap",
            PL_POLICY,
            PL_LIMIT,
            "the server's work on the control",
        ),
        (
            "ldappool 3.0.0 / pre-bound bind, python-ldap, 8 threads",
            OLD,
            OLD_LIMIT,
            errors_note(storm.errors(OLD)),
        ),
    ):
        if storm.rate(cell) is not None:
            found.append(
                Check(
                    f"login storm: {name}",
                    storm.ratio(cell, limit_cell),
                    note=f"{what}; {_spread(storm, cell, limit_cell)}",
                )
            )
    for name, cell, base in (
        ("authenticate() / floor, python-ldap", PL_OURS, PL_FLOOR),
        ("authenticate() / pre-bound bind, python-ldap", PL_OURS, PL_LIMIT),
        ("bare pool / pre-bound bind, python-ldap", PL_FLOOR, PL_LIMIT),
        ("authenticate() / pre-bound bind, ldap3", L3_OURS, L3_LIMIT),
    ):
        pairs = storm.cpu_pairs(cell, base)
        if pairs:
            found.append(
                Check(
                    f"login storm: client CPU per attempt, {name}",
                    statistics.median(pairs),
                    note=f"{_figure(storm.cpu(cell), 1)} us against {_figure(storm.cpu(base), 1)}"
                    f" us; {spread_note(pairs)}",
                )
            )
    cells = [
        ("ldappool 4 python-ldap", PL_OURS, True),
        ("ldappool 4 ldap3", L3_OURS, True),
        ("ldappool 3.0.0", OLD, False),
    ]
    for name, cell, target in cells:
        wrong, mixed = storm.totals(cell, "wrong"), storm.totals(cell)
        if wrong.attempts:
            bound = mixed.binds_per_wrong_at_least()
            found.append(
                Check(
                    f"login storm: binds per wrong password, {name}",
                    wrong.per_attempt(wrong.binds),
                    1.0 if target else None,
                    relation="==",
                    note=f"{wrong.binds} binds for {wrong.attempts} wrong passwords; in the "
                    f"mixed storm at least {_figure(bound)}",
                )
            )
    for name, cell, target in cells:
        mixed = storm.totals(cell)
        if mixed.attempts:
            found.append(
                Check(
                    f"login storm: new connections per attempt, {name}",
                    mixed.per_attempt(mixed.connections),
                    0.01 if target else None,
                    relation="<",
                    note=f"{mixed.connections} for {mixed.attempts} attempts",
                )
            )
    return found


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def rows(storm: Storm) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per contestant."""
    header = [
        "login storm",
        "attempts/s",
        "binds / attempt",
        "binds / wrong password",
        "new connections / attempt",
        "new connections / wrong password",
        "client CPU us / attempt",
    ]
    body = []
    for cell in storm.cells():
        mixed, wrong = storm.totals(cell), storm.totals(cell, "wrong")
        rate = storm.rate(cell)
        errors = mixed.errors + wrong.errors
        body.append(
            [
                LABELS[cell],
                ("-" if rate is None else f"{rate:,.0f}") + (f" ({errors} err)" if errors else ""),
                _figure(mixed.per_attempt(mixed.binds)),
                _figure(wrong.per_attempt(wrong.binds)),
                _figure(mixed.per_attempt(mixed.connections), 4),
                _figure(wrong.per_attempt(wrong.connections), 4),
                _figure(storm.cpu(cell), 1),
            ]
        )
    return header, body


def text_table(storm: Storm) -> str:
    _, body = rows(storm)
    header = [
        "login storm",
        "attempts/s",
        "binds/att",
        "binds/wrong",
        "conns/att",
        "conns/wrong",
        "CPU us/att",
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *(fmt(r) for r in body)])
