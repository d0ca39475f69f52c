"""Wait until a TCP port accepts connections."""

import asyncio
import contextlib
import socket

# Pause between connection attempts: starts short so a fast server is seen
# quickly, and grows so a slow one is not hammered.
FIRST_POLL_S = 0.02
MAX_POLL_S = 0.25


async def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Return True once `host:port` accepts a connection, False after `timeout_s`.

    The caller races this against the server's exit: a server that dies
    before it listens must not cost the whole timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    poll_s = FIRST_POLL_S
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            pass
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
        poll_s = min(poll_s * 1.5, MAX_POLL_S)


def port_in_use(host: str, port: int) -> bool:
    """Return True if another socket is already bound to `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str) -> int:
    """Return a port on `host` that nothing is bound to right now.

    NOTE: another program can take the port between this call and the
    server's bind. The server then fails to start and the run stops with a
    message naming it, so the race costs a retry, not a hang.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port
