from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ldappool import ConnectionManager
from tests.unit.fakes import FakeClock, FakeDriver, FakeServer

USERS = {None: None, "cn=svc": "svc-secret", "cn=alice": "alice-pw", "cn=bob": "bob-pw"}


@pytest.fixture
def server() -> FakeServer:
    return FakeServer(users=dict(USERS))


@pytest.fixture
def driver(server: FakeServer) -> FakeDriver:
    return FakeDriver(a=server)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_cm(driver: FakeDriver, clock: FakeClock) -> Iterator[Callable[..., ConnectionManager]]:
    made: list[ConnectionManager] = []

    def make(**overrides: Any) -> ConnectionManager:
        args: dict[str, Any] = {
            "uri": "ldap://a",
            "bind": "cn=svc",
            "passwd": "svc-secret",
            "retry_delay": 0.0,
            "driver": driver,
            "clock": clock,
            "pool_timeout": 5.0,
        }
        args.update(overrides)
        cm = ConnectionManager(**args)
        made.append(cm)
        return cm

    yield make
    for cm in made:
        cm.close()
