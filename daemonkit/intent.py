"""desired-state.json: what the user last asked for, read by the updater (SPEC §3.8)."""

from __future__ import annotations

import json
import time
from enum import StrEnum

from daemonkit.errors import StateDirError, os_errors_as
from daemonkit.files import read_state_file, write_atomic
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["DesiredState", "Intent", "read_desired_state", "read_intent", "write_desired_state"]


class DesiredState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


def write_desired_state(path: str, state: DesiredState, changed_by: str) -> None:
    """Record the user's intent; the caller holds the operation lock."""
    data = json.dumps(
        {
            "desiredState": state.value,
            "changedAtMs": int(time.time() * 1000),
            "changedBy": changed_by,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    with os_errors_as(StateDirError, f"failed to write desired state {path}"):
        write_atomic(path, f"{path}.tmp", data, durable=True)


class Intent(Value):
    """desired-state.json as read: what, when (unix ms; 0 if unknown) and by which command."""

    __slots__ = ("changed_at_ms", "changed_by", "state")

    def __init__(self, *, state: DesiredState, changed_at_ms: int, changed_by: str) -> None:
        self.state: Final = state
        self.changed_at_ms: Final = changed_at_ms
        self.changed_by: Final = changed_by


def read_intent(path: str) -> Intent | None:
    """The recorded intent, or None when missing or unreadable (SPEC §3.8)."""
    try:
        raw = read_state_file(path, 4096)
    except OSError:
        # Unreadable intent is "unknown", never an error: the file is advisory.
        return None
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
        state = DesiredState(value.get("desiredState"))
    except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        return None
    changed_at, changed_by = value.get("changedAtMs"), value.get("changedBy")
    return Intent(
        state=state,
        changed_at_ms=changed_at if type(changed_at) is int else 0,
        changed_by=changed_by if isinstance(changed_by, str) else "",
    )


def read_desired_state(path: str) -> DesiredState | None:
    """Only the state of the recorded intent."""
    intent = read_intent(path)
    return None if intent is None else intent.state
