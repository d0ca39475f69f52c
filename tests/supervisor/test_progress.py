"""Round progress from the server's round events."""

from supervisor.progress import RoundProgress, parse_event


def test_parse_event_accepts_prefixed_json() -> None:
    assert parse_event('fl-event {"event":"round_started","round":1}') == {"event": "round_started", "round": 1}


def test_parse_event_ignores_other_lines() -> None:
    assert parse_event("INFO starting") is None
    assert parse_event("fl-event not json") is None
    assert parse_event('fl-event ["event"]') is None


def test_progress_follows_rounds() -> None:
    progress = RoundProgress(total_rounds=3)
    assert progress.update({"event": "round_started", "round": 1, "clients": 5}) is False
    assert progress.describe().startswith("round 1/3: fit (0/5 clients done)")
    progress.update({"event": "client_done", "round": 1, "phase": "fit", "done": 2, "of": 5, "failed": False})
    assert progress.describe().startswith("round 1/3: fit 2/5 clients done")
    progress.update({"event": "fit_done", "round": 1})
    assert progress.phase == "evaluate"
    finished = progress.update({"event": "round_done", "round": 1, "loss": 2.5, "accuracy": 0.25, "duration_s": 60.0})
    assert finished is True
    assert progress.last_loss == 2.5
    assert progress.last_accuracy == 0.25
    assert progress.remaining_s() == 120.0


def test_estimate_skips_first_round_once_later_ones_finish() -> None:
    progress = RoundProgress(total_rounds=4)
    for number, duration in ((1, 80.0), (2, 20.0)):
        progress.update({"event": "round_started", "round": number})
        progress.update({"event": "round_done", "round": number, "duration_s": duration})
    assert progress.remaining_s() == 40.0
