"""Integration-test harness: a real slapd, a fault proxy, untrusted TLS material."""

from .certs import self_signed_certificate
from .factories import ManagerFactory, ProxyFactory
from .native import describe, search, whoami
from .proxy import FaultProxy, Mode
from .slapd import CERTS_DIR, Slapd, SlapdNotInstalled, User, find_slapd
from .waiting import WaitTimeout, wait_until

__all__ = [
    "CERTS_DIR",
    "FaultProxy",
    "ManagerFactory",
    "Mode",
    "ProxyFactory",
    "Slapd",
    "SlapdNotInstalled",
    "User",
    "WaitTimeout",
    "describe",
    "find_slapd",
    "search",
    "self_signed_certificate",
    "wait_until",
    "whoami",
]
