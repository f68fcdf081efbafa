"""What ``ldappool check`` and ``ldappool top`` print.

``check``: one aligned block per server, a mark per step (the failing step and its
reason stand out), a summary line; or one JSON document with every measured field.
``top``: ``print(cm)`` and ``cm.stats()`` redrawn while a workload runs, or one JSON
line per interval. Every line goes through :class:`Output`, which masks the password
should any text ever carry it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

from ldappool._diagnose import ServerReport, Workload, check_server, manager
from ldappool._port import Server
from ldappool._probe import CheckOptions, Tls

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "Output", "run_check", "run_top"]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
_CLEAR = "\x1b[H\x1b[2J"


class Output:
    """stdout, with the password (should any text ever carry it) masked."""

    def __init__(self, password: str | None) -> None:
        self._password = password
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        try:
            "✔✘".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            self.marks = {True: "OK  ", False: "FAIL", None: "--  "}
        else:
            self.marks = {True: "✔", False: "✘", None: "-"}

    def __call__(self, text: str = "", end: str = "\n") -> None:
        if self._password and self._password in text:
            text = text.replace(self._password, "********")
        sys.stdout.write(text + end)
        sys.stdout.flush()


# -- check -------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def _tls_lines(tls: Tls) -> list[str]:
    lines = []
    if tls.error is not None:
        lines.append(f"error: {tls.error}")
    where = f"trust: {tls.trust}" + (f", host name {tls.hostname}" if tls.hostname else "")
    if tls.verified:
        lines.append(f"verified ({where})")
    elif tls.verify_reason:
        lines.append(f"NOT verified: {tls.verify_reason} ({where})")
    cert = tls.certificate
    if cert is not None:
        if not tls.verified:
            lines.append(f"certificate from the {tls.certificate_source}:")
        left = f"{cert.days_left:.0f} days left" if cert.days_left >= 0 else "EXPIRED"
        lines += [
            f"subject   {cert.subject}",
            f"issuer    {cert.issuer}",
            f"expires   {cert.not_after} ({left})",
            f"alt names {', '.join(cert.alt_names) or '(none)'}",
            f"sha256    {cert.sha256}",
        ]
    return lines


def _render(report: ServerReport, options: CheckOptions, out: Output) -> None:
    indent = " " * (2 + len(out.marks[True]) + 1 + 8 + 10 + 2)

    def row(ok: bool | None, name: str, seconds: float | None, text: str, *more: str) -> None:
        out(f"  {out.marks[ok]} {name:<8}{_ms(seconds):>10}  {text}".rstrip())
        for line in more:
            out(indent + line)

    out(f"{report.uri}  (driver {options.driver})")
    if report.resolve is None:
        row(None, "resolve", None, "skipped (ldapi://)")
    else:
        found = ", ".join(report.resolve.addresses)
        row(report.resolve.ok, "resolve", report.resolve.seconds, report.resolve.error or found)
    connect = report.connect
    if connect is None:
        row(None, "connect", None, "skipped (no address)")
    else:
        row(connect.ok, "connect", connect.seconds, connect.error or str(connect.address))
    tls = report.tls
    if tls is None:
        reason = (
            "the connect failed" if not (connect and connect.ok) else "no ldaps://, no --starttls"
        )
        row(None, "tls", None, f"not used ({reason})")
    else:
        head = ", ".join(p for p in (tls.mode, tls.version, tls.cipher) if p)
        if tls.starttls_seconds is not None:
            head += f" (StartTLS exchange {_ms(tls.starttls_seconds)})"
        row(tls.ok, "tls", tls.seconds, head, *_tls_lines(tls))
    bind = report.bind
    if bind is None:
        row(None, "bind", None, "skipped (no connection)")
    else:
        who = bind.dn or "anonymous"
        text = f"ok as {who}" if bind.ok else f"{bind.result} as {who}: {bind.error}"
        row(
            bind.ok,
            "bind",
            bind.seconds,
            text,
            "a new pooled connection: connect, TLS if any, bind (ldappool)",
        )
    who_am_i = report.whoami
    if who_am_i is None:
        row(None, "whoami", None, "skipped (no bound connection)")
    elif who_am_i.ok:
        rounds = f"median of {len(who_am_i.samples_seconds)} round trips"
        row(
            True,
            "whoami",
            who_am_i.median_seconds,
            f"{who_am_i.authzid or '(anonymous)'}  ({rounds})",
        )
    else:
        row(False, "whoami", None, f"failed: {who_am_i.error}")


def _as_json(report: ServerReport, options: CheckOptions) -> dict[str, Any]:
    """Every field of every step; tuples as lists, absent steps as null."""
    data = attrs.asdict(report)
    return {"uri": report.uri, "ok": report.ok, "driver": options.driver, **data}


def run_check(servers: Sequence[Server], options: CheckOptions, json_output: bool) -> int:
    """Check each server in turn, print the report; 0 only if every step passed."""
    out = Output(options.password)
    reports = []
    for server in servers:
        report = check_server(server, options)
        reports.append(report)
        if not json_output:
            _render(report, options, out)
            out()
    failed = [r.uri for r in reports if not r.ok]
    if json_output:
        out(json.dumps([_as_json(r, options) for r in reports], indent=2))
    elif failed:
        out(
            f"{out.marks[False]} FAIL: {len(failed)} of {len(reports)} server(s) failed: "
            + ", ".join(failed)
        )
    else:
        out(f"{out.marks[True]} OK: {len(reports)} server(s), every step passed")
    return EXIT_FAILED if failed else EXIT_OK


# -- top ---------------------------------------------------------------------------------


def run_top(
    servers: Sequence[Server],
    options: CheckOptions,
    *,
    size: int,
    threads: int,
    interval: float,
    duration: float,
    json_output: bool,
) -> int:
    """Run the workload for ``duration`` seconds, showing the pool every ``interval``."""
    out = Output(options.password)
    uri = " ".join(s.uri for s in servers)
    cm = manager(uri, options, size=size)
    workload = Workload(cm, threads)
    tty = sys.stdout.isatty() and not json_output
    start = last_time = time.monotonic()
    last_ops = 0
    interrupted = False

    def frame(now: float) -> None:
        nonlocal last_time, last_ops
        counts = workload.counts()
        rate = (counts.operations - last_ops) / max(now - last_time, 1e-9)
        last_time, last_ops = now, counts.operations
        stats = attrs.asdict(cm.stats())
        if json_output:
            line: dict[str, Any] = {
                "elapsed_seconds": round(now - start, 3),
                "operations": counts.operations,
                "operations_per_second": round(rate, 1),
                "errors": counts.errors,
                "last_error": counts.last_error,
                "stats": stats,
            }
            out(json.dumps(line))
            return
        out(_CLEAR if tty else "", end="")
        out(
            f"ldappool top  {uri}  driver {options.driver}  {threads} threads  "
            f"{now - start:.1f} s of {duration:g} s"
        )
        out(
            f"operations {counts.operations}  ({rate:.0f}/s)  errors {counts.errors}"
            + (f"  last error: {counts.last_error}" if counts.last_error else "")
        )
        out(str(cm))
        names = list(stats)
        for i in range(0, len(names), 4):
            out("  ".join(f"{n:>19} {stats[n]:<6}" for n in names[i : i + 4]).rstrip())
        if not tty:
            out()

    try:
        workload.start()
        deadline = start + duration
        while (now := time.monotonic()) < deadline:
            time.sleep(min(interval, deadline - now))
            frame(time.monotonic())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        workload.stop(timeout=options.timeout + 1)
        cm.close()
    errors = workload.counts().errors
    if interrupted:
        print("interrupted: the workload stopped and the pool was closed", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if errors else EXIT_OK
