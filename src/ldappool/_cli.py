"""``ldappool check`` and ``ldappool top``: diagnostics for operators.

``check`` answers "why can't my service talk to the directory?" one step at a time
(name, TCP, TLS and its certificate, bind, WhoAmI), so that the failing step and its
reason are on the screen without reading a driver's traceback. ``top`` shows the pool
itself (``print(cm)`` and ``cm.stats()``) under a small workload. This module parses
and checks the arguments (bad ones exit with status 2 before any I/O); the probing
lives in :mod:`ldappool._probe` and :mod:`ldappool._diagnose`, the output in
:mod:`ldappool._report`.

No option takes a password: command lines are readable by every user of the machine
(``ps``, ``/proc/<pid>/cmdline``) and end up in shell histories. The password comes
from a file or from the terminal, and is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from ldappool._errors import DriverNotInstalledError
from ldappool._port import Server
from ldappool._probe import CheckOptions
from ldappool._registry import available_drivers, resolve
from ldappool._report import EXIT_INTERRUPTED, run_check, run_top
from ldappool._uris import parse_uris

__all__ = ["main"]

EXIT_USAGE = 2
_NO_PASSWORD_OPTION = (
    "There is deliberately no option that takes the password itself: a command line is "
    "visible to every user of the machine (ps, /proc/PID/cmdline) and is kept in shell "
    "history. Use --password-file (its first line) or --ask-password."
)
_EXIT_CODES = (
    "Exit status: 0 when every step of every server went well, 1 when any failed "
    "(unreachable server, refused or unverifiable certificate, refused bind...), "
    "2 for bad arguments, 130 when interrupted."
)


class UsageError(Exception):
    """Arguments that cannot work: exit status 2, with the message."""


# -- arguments -------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


_FILES = {
    "--tls-ca-file": "CA certificates to verify servers with (default: the system store)",
    "--tls-cert-file": "client certificate (PEM; may hold the key too)",
    "--tls-key-file": "the client certificate's key",
}
_TOP = {  # option: (type, default, help)
    "--size": (_count, 4, "pool size"),
    "--threads": (_count, 4, "worker threads"),
    "--interval": (_positive, 1.0, "seconds between redraws"),
    "--duration": (_positive, 10.0, "seconds the workload runs; it always ends"),
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "uris",
        nargs="+",
        metavar="URI",
        help="ldap://, ldaps:// or ldapi:// URIs, separated by spaces and/or commas",
    )
    parser.add_argument("--bind", metavar="DN", help="bind DN (default: anonymous)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="FILE", help="the password: FILE's first line")
    secret.add_argument("--ask-password", action="store_true", help="prompt for the password")
    for option, text in _FILES.items():
        parser.add_argument(option, metavar="FILE", help=text)
    parser.add_argument("--starttls", action="store_true", help="StartTLS on ldap:// URIs")
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=5.0,
        metavar="S",
        help="seconds for each step and operation (default: %(default)s)",
    )
    parser.add_argument(
        "--driver",
        default="python-ldap",
        choices=available_drivers(),
        help="the driver of the bind and the workload (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="JSON output, for scripts")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show ldappool's log (DEBUG) on stderr"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldappool",
        description="Diagnostics for LDAP servers, through ldappool.",
        epilog=_NO_PASSWORD_OPTION,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="probe each server step by step: name, TCP, TLS, bind, WhoAmI",
        description="Probe each server: name resolution, TCP connect, TLS (ldaps:// or "
        "--starttls) with the certificate and its verification, a bind through ldappool, "
        "WhoAmI latency.",
        epilog=f"{_NO_PASSWORD_OPTION} {_EXIT_CODES}",
    )
    _common(check)
    top = commands.add_parser(
        "top",
        help="run a small workload and show the pool's table and counters",
        description="Run N threads doing WhoAmI and root DSE reads through one pool, and "
        "show print(cm) and cm.stats() every --interval seconds, for --duration seconds.",
        epilog=f"{_NO_PASSWORD_OPTION} Exit status: 0 when no operation failed, 1 otherwise, "
        "2 for bad arguments, 130 when interrupted (Ctrl-C).",
    )
    _common(top)
    for option, (kind, default, text) in _TOP.items():
        metavar = "S" if kind is _positive else "N"
        top.add_argument(
            option,
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} (default: %(default)s)",
        )
    return parser


def _readable(option: str, path: str | None) -> None:
    if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise UsageError(f"{option}: {path!r} is not a readable file")


def _password(args: argparse.Namespace) -> str | None:
    """The password, from the file's first line or the terminal; never from argv."""
    if args.password_file is not None:
        _readable("--password-file", args.password_file)
        with open(args.password_file, encoding="utf-8") as file:
            password = file.readline().rstrip("\r\n")
        if not password:
            raise UsageError(f"--password-file: the first line of {args.password_file!r} is empty")
        return password
    if args.ask_password:
        try:
            password = getpass.getpass(f"Password for {args.bind}: ")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("--ask-password: no password entered") from None
        if not password:
            raise UsageError("--ask-password: the password is empty")
        return password
    return None


def _options(args: argparse.Namespace) -> tuple[tuple[Server, ...], CheckOptions]:
    """Check everything that can be checked before any I/O; raise UsageError."""
    try:
        servers = parse_uris(" ".join(args.uris))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if (args.password_file is not None or args.ask_password) and not args.bind:
        raise UsageError("a password needs --bind DN (without --bind the bind is anonymous)")
    if args.bind is not None and not args.bind:
        raise UsageError("--bind: the DN is empty (leave --bind out for an anonymous bind)")
    if args.bind and args.password_file is None and not args.ask_password:
        raise UsageError(
            "--bind needs --password-file or --ask-password: a DN without a password would "
            "be an unauthenticated bind, which servers answer as anonymous"
        )
    if args.tls_key_file and not args.tls_cert_file:
        raise UsageError("--tls-key-file needs --tls-cert-file")
    for option in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        _readable("--" + option.replace("_", "-"), getattr(args, option))
    try:
        resolve(args.driver)
    except DriverNotInstalledError as exc:
        raise UsageError(str(exc)) from None
    options = CheckOptions(
        bind=args.bind,
        password=_password(args),
        ca_file=args.tls_ca_file,
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        starttls=args.starttls,
        timeout=args.timeout,
        driver=args.driver,
    )
    return servers, options


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """ldappool's own log on stderr with -v; otherwise silent: the report says it all."""
    logger = logging.getLogger("ldappool")
    handler: logging.Handler = logging.NullHandler()
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ldappool`` command; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (status 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        servers, options = _options(args)
    except UsageError as exc:
        print(f"ldappool {args.command}: error: {exc}", file=sys.stderr)
        print(f"(see: ldappool {args.command} --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _logging(args.verbose):
            if args.command == "check":
                return run_check(servers, options, args.json)
            return run_top(
                servers,
                options,
                size=args.size,
                threads=args.threads,
                interval=args.interval,
                duration=args.duration,
                json_output=args.json,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
