"""The supervisor's memory and decisions (SPEC §14.3-§14.6, §14.8): pure, no effects.

The updater process (``updater.supervisor``) watches the recorded app-server and asks
these functions what an exit means::

    exit seen -> note_exit -> RESTART_NOW          first exit after a healthy period
                           -> BACK_OFF(delay)      1, 2, 4 ... 60 s for later ones
                           -> GIVE_UP              5 exits within 5 minutes

    user start / restart / bootstrap -> note_user_start (clears "gave up" and the count)

All durations are in seconds of the test-scaled clock: the caller multiplies by
``CODEX_DAEMONKIT_TIME_SCALE`` (SPEC §14.10); the first restart is never delayed.
The memory is saved in ``app-server-updater.state.json`` under ``supervisor`` and is
what ``status`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto

from daemonkit.jsonget import get_lenient, has_type

__all__ = [
    "BACKOFF_STEPS_S",
    "GIVE_UP_EXITS",
    "GIVE_UP_WINDOW_S",
    "HEALTHY_RESET_S",
    "HUNG_AFTER_FAILED_PROBES",
    "ExitVerdict",
    "LastExit",
    "SupervisorMemory",
    "SupervisorState",
]

BACKOFF_STEPS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
GIVE_UP_EXITS = 5
GIVE_UP_WINDOW_S = 5 * 60.0
HEALTHY_RESET_S = 10 * 60.0
HUNG_AFTER_FAILED_PROBES = 3


class SupervisorState(StrEnum):
    WATCHING = "watching"
    RESTARTING = "restarting"
    BACKING_OFF = "backingOff"
    GAVE_UP = "gaveUp"
    OFF = "off"


class ExitVerdict(Enum):
    RESTART_NOW = auto()
    BACK_OFF = auto()
    GIVE_UP = auto()


@dataclass(slots=True, frozen=True)
class LastExit:
    at_ms: int
    pid: int
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"atMs": self.at_ms, "pid": self.pid, "reason": self.reason}

    @classmethod
    def from_json(cls, value: object) -> LastExit | None:
        if not isinstance(value, dict):
            return None
        at_ms = get_lenient(value, "atMs", int, None)
        pid = get_lenient(value, "pid", int, None)
        reason = get_lenient(value, "reason", str, None)
        if at_ms is None or pid is None or reason is None:
            return None
        return cls(at_ms=at_ms, pid=pid, reason=reason)


@dataclass(slots=True, kw_only=True)
class SupervisorMemory:
    """What the supervisor remembers across wake-ups, re-execs and restarts of itself."""

    state: SupervisorState = SupervisorState.WATCHING
    # Supervised restarts since the last user start (status shows it).
    restarts: int = 0
    # Unexpected exits since the server was last ready for HEALTHY_RESET_S.
    consecutive: int = 0
    # Times of the unexpected exits inside the give-up window.
    exits_at_ms: list[int] = field(default_factory=list)
    last_exit: LastExit | None = None
    # When the current server was seen ready (wall clock, survives a re-exec).
    ready_since_ms: int | None = None
    # The desiredState change (changedAtMs) of the last user start already honoured.
    user_start_at_ms: int | None = None

    # -- decisions ---------------------------------------------------------------------

    def note_exit(self, exit_: LastExit, *, scale: float) -> ExitVerdict:
        """Count an unexpected exit (or a hung server, or a failed restart)."""
        now = exit_.at_ms
        if self.ready_since_ms is not None and now - self.ready_since_ms >= _ms(
            HEALTHY_RESET_S * scale
        ):
            self.consecutive = 0
        self.ready_since_ms = None
        self.last_exit = exit_
        window_ms = _ms(GIVE_UP_WINDOW_S * scale)
        self.exits_at_ms = [at for at in self.exits_at_ms if now - at < window_ms] + [now]
        self.consecutive += 1
        if len(self.exits_at_ms) >= GIVE_UP_EXITS:
            self.state = SupervisorState.GAVE_UP
            return ExitVerdict.GIVE_UP
        if self.consecutive == 1:
            self.state = SupervisorState.RESTARTING
            return ExitVerdict.RESTART_NOW
        self.state = SupervisorState.BACKING_OFF
        return ExitVerdict.BACK_OFF

    def backoff_s(self, *, scale: float) -> float:
        """Delay before the restart of the ``consecutive``-th exit (the first: none)."""
        if self.consecutive <= 1:
            return 0.0
        step = BACKOFF_STEPS_S[min(self.consecutive - 2, len(BACKOFF_STEPS_S) - 1)]
        return step * scale

    def note_ready(self, now_ms: int) -> None:
        """A server (restarted or found) answered: supervision is back to watching."""
        self.state = SupervisorState.WATCHING
        if self.ready_since_ms is None:
            self.ready_since_ms = now_ms

    def note_restart(self) -> None:
        self.restarts += 1

    def note_user_start(self, changed_at_ms: int) -> bool:
        """A user start/restart/bootstrap newer than the last one seen: start afresh.

        True if it was new (the caller saves the memory).
        """
        if self.user_start_at_ms is not None and changed_at_ms <= self.user_start_at_ms:
            return False
        self.user_start_at_ms = changed_at_ms
        self.state = SupervisorState.WATCHING
        self.restarts = 0
        self.consecutive = 0
        self.exits_at_ms = []
        return True

    @property
    def gave_up(self) -> bool:
        return self.state is SupervisorState.GAVE_UP

    # -- the state file --------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "consecutive": self.consecutive,
            "exitsAtMs": list(self.exits_at_ms),
            "lastExit": None if self.last_exit is None else self.last_exit.to_json(),
            "readySinceMs": self.ready_since_ms,
            "userStartAtMs": self.user_start_at_ms,
        }

    @classmethod
    def from_json(cls, value: object) -> SupervisorMemory:
        """Lenient, like the rest of the state file: damage means a fresh memory."""
        if not isinstance(value, dict):
            return cls()
        try:
            state = SupervisorState(str(value.get("state")))
        except ValueError:
            state = SupervisorState.WATCHING
        exits = value.get("exitsAtMs")
        exits_at_ms = [at for at in exits if has_type(at, int)] if isinstance(exits, list) else []
        return cls(
            state=state,
            restarts=max(get_lenient(value, "restarts", int, 0), 0),
            consecutive=max(get_lenient(value, "consecutive", int, 0), 0),
            exits_at_ms=exits_at_ms,
            last_exit=LastExit.from_json(value.get("lastExit")),
            ready_since_ms=get_lenient(value, "readySinceMs", int, None),
            user_start_at_ms=get_lenient(value, "userStartAtMs", int, None),
        )


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
