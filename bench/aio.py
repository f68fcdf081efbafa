"""asyncio: ldappool's AsyncConnectionManager against its threaded pool and bonsai's.

The server benchmark's search (a base-scope search of one entry, bound as one user) on
pools of size 8, from 1 and from 64 concurrent callers: tasks on one event loop for
AsyncConnectionManager (both drivers) and bonsai's ``AIOConnectionPool``, threads for
ConnectionManager. Ours run in one process (``bench/aio_worker.py``) and take turns in
bursts, so their ratios are paired bursts; bonsai runs in its own virtualenv (the one
the peers use, ``bench/peers.py``) and is compared with ours through the pre-bound
python-ldap limit both processes run. A bonsai that cannot be set up is left out, with
an INFO line. No targets: ratios with their spread, INFO lines.

``make bench`` runs it (``bench/run.py``); alone: ``python -m bench.run --only aio``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

from bench.oldvenv import ROOT, VenvError, venv_python
from bench.peers import VENVS
from bench.results import Check, errors_note, spread_note, tally
from bench.spawn import run_script, target_argv

WORKER = ROOT / "bench" / "aio_worker.py"
CALLERS = (1, 64)
SIZE = 8
SECONDS = 0.4
BURST = 0.02
ROUNDS = 2

#: group -> its contestants; the first is the limit both groups share.
GROUPS: dict[str, tuple[str, ...]] = {
    "ours": (
        "limit-python-ldap",
        "threads-python-ldap",
        "aio-python-ldap",
        "threads-ldap3",
        "aio-ldap3",
    ),
    "bonsai": ("limit-python-ldap", "bonsai-aio"),
}
LIMIT = "limit-python-ldap"
LABELS = {
    ("ours", LIMIT): "pre-bound python-ldap (the limit)",
    ("ours", "threads-python-ldap"): "ConnectionManager python-ldap (threads)",
    ("ours", "aio-python-ldap"): "AsyncConnectionManager python-ldap (tasks)",
    ("ours", "threads-ldap3"): "ConnectionManager ldap3 (threads)",
    ("ours", "aio-ldap3"): "AsyncConnectionManager ldap3 (tasks)",
    ("bonsai", LIMIT): "pre-bound python-ldap (the limit), bonsai's venv",
    ("bonsai", "bonsai-aio"): "bonsai AIOConnectionPool (tasks)",
}

Cell = tuple[str, str]  # group, contestant
Key = tuple[Cell, int]  # cell, callers


def run_worker(group: str, python: Path, slapd: Slapd, seconds: float) -> list[dict[str, Any]]:
    argv = ["--impl", ",".join(GROUPS[group])]
    argv += ["--callers", ",".join(map(str, CALLERS)), "--size", str(SIZE)]
    argv += ["--seconds", str(seconds), "--burst", str(BURST), *target_argv(slapd)]
    return run_script(f"asyncio worker {group}", python, WORKER, argv)


def measure(
    slapd: Slapd, rounds: int = ROUNDS, seconds: float = SECONDS
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Every round's records (with "round" and "group"), the settings and why bonsai is
    missing, if it is (what goes in the results file); and each venv's versions."""
    pythons = {"ours": Path(sys.executable)}
    missing: dict[str, str] = {}
    venv, requirements = VENVS["bonsai"]
    try:
        pythons["bonsai"] = venv_python(venv, requirements)
    except (VenvError, OSError) as exc:
        missing["bonsai"] = f"could not be installed ({exc})"
        print(f"INFO  asyncio: bonsai left out: {missing['bonsai']}", flush=True)
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    for rnd in range(rounds):
        todo = [g for g in pythons if g not in missing]
        todo = todo[rnd % len(todo) :] + todo[: rnd % len(todo)]
        for group in todo:
            print(f"  asyncio, round {rnd + 1}/{rounds}: {group}", flush=True)
            try:
                found = run_worker(group, pythons[group], slapd, seconds)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if group == "ours":
                    raise
                said = [line for line in str(exc).splitlines() if line.strip()]
                missing[group] = f"its worker failed: {said[-1].strip() if said else exc}"
                print(f"INFO  asyncio: bonsai left out: {missing[group]}", flush=True)
                records = [r for r in records if r["group"] != group]
                continue
            for rec in found:
                if "versions" in rec:
                    versions["our venv" if group == "ours" else "bonsai peer venv"] = rec[
                        "versions"
                    ]
                else:
                    records.append({**rec, "round": rnd, "group": group})
    saved = {
        "callers": list(CALLERS),
        "size": SIZE,
        "rounds": rounds,
        "seconds": seconds,
        "burst": BURST,
        "missing": missing,
        "records": records,
    }
    return saved, versions


class Aio:
    """The asyncio records, queried by (group, contestant) and concurrency."""

    def __init__(self, saved: Mapping[str, Any] | None) -> None:
        self.settings = {k: v for k, v in (saved or {}).items() if k != "records"}
        self.missing: dict[str, str] = dict(self.settings.get("missing", {}))
        self._rates: dict[Key, dict[int, float]]
        self._bursts: dict[Key, dict[tuple[int, int], float]]
        self._errors: dict[Key, dict[str, int]]
        records = (saved or {}).get("records", [])
        self._rates, self._bursts, self._errors = tally(records, "callers")

    def __bool__(self) -> bool:
        return bool(self._rates) or bool(self.missing)

    def callers(self) -> list[int]:
        return sorted({callers for _, callers in self._rates})

    def rate(self, cell: Cell, callers: int) -> float | None:
        """Operations per second, median over the rounds."""
        rates = self._rates.get((cell, callers))
        return statistics.median(rates.values()) if rates else None

    def pairs(self, a: Cell, b: Cell, callers: int) -> list[float]:
        """The ratios of ``a``'s bursts to ``b``'s: in the same round and turn when they
        share a process; else each one's ratio to its process's limit, paired by round
        and turn, divided."""
        if a[0] == b[0]:
            ba, bb = self._bursts.get((a, callers), {}), self._bursts.get((b, callers), {})
            return [ba[k] / bb[k] for k in sorted(ba.keys() & bb.keys()) if bb[k] > 0]
        na = dict(zip(*self._normalized(a, callers), strict=True))
        nb = dict(zip(*self._normalized(b, callers), strict=True))
        return [na[k] / nb[k] for k in sorted(na.keys() & nb.keys()) if nb[k] > 0]

    def _normalized(self, cell: Cell, callers: int) -> tuple[list[Any], list[float]]:
        ba = self._bursts.get((cell, callers), {})
        bl = self._bursts.get(((cell[0], LIMIT), callers), {})
        keys = [k for k in sorted(ba.keys() & bl.keys()) if bl[k] > 0]
        return keys, [ba[k] / bl[k] for k in keys]

    def ratio(self, a: Cell, b: Cell, callers: int) -> float | None:
        pairs = self.pairs(a, b, callers)
        return statistics.median(pairs) if pairs else None

    def errors(self, cell: Cell, callers: int) -> dict[str, int]:
        return dict(self._errors.get((cell, callers), {}))


#: The ratios reported: (name, numerator, denominator).
COMPARISONS: tuple[tuple[str, Cell, Cell], ...] = (
    (
        "AsyncConnectionManager / ConnectionManager, python-ldap",
        ("ours", "aio-python-ldap"),
        ("ours", "threads-python-ldap"),
    ),
    (
        "AsyncConnectionManager / ConnectionManager, ldap3",
        ("ours", "aio-ldap3"),
        ("ours", "threads-ldap3"),
    ),
    (
        "AsyncConnectionManager python-ldap / bonsai AIOConnectionPool",
        ("ours", "aio-python-ldap"),
        ("bonsai", "bonsai-aio"),
    ),
    (
        "AsyncConnectionManager python-ldap / pre-bound python-ldap",
        ("ours", "aio-python-ldap"),
        ("ours", LIMIT),
    ),
)


def _callers(count: int) -> str:
    return f"{count} task{'s' if count > 1 else ''} (or thread{'s' if count > 1 else ''})"


def checks(aio: Aio) -> list[Check]:
    """Information lines only: each comparison at each concurrency; bonsai left out."""
    found: list[Check] = []
    for name, a, b in COMPARISONS:
        for callers in aio.callers():
            if aio.rate(a, callers) is None or aio.rate(b, callers) is None:
                continue
            errors = errors_note(Counter(aio.errors(a, callers)) + Counter(aio.errors(b, callers)))
            found.append(
                Check(
                    f"asyncio: {name}, {_callers(callers)} on size {SIZE}",
                    aio.ratio(a, b, callers),
                    note=f"{errors}; {spread_note(aio.pairs(a, b, callers))}",
                )
            )
    for group, why in aio.missing.items():
        found.append(Check(f"asyncio: {group}", None, note=why))
    return found


def rows(aio: Aio) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per contestant and concurrency, with its ratio to the limit."""
    header = ["contestant", "callers", "ops/s", "ratio to pre-bound python-ldap", "middle half"]
    body = []
    for cell, label in LABELS.items():
        if cell[1] == LIMIT and cell[0] != "ours":
            continue
        for callers in aio.callers():
            rate = aio.rate(cell, callers)
            if rate is None:
                continue
            errors = sum(aio.errors(cell, callers).values())
            limit = (cell[0], LIMIT)
            pairs = aio.pairs(cell, limit, callers) if cell[1] != LIMIT else []
            spread = "-"
            if len(pairs) >= 4:
                q1, _, q3 = statistics.quantiles(pairs, n=4)
                spread = f"{q1:.3f}-{q3:.3f}"
            ratio = aio.ratio(cell, limit, callers) if cell[1] != LIMIT else 1.0
            body.append(
                [
                    label,
                    str(callers),
                    f"{rate:,.0f}" + (f" ({errors} err)" if errors else ""),
                    "-" if ratio is None else f"{ratio:.3f}",
                    spread,
                ]
            )
    return header, body


def text_table(aio: Aio) -> str:
    header, body = rows(aio)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    lines = [fmt(header), "-" * len(fmt(header)), *(fmt(r) for r in body)]
    lines += [f"{group}: {why}" for group, why in aio.missing.items()]
    return "\n".join(lines)


def summary(aio: Aio) -> list[str]:
    """The README's lines: the comparisons, figures only."""
    return [check.figure() for check in checks(aio)]


SECTION = """\
asyncio
=======

ldappool's ``AsyncConnectionManager`` (:doc:`asyncio`) against its threaded pool and
against bonsai's asyncio pool, on the workload above (the base-scope search of one
entry, bound as one user), on pools of size 8, from 1 and from 64 concurrent callers:
tasks on one event loop for the asyncio pools, threads for ``ConnectionManager``
(``bench/aio.py`` runs the rounds, ``bench/aio_worker.py`` the contestants).

- **AsyncConnectionManager python-ldap**: ``async with cm.connection() as conn:
  await conn.search(dn, SCOPE_BASE, ...)``; libldap's asynchronous calls awaited on the
  connection's socket, no thread.
- **AsyncConnectionManager ldap3**: the same, each ldap3 search in the pool's worker
  threads (at most 8).
- **ConnectionManager** (both drivers): ``with cm.connection() as conn`` around the
  synchronous search, from as many threads as there are callers.
- **bonsai AIOConnectionPool**: ``AIOConnectionPool(client, minconn=8, maxconn=8)``,
  opened first; each search ``async with pool.spawn() as conn: await
  conn.search(dn, LDAPSearchScope.BASE, ...)``. bonsai is a libldap client too, with an
  asyncio mode of its own; it runs in its virtualenv (the peers', above).

Ours take turns in bursts in one process, so their ratios pair bursts that ran within
milliseconds of each other. bonsai runs in another process; both processes also run
the pre-bound python-ldap limit (one connection per caller, threads, no pool), and
ours is compared with bonsai through it: each one's burst against its process's limit
in the same round and turn, then one against the other.

{figures}
"""

FIGURES = """\
Bursts of 20 ms with one caller, 50 ms with 64 (every other turn); {rounds} rounds, a
new process per round, {seconds} s per contestant with one caller. Operations per
second are medians over the rounds (``err``: exceptions in all rounds); ratios to the
pre-bound python-ldap limit of the same process (for ldap3 too: one yardstick for
all) medians over the paired bursts, with the middle half of those pairs:

{table}

Information only, no targets::

{checks}

Alone, about 20 seconds (prints the table and these lines, writes
``bench/results/aio-*.json``, leaves this page alone)::

    python -m bench.run --only aio
"""
