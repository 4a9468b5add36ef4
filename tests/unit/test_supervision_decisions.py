"""The supervisor's decisions (SPEC §14.5): restart at once, back off, give up, reset."""

from __future__ import annotations

import pytest

from updater.supervision import (
    ExitVerdict,
    LastExit,
    SupervisorMemory,
    SupervisorState,
)

MINUTE_MS = 60_000


def exit_at(at_ms: int, pid: int = 100) -> LastExit:
    return LastExit(at_ms=at_ms, pid=pid, reason="exited")


def test_first_exit_restarts_at_once_then_backs_off_doubling_to_a_minute() -> None:
    memory = SupervisorMemory()
    verdicts, delays = [], []
    # One exit every 2 minutes: never five within five minutes, never ready for ten.
    for n in range(9):
        verdicts.append(memory.note_exit(exit_at(n * 2 * MINUTE_MS), scale=1.0))
        delays.append(memory.backoff_s(scale=1.0))
    assert verdicts[0] is ExitVerdict.RESTART_NOW
    assert verdicts[1:] == [ExitVerdict.BACK_OFF] * 8
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert memory.state is SupervisorState.BACKING_OFF


def test_five_exits_within_five_minutes_give_up() -> None:
    memory = SupervisorMemory()
    verdicts = [memory.note_exit(exit_at(n * 1000), scale=1.0) for n in range(5)]
    assert verdicts == [ExitVerdict.RESTART_NOW] + [ExitVerdict.BACK_OFF] * 3 + [
        ExitVerdict.GIVE_UP
    ]
    assert memory.gave_up
    assert memory.state is SupervisorState.GAVE_UP


def test_exits_spread_over_more_than_five_minutes_never_give_up() -> None:
    memory = SupervisorMemory()
    for n in range(20):
        assert memory.note_exit(exit_at(n * 76_000), scale=1.0) is not ExitVerdict.GIVE_UP


def test_the_window_and_the_reset_follow_the_time_scale() -> None:
    memory = SupervisorMemory()
    # Scale 0.01: the window is 3 s; five exits 0.5 s apart fall inside it.
    verdicts = [memory.note_exit(exit_at(n * 500), scale=0.01) for n in range(5)]
    assert verdicts[-1] is ExitVerdict.GIVE_UP
    assert memory.backoff_s(scale=0.01) == pytest.approx(0.08)
    # One second apart, never more than three exits are inside the window.
    spread = SupervisorMemory()
    verdicts = [spread.note_exit(exit_at(n * 1000), scale=0.01) for n in range(10)]
    assert ExitVerdict.GIVE_UP not in verdicts


def test_ten_minutes_ready_resets_the_consecutive_count() -> None:
    memory = SupervisorMemory()
    assert memory.note_exit(exit_at(0), scale=1.0) is ExitVerdict.RESTART_NOW
    memory.note_ready(1000)
    assert memory.note_exit(exit_at(1000 + 9 * MINUTE_MS), scale=1.0) is ExitVerdict.BACK_OFF
    memory.note_ready(2000 + 9 * MINUTE_MS)
    later = 2000 + 9 * MINUTE_MS + 10 * MINUTE_MS
    assert memory.note_exit(exit_at(later), scale=1.0) is ExitVerdict.RESTART_NOW


def test_a_user_start_clears_giving_up_once() -> None:
    memory = SupervisorMemory()
    for n in range(5):
        memory.note_exit(exit_at(n), scale=1.0)
    memory.note_restart()
    assert memory.gave_up
    assert memory.note_user_start(1_000) is True
    assert not memory.gave_up
    assert (memory.restarts, memory.consecutive, memory.exits_at_ms) == (0, 0, [])
    # The same start seen again (every wake-up reads it) changes nothing.
    memory.note_exit(exit_at(2_000), scale=1.0)
    assert memory.note_user_start(1_000) is False
    assert memory.consecutive == 1


def test_memory_round_trips_and_damage_means_a_fresh_memory() -> None:
    memory = SupervisorMemory()
    memory.note_exit(exit_at(5, pid=42), scale=1.0)
    memory.note_restart()
    memory.note_user_start(3)
    again = SupervisorMemory.from_json(memory.to_json())
    assert again == memory
    assert SupervisorMemory.from_json("garbage") == SupervisorMemory()
    damaged = SupervisorMemory.from_json(
        {"state": "nonsense", "restarts": -3, "exitsAtMs": [1, "x", True], "lastExit": {}}
    )
    assert damaged.state is SupervisorState.WATCHING
    assert damaged.restarts == 0
    assert damaged.exits_at_ms == [1]
    assert damaged.last_exit is None
