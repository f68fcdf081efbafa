"""OpenTelemetry metrics of a pool on a real slapd: what the SDK collects agrees with
``cm.stats()`` after a threaded workload, on both drivers."""

from __future__ import annotations

import contextlib
import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)

from ldappool import InvalidCredentialsError, OpenTelemetryMetrics
from tests.integration.harness import ManagerFactory, Slapd, search, whoami

POOL = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}


def sums(found: dict[str, Metric], name: str) -> dict[str, float]:
    """A sum's values, keyed by state or reason ("" for neither); {} when never recorded."""
    if name not in found:
        return {}
    data = found[name].data
    assert isinstance(data, Sum)
    values: dict[str, float] = {}
    for point in data.data_points:
        assert isinstance(point, NumberDataPoint)
        attrs = dict(point.attributes or {})
        assert attrs.pop(POOL) == "directory"
        key = str(attrs.pop(STATE, None) or attrs.pop("ldappool.reason", None) or "")
        values[key] = values.get(key, 0) + point.value
    return values


def counted(found: dict[str, Metric], name: str) -> int:
    data = found[name].data
    assert isinstance(data, Histogram)
    return sum(point.count for point in data.data_points)


def test_metrics_agree_with_stats_after_a_threaded_workload(
    slapd: Slapd, make_manager: ManagerFactory, driver: str
) -> None:
    size, threads, rounds = 3, 6, 15
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cm = make_manager(slapd.ldap_uri, slapd.root_dn, slapd.root_pw, size=size, pool_timeout=30)
    metrics = OpenTelemetryMetrics(cm, pool_name="directory", meter_provider=provider)
    users = [slapd.users["alice"], slapd.users["bob"]]
    errors: list[BaseException] = []
    samples: list[dict[str, float]] = []
    done = threading.Event()

    def work(n: int) -> None:
        user = users[n % 2]
        try:
            for i in range(rounds):
                if n == 0 and i == 0:
                    with contextlib.suppress(InvalidCredentialsError):
                        with cm.connection(user.dn, "not-the-password"):
                            pass
                with cm.connection(user.dn, user.password) as conn:
                    assert whoami(conn) == user.dn
                    assert search(conn, slapd.people_dn, f"(uid={user.uid})") == [user.dn]
        except BaseException as exc:
            errors.append(exc)

    def sample() -> None:
        while not done.is_set():
            found = collect(reader)
            samples.append(
                {
                    **sums(found, "db.client.connection.count"),
                    "pending": sums(found, "db.client.connection.pending_requests")[""],
                }
            )

    sampler = threading.Thread(target=sample, daemon=True)
    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    sampler.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    done.set()
    sampler.join(timeout=10)
    assert not errors, errors
    assert not any(worker.is_alive() for worker in workers)

    assert samples
    for seen in samples:  # mid-flight: never above the cap, never negative
        assert 0 <= seen["idle"] + seen["used"] <= size
        assert 0 <= seen["pending"] <= threads

    stats = cm.stats()
    found = collect(reader)
    assert sums(found, "db.client.connection.count") == {"idle": stats.idle, "used": 0}
    assert stats.idle == stats.connections > 0
    assert sums(found, "db.client.connection.limit") == {"": size}
    assert sums(found, "db.client.connection.idle.min") == {"": cm.min_size}
    assert sums(found, "db.client.connection.pending_requests") == {"": stats.waiting} == {"": 0}
    assert counted(found, "db.client.connection.wait_time") == stats.checkouts
    assert counted(found, "db.client.connection.use_time") == stats.checkouts
    assert stats.checkouts == threads * rounds
    assert counted(found, "db.client.connection.create_time") == stats.opened
    assert sum(sums(found, "db.client.connection.timeouts").values()) == stats.wait_timeouts
    assert sum(sums(found, "ldappool.connection.closed").values()) == stats.closed
    refused = sums(found, "ldappool.bind_refused")
    assert refused == {"invalid credentials": 1} and stats.invalid_credentials == 1

    metrics.close()
    cm.close()
    assert sums(collect(reader), "db.client.connection.count") == {}
    provider.shutdown()
