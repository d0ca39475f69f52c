"""Tests for FailureTolerantClientManager's waits, sampling and loss reports, without gRPC."""

from __future__ import annotations

import threading
import time

import pytest

from tests.workloads.flower_fakes import IdleClientProxy
from workloads.client_manager import ClientWaitTimeoutError, FailureTolerantClientManager

SHORT_WAIT_S = 0.2


def make_manager(
    num_clients: int, connected: int, lost: list[tuple[str, int]] | None = None
) -> tuple[FailureTolerantClientManager, list[IdleClientProxy]]:
    manager = FailureTolerantClientManager(
        num_clients=num_clients,
        wait_timeout_s=SHORT_WAIT_S,
        on_client_lost=None if lost is None else lambda cid, available: lost.append((cid, available)),
    )
    proxies = [IdleClientProxy(cid=f"client-{index}") for index in range(connected)]
    for proxy in proxies:
        assert manager.register(proxy)
    return manager, proxies


def test_first_sample_waits_for_all_clients() -> None:
    manager, _ = make_manager(num_clients=3, connected=2)

    started = time.monotonic()
    with pytest.raises(ClientWaitTimeoutError) as raised:
        manager.sample(1)

    assert time.monotonic() - started >= SHORT_WAIT_S
    assert raised.value.needed == 3
    assert raised.value.connected == 2
    assert str(raised.value) == (
        "timed out after 0.2 s waiting for clients: 3 needed, 2 connected; "
        "all --clients must connect before round 1 starts"
    )


def test_later_samples_use_connected_clients() -> None:
    lost: list[tuple[str, int]] = []
    manager, proxies = make_manager(num_clients=3, connected=3, lost=lost)
    assert len(manager.sample(1)) == 1

    manager.unregister(proxies[0])

    assert lost == [("client-0", 2)]
    assert {proxy.cid for proxy in manager.sample(2, min_num_clients=2)} == {"client-1", "client-2"}
    # A sample size computed before the loss is cut to the clients still connected.
    assert len(manager.sample(3, min_num_clients=2)) == 2


def test_sample_fails_below_minimum() -> None:
    manager, proxies = make_manager(num_clients=2, connected=2)
    manager.sample(1)
    manager.unregister(proxies[0])
    manager.unregister(proxies[1])

    with pytest.raises(ClientWaitTimeoutError) as raised:
        manager.sample(1, min_num_clients=1)

    assert raised.value.needed == 1
    assert raised.value.connected == 0
    assert str(raised.value).endswith("more clients were lost than --max-client-failures allows")


def test_reconnected_client_is_sampled() -> None:
    manager, proxies = make_manager(num_clients=2, connected=2)
    manager.sample(1)
    manager.unregister(proxies[0])

    replacement = IdleClientProxy(cid="client-0-again")
    assert manager.register(replacement)

    assert {proxy.cid for proxy in manager.sample(2, min_num_clients=1)} == {"client-0-again", "client-1"}


def test_sample_wakes_on_register() -> None:
    manager = FailureTolerantClientManager(num_clients=2, wait_timeout_s=30.0)
    manager.register(IdleClientProxy(cid="client-0"))
    late = IdleClientProxy(cid="client-1")
    # Whether the thread registers before or after sample() starts waiting, sample() must return both.
    registrar = threading.Thread(target=manager.register, args=(late,))
    registrar.start()

    sampled = manager.sample(2)

    registrar.join(timeout=30)
    assert {proxy.cid for proxy in sampled} == {"client-0", "client-1"}


def test_unregister_reports_once() -> None:
    lost: list[tuple[str, int]] = []
    manager, proxies = make_manager(num_clients=2, connected=2, lost=lost)

    manager.unregister(proxies[1])
    manager.unregister(proxies[1])

    assert lost == [("client-1", 1)]
    assert manager.num_available() == 1


def test_stop_reporting_silences_losses() -> None:
    lost: list[tuple[str, int]] = []
    manager, proxies = make_manager(num_clients=2, connected=2, lost=lost)

    manager.stop_reporting()
    manager.unregister(proxies[0])

    assert lost == []
    assert manager.num_available() == 1


def test_register_rejects_duplicate_cid() -> None:
    manager, _ = make_manager(num_clients=1, connected=1)

    assert not manager.register(IdleClientProxy(cid="client-0"))
    assert manager.num_available() == 1


def test_wait_for_is_bounded() -> None:
    manager, _ = make_manager(num_clients=2, connected=1)

    started = time.monotonic()
    assert not manager.wait_for(2)
    assert time.monotonic() - started < 10
    assert manager.wait_for(1, timeout=0)


def test_all_returns_copy() -> None:
    manager, proxies = make_manager(num_clients=2, connected=2)

    snapshot = manager.all()
    manager.unregister(proxies[0])

    assert set(snapshot) == {"client-0", "client-1"}
    assert set(manager.all()) == {"client-1"}


@pytest.mark.parametrize(
    ("num_clients", "wait_timeout_s", "message"),
    [(0, 1.0, "num_clients must be >= 1, got 0"), (1, 0.0, "wait_timeout_s must be > 0, got 0.0")],
)
def test_manager_rejects_invalid_settings(num_clients: int, wait_timeout_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FailureTolerantClientManager(num_clients=num_clients, wait_timeout_s=wait_timeout_s)
