"""Integration-test harness: a real slapd, a fault proxy, untrusted TLS material."""

from .auth import AuthSlapd, certificate_subject
from .certs import self_signed_certificate
from .factories import ManagerFactory, ProxyFactory
from .native import describe, search, whoami
from .proxy import FaultProxy, Mode, Op, SilentListener, request_ops
from .slapd import CERTS_DIR, ConfigExtras, Slapd, SlapdNotInstalled, User, find_slapd
from .waiting import WaitTimeout, wait_until

__all__ = [
    "CERTS_DIR",
    "AuthSlapd",
    "ConfigExtras",
    "FaultProxy",
    "ManagerFactory",
    "Mode",
    "Op",
    "ProxyFactory",
    "SilentListener",
    "Slapd",
    "SlapdNotInstalled",
    "User",
    "WaitTimeout",
    "certificate_subject",
    "describe",
    "find_slapd",
    "request_ops",
    "search",
    "self_signed_certificate",
    "wait_until",
    "whoami",
]
