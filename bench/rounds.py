"""FedAvg with the settings of workloads.server, recording when each round starts and ends.

The classic recipe and the Simulation Engine runs use it, so every system's
round time covers the same span as fl-supervisor's history.json: from the
moment configure_fit has sampled the clients to the end of aggregate_evaluate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.common import Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.strategy import FedAvg


def weighted_accuracy(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Average the clients' "accuracy" weighted by their number of examples."""
    pairs = [(count, float(values["accuracy"])) for count, values in metrics if "accuracy" in values]
    total = sum(count for count, _ in pairs)
    if total == 0:
        return {}
    return {"accuracy": sum(count * accuracy for count, accuracy in pairs) / total}


class TimedFedAvg(FedAvg):
    """FedAvg that rewrites `rounds_path` with [{"round", "started_at", "ended_at", "loss", "accuracy"}] per round."""

    def __init__(self, *, num_clients: int, fraction_fit: float, fraction_evaluate: float, rounds_path: Path) -> None:
        super().__init__(
            fraction_fit=fraction_fit,
            fraction_evaluate=fraction_evaluate,
            min_available_clients=num_clients,
            min_fit_clients=max(1, int(num_clients * fraction_fit)),
            min_evaluate_clients=max(1, int(num_clients * fraction_evaluate)),
            evaluate_metrics_aggregation_fn=weighted_accuracy,
            fit_metrics_aggregation_fn=lambda _metrics: {},
        )
        self.rounds_path = rounds_path
        self.rounds: list[dict[str, Any]] = []

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> Any:
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.rounds.append({"round": server_round, "started_at": time.time(), "ended_at": None})
        return instructions

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> Any:
        instructions = super().configure_evaluate(server_round, parameters, client_manager)
        if not instructions:
            self._end_round(None, {})
        return instructions

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        self._end_round(loss, metrics)
        return loss, metrics

    def _end_round(self, loss: float | None, metrics: dict[str, Scalar]) -> None:
        record = self.rounds[-1]
        record["ended_at"] = time.time()
        record["loss"] = loss
        record["accuracy"] = metrics.get("accuracy")
        # Written to a temporary name and renamed, so a reader never sees a half-written file.
        partial = self.rounds_path.with_name(self.rounds_path.name + ".tmp")
        partial.write_text(json.dumps({"rounds": self.rounds}, indent=1))
        partial.replace(self.rounds_path)
