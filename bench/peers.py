"""Peers: other connection pools for Python beside ldappool, on the server benchmark's search.

The workload of ``bench/worker.py`` (a base-scope search of one entry, bound as one
user) from 1, 8 and 32 threads on pools of size 8, for: ldappool 4 (python-ldap and
ldap3 drivers), ldappool 3.0.0, ldap3's own pool (its REUSABLE strategy) and bonsai's
``ThreadedConnectionPool``. Each library runs in a process of its own, in a virtualenv
of its own that ``make bench`` creates (``bench/oldvenv.py``), next to the limit it is
compared with: one pre-bound connection per thread, python-ldap's for the libldap-based
ones, ldap3's for ldap3's pool. A peer that cannot be installed is left out, with an
INFO line. No targets: ratios to the limit, paired bursts, and the spread.

``make bench`` runs it (``bench/run.py``); alone: ``python -m bench.run --only peers``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

from bench.oldvenv import ROOT, VenvError, venv_python
from bench.results import Check, errors_note, spread_note, tally
from bench.spawn import run_script, target_argv

WORKER = ROOT / "bench" / "peers_worker.py"
THREADS = (1, 8, 32)
SIZE = 8
#: Measured seconds per contestant with one thread in each round (with several
#: threads, 25 % more: see peers_worker.compare); seconds per burst with one thread
#: (2.5 times that with several). Less than the server benchmark's (0.6 s, four
#: rounds, four draws with one thread): the peers add under a minute.
SECONDS = 0.4
BURST = 0.02
ROUNDS = 2

#: The peers' virtualenvs: group -> (directory, requirements). python-ldap beside bonsai
#: is its limit's library, in the same process.
VENVS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "reusable": (ROOT / ".venv-bench-ldap3", ("ldap3==2.9.1",)),
    "bonsai": (ROOT / ".venv-bench-bonsai", ("bonsai==1.5.5", "python-ldap>=3.4")),
}
#: What each group's venv is called in the machine description.
VENV_NAMES = {
    "python-ldap": "our venv",
    "ldap3": "our venv",
    "old": "ldappool 3.0.0 venv",
    "reusable": "ldap3 peer venv",
    "bonsai": "bonsai peer venv",
}

Cell = tuple[str, str]  # group, contestant
#: (group, contestant) -> row label, in table order; the first of a group is its limit.
LABELS: dict[Cell, str] = {
    ("python-ldap", "limit-python-ldap"): "pre-bound python-ldap (the limit)",
    ("python-ldap", "ours-python-ldap"): "ldappool 4 python-ldap",
    ("ldap3", "limit-ldap3"): "pre-bound ldap3 (the limit)",
    ("ldap3", "ours-ldap3"): "ldappool 4 ldap3",
    ("old", "limit-python-ldap"): "pre-bound python-ldap (the limit), 3.0.0's venv",
    ("old", "old"): "ldappool 3.0.0",
    ("reusable", "limit-ldap3"): "pre-bound ldap3 (the limit), ldap3's venv",
    ("reusable", "reusable-ldap3"): "ldap3 REUSABLE",
    ("reusable", "reusable-1ms-ldap3"): "ldap3 REUSABLE, RESPONSE_SLEEPTIME 1 ms",
    ("bonsai", "limit-python-ldap"): "pre-bound python-ldap (the limit), bonsai's venv",
    ("bonsai", "prebound-bonsai"): "pre-bound bonsai, no pool",
    ("bonsai", "bonsai"): "bonsai ThreadedConnectionPool",
}
#: Short names for the README's lines (pools only).
SHORT: dict[Cell, str] = {
    ("python-ldap", "ours-python-ldap"): "ldappool 4 python-ldap",
    ("ldap3", "ours-ldap3"): "ldappool 4 ldap3",
    ("old", "old"): "ldappool 3.0.0",
    ("reusable", "reusable-ldap3"): "ldap3 REUSABLE",
    ("reusable", "reusable-1ms-ldap3"): "ldap3 REUSABLE with a 1 ms poll",
    ("bonsai", "bonsai"): "bonsai's pool",
}
#: What the peers that could not be set up are called in the INFO line.
PEER_NAMES = {"reusable": "ldap3's REUSABLE pool", "bonsai": "bonsai"}


def limit_of(group: str) -> Cell:
    return next(cell for cell in LABELS if cell[0] == group)


def limit_driver(group: str) -> str:
    return limit_of(group)[1].removeprefix("limit-")


@dataclass(frozen=True)
class Group:
    """One worker process of a round: its interpreter and contestants (taking turns)."""

    name: str
    python: Path
    impls: tuple[str, ...]


def peer_venvs() -> tuple[dict[str, Path], dict[str, str]]:
    """The peers' interpreters, creating their venvs if needed, and why any is missing."""
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for group, (venv, requirements) in VENVS.items():
        try:
            found[group] = venv_python(venv, requirements)
        except (VenvError, OSError) as exc:
            missing[group] = f"could not be installed ({exc})"
            print(f"INFO  peers: {PEER_NAMES[group]} left out: {missing[group]}", flush=True)
    return found, missing


def groups(old: Path | None, peers: Mapping[str, Path]) -> list[Group]:
    ours = Path(sys.executable)
    pythons = {"python-ldap": ours, "ldap3": ours, **({"old": old} if old else {}), **peers}
    return [
        Group(name, python, tuple(impl for g, impl in LABELS if g == name))
        for name, python in pythons.items()
    ]


def run_worker(group: Group, slapd: Slapd, seconds: float) -> list[dict[str, Any]]:
    argv = ["--impl", ",".join(group.impls)]
    argv += ["--threads", ",".join(map(str, THREADS)), "--size", str(SIZE)]
    argv += ["--seconds", str(seconds), "--burst", str(BURST), *target_argv(slapd)]
    return run_script(f"peers worker {group.name}", group.python, WORKER, argv)


def measure(
    slapd: Slapd, old: Path | None, rounds: int, seconds: float = SECONDS
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Every round's records (with "round" and "group" added), the settings and the
    peers left out (what goes in the results file), and each venv's versions.

    A peer's process that fails is left out from then on, with its reason; one of ours
    failing fails the bench."""
    peers, missing = peer_venvs()
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    for rnd in range(rounds):
        todo = [g for g in groups(old, peers) if g.name not in missing]
        todo = todo[rnd % len(todo) :] + todo[: rnd % len(todo)]
        for group in todo:
            print(f"  peers, round {rnd + 1}/{rounds}: {group.name}", flush=True)
            try:
                found = run_worker(group, slapd, seconds)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if group.name not in VENVS:
                    raise
                said = [line for line in str(exc).splitlines() if line.strip()]
                missing[group.name] = f"its worker failed: {said[-1].strip() if said else exc}"
                print(f"INFO  peers: {PEER_NAMES[group.name]} left out: {missing[group.name]}")
                records = [r for r in records if r["group"] != group.name]
                continue
            for rec in found:
                if "versions" in rec:
                    versions[VENV_NAMES[group.name]] = rec["versions"]
                else:
                    records.append({**rec, "round": rnd, "group": group.name})
    saved = {
        "threads": list(THREADS),
        "size": SIZE,
        "rounds": rounds,
        "seconds": seconds,
        "burst": BURST,
        "missing": missing,
        "records": records,
    }
    return saved, versions


Key = tuple[Cell, int]  # (group, contestant), threads


class Peers:
    """The peers' records, queried by (group, contestant) and thread count."""

    def __init__(self, saved: Mapping[str, Any] | None) -> None:
        self.settings = {k: v for k, v in (saved or {}).items() if k != "records"}
        self.missing: dict[str, str] = dict(self.settings.get("missing", {}))
        records: Sequence[Mapping[str, Any]] = (saved or {}).get("records", [])
        self._rates: dict[Key, dict[int, float]]
        self._bursts: dict[Key, dict[tuple[int, int], float]]
        self._errors: dict[Key, dict[str, int]]
        self._rates, self._bursts, self._errors = tally(records, "threads")

    def __bool__(self) -> bool:
        return bool(self._rates) or bool(self.missing)

    def cells(self) -> list[Cell]:
        """The contestants measured, limits excluded, in table order."""
        present = {cell for cell, _ in self._rates}
        return [c for c in LABELS if c in present and c != limit_of(c[0])]

    def threads(self) -> list[int]:
        return sorted({threads for _, threads in self._rates})

    def rate(self, cell: Cell, threads: int) -> float | None:
        """Operations per second, median over the rounds."""
        rates = self._rates.get((cell, threads))
        return statistics.median(rates.values()) if rates else None

    def pairs(self, cell: Cell, threads: int) -> list[float]:
        """The ratios of ``cell``'s bursts to its limit's in the same round and turn."""
        ba = self._bursts.get((cell, threads), {})
        bb = self._bursts.get((limit_of(cell[0]), threads), {})
        return [ba[k] / bb[k] for k in sorted(ba.keys() & bb.keys()) if bb[k] > 0]

    def ratio(self, cell: Cell, threads: int) -> float | None:
        pairs = self.pairs(cell, threads)
        return statistics.median(pairs) if pairs else None

    def errors(self, cell: Cell, threads: int) -> dict[str, int]:
        return dict(self._errors.get((cell, threads), {}))


def _threads(threads: int) -> str:
    return "1 thread" if threads == 1 else f"{threads} threads"


def checks(peers: Peers) -> list[Check]:
    """Information lines only: each contestant against its limit, per thread count; and
    the peers left out."""
    found: list[Check] = []
    for cell in peers.cells():
        for threads in peers.threads():
            if peers.rate(cell, threads) is None:
                continue
            errors = errors_note(peers.errors(cell, threads))
            found.append(
                Check(
                    f"peers: {LABELS[cell]} / pre-bound {limit_driver(cell[0])}, "
                    f"{_threads(threads)} on size {SIZE}",
                    peers.ratio(cell, threads),
                    note=f"{errors}; {spread_note(peers.pairs(cell, threads))}",
                )
            )
    for group, why in peers.missing.items():
        found.append(Check(f"peers: {PEER_NAMES.get(group, group)}", None, note=why))
    return found


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rate(peers: Peers, cell: Cell, threads: int) -> str:
    rate = peers.rate(cell, threads)
    errors = sum(peers.errors(cell, threads).values())
    return ("-" if rate is None else f"{rate:,.0f}") + (f" ({errors} err)" if errors else "")


def rows(peers: Peers) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per contestant and thread count."""
    header = [
        "peer",
        "threads",
        "ops/s",
        "its limit",
        "limit ops/s",
        "ratio to the limit",
        "middle half of the pairs",
    ]
    body = []
    for cell in peers.cells():
        for threads in peers.threads():
            pairs = peers.pairs(cell, threads)
            spread = "-"
            if len(pairs) >= 4:
                q1, _, q3 = statistics.quantiles(pairs, n=4)
                spread = f"{q1:.3f}-{q3:.3f}"
            body.append(
                [
                    LABELS[cell],
                    str(threads),
                    _rate(peers, cell, threads),
                    f"pre-bound {limit_driver(cell[0])}",
                    _rate(peers, limit_of(cell[0]), threads),
                    _figure(peers.ratio(cell, threads)),
                    spread,
                ]
            )
    return header, body


def text_table(peers: Peers) -> str:
    _, body = rows(peers)
    header = ["peers", "thr", "ops/s", "limit", "limit ops/s", "ratio", "middle half"]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    rule = "-" * len(fmt(header))
    lines = [fmt(header), rule, *(fmt(r) for r in body)]
    lines += [f"{PEER_NAMES.get(g, g)}: {why}" for g, why in peers.missing.items()]
    return "\n".join(lines)


def summary(peers: Peers) -> list[str]:
    """The README's lines: per thread count, each pool's ratio to its limit."""
    lines = []
    for threads in peers.threads():
        parts = [
            f"{name} {_figure(peers.ratio(cell, threads), 2)}"
            for cell, name in SHORT.items()
            if peers.rate(cell, threads) is not None
        ]
        lines.append(
            f"peers, {_threads(threads)} on size {SIZE}, ratio to the pre-bound limit: "
            + ", ".join(parts)
        )
    for group, why in peers.missing.items():
        lines.append(f"peers: {PEER_NAMES.get(group, group)} not measured, {why}")
    return lines
