"""Every policy method, pure: no pool, no clock."""

from __future__ import annotations

import math

import pytest

from ldappool import FailoverPolicy, InOrder, LifetimePolicy, RetryPolicy, RoundRobin
from ldappool._uris import parse_uris


def test_retry_policy_defaults_match_the_seed() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.delay) == (3, 0.1)
    assert [policy.should_retry(n, OSError()) for n in (1, 2, 3)] == [True, True, False]
    assert policy.backoff(1) == policy.backoff(7) == 0.1


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"max_attempts": 1.5}, TypeError, "max_attempts"),
        ({"max_attempts": True}, TypeError, "max_attempts"),
        ({"delay": -1}, ValueError, "delay"),
        ({"delay": math.nan}, ValueError, "delay"),
        ({"delay": "1"}, TypeError, "delay"),
    ],
)
def test_retry_policy_rejects_bad_values(
    kwargs: dict[str, object], error: type, name: str
) -> None:
    with pytest.raises(error, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().delay = 2  # type: ignore[misc]


def test_in_order_keeps_the_listed_order() -> None:
    servers = parse_uris("ldap://a ldap://b ldap://c")
    assert list(InOrder().order(servers)) == list(servers)


def test_round_robin_rotates() -> None:
    servers = parse_uris("ldap://a ldap://b ldap://c")
    policy = RoundRobin()
    firsts = [policy.order(servers)[0].host for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    assert sorted(s.host for s in policy.order(servers)) == ["a", "b", "c"]


def test_failover_base_class_requires_order() -> None:
    with pytest.raises(NotImplementedError):
        FailoverPolicy().order(parse_uris("ldap://a"))


def test_failover_cooldown_is_validated() -> None:
    with pytest.raises(ValueError, match="cooldown"):
        InOrder(cooldown=-1)


def test_lifetime_expiry_has_bounded_jitter() -> None:
    policy = LifetimePolicy(max_lifetime=100, jitter=0.1)
    deadlines = {policy.expires_at(0.0) for _ in range(200)}
    assert all(90.0 <= d <= 100.0 for d in deadlines)
    assert len(deadlines) > 1  # connections opened together do not expire together
    assert LifetimePolicy(max_lifetime=None).expires_at(5.0) == math.inf
    assert LifetimePolicy(max_lifetime=10, jitter=0).expires_at(5.0) == 15.0


def test_lifetime_idle_and_ping_thresholds() -> None:
    policy = LifetimePolicy(max_idle=30, ping_after=10)
    assert not policy.should_ping(10) and policy.should_ping(10.5)
    assert not policy.too_idle(30) and policy.too_idle(31)
    never = LifetimePolicy(max_idle=None, ping_after=None)
    assert not never.should_ping(1e9) and not never.too_idle(1e9)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_lifetime": -1}, ValueError, "max_lifetime"),
        ({"max_idle": -5}, ValueError, "max_idle"),
        ({"ping_after": "x"}, TypeError, "ping_after"),
        ({"jitter": 1.0}, ValueError, "jitter"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"socket_check_after": -0.01}, ValueError, "socket_check_after"),
        ({"socket_check_after": math.inf}, ValueError, "socket_check_after"),
        ({"socket_check_after": None}, TypeError, "socket_check_after"),
    ],
)
def test_lifetime_policy_rejects_bad_values(
    kwargs: dict[str, object], error: type, name: str
) -> None:
    with pytest.raises(error, match=name):
        LifetimePolicy(**kwargs)  # type: ignore[arg-type]
