"""desired-state.json: what the user last asked for, read by the updater (SPEC §3.8)."""

from __future__ import annotations

import json
import time
from enum import StrEnum

from daemonkit.errors import StateDirError, UnsafeFileError
from daemonkit.files import read_state_file, write_atomic

__all__ = ["DesiredState", "read_desired_state", "write_desired_state"]


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
    try:
        write_atomic(path, f"{path}.tmp", data, durable=True)
    except UnsafeFileError:
        raise
    except OSError as exc:
        raise StateDirError(f"failed to write desired state {path}") from exc


def read_desired_state(path: str) -> DesiredState | None:
    """The recorded intent, or None when missing or unreadable (SPEC §3.8)."""
    try:
        raw = read_state_file(path, 4096)
    except OSError:
        # Unreadable intent is "unknown", never an error: the file is advisory.
        return None
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8")).get("desiredState")
        return DesiredState(value)
    except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        return None
