"""``make bench``: start a slapd, measure every implementation, check the targets, report.

Run from the repository root: ``python -m bench.run``. Exits 1 if a target fails.

One round runs a few worker processes, in an order that rotates from round to round:
for each driver, the pre-bound limit and our pool, taking turns in short bursts inside
one process (their ratios are the targets); for each driver, no pool at all (its own
process: opening a connection per operation keeps slapd busy after the burst, which
would fall on whatever runs next); and the old ldappool 3.0.0, in its own venv.
Medians over the rounds go in the table; ratios are medians over paired bursts.
Then the login storm (``bench/login_storm.py``; ``--only login-storm`` runs it alone),
the hot path, step by step, the peers: other pools beside ours, each in a venv of
its own (``bench/peers.py``; ``--only peers`` runs it alone), and asyncio:
AsyncConnectionManager against the threaded pool and bonsai's (``bench/aio.py``;
``--only aio``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

from bench import aio, hot_path, login_storm, peers, pool_micro, report
from bench.oldvenv import old_python
from bench.results import DRIVERS, SCENARIOS, Check, Measurements, checks
from bench.spawn import run_script, target_argv

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "worker.py"
RESULTS = ROOT / "bench" / "results"
COMMAND = "make bench"
#: Scenarios joined by "+" take turns inside one worker: their ratio is drift-free.
CONTESTS = ("plain:1:8", "plain:8:8+plain:32:8", "tls:1:8", "tls:8:8+tls:32:8")
#: New connections for each of these parts of a 1-thread contest (see worker.run).
DRAWS = 4
#: No pool: one scenario at a time, a short run (the table shows it, no target needs it).
ALONE = ("plain:1:8", "plain:8:8", "plain:32:8", "tls:1:8", "tls:8:8", "tls:32:8")


@dataclass(frozen=True)
class Group:
    """One worker process of a round: what it runs, and for how long per scenario."""

    name: str
    python: Path
    impls: str
    contests: tuple[str, ...]
    share: float = 1.0  # of the --seconds per scenario


def groups(old: Path | None) -> list[Group]:
    ours = Path(sys.executable)
    found = [
        Group("python-ldap", ours, _impls("python-ldap"), CONTESTS),
        Group("ldap3", ours, _impls("ldap3"), CONTESTS),
        Group("python-ldap, no pool", ours, "fresh-python-ldap", ALONE, 0.25),
        Group("ldap3, no pool", ours, "fresh-ldap3", ALONE, 0.25),
    ]
    if old is not None:
        found.append(Group("old", old, "old", CONTESTS, 0.5))
    return found


def _impls(driver: str) -> str:
    return ",".join(f"{kind}-{driver}" for kind in ("prebound", "floor", "ours", "fifo"))


def run_worker(group: Group, slapd: Slapd, seconds: float) -> list[dict[str, Any]]:
    argv = ["--impl", group.impls]
    argv += ["--seconds", str(seconds * group.share), "--draws", str(DRAWS)]
    argv += [f"--scenario={contest}" for contest in group.contests]
    return run_script(f"worker {group.impls}", group.python, WORKER, [*argv, *target_argv(slapd)])


def measure_server(
    slapd: Slapd, old: Path | None, rounds: int, seconds: float
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Every round's records (with "round" and "group" added) and each group's versions."""
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    for rnd in range(rounds):
        todo = groups(old)
        todo = todo[rnd % len(todo) :] + todo[: rnd % len(todo)]
        for group in todo:
            print(f"  round {rnd + 1}/{rounds}: {group.name}", flush=True)
            for rec in run_worker(group, slapd, seconds):
                if "versions" in rec:
                    venv = "ldappool 3.0.0 venv" if group.name == "old" else "our venv"
                    versions[venv] = rec["versions"]
                else:
                    records.append({**rec, "round": rnd, "group": group.name})
    return records, versions


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.6, help="per cell and round")
    parser.add_argument("--hot-rounds", type=int, default=30, help="turns of the hot path")
    parser.add_argument("--no-old", action="store_true", help="skip ldappool 3.0.0")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/ and README alone")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the docs from a saved run"
    )
    parser.add_argument(
        "--only",
        choices=("login-storm", "peers", "aio"),
        help="run this part alone: print it, save it, leave docs/ and README alone",
    )
    parser.add_argument("--storm-rounds", type=int, default=3, help="rounds of the login storm")
    parser.add_argument(
        "--storm-shared-cores",
        action="store_true",
        help="run the login storm's slapd and clients on every core (bench/cores.py)",
    )
    parser.add_argument(
        "--peer-rounds", type=int, default=peers.ROUNDS, help="rounds of the peers"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peers")
    parser.add_argument("--aio-rounds", type=int, default=aio.ROUNDS, help="rounds of asyncio")
    parser.add_argument("--no-aio", action="store_true", help="skip the asyncio comparison")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.render is not None:
        return render(args.render)
    if args.only is not None:
        return {"login-storm": storm_only, "peers": peers_only, "aio": aio_only}[args.only](args)
    began = time.monotonic()

    old = None if args.no_old else old_python()
    print("pool-only microbenchmark (fake driver)...", flush=True)
    micro = pool_micro.measure()
    hot: dict[str, str] = {}
    with Slapd() as slapd:
        print(f"server benchmark: {args.rounds} rounds of {len(SCENARIOS)} scenarios...")
        records, versions = measure_server(slapd, old, args.rounds, args.seconds)
        print(f"login storm: {args.storm_rounds} rounds...", flush=True)
        storm_saved, _ = login_storm.measure(
            slapd, old, args.storm_rounds, split=not args.storm_shared_cores
        )
        print("hot path, step by step...", flush=True)
        for driver in DRIVERS:
            steps, per_turn = hot_path.breakdown(slapd, driver, args.hot_rounds)
            hot[driver] = hot_path.table(driver, args.hot_rounds, per_turn, steps)
        peers_saved, aio_saved = measure_others(slapd, old, args, versions)

    measured = Measurements(records)
    storm = login_storm.Storm(storm_saved)
    results = checks(measured, micro)
    storm_results = login_storm.checks(storm)
    peer = peers.Peers(peers_saved)
    peer_results = peers.checks(peer)
    asyncio_run = aio.Aio(aio_saved)
    aio_results = aio.checks(asyncio_run)
    machine = report.machine(versions)
    print()
    print(report.text_table(measured))
    print()
    print(login_storm.text_table(storm))
    print()
    others = (
        peers.text_table(peer) if peer else "",
        aio.text_table(asyncio_run) if asyncio_run else "",
    )
    for table in filter(None, others):
        print(table, end="\n\n")
    print(report.micro_table(micro))
    print()
    for text in hot.values():
        print(text, end="\n\n")
    for check in [*results, *storm_results, *peer_results, *aio_results]:
        print(check.line())

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = {
        "machine": machine,
        "command": COMMAND,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "micro_ns": micro,
        "hot_path": hot,
        "records": records,
        "login_storm": storm_saved,
        "peers": peers_saved,
        "aio": aio_saved,
        "checks": [c.line() for c in [*results, *storm_results, *peer_results, *aio_results]],
    }
    out = RESULTS / f"bench-{stamp}.json"
    out.write_text(json.dumps(payload, indent=1))
    if not args.no_docs:
        report.write_docs(
            measured,
            micro,
            hot,
            results,
            machine,
            COMMAND,
            storm,
            storm_results,
            peer,
            peer_results,
            asyncio_run,
        )
    failed = [c for c in [*results, *storm_results] if c.passed is False]
    print(f"\nresults: {out.relative_to(ROOT)}; wall time {time.monotonic() - began:.0f} s")
    print(f"{len(failed)} target(s) failed" if failed else "all targets met")
    return 1 if failed else 0


def measure_others(
    slapd: Slapd, old: Path | None, args: argparse.Namespace, versions: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The peers and asyncio (unless skipped): their saved records; their venvs'
    versions go into ``versions``."""
    peers_saved: dict[str, Any] | None = None
    if not args.no_peers:
        print(f"peers: {args.peer_rounds} rounds...", flush=True)
        peers_saved, peer_versions = peers.measure(slapd, old, args.peer_rounds)
        for venv, found in peer_versions.items():
            versions.setdefault(venv, found)
    aio_saved: dict[str, Any] | None = None
    if not args.no_aio:
        print(f"asyncio: {args.aio_rounds} rounds...", flush=True)
        aio_saved, aio_versions = aio.measure(slapd, args.aio_rounds)
        for venv, found in aio_versions.items():
            versions.setdefault(venv, found)
    return peers_saved, aio_saved


def storm_only(args: argparse.Namespace) -> int:
    """The login storm alone: print its table and lines, save its records."""
    began = time.monotonic()
    old = None if args.no_old else old_python()
    with Slapd() as slapd:
        print(f"login storm: {args.storm_rounds} rounds...", flush=True)
        storm_saved, versions = login_storm.measure(
            slapd, old, args.storm_rounds, split=not args.storm_shared_cores
        )
    storm = login_storm.Storm(storm_saved)
    results = login_storm.checks(storm)
    out = _part_saved(
        "login-storm", "login_storm", storm_saved, versions, login_storm.text_table(storm), results
    )
    failed = [c for c in results if c.passed is False]
    print(f"\nresults: {out.relative_to(ROOT)}; wall time {time.monotonic() - began:.0f} s")
    print(f"{len(failed)} target(s) failed" if failed else "all targets met")
    return 1 if failed else 0


def _part_saved(
    name: str, key: str, saved: Any, versions: Any, table: str, results: list[Check]
) -> Path:
    """Print one part's table and lines (``--only name``); save its records."""
    print()
    print(table)
    print()
    for check in results:
        print(check.line())
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": report.machine(versions),
        "command": f"python -m bench.run --only {name}",
        key: saved,
        "checks": [c.line() for c in results],
    }
    prefix = "storm" if name == "login-storm" else name
    out = RESULTS / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(payload, indent=1))
    return out


def peers_only(args: argparse.Namespace) -> int:
    """The peers alone: print their table and lines, save their records."""
    began = time.monotonic()
    old = None if args.no_old else old_python()
    with Slapd() as slapd:
        print(f"peers: {args.peer_rounds} rounds...", flush=True)
        saved, versions = peers.measure(slapd, old, args.peer_rounds)
    peer = peers.Peers(saved)
    results = peers.checks(peer)
    out = _part_saved("peers", "peers", saved, versions, peers.text_table(peer), results)
    print(f"\nresults: {out.relative_to(ROOT)}; wall time {time.monotonic() - began:.0f} s")
    return 0


def aio_only(args: argparse.Namespace) -> int:
    """asyncio alone: print its table and lines, save its records."""
    began = time.monotonic()
    with Slapd() as slapd:
        print(f"asyncio: {args.aio_rounds} rounds...", flush=True)
        saved, versions = aio.measure(slapd, args.aio_rounds)
    found = aio.Aio(saved)
    results = aio.checks(found)
    out = _part_saved("aio", "aio", saved, versions, aio.text_table(found), results)
    print(f"\nresults: {out.relative_to(ROOT)}; wall time {time.monotonic() - began:.0f} s")
    return 0


def render(saved: Path) -> int:
    """Rewrite docs/performance.rst, its chart and the README block from a results file
    of a whole run (``bench-*.json``; one without the login storm or the peers says so)."""
    payload = json.loads(saved.read_text())
    micro = {int(size): ns for size, ns in payload["micro_ns"].items()}
    measured = Measurements(payload["records"])
    storm = login_storm.Storm(payload.get("login_storm"))
    results = checks(measured, micro)
    storm_results = login_storm.checks(storm)
    peer = peers.Peers(payload.get("peers"))
    report.write_docs(
        measured,
        micro,
        payload["hot_path"],
        results,
        payload["machine"],
        payload["command"],
        storm,
        storm_results,
        peer,
        peers.checks(peer),
        aio.Aio(payload.get("aio")),
    )
    return 1 if any(c.passed is False for c in [*results, *storm_results]) else 0


if __name__ == "__main__":
    sys.exit(main())
