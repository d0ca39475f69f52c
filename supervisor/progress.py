"""Round progress, read from the round events the server workload prints.

The server prints one line per round event: the prefix `fl-event ` and a JSON
object with an "event" key (server_started, round_started, fit_done,
evaluate_done, round_done, ...). Lines without the prefix, or with JSON that
does not parse, are ordinary output and change nothing.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor.output import format_duration

EVENT_PREFIX = "fl-event "


def parse_event(line: str) -> dict[str, Any] | None:
    """Return the round event in `line`, or None if it is ordinary output."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX) :])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


@dataclass
class RoundProgress:
    """The current round and phase, the last results, and an estimate of the time left."""

    total_rounds: int
    round: int = 0
    phase: str = "waiting for clients"
    sampled: int = 0
    last_loss: float | None = None
    last_accuracy: float | None = None
    round_durations: list[float] = field(default_factory=list)
    round_started_at: float | None = None
    # Replies in the current phase: (done, of), from client_done events.
    phase_done: tuple[int, int] | None = None

    def update(self, event: dict[str, Any]) -> bool:
        """Apply one round event; return True when a round has just finished."""
        kind = event.get("event")
        if kind == "server_started":
            self.total_rounds = int(event.get("num_rounds", self.total_rounds))
        elif kind == "round_started":
            self.round = int(event.get("round", self.round + 1))
            self.sampled = int(event.get("clients", 0))
            self.phase = "fit"
            self.phase_done = None
            self.round_started_at = time.monotonic()
        elif kind == "client_done":
            self.phase = str(event.get("phase", self.phase))
            self.phase_done = (int(event.get("done", 0)), int(event.get("of", 0)))
        elif kind == "fit_done":
            self.phase = "evaluate"
            self.phase_done = None
        elif kind == "round_done":
            self.phase = "between rounds"
            self.last_loss = _number(event.get("loss"))
            self.last_accuracy = _number(event.get("accuracy"))
            duration = _number(event.get("duration_s"))
            if duration is not None:
                self.round_durations.append(duration)
            return True
        elif kind in ("server_done", "server_stopped", "server_failed"):
            self.phase = "finished" if kind == "server_done" else "stopped"
        return False

    def remaining_s(self) -> float | None:
        """Estimate the time left from the mean duration of the rounds after the first.

        Round 1 pays TensorFlow's graph building in every client, so it is
        used only while no later round has finished.
        """
        if not self.round_durations:
            return None
        later = self.round_durations[1:] or self.round_durations
        per_round = sum(later) / len(later)
        rounds_left = self.total_rounds - len(self.round_durations)
        in_round = 0.0
        if self.round_started_at is not None and self.phase != "between rounds":
            in_round = time.monotonic() - self.round_started_at
        return max(0.0, rounds_left * per_round - in_round)

    def describe(self) -> str:
        """Return one status line: round, phase, last results, time left."""
        if self.round == 0:
            return f"round 0/{self.total_rounds}: {self.phase}"
        parts = [f"round {self.round}/{self.total_rounds}: {self.phase}"]
        if self.phase_done is not None and self.phase in ("fit", "evaluate"):
            parts[0] += f" {self.phase_done[0]}/{self.phase_done[1]} clients done"
        elif self.phase == "fit" and self.sampled:
            parts[0] += f" (0/{self.sampled} clients done)"
        if self.last_loss is not None:
            parts.append(f"last loss {self.last_loss:.4f}")
        if self.last_accuracy is not None:
            parts.append(f"accuracy {self.last_accuracy:.4f}")
        remaining = self.remaining_s()
        if remaining is not None and self.phase not in ("finished", "stopped"):
            parts.append(f"about {format_duration(remaining)} left")
        return ", ".join(parts)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
