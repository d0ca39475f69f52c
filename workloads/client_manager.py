"""Flower client manager that samples from the clients still connected and never waits without a limit.

Flower's SimpleClientManager (flwr 1.42) blocks every sample() call for up to
24 hours until min_num_clients clients are connected, so one lost client hangs
a server whose strategy requires all of them. FailureTolerantClientManager
bounds each wait by wait_timeout_s and raises ClientWaitTimeoutError when it
expires.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion

# Called with the lost client's cid and the number of clients still connected. It runs
# with the manager's lock held, so reports come in the order of the losses, and it must
# not call the manager's sample() or wait_for().
ClientLostCallback = Callable[[str, int], None]


class ClientWaitTimeoutError(RuntimeError):
    """Too few clients were connected when the wait for clients timed out."""

    def __init__(self, *, needed: int, connected: int, timeout_s: float, reason: str) -> None:
        super().__init__(
            f"timed out after {timeout_s:g} s waiting for clients: {needed} needed, {connected} connected; {reason}"
        )
        self.needed = needed
        self.connected = connected
        self.timeout_s = timeout_s


class FailureTolerantClientManager(SimpleClientManager):
    """Client manager that waits for all clients once, then samples from those still connected.

    The first sample() call, which in Flower's legacy server is the request for
    the initial parameters, waits until num_clients clients are connected. Later
    calls wait only for the min_num_clients that the strategy passes. A client
    that reconnects registers as a new ClientProxy with a new cid and can be
    sampled at once.

    Flower calls register() and unregister() from gRPC threads. unregister()
    runs when a client's stream ends: after a closed connection, a killed client
    process, or a round timeout, because Flower aborts the stream of a client that
    does not reply in time. Both methods and sample() hold the condition's lock,
    so a sample never contains a client that has already been unregistered.
    """

    def __init__(
        self,
        *,
        num_clients: int,
        wait_timeout_s: float,
        on_client_lost: ClientLostCallback | None = None,
    ) -> None:
        if num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients}")
        if wait_timeout_s <= 0:
            raise ValueError(f"wait_timeout_s must be > 0, got {wait_timeout_s}")
        super().__init__()
        self.num_clients = num_clients
        self.wait_timeout_s = wait_timeout_s
        self.on_client_lost = on_client_lost
        self._all_connected_once = False
        self._reporting = threading.Event()
        self._reporting.set()

    def stop_reporting(self) -> None:
        """Stop calling on_client_lost, for disconnects caused by the server shutting down."""
        self._reporting.clear()

    def register(self, client: ClientProxy) -> bool:
        """Add `client` to the pool and wake waiting samplers. Return False, changing nothing, if its cid is taken."""
        with self._cv:
            if client.cid in self.clients:
                return False
            self.clients[client.cid] = client
            self._cv.notify_all()
        return True

    def unregister(self, client: ClientProxy) -> None:
        """Remove `client` from the pool and report the loss. A second call for the same client does nothing."""
        with self._cv:
            if client.cid not in self.clients:
                return
            del self.clients[client.cid]
            self._cv.notify_all()
            if self.on_client_lost is not None and self._reporting.is_set():
                self.on_client_lost(client.cid, len(self.clients))

    def all(self) -> dict[str, ClientProxy]:
        """Return a copy of the connected clients by cid, safe to iterate while clients come and go."""
        with self._cv:
            return dict(self.clients)

    def wait_for(self, num_clients: int, timeout: float = 86400) -> bool:
        """Wait until at least `num_clients` are connected, for at most min(timeout, wait_timeout_s) seconds."""
        with self._cv:
            return self._cv.wait_for(
                lambda: len(self.clients) >= num_clients, timeout=min(timeout, self.wait_timeout_s)
            )

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        """Wait for enough connected clients, then return up to `num_clients` of them chosen at random.

        Enough means min_num_clients (num_clients when it is None), and on the
        first call at least self.num_clients. Raises ClientWaitTimeoutError when
        they are not connected within wait_timeout_s. Returns fewer than
        num_clients only when clients were lost after the strategy computed
        num_clients from num_available(), or when `criterion` rejects clients.
        """
        required = num_clients if min_num_clients is None else min_num_clients
        with self._cv:
            if self._all_connected_once:
                reason = "more clients were lost than --max-client-failures allows"
            else:
                required = max(required, self.num_clients)
                reason = "all --clients must connect before round 1 starts"
            if not self._cv.wait_for(lambda: len(self.clients) >= required, timeout=self.wait_timeout_s):
                raise ClientWaitTimeoutError(
                    needed=required, connected=len(self.clients), timeout_s=self.wait_timeout_s, reason=reason
                )
            self._all_connected_once = True

            candidates = [cid for cid, proxy in self.clients.items() if criterion is None or criterion.select(proxy)]
            chosen = random.sample(candidates, min(num_clients, len(candidates)))
            return [self.clients[cid] for cid in chosen]
