"""The driver registry: built-ins by name, third-party drivers by entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from ldappool import ConnectionManager
from ldappool import _registry as drivers
from tests.unit.fakes import FakeDriver, FakeServer


class ExampleDriver(FakeDriver):
    """A third-party driver as a plugin would ship it: a class built with no arguments."""

    name = "example"

    def __init__(self) -> None:
        super().__init__(a=FakeServer())


def test_built_in_drivers_by_name() -> None:
    assert drivers.resolve("python-ldap").name == "python-ldap"
    assert drivers.resolve("ldap3").name == "ldap3"


def test_driver_object_is_used_as_is() -> None:
    driver = FakeDriver()
    assert drivers.resolve(driver) is driver


def test_entry_point_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint(
        name="example", value="tests.unit.test_registry:ExampleDriver", group="ldappool.drivers"
    )

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [point] if group == drivers.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(drivers, "entry_points", fake_entry_points)
    assert "example" in drivers.available_drivers()
    cm = ConnectionManager("ldap://a", driver="example")
    with cm.connection() as conn:
        assert conn.search() == "result"
    assert cm.driver.name == "example"
    cm.close()


def test_entry_point_must_build_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint(name="broken", value="builtins:dict", group="ldappool.drivers")
    monkeypatch.setattr(drivers, "entry_points", lambda group: [point])
    with pytest.raises(TypeError, match="broken"):
        drivers.resolve("broken")
