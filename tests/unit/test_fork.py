"""After os.fork() the child opens its own connections and never touches the parent's."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from ldappool import ConnectionManager
from tests.unit.fakes import FakeDriver

MakeCM = Callable[..., ConnectionManager]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_in_child(body: Callable[[], str]) -> str:
    """Run body() in a forked child; return what it reported through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            report = body()
        except BaseException as exc:
            report = f"error: {exc!r}"
        os.write(write_end, report.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    return report


def test_child_abandons_parent_connections_and_opens_its_own(
    make_cm: MakeCM, driver: FakeDriver
) -> None:
    cm = make_cm()
    with cm.connection():
        pass
    parent_conn = driver.connections[0]

    def child() -> str:
        with cm.connection() as conn:
            conn.search()
        mine = driver.connections[-1]
        return (
            f"abandoned={parent_conn.abandoned} closed={parent_conn.closed} "
            f"new={mine is not parent_conn} len={len(cm)}"
        )

    assert run_in_child(child) == "abandoned=True closed=False new=True len=1"
    assert not parent_conn.abandoned and not parent_conn.closed  # parent's copy untouched
    with cm.connection() as conn:
        assert conn.search() == "result"
    assert len(driver.connections) == 1


def test_connection_lent_across_fork_is_abandoned_at_checkin_in_child(
    make_cm: MakeCM, driver: FakeDriver
) -> None:
    cm = make_cm()
    lease = cm.connection()
    lease.__enter__()

    def child() -> str:
        lease.__exit__(None, None, None)
        conn = driver.connections[0]
        return f"abandoned={conn.abandoned} closed={conn.closed} len={len(cm)}"

    assert run_in_child(child) == "abandoned=True closed=False len=0"
    lease.__exit__(None, None, None)
    assert len(cm) == 1


def test_the_upkeep_thread_starts_anew_in_the_child(make_cm: MakeCM, driver: FakeDriver) -> None:
    cm = make_cm(min_size=2)
    cm.open(wait=True)
    keeper = cm._pool._upkeep
    assert keeper.running

    def child() -> str:
        before = keeper.running  # the parent's thread does not exist here
        with cm.connection() as conn:  # the child's first connection starts its own
            conn.search()
        return f"before={before} after={keeper.running} len={len(cm)}"

    report = run_in_child(child)
    assert report.startswith("before=False after=True len=")
    assert keeper.running  # the parent's thread is untouched
    cm.close()
    assert not keeper.running
