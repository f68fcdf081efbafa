"""OpenTelemetryMetrics: the connection pool instruments of the semantic conventions,
read by the SDK's in-memory reader, against the fake driver and its clock."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import _internal as otel_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)

import ldappool
from ldappool import (
    ConnectionManager,
    Event,
    EventKind,
    InOrder,
    InvalidCredentialsError,
    MaxConnectionReachedError,
    OpenTelemetryMetrics,
    _otel,
)
from ldappool._port import ConnectSettings, Server
from tests.unit.fakes import FakeClock, FakeConnection, FakeDown, FakeDriver, FakeServer
from tests.unit.polling import eventually

MakeCM = Callable[..., ConnectionManager]
POOL = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
SECONDS = "s"


class SlowDriver(FakeDriver):
    """Opening a connection takes ``seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float, **servers: FakeServer) -> None:
        super().__init__(**servers)
        self.clock, self.seconds = clock, seconds

    def connect(self, server: Server, settings: ConnectSettings) -> FakeConnection:
        self.clock.advance(self.seconds)
        return super().connect(server, settings)


class SpyMeter:
    """An SDK meter that notes which kind of instrument each name was made as."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter
        self.made: dict[str, tuple[str, str]] = {}

    def __getattr__(self, method: str) -> Any:
        real = getattr(self.meter, method)

        def create(name: str, *args: Any, **kwargs: Any) -> Any:
            instrument = real(name, *args, **kwargs)
            self.made[name] = (method, instrument.unit)
            return instrument

        return create if method.startswith("create_") else real


class SpyProvider:
    def __init__(self, provider: MeterProvider) -> None:
        self.provider = provider
        self.meter: SpyMeter | None = None

    def get_meter(self, name: str, version: str | None = None) -> SpyMeter:
        self.meter = SpyMeter(self.provider.get_meter(name, version))
        return self.meter


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    made = MeterProvider(metric_readers=[reader])
    yield made
    made.shutdown()


@pytest.fixture
def watch(provider: MeterProvider) -> Iterator[Callable[..., OpenTelemetryMetrics]]:
    made: list[OpenTelemetryMetrics] = []

    def make(cm: ConnectionManager, pool_name: str = "directory") -> OpenTelemetryMetrics:
        metrics = OpenTelemetryMetrics(cm, pool_name=pool_name, meter_provider=provider)
        made.append(metrics)
        return metrics

    yield make
    for metrics in made:
        metrics.close()


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def numbers(found: dict[str, Metric], name: str, pool: str = "directory") -> dict[str, float]:
    """A sum's values for ``pool``: keyed by state (count), reason, or "" (the others)."""
    if name not in found:
        return {}
    data = found[name].data
    assert isinstance(data, Sum)
    values: dict[str, float] = {}
    for point in data.data_points:
        assert isinstance(point, NumberDataPoint)
        attrs = dict(point.attributes or {})
        if attrs.pop(POOL) == pool:
            key = str(attrs.pop(STATE, None) or attrs.pop(_otel.REASON, None) or "")
            values[key] = point.value
    return values


def histogram(found: dict[str, Metric], name: str, pool: str = "directory") -> HistogramDataPoint:
    data = found[name].data
    assert isinstance(data, Histogram)
    (point,) = [p for p in data.data_points if dict(p.attributes or {}) == {POOL: pool}]
    return point


def test_each_instrument_has_the_conventions_name_kind_and_unit(
    make_cm: MakeCM, provider: MeterProvider
) -> None:
    spy = SpyProvider(provider)
    metrics = OpenTelemetryMetrics(make_cm(), pool_name="directory", meter_provider=spy)
    assert spy.meter is not None
    updown, counter, hist = (
        "create_observable_up_down_counter",
        "create_counter",
        "create_histogram",
    )
    assert spy.meter.made == {
        "db.client.connection.count": (updown, "{connection}"),
        "db.client.connection.idle.max": (updown, "{connection}"),
        "db.client.connection.idle.min": (updown, "{connection}"),
        "db.client.connection.limit": (updown, "{connection}"),
        "db.client.connection.pending_requests": (updown, "{request}"),
        "db.client.connection.timeouts": (counter, "{timeout}"),
        "db.client.connection.create_time": (hist, SECONDS),
        "db.client.connection.wait_time": (hist, SECONDS),
        "db.client.connection.use_time": (hist, SECONDS),
        "ldappool.connection.closed": (counter, "{connection}"),
        "ldappool.bind_refused": (counter, "{bind}"),
        "ldappool.failovers": (counter, "{failover}"),
    }
    metrics.close()


def test_exported_data_kinds_units_scope_and_attributes(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=3)
    watch(cm)
    with cm.connection():
        pass
    data = reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    assert scope.scope.name == "ldappool"
    found = {m.name: m for m in scope.metrics}
    for name in ("count", "idle.max", "idle.min", "limit", "pending_requests"):
        metric = found[f"db.client.connection.{name}"]
        assert isinstance(metric.data, Sum) and not metric.data.is_monotonic
    for name in ("create_time", "wait_time", "use_time"):
        metric = found[f"db.client.connection.{name}"]
        assert isinstance(metric.data, Histogram) and metric.unit == SECONDS
        assert histogram(found, metric.name).explicit_bounds == _otel.BUCKETS
    count = found["db.client.connection.count"]
    assert isinstance(count.data, Sum)
    assert [dict(p.attributes or {}) for p in count.data.data_points] == [
        {POOL: "directory", STATE: "idle"},
        {POOL: "directory", STATE: "used"},
    ]
    assert numbers(found, "db.client.connection.limit") == {"": 3}
    assert numbers(found, "db.client.connection.idle.max") == {"": 3}
    assert numbers(found, "db.client.connection.idle.min") == {"": 0}


def test_idle_min_is_the_warm_pool_s_min_size(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=4, min_size=2)
    watch(cm)
    found = collect(reader)
    assert numbers(found, "db.client.connection.idle.min") == {"": cm.min_size} == {"": 2}
    assert numbers(found, "db.client.connection.idle.max") == {"": 4}


def test_idle_and_used_follow_the_pool(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=3)
    watch(cm)
    assert numbers(collect(reader), "db.client.connection.count") == {"idle": 0, "used": 0}
    with cm.connection(), cm.connection("cn=alice", "alice-pw"):
        assert numbers(collect(reader), "db.client.connection.count") == {"idle": 0, "used": 2}
        with cm.connection("cn=bob", "bob-pw"):
            pass
        assert numbers(collect(reader), "db.client.connection.count") == {"idle": 1, "used": 2}
    found = collect(reader)
    stats = cm.stats()
    assert (
        numbers(found, "db.client.connection.count")
        == {"idle": stats.idle, "used": 0}
        == {
            "idle": 3,
            "used": 0,
        }
    )
    cm.size = 5
    assert numbers(collect(reader), "db.client.connection.limit") == {"": 5}


def test_pending_requests_count_a_checkout_waiting_on_a_full_pool(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=1, pool_timeout=10.0)
    watch(cm)
    got: list[str] = []
    with cm.connection():

        def wait() -> None:
            with cm.connection() as conn:
                got.append(conn.search())

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        assert eventually(lambda: cm.stats().waiting == 1)
        found = collect(reader)
        assert numbers(found, "db.client.connection.pending_requests") == {"": 1}
        assert numbers(found, "db.client.connection.count") == {"idle": 0, "used": 1}
    waiter.join(timeout=10)
    assert not waiter.is_alive() and got == ["result"]
    assert numbers(collect(reader), "db.client.connection.pending_requests") == {"": 0}


def test_a_checkout_that_gives_up_counts_a_timeout(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=1, pool_timeout=0.01)
    watch(cm)
    with cm.connection():
        for _ in range(2):
            with pytest.raises(MaxConnectionReachedError), cm.connection():
                pass
    assert numbers(collect(reader), "db.client.connection.timeouts") == {"": 2}
    assert cm.stats().wait_timeouts == 2


def test_create_wait_and_use_times_are_the_events_durations(
    make_cm: MakeCM,
    watch: Callable[..., OpenTelemetryMetrics],
    reader: InMemoryMetricReader,
    clock: FakeClock,
    server: FakeServer,
) -> None:
    events: list[Event] = []
    cm = make_cm(driver=SlowDriver(clock, 0.25, a=server), listeners=[events.append])
    watch(cm)
    with cm.connection():  # opens: 0.25 s, all of the checkout's wait
        clock.advance(2.5)
    with cm.connection():  # reuses: no wait
        clock.advance(0.5)
    found = collect(reader)

    def durations(kind: EventKind) -> list[float]:
        return [e.duration for e in events if e.kind is kind and e.duration is not None]

    create = histogram(found, "db.client.connection.create_time")
    assert (create.count, create.sum) == (1, 0.25) == (1, sum(durations(EventKind.OPENED)))
    wait = histogram(found, "db.client.connection.wait_time")
    assert (wait.count, wait.sum, wait.min, wait.max) == (2, 0.25, 0.0, 0.25)
    use = histogram(found, "db.client.connection.use_time")
    held = durations(EventKind.CHECKED_IN)
    assert (use.count, use.sum, use.min, use.max) == (2, sum(held), min(held), max(held))
    assert use.min == 0.5  # the reuse; the first is held from the slot's lending, open included
    assert use.explicit_bounds == _otel.BUCKETS
    in_bucket = {i: n for i, n in enumerate(use.bucket_counts) if n}
    assert in_bucket == {_otel.BUCKETS.index(0.5): 1, _otel.BUCKETS.index(5.0): 1}


def test_ldappool_s_own_counters_closed_refused_failovers(
    make_cm: MakeCM,
    watch: Callable[..., OpenTelemetryMetrics],
    reader: InMemoryMetricReader,
    clock: FakeClock,
) -> None:
    cm = make_cm(size=2)
    watch(cm)
    with pytest.raises(FakeDown), cm.connection() as conn:
        conn._conn.dropped = True
        conn.modify()
    with pytest.raises(InvalidCredentialsError), cm.connection("cn=alice", "nope"):
        pass
    with cm.connection():
        pass
    cm.purge("cn=svc")
    first, second = FakeServer(), FakeServer()
    first.up = False
    failing = ConnectionManager(
        "ldap://a:1389 ldap://b",
        retry_max=1,
        driver=FakeDriver(a=first, b=second),
        clock=clock,
        failover=InOrder(cooldown=5),
    )
    watch(failing, "failing")
    with failing.connection():
        pass
    failing.close()
    found = collect(reader)
    closed = numbers(found, "ldappool.connection.closed")
    assert closed == {"lost": 1, "purged": 1}
    assert sum(closed.values()) == cm.stats().closed
    assert numbers(found, "ldappool.bind_refused") == {"invalid credentials": 1}
    data = found["ldappool.failovers"].data
    assert isinstance(data, Sum)
    assert [dict(p.attributes or {}) for p in data.data_points] == [
        {POOL: "failing", "server.address": "a", "server.port": 1389}
    ]


def test_two_pools_report_separately(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    users, groups = make_cm(size=4), make_cm(size=2)
    watch(users, "users")
    watch(groups, "groups")
    with users.connection(), users.connection("cn=alice", "alice-pw"), groups.connection():
        found = collect(reader)
    assert numbers(found, "db.client.connection.count", "users") == {"idle": 0, "used": 2}
    assert numbers(found, "db.client.connection.count", "groups") == {"idle": 0, "used": 1}
    assert numbers(found, "db.client.connection.limit", "users") == {"": 4}
    assert numbers(found, "db.client.connection.limit", "groups") == {"": 2}
    found = collect(reader)
    assert histogram(found, "db.client.connection.use_time", "users").count == 2
    assert histogram(found, "db.client.connection.use_time", "groups").count == 1


def test_pool_names_are_unique_per_provider_until_closed(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    first = watch(make_cm())
    with pytest.raises(ValueError, match="pool_name 'directory' is already reported"):
        watch(make_cm())
    first.close()
    second = watch(make_cm(size=7))
    assert numbers(collect(reader), "db.client.connection.limit") == {"": 7}
    assert second.pool_name == "directory"
    assert "reporting" in repr(second)


def test_close_stops_reporting_and_removes_the_listener(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm()
    metrics = watch(cm)
    with cm.connection():
        pass
    metrics.close()
    metrics.close()  # again: nothing
    assert "closed" in repr(metrics)
    with cm.connection():
        pass
    found = collect(reader)
    assert numbers(found, "db.client.connection.count") == {}
    assert numbers(found, "db.client.connection.limit") == {}
    assert histogram(found, "db.client.connection.use_time").count == 1  # not 2
    with pytest.raises(ValueError):  # the listener is gone
        cm.remove_listener(metrics._listen)


def test_a_context_manager_closes(make_cm: MakeCM, provider: MeterProvider) -> None:
    cm = make_cm()
    with OpenTelemetryMetrics(cm, pool_name="p", meter_provider=provider) as metrics:
        assert metrics.pool_name == "p"
    assert "closed" in repr(metrics)


def test_a_garbage_collected_manager_stops_reporting(
    driver: FakeDriver, clock: FakeClock, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    cm = ConnectionManager("ldap://a", driver=driver, clock=clock)
    metrics = OpenTelemetryMetrics(cm, pool_name="gone", meter_provider=provider)
    assert numbers(collect(reader), "db.client.connection.count", "gone") == {"idle": 0, "used": 0}
    cm.close()
    del cm
    gc.collect()
    assert numbers(collect(reader), "db.client.connection.count", "gone") == {}
    assert "closed" in repr(metrics)
    OpenTelemetryMetrics(  # the name is free again
        ConnectionManager("ldap://a", driver=driver, clock=clock),
        pool_name="gone",
        meter_provider=provider,
    ).close()


def test_a_failing_sdk_never_breaks_a_checkout(
    make_cm: MakeCM,
    watch: Callable[..., OpenTelemetryMetrics],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cm = make_cm()
    metrics = watch(cm)

    class Broken:
        def record(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("exporter bug")

    monkeypatch.setattr(metrics._instruments, "wait_time", Broken())
    monkeypatch.setattr(cm, "stats", lambda: 1 / 0)
    with caplog.at_level(logging.WARNING, logger="ldappool"):
        for _ in range(3):
            with cm.connection() as conn:
                assert conn.search() == "result"
    assert [r.getMessage() for r in caplog.records] == [  # once, not per checkout
        "ldappool metrics: recording EventKind.CHECKED_OUT failed"
    ]
    assert metrics._stats() is None  # a failing stats() is no observation


def test_the_global_provider_is_used_without_one(
    make_cm: MakeCM,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(otel_internal, "_METER_PROVIDER", provider)
    monkeypatch.setattr(_otel, "_for_global", [])
    implicit = OpenTelemetryMetrics(make_cm(), pool_name="implicit")
    explicit = OpenTelemetryMetrics(make_cm(size=2), pool_name="explicit", meter_provider=provider)
    assert implicit._instruments is explicit._instruments
    found = collect(reader)
    assert numbers(found, "db.client.connection.limit", "implicit") == {"": 10}
    assert numbers(found, "db.client.connection.limit", "explicit") == {"": 2}
    implicit.close()
    explicit.close()


GLOBAL_SET_LATER = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from ldappool import ConnectionManager, OpenTelemetryMetrics
from tests.unit.fakes import FakeDriver, FakeServer

first, second = (
    ConnectionManager("ldap://a", size=n, driver=FakeDriver(a=FakeServer())) for n in (10, 3)
)
early = OpenTelemetryMetrics(first, pool_name="early")  # through the API's proxy
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
late = OpenTelemetryMetrics(second, pool_name="late")
data = reader.get_metrics_data()
print(sorted(
    (dict(p.attributes)["db.client.connection.pool.name"], p.value)
    for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
    if m.name == "db.client.connection.limit" for p in m.data.data_points
))
"""


def test_pools_reported_before_and_after_the_global_provider_is_set() -> None:
    # set_meter_provider works once per process: in a process of the test's own.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_SET_LATER],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('early', 10), ('late', 3)]"


def test_arguments_are_checked(make_cm: MakeCM, provider: MeterProvider) -> None:
    cm = make_cm()
    with pytest.raises(TypeError, match="manager must be a ConnectionManager, not int"):
        OpenTelemetryMetrics(42, pool_name="p", meter_provider=provider)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pool_name must be a str"):
        OpenTelemetryMetrics(cm, pool_name=3, meter_provider=provider)  # type: ignore[arg-type]
    for blank in ("", "  "):
        with pytest.raises(ValueError, match="pool_name must not be empty"):
            OpenTelemetryMetrics(cm, pool_name=blank, meter_provider=provider)
    with pytest.raises(TypeError, match="meter_provider must be a MeterProvider or None"):
        OpenTelemetryMetrics(cm, pool_name="p", meter_provider="global")
    with pytest.raises(TypeError):
        OpenTelemetryMetrics(cm, "p")  # type: ignore[call-arg]
    assert cm.stats().checkouts == 0
    assert not cm._events.listeners  # nothing was added by a refused call


def test_no_password_or_dn_in_any_attribute(
    make_cm: MakeCM, watch: Callable[..., OpenTelemetryMetrics], reader: InMemoryMetricReader
) -> None:
    cm = make_cm(size=2)
    watch(cm)
    for who, pw in (("cn=alice", "alice-pw"), ("cn=alice", "wrong-pw"), ("cn=bob", "bob-pw")):
        with contextlib.suppress(InvalidCredentialsError), cm.connection(who, pw):
            pass
        with contextlib.suppress(InvalidCredentialsError):
            cm.authenticate(who, pw)
    cm.purge("cn=bob", "bob-pw")
    found = collect(reader)
    attributes = [
        dict(point.attributes or {})
        for metric in found.values()
        for point in metric.data.data_points
    ]
    assert attributes
    text = repr(attributes)
    for secret in ("svc-secret", "alice-pw", "wrong-pw", "bob-pw", "cn=", "alice", "bob"):
        assert secret not in text
    allowed = {POOL, STATE, _otel.REASON, "server.address", "server.port"}
    assert set().union(*attributes) <= allowed


def test_server_attributes_of_each_uri_form() -> None:
    assert _otel._server("ldap://ldap1.example.org") == {
        "server.address": "ldap1.example.org",
        "server.port": 389,
    }
    assert _otel._server("ldaps://[::1]:10636") == {"server.address": "::1", "server.port": 10636}
    assert _otel._server("ldaps://dc1") == {"server.address": "dc1", "server.port": 636}
    assert _otel._server("ldapi://%2Frun%2Fslapd%2Fldapi") == {
        "server.address": "/run/slapd/ldapi"
    }
    assert _otel._server(None) == {} == _otel._server("ldapi://")


def test_without_opentelemetry_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "ldappool._otel")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'ldappool\[otel\]'") as info:
        from ldappool import OpenTelemetryMetrics as _  # noqa: F401
    assert isinstance(info.value, ModuleNotFoundError)
    assert "opentelemetry-api" in str(info.value)
    assert not isinstance(info.value, ldappool.DriverNotInstalledError)
    assert ldappool.ConnectionManager.__name__ == "ConnectionManager"  # the rest still works


def test_an_unrelated_import_error_is_not_blamed_on_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ldappool._otel", None)
    with pytest.raises(ImportError) as info:
        ldappool.OpenTelemetryMetrics  # noqa: B018
    assert "ldappool[otel]" not in str(info.value)
