"""len(), print(), repr() and stats(): what users see, and that no password is in it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ldappool import ConnectionManager
from ldappool._identity import IdentityHasher
from tests.unit.fakes import FakeClock

MakeCM = Callable[..., ConnectionManager]


def test_table_has_the_seed_columns_and_a_row_per_connection(
    make_cm: MakeCM, clock: FakeClock
) -> None:
    cm = make_cm(size=4, max_lifetime=300)
    lent = cm.connection("cn=alice", "alice-pw")
    lent.__enter__()
    with cm.connection():
        pass
    clock.advance(12.34)
    text = str(cm)
    header = text.splitlines()[1]
    for column in ["Slot (4 max)", "Connected", "Active", "URI", "Lifetime (300 max)", "Bind DN"]:
        assert column in header
    rows = [line for line in text.splitlines() if line.startswith("|")][1:]
    assert len(rows) == 2
    assert any("cn=alice" in r and " active" in r and "12.3" in r for r in rows)
    assert any("cn=svc" in r and "inactive" in r and "ldap://a" in r for r in rows)
    lent.__exit__(None, None, None)


def test_len_counts_open_connections(make_cm: MakeCM) -> None:
    cm = make_cm(size=3)
    assert len(cm) == 0
    leases = [cm.connection() for _ in range(2)]
    for lease in leases:
        lease.__enter__()
    assert len(cm) == 2
    for lease in leases:
        lease.__exit__(None, None, None)
    assert len(cm) == 2
    cm.close()
    assert len(cm) == 0


def test_no_password_in_str_repr_or_logs(
    make_cm: MakeCM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cm = make_cm(passwd="svc-secret")
    with cm.connection("cn=alice", "alice-pw"):
        pass
    lease = cm.connection("cn=bob", "bob-pw")
    shown = " ".join([str(cm), repr(cm), repr(lease), repr(cm.stats()), caplog.text])
    for secret in ("svc-secret", "alice-pw", "bob-pw"):
        assert secret not in shown
    assert "cn=svc" in repr(cm)


def test_passwords_are_held_only_while_lent(make_cm: MakeCM) -> None:
    cm = make_cm()
    lease = cm.connection("cn=alice", "alice-pw")
    with lease:
        assert "alice-pw" not in repr(lease)
        (lent,) = [slot for slot in cm._pool._machine._slots if slot.in_use]
        assert lent.credentials is not None
        assert lent.credentials.cred == "alice-pw"  # to rebind, should a read recovery reconnect
        assert "alice-pw" not in repr(lent.credentials)
    assert lease._credentials is None
    assert all(slot.credentials is None for slot in cm._pool._machine._slots)


def test_identity_digest_is_keyed_per_hasher() -> None:
    one, two = IdentityHasher(), IdentityHasher()
    assert one.identity("cn=a", "pw") == one.identity("cn=a", "pw")
    assert one.identity("cn=a", "pw") != one.identity("cn=a", "other")
    assert one.identity("cn=a", "pw") != one.identity("cn=b", "pw")
    assert one.identity("cn=a", "pw").key != two.identity("cn=a", "pw").key
    assert one.identity("cn=a", None) != one.identity("cn=a", "")
    assert one.identity(None, "x") != one.identity("", "x")
    assert one.identity("cn=a", "bc") != one.identity("cn=ab", "c")
    assert "pw" not in repr(one.identity("cn=a", "pw"))
    assert one.identity("cn=a", "pw").matches_dn("cn=a")


def test_stats_report_state(make_cm: MakeCM) -> None:
    cm = make_cm(size=5)
    lent = cm.connection()
    lent.__enter__()
    with cm.connection("cn=alice", "alice-pw"):
        pass
    stats = cm.stats()
    assert (stats.size, stats.connections, stats.in_use, stats.idle) == (5, 2, 1, 1)
    assert (stats.opened, stats.checkouts, stats.closed) == (2, 2, 0)
    lent.__exit__(None, None, None)
