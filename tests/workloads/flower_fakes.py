"""Flower stand-ins shared by the workload tests."""

from __future__ import annotations

from typing import Any

from flwr.server.client_proxy import ClientProxy


class IdleClientProxy(ClientProxy):
    """A registered client that is never asked to do anything in these tests."""

    def get_properties(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def get_parameters(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def reconnect(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError
