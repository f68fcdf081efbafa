"""``make bench``: start a slapd, measure every implementation, check the targets, report.

Run from the repository root: ``python -m bench.run``. Exits 1 if a target fails.

One round runs three worker processes (python-ldap, ldap3, the old ldappool 3.0.0 in
its own venv), in an order that rotates from round to round; inside each, the
implementations being compared take turns in short bursts. Medians over the rounds
go in the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

from bench import pool_micro, report
from bench.oldvenv import old_python
from bench.results import SCENARIOS, Measurements, checks

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "worker.py"
RESULTS = ROOT / "bench" / "results"
COMMAND = "make bench"
#: Scenarios joined by "+" take turns inside one worker: their ratio is drift-free.
CONTESTS = ("plain:1:8", "plain:8:8+plain:32:8", "tls:1:8", "tls:8:8+tls:32:8")


def groups(old: Path | None) -> list[tuple[str, Path, str]]:
    """(name, interpreter, implementations) for each worker process of a round."""
    ours = Path(sys.executable)
    found = [
        ("python-ldap", ours, "prebound-python-ldap,ours-python-ldap,fresh-python-ldap"),
        ("ldap3", ours, "prebound-ldap3,ours-ldap3,fresh-ldap3"),
    ]
    if old is not None:
        found.append(("old", old, "old"))
    return found


def run_worker(python: Path, impls: str, slapd: Slapd, seconds: float) -> list[dict[str, Any]]:
    user = slapd.users["alice"]
    argv = [str(python), str(WORKER), "--impl", impls, "--seconds", str(seconds)]
    argv += [f"--scenario={contest}" for contest in CONTESTS]
    argv += ["--uri", slapd.ldap_uri, "--dn", user.dn, "--password", user.password]
    argv += ["--ca-file", slapd.ca_file]
    # cwd outside the repository: the old venv must not see our ldappool package.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/", check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {impls} failed ({done.returncode}):\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def measure_server(
    old: Path | None, rounds: int, seconds: float
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Every round's records (with "round" and "group" added) and each group's versions."""
    records: list[dict[str, Any]] = []
    versions: dict[str, dict[str, str]] = {}
    with Slapd() as slapd:
        for rnd in range(rounds):
            todo = groups(old)
            todo = todo[rnd % len(todo) :] + todo[: rnd % len(todo)]
            for name, python, impls in todo:
                print(f"  round {rnd + 1}/{rounds}: {name}", flush=True)
                for rec in run_worker(python, impls, slapd, seconds):
                    if "versions" in rec:
                        versions[name] = rec["versions"]
                    else:
                        records.append({**rec, "round": rnd, "group": name})
    return records, versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.4, help="per cell and round")
    parser.add_argument("--no-old", action="store_true", help="skip ldappool 3.0.0")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/ and README alone")
    args = parser.parse_args(argv)
    began = time.monotonic()

    old = None if args.no_old else old_python()
    print("pool-only microbenchmark (fake driver)...", flush=True)
    micro = pool_micro.measure()
    n_cells = len(SCENARIOS) * 7
    print(f"server benchmark: {args.rounds} rounds, {n_cells} cells...", flush=True)
    records, versions = measure_server(old, args.rounds, args.seconds)

    measured = Measurements(records)
    results = checks(measured, micro)
    machine = report.machine(versions)
    print()
    print(report.text_table(measured))
    print()
    print(report.micro_table(micro))
    print()
    for check in results:
        print(check.line())

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = {
        "machine": machine,
        "command": COMMAND,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "micro_ns": micro,
        "records": records,
        "checks": [c.line() for c in results],
    }
    out = RESULTS / f"bench-{stamp}.json"
    out.write_text(json.dumps(payload, indent=1))
    if not args.no_docs:
        report.write_docs(measured, micro, results, machine, COMMAND)
    failed = [c for c in results if c.passed is False]
    print(f"\nresults: {out.relative_to(ROOT)}; wall time {time.monotonic() - began:.0f} s")
    print(f"{len(failed)} target(s) failed" if failed else "all targets met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
