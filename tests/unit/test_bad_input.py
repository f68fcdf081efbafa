"""Property-based catalogue of bad input: always a clear error naming the argument.

Whatever is wrong, the manager raises ValueError or TypeError at construction (or at
``connection()`` for its own arguments), names the argument, and touches no server.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ldappool import ConnectionManager
from tests.unit.fakes import FakeDriver, FakeServer

not_a_number = st.one_of(
    st.text(max_size=5), st.binary(max_size=5), st.lists(st.integers(), max_size=2), st.booleans()
)
bad_float = st.sampled_from([math.nan, math.inf, -math.inf])
not_a_str = st.one_of(st.integers(), st.floats(), st.binary(max_size=5), st.booleans())

# argument -> values that must be refused
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "uri": st.one_of(
        not_a_str.filter(lambda v: not isinstance(v, (list, tuple))),
        st.text(alphabet=" ,\t\n", max_size=4),
        st.text(max_size=20).filter(lambda t: "://" not in t and t.strip(" ,\t\n\r\x0b\x0c")),
        st.from_regex(r"\A(http|ftp|ldapx|file)://[a-z]{1,8}\Z"),
        st.from_regex(r"\Aldaps?://[a-z]{1,8}:(0|[7-9][0-9]{4,6})\Z"),
        st.from_regex(r"\Aldaps?://[a-z]{1,8}/[a-z=,]{1,10}\Z"),
    ),
    "bind": not_a_str.filter(lambda v: v is not None),
    "passwd": not_a_str.filter(lambda v: v is not None),
    "size": st.one_of(st.integers(max_value=0), st.floats(), not_a_number),
    "retry_max": st.one_of(st.integers(max_value=0), st.floats(), not_a_number),
    "retry_delay": st.one_of(st.floats(max_value=-1e-9), bad_float, not_a_number),
    "use_tls": st.one_of(st.integers(), st.text(max_size=3), st.none()),
    "timeout": st.one_of(
        st.floats(max_value=0).filter(lambda v: v != -1), bad_float, not_a_number
    ),
    "use_pool": st.one_of(st.integers(), st.text(max_size=3), st.none()),
    "max_lifetime": st.one_of(st.floats(max_value=0, exclude_max=True), bad_float, not_a_number),
    "pool_timeout": st.one_of(st.floats(max_value=-1e-9), bad_float, not_a_number),
    "tls_ca_file": st.one_of(st.just(""), st.integers(), st.binary(min_size=1, max_size=4)),
    "tls_cert_file": st.one_of(st.just(""), st.integers()),
    "tls_key_file": st.one_of(st.just(""), st.integers()),
    "warn_held_after": st.one_of(st.floats(max_value=0), bad_float, not_a_number),
    "handoff_after": st.one_of(st.floats(max_value=-1e-9), bad_float, not_a_number, st.none()),
    "retry": st.one_of(st.integers(), st.text(max_size=3)),
    "failover": st.one_of(st.integers(), st.text(max_size=3)),
    "lifetime": st.one_of(st.integers(), st.floats()),
    "driver": st.one_of(
        st.integers(), st.text(max_size=8).filter(lambda t: t not in ("ldap3", "python-ldap"))
    ),
}


@settings(max_examples=40, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(BAD_VALUES)))
def test_bad_constructor_argument_is_refused_by_name(data: st.DataObject, name: str) -> None:
    value = data.draw(BAD_VALUES[name], label=name)
    server = FakeServer()
    driver = FakeDriver(a=server)
    args: dict[str, Any] = {"uri": "ldap://a", "driver": driver, name: value}
    try:
        ConnectionManager(**args)
    except (TypeError, ValueError) as exc:
        assert name in str(exc), f"{exc!r} does not name {name}"
    else:
        raise AssertionError(f"{name}={value!r} was accepted")
    assert driver.connect_calls == []  # refused before anything touched a server


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["bind", "passwd"]), value=BAD_VALUES["bind"])
def test_bad_connection_argument_is_refused_by_name(name: str, value: object) -> None:
    driver = FakeDriver(a=FakeServer())
    cm = ConnectionManager("ldap://a", driver=driver)
    try:
        cm.connection(**{name: value})  # type: ignore[arg-type]
    except TypeError as exc:
        assert name in str(exc)
    else:
        raise AssertionError(f"{name}={value!r} was accepted")
    assert len(cm) == 0 and driver.connect_calls == []


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=10**12),
    retry_max=st.integers(min_value=1, max_value=10**6),
    timeout=st.one_of(st.just(-1), st.none(), st.floats(min_value=1e-3, max_value=1e6)),
    max_lifetime=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e9)),
)
def test_any_good_values_build_a_working_manager(
    size: int, retry_max: int, timeout: float | None, max_lifetime: float | None
) -> None:
    server = FakeServer()
    cm = ConnectionManager(
        "ldap://a",
        size=size,
        retry_max=retry_max,
        timeout=timeout,
        max_lifetime=max_lifetime,
        driver=FakeDriver(a=server),
    )
    with cm.connection() as conn:
        assert conn.search() == "result"
    cm.close()
    assert server.live == 0
