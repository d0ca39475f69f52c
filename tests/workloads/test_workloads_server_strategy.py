"""Tests for RecordingFedAvg's round records, history file and events, without gRPC."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import SimpleClientManager

from tests.workloads.flower_fakes import IdleClientProxy
from workloads.server import RecordingFedAvg, weighted_accuracy

OK = Status(code=Code.OK, message="")


def client_manager(num_clients: int) -> SimpleClientManager:
    manager = SimpleClientManager()
    for index in range(num_clients):
        assert manager.register(IdleClientProxy(cid=f"client-{index}"))
    return manager


def make_strategy(
    tmp_path: Path, events: list[dict[str, Any]], *, num_rounds: int = 2, fraction_evaluate: float = 1.0
) -> RecordingFedAvg:
    return RecordingFedAvg(
        num_rounds=num_rounds,
        num_clients=4,
        fraction_fit=0.5,
        fraction_evaluate=fraction_evaluate,
        history_path=tmp_path / "history.json",
        emit=events.append,
    )


def weights(value: float) -> Parameters:
    return ndarrays_to_parameters([np.full(3, value, dtype=np.float32)])


def fit_res(value: float, num_examples: int) -> FitRes:
    return FitRes(status=OK, parameters=weights(value), num_examples=num_examples, metrics={})


def evaluate_res(loss: float, num_examples: int, accuracy: float) -> EvaluateRes:
    return EvaluateRes(status=OK, loss=loss, num_examples=num_examples, metrics={"accuracy": accuracy})


def run_round(
    strategy: RecordingFedAvg, manager: SimpleClientManager, server_round: int
) -> tuple[Parameters | None, tuple[float | None, dict[str, Any]]]:
    fit_instructions = strategy.configure_fit(server_round, weights(0.0), manager)
    fit_results = [(proxy, fit_res(1.0 + i, 10 * (i + 1))) for i, (proxy, _) in enumerate(fit_instructions)]
    aggregated, _ = strategy.aggregate_fit(server_round, fit_results, [RuntimeError("client lost")])
    evaluate_instructions = strategy.configure_evaluate(server_round, weights(0.0), manager)
    evaluate_results = [
        (proxy, evaluate_res(loss=1.0, num_examples=30, accuracy=0.2)) for proxy, _ in evaluate_instructions[:3]
    ] + [(evaluate_instructions[3][0], evaluate_res(loss=3.0, num_examples=10, accuracy=0.6))]
    evaluated = strategy.aggregate_evaluate(server_round, evaluate_results, [])
    return aggregated, evaluated


def test_round_record_and_history(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    strategy = make_strategy(tmp_path, events)
    manager = client_manager(4)

    assert strategy.initialize_parameters(manager) is None
    assert json.loads((tmp_path / "history.json").read_text()) == {"rounds": [], "num_rounds": 2, "complete": False}

    aggregated, (loss, metrics) = run_round(strategy, manager, 1)

    # FedAvg weights the two fit results 10:20, so (1 * 10 + 2 * 20) / 30.
    assert aggregated is not None
    np.testing.assert_allclose(parameters_to_ndarrays(aggregated)[0], np.full(3, 50 / 30), rtol=1e-6)
    assert loss == pytest.approx((1.0 * 90 + 3.0 * 10) / 100)
    assert metrics == {"accuracy": pytest.approx((0.2 * 90 + 0.6 * 10) / 100)}

    history = json.loads((tmp_path / "history.json").read_text())
    assert history["num_rounds"] == 2
    assert history["complete"] is False
    [record] = history["rounds"]
    assert record["round"] == 1
    assert record["fit_results"] == 2
    assert record["fit_failures"] == 1
    assert record["evaluate_results"] == 4
    assert record["evaluate_failures"] == 0
    assert record["loss"] == pytest.approx(1.2)
    assert record["accuracy"] == pytest.approx(0.24)
    assert record["started_at"] <= record["ended_at"]
    assert record["duration_s"] >= 0.0

    run_round(strategy, manager, 2)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["complete"] is True
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    assert not list(tmp_path.glob(".*.tmp"))


def test_round_events(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    strategy = make_strategy(tmp_path, events)
    manager = client_manager(4)

    strategy.initialize_parameters(manager)
    run_round(strategy, manager, 1)

    assert [event["event"] for event in events] == [
        "server_started",
        "round_started",
        "fit_done",
        "evaluate_done",
        "round_done",
    ]
    assert events[0] == {"event": "server_started", "num_rounds": 2, "min_clients": 4, "max_client_failures": 0}
    assert events[1] == {"event": "round_started", "round": 1, "clients": 2, "available": 4}
    assert events[2] == {"event": "fit_done", "round": 1, "results": 2, "failures": 1}
    assert events[3] == {"event": "evaluate_done", "round": 1, "results": 4, "failures": 0}
    round_done = events[4]
    assert round_done["round"] == 1
    assert round_done["loss"] == pytest.approx(1.2)
    assert round_done["duration_s"] >= 0.0
    json.dumps(events, allow_nan=False)


def test_round_ends_without_evaluation(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    strategy = make_strategy(tmp_path, events, num_rounds=1, fraction_evaluate=0.0)
    manager = client_manager(4)

    instructions = strategy.configure_fit(1, weights(0.0), manager)
    strategy.aggregate_fit(1, [(proxy, fit_res(1.0, 5)) for proxy, _ in instructions], [])

    assert strategy.configure_evaluate(1, weights(1.0), manager) == []
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["complete"] is True
    [record] = history["rounds"]
    assert record["loss"] is None
    assert record["accuracy"] is None
    assert record["evaluate_results"] == 0
    assert events[-1]["event"] == "round_done"


def test_nan_loss_recorded_as_null(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    strategy = make_strategy(tmp_path, events, num_rounds=1)
    manager = client_manager(4)

    instructions = strategy.configure_fit(1, weights(0.0), manager)
    strategy.aggregate_fit(1, [(proxy, fit_res(1.0, 5)) for proxy, _ in instructions], [])
    proxies = [proxy for proxy, _ in strategy.configure_evaluate(1, weights(1.0), manager)]
    loss, _ = strategy.aggregate_evaluate(1, [(proxies[0], evaluate_res(math.nan, 5, 0.1))], [])

    assert loss is not None and math.isnan(loss)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["rounds"][0]["loss"] is None
    assert history["rounds"][0]["accuracy"] == pytest.approx(0.1)


def test_empty_initial_weights_raise(tmp_path: Path) -> None:
    strategy = make_strategy(tmp_path, [])

    with pytest.raises(RuntimeError, match="round 1 has no model weights to send because"):
        strategy.configure_fit(1, Parameters(tensors=[], tensor_type="numpy.ndarray"), client_manager(4))


def test_min_clients_from_fractions(tmp_path: Path) -> None:
    strategy = RecordingFedAvg(
        num_rounds=1, num_clients=5, fraction_fit=0.3, fraction_evaluate=0.0, history_path=None, emit=print
    )

    assert strategy.min_available_clients == 5
    assert strategy.min_fit_clients == 1
    assert strategy.min_evaluate_clients == 1


@pytest.mark.parametrize(
    ("max_client_failures", "min_available", "min_fit", "min_evaluate"),
    [
        # K = 0 keeps the settings that the server used before failures were allowed.
        (0, 10, 5, 10),
        # The minimums come from the fractions of N - K, never from N.
        (1, 9, 4, 9),
        (4, 6, 3, 6),
        (9, 1, 1, 1),
    ],
)
def test_min_clients_with_failure_budget(
    max_client_failures: int, min_available: int, min_fit: int, min_evaluate: int
) -> None:
    strategy = RecordingFedAvg(
        num_rounds=1,
        num_clients=10,
        fraction_fit=0.5,
        fraction_evaluate=1.0,
        history_path=None,
        max_client_failures=max_client_failures,
        emit=print,
    )

    assert strategy.min_available_clients == min_available
    assert strategy.min_fit_clients == min_fit
    assert strategy.min_evaluate_clients == min_evaluate


@pytest.mark.parametrize("max_client_failures", [-1, 4])
def test_failure_budget_out_of_range(max_client_failures: int) -> None:
    with pytest.raises(ValueError, match=f"between 0 and num_clients - 1 \\(3\\), got {max_client_failures}"):
        RecordingFedAvg(
            num_rounds=1,
            num_clients=4,
            fraction_fit=0.5,
            fraction_evaluate=1.0,
            history_path=None,
            max_client_failures=max_client_failures,
        )


def test_active_round_between_rounds(tmp_path: Path) -> None:
    strategy = make_strategy(tmp_path, [])
    manager = client_manager(4)
    assert strategy.active_round == 1

    instructions = strategy.configure_fit(1, weights(0.0), manager)
    assert strategy.active_round == 1
    strategy.aggregate_fit(1, [(proxy, fit_res(1.0, 5)) for proxy, _ in instructions], [])
    proxies = [proxy for proxy, _ in strategy.configure_evaluate(1, weights(1.0), manager)]
    strategy.aggregate_evaluate(1, [(proxies[0], evaluate_res(1.0, 5, 0.1))], [])

    assert strategy.active_round == 2


def test_weighted_accuracy() -> None:
    assert weighted_accuracy([(10, {"accuracy": 0.5}), (30, {"accuracy": 0.1})]) == {"accuracy": pytest.approx(0.2)}
    assert weighted_accuracy([(10, {"loss": 0.5})]) == {}
    assert weighted_accuracy([]) == {}
