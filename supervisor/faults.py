"""Fault injection: kill or stall chosen clients at chosen rounds, on purpose.

`--inject kill:client-3@round=2` sends SIGKILL to client-3's process group
when round 2 starts. `stall:` sends SIGSTOP instead, so the client sends no
replies, and with `--round-timeout` the server counts it as a failure.
`--inject-random-kill P` kills each running client with probability P at
the start of every round, from a random generator seeded with
`--inject-seed`, so a run can be repeated exactly.
"""

import random
import re
from dataclasses import dataclass

FAULT_KINDS = ("kill", "stall")
_SPEC = re.compile(r"^(?P<kind>[a-z]+):(?P<client>client-\d+)@round=(?P<round>\d+)$")


class FaultSpecError(ValueError):
    """An `--inject` value that does not parse; the message shows the expected form."""


@dataclass(frozen=True)
class Fault:
    """One planned fault: what to do to which client when which round starts."""

    kind: str
    client: str
    round: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.client}@round={self.round}"


def parse_fault(text: str, clients: int, rounds: int) -> Fault:
    """Parse `KIND:client-N@round=R`; raise FaultSpecError naming the problem."""
    match = _SPEC.match(text.strip())
    if match is None:
        raise FaultSpecError(
            f"--inject {text!r} is not of the form KIND:client-N@round=R, for example kill:client-3@round=2"
        )
    kind, client, round_number = match["kind"], match["client"], int(match["round"])
    if kind not in FAULT_KINDS:
        raise FaultSpecError(f"--inject {text!r}: unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    index = int(client.split("-")[1])
    if index >= clients:
        raise FaultSpecError(f"--inject {text!r}: there are only client-0 to client-{clients - 1}")
    if not 1 <= round_number <= rounds:
        raise FaultSpecError(f"--inject {text!r}: round {round_number} is outside 1-{rounds}")
    # The process names have no leading zeros: client-01 means client-1.
    return Fault(kind, f"client-{index}", round_number)


class FaultPlan:
    """Decide which faults to inject when a round starts."""

    def __init__(self, faults: list[Fault], random_kill: float = 0.0, seed: int = 0) -> None:
        self.faults = faults
        self.random_kill = random_kill
        self._random = random.Random(seed)

    def __bool__(self) -> bool:
        return bool(self.faults) or self.random_kill > 0

    def due(self, round_number: int, running_clients: list[str]) -> list[Fault]:
        """Return the faults to inject now that `round_number` has started.

        The random draws happen for every running client in name order, so
        the same seed and the same sequence of running clients give the same
        faults.
        """
        chosen = [fault for fault in self.faults if fault.round == round_number]
        if self.random_kill > 0:
            for name in sorted(running_clients, key=_client_index):
                if self._random.random() < self.random_kill:
                    chosen.append(Fault("kill", name, round_number))
        return chosen


def _client_index(name: str) -> int:
    return int(name.rsplit("-", 1)[-1])
