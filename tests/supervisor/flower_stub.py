"""A Flower client without TensorFlow, for fault tests against the real server.

Usage: python -m tests.supervisor.flower_stub HOST:PORT BEHAVIOUR
BEHAVIOUR is one of: ok, exit-in-fit (exit code 3 inside fit),
hang-in-fit, hang-in-evaluate (block for an hour).
"""

import os
import sys
import threading

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"

import numpy as np
from flwr.client import NumPyClient, start_client

HANG_S = 3600


class StubClient(NumPyClient):  # type: ignore[misc]
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        return [np.zeros(3, np.float32)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]) -> tuple[list[np.ndarray], int, dict]:
        print("fit called", flush=True)
        if self.behaviour == "exit-in-fit":
            os._exit(3)
        if self.behaviour == "hang-in-fit":
            threading.Event().wait(HANG_S)
        return [parameters[0] + 1], 8, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, object]) -> tuple[float, int, dict]:
        if self.behaviour == "hang-in-evaluate":
            threading.Event().wait(HANG_S)
        return float(parameters[0][0]), 4, {"accuracy": 0.25}


if __name__ == "__main__":
    start_client(server_address=sys.argv[1], client=StubClient(sys.argv[2]).to_client(), insecure=True)
