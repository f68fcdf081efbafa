"""Bad input fails at construction, with an error naming the argument."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ldappool import ConnectionManager, DriverNotInstalledError, RetryPolicy
from ldappool._uris import parse_uris
from tests.unit.fakes import FakeDriver, FakeServer


def make(**kwargs: Any) -> ConnectionManager:
    kwargs.setdefault("uri", "ldap://a")
    kwargs.setdefault("driver", FakeDriver(a=FakeServer()))
    return ConnectionManager(**kwargs)


BAD = [
    ("uri", 42, TypeError),
    ("uri", "", ValueError),
    ("uri", " , ", ValueError),
    ("uri", "http://x", ValueError),
    ("uri", "ldap//x", ValueError),
    ("uri", "ldap://", ValueError),
    ("uri", "ldap://x:99999", ValueError),
    ("uri", "ldap://x:0", ValueError),
    ("uri", "ldap://x/dc=example", ValueError),
    ("uri", "ldap://user:pw@x", ValueError),
    ("bind", 5, TypeError),
    ("passwd", b"secret", TypeError),
    ("size", 0, ValueError),
    ("size", -3, ValueError),
    ("size", 2.0, TypeError),
    ("size", True, TypeError),
    ("retry_max", 0, ValueError),
    ("retry_delay", -0.1, ValueError),
    ("retry_delay", math.nan, ValueError),
    ("retry_delay", math.inf, ValueError),
    ("use_tls", "yes", TypeError),
    ("use_tls", 1, TypeError),
    ("timeout", 0, ValueError),
    ("timeout", -2, ValueError),
    ("timeout", "5", TypeError),
    ("use_pool", None, TypeError),
    ("max_lifetime", -1, ValueError),
    ("pool_timeout", -1, ValueError),
    ("pool_timeout", math.nan, ValueError),
    ("tls_ca_file", 3, TypeError),
    ("tls_cert_file", "", ValueError),
    ("tls_verify", "false", TypeError),
    ("retry", 3, TypeError),
    ("failover", "in-order", TypeError),
    ("lifetime", 600, TypeError),
    ("driver", "no-such-driver", ValueError),
    ("driver", 3, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD)
def test_bad_argument_raises_naming_it(name: str, value: object, error: type) -> None:
    with pytest.raises(error, match=name):
        make(**{name: value})


def test_key_file_needs_cert_file() -> None:
    with pytest.raises(ValueError, match="tls_key_file"):
        make(tls_key_file="/k.pem")


def test_connection_arguments_are_checked_at_call() -> None:
    cm = make()
    with pytest.raises(TypeError, match="bind"):
        cm.connection(bind=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="passwd"):
        cm.connection("cn=x", passwd=b"pw")  # type: ignore[arg-type]


def test_good_arguments_are_kept() -> None:
    cm = make(
        uri="ldap://a, ldaps://b:1636  ldapi://%2Ftmp%2Fsock",
        size=3,
        retry_max=5,
        retry_delay=0,
        timeout=2.5,
        max_lifetime=None,
        pool_timeout=None,
    )
    assert cm.uri == "ldap://a ldaps://b:1636 ldapi://%2Ftmp%2Fsock"
    assert cm.size == 3
    assert cm.timeout == 2.5
    assert cm.retry == RetryPolicy(max_attempts=5, delay=0.0)
    assert cm.lifetime.max_lifetime is None
    assert make(timeout=-1).timeout == -1  # what was passed, as in 3.x
    assert make(timeout=None).timeout is None


def test_uri_parsing() -> None:
    a, b, c = parse_uris(
        ["LDAP://Host.example:1389", "ldaps://[::1]", "ldapi://%2Fvar%2Frun%2Fldapi"]
    )
    assert (a.scheme, a.host, a.port) == ("ldap", "host.example", 1389)
    assert (b.scheme, b.host, b.port) == ("ldaps", "::1", None)
    assert (c.scheme, c.host, c.port) == ("ldapi", "/var/run/ldapi", None)
    assert len(parse_uris("ldap://a ldap://a,ldap://b")) == 2


def test_missing_driver_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ldap3", None)  # makes `import ldap3` fail
    monkeypatch.delitem(sys.modules, "ldappool._drivers.ldap3", raising=False)
    with pytest.raises(DriverNotInstalledError, match=r"ldappool\[ldap3\]"):
        make(driver="ldap3")
    with pytest.raises(ImportError):  # it is an ImportError too
        make(driver="ldap3")
