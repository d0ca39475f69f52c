"""Flower client that trains MobileNetV2 on one data partition: `python -m workloads.client`.

Exit status: 0 when the server ends the session normally; 1 when the server
cannot be reached within --connect-timeout, the connection breaks mid-session,
or training fails; 2 on invalid arguments or an unreadable partition file.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

# runtime sets environment variables that flwr and TensorFlow read when imported.
from workloads import runtime

# isort: split

import grpc
import keras
from flwr.client import Client, NumPyClient, start_client
from flwr.common import NDArrays, Scalar

from workloads.data import DataError, Partition, load_partition
from workloads.model import build_model, configure_tensorflow

DEFAULT_CONNECT_TIMEOUT_S = 30.0
CONNECT_RETRY_DELAY_S = 1.0


class SessionClient(Protocol):
    """Client interface used by run_session: conversion to a Flower Client and a count of server instructions."""

    instructions_received: int

    def to_client(self) -> Client: ...


class PartitionClient(NumPyClient):
    """NumPyClient that trains and evaluates a Keras model on one Partition."""

    def __init__(
        self,
        model: keras.Model,
        part: Partition,
        *,
        steps_per_epoch: int,
        batch_size: int,
        logger: logging.Logger,
    ) -> None:
        self.model = model
        self.part = part
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.logger = logger
        self.instructions_received = 0

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """Return the model's weights, in get_weights() order."""
        self.instructions_received += 1
        self.logger.info("get_parameters: sending %d weight arrays", len(self.model.weights))
        return list(self.model.get_weights())

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train one epoch of at most --steps-per-epoch batches and return the weights, examples trained on and {}."""
        self.instructions_received += 1
        self._set_weights(parameters)
        started = time.monotonic()
        steps, num_examples, loss = self._train()
        self.logger.info(
            "fit: %d steps, %d examples, loss %.4f, %.1f s", steps, num_examples, loss, time.monotonic() - started
        )
        return list(self.model.get_weights()), num_examples, {}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Evaluate on the whole test split and return the loss, number of test examples and {"accuracy": ...}."""
        self.instructions_received += 1
        self._set_weights(parameters)
        started = time.monotonic()
        loss, accuracy = self._test()
        self.logger.info(
            "evaluate: %d examples, loss %.4f, accuracy %.4f, %.1f s",
            len(self.part.y_test),
            loss,
            accuracy,
            time.monotonic() - started,
        )
        return float(loss), len(self.part.y_test), {"accuracy": float(accuracy)}

    def warm_up(self) -> float:
        """Run one fit and one evaluate exactly as a round does, then restore the model and optimizer; return seconds.

        The first fit and evaluate in a process spend most of their time tracing and
        optimising TensorFlow graphs: about 25 s and 2 s for MobileNetV2 on a 2-core
        machine, against 0.4 s and 0.9 s for later calls. Warming up before connecting
        keeps that cost out of the rounds. Every model weight (BatchNorm statistics
        included) and every optimizer variable (iterations, Adam moments, learning
        rate) is copied before and assigned back after, so the rounds compute exactly
        what they would without the warm-up: tests/workloads/test_workloads_speedups.py
        compares the weights bit for bit.
        """
        started = time.monotonic()
        optimizer = self.model.optimizer
        if not optimizer.built:
            # fit() would build it on its first call with the same zero-initialised variables.
            optimizer.build(self.model.trainable_variables)
        weights = self.model.get_weights()
        optimizer_state = [variable.numpy() for variable in optimizer.variables]
        self._train()
        self._test()
        self.model.set_weights(weights)
        for variable, value in zip(optimizer.variables, optimizer_state, strict=True):
            variable.assign(value)
        return time.monotonic() - started

    def _train(self) -> tuple[int, int, float]:
        """Run one epoch of training and return the steps, the examples trained on and the last loss."""
        train_size = len(self.part.y_train)
        # Keras warns and stops early when steps_per_epoch requests more batches
        # than the data has, so cap it at one pass over the partition.
        steps = min(self.steps_per_epoch, math.ceil(train_size / self.batch_size))
        history = self.model.fit(
            self.part.x_train,
            self.part.y_train,
            epochs=1,
            steps_per_epoch=steps,
            batch_size=self.batch_size,
            verbose=0,
        )
        num_examples = min(steps * self.batch_size, train_size)
        return steps, num_examples, float(history.history["loss"][-1])

    def _test(self) -> tuple[float, float]:
        """Evaluate on the whole test split and return the loss and the accuracy."""
        loss, accuracy = self.model.evaluate(self.part.x_test, self.part.y_test, verbose=0)
        return float(loss), float(accuracy)

    def _set_weights(self, parameters: NDArrays) -> None:
        expected = len(self.model.weights)
        if len(parameters) != expected:
            raise ValueError(
                f"server sent {len(parameters)} weight arrays but the model has {expected}; "
                "the server and this client must run the same workloads.model version"
            )
        self.model.set_weights(parameters)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.client",
        description="Run a Flower client that trains MobileNetV2 on one CIFAR-10 partition.",
    )
    parser.add_argument("--server", required=True, help="Flower server address, HOST:PORT")
    parser.add_argument("--partition", type=Path, required=True, help="partition .npz file written by workloads.data")
    parser.add_argument("--steps-per-epoch", type=int, default=3, help="max training batches per round (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and TensorFlow (default: 0)")
    parser.add_argument("--name", default="client", help="name used in this client's log lines (default: client)")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        help="seconds after start during which a refused connection is retried, before the "
        f"server has sent anything; 0 disables retries (default: {DEFAULT_CONNECT_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="build the train and test graphs with one fit and one evaluate before connecting, then restore "
        "the weights and optimizer state (default: on)",
    )
    args = parser.parse_args(argv)
    if args.steps_per_epoch < 1:
        parser.error(f"--steps-per-epoch must be >= 1, got {args.steps_per_epoch}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.connect_timeout < 0:
        parser.error(f"--connect-timeout must be >= 0, got {args.connect_timeout}")
    return args


def run_session(client: SessionClient, server: str, connect_timeout_s: float, logger: logging.Logger) -> int:
    """Connect to `server` and serve its instructions until it ends the session, and return the exit status.

    flwr 1.42's legacy grpc-bidi transport ignores start_client's max_retries and
    max_wait_time (grpc_connection never uses the retry invoker), so an unreachable
    server raises grpc.RpcError at once. This function retries UNAVAILABLE errors
    every CONNECT_RETRY_DELAY_S seconds, but only within `connect_timeout_s` of the
    first attempt and only while the server has sent no instruction. A connection
    that breaks mid-session is never retried.
    """
    deadline = time.monotonic() + connect_timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            start_client(server_address=server, client=client.to_client(), insecure=True)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            retryable = (
                code == grpc.StatusCode.UNAVAILABLE
                and client.instructions_received == 0
                and time.monotonic() + CONNECT_RETRY_DELAY_S < deadline
            )
            if retryable:
                logger.warning(
                    "server %s not reachable (attempt %d): %s; retrying in %.0f s",
                    server,
                    attempt,
                    details,
                    CONNECT_RETRY_DELAY_S,
                )
                time.sleep(CONNECT_RETRY_DELAY_S)
                continue
            logger.error(
                "connection to server %s failed after %d instructions (attempt %d): %s: %s",
                server,
                client.instructions_received,
                attempt,
                code,
                details,
            )
            return 1
        logger.info("server %s ended the session after %d instructions", server, client.instructions_received)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client from the command line and return the exit status."""
    args = _parse_args(argv)
    logger = runtime.setup_logging(args.name)

    try:
        part = load_partition(args.partition)
    except DataError as error:
        logger.error("%s", error)
        return 2
    logger.info(
        "loaded %s: %d train, %d test examples",
        args.partition,
        len(part.y_train),
        len(part.y_test),
    )

    keras.utils.set_random_seed(args.seed)
    configure_tensorflow()
    model = build_model()
    client = PartitionClient(
        model,
        part,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        logger=logger,
    )
    if args.warm_up:
        logger.info("warmed up the train and test graphs in %.1f s", client.warm_up())

    try:
        return run_session(client, args.server, args.connect_timeout, logger)
    except Exception:
        # Flower's grpc-bidi client re-raises exceptions from fit/evaluate, which
        # ends the session, so log the traceback and report failure.
        logger.exception("client %s failed", args.name)
        return 1


def run_and_exit() -> None:
    """Run main() and end the process with its status, skipping the interpreter's normal shutdown.

    After the session ends, a normal exit spent about 6 s per client tearing down
    TensorFlow and gRPC threads (2 clients, 2 cores, lightly loaded) and more than
    10 s with 10 clients on a loaded machine, while the client had nothing left to
    do. os._exit skips that, so stdout and stderr are flushed first.
    """
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run_and_exit()
