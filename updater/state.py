"""app-server-updater.state.json: what the updater remembers between cycles (SPEC §3.9).

Only the updater writes it (there is at most one per CODEX_HOME); ``status`` reads
``lastCheckAtMs``, ``lastResult``, ``lastError`` and the supervisor's memory
(SPEC §14.8). Reading is lenient: a missing or
damaged file is a fresh state, never an error, and unknown keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

from daemonkit.errors import describe_exception
from daemonkit.files import read_state_file, write_atomic
from daemonkit.jsonget import get_lenient, has_type
from updater.supervision import SupervisorMemory

__all__ = ["CycleResult", "UpdaterState", "load_state", "save_state"]

STATE_LIMIT = 1 << 20


class CycleResult(StrEnum):
    UPDATED = "updated"
    NO_UPDATE = "noUpdate"
    ALREADY_CURRENT = "alreadyCurrent"
    NOT_RUNNING = "notRunning"
    NOT_READY = "notReady"
    ROLLED_BACK = "rolledBack"
    FAILED = "failed"
    DEFERRED = "deferred"


@dataclass(slots=True, kw_only=True)
class UpdaterState:
    last_check_at_ms: int | None = None
    last_result: CycleResult | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_check_at_ms: int | None = None
    quarantine: dict[str, int] = field(default_factory=dict)
    restarts_at_ms: list[int] = field(default_factory=list)
    last_validated_digest: str | None = None
    # Kit-internal companions of lastValidatedDigest: which hash produced it, and which
    # app-server pid it was validated for (a user restart onto another binary makes
    # the reference unknown instead of forcing an unattended restart).
    last_validated_digest_kind: str | None = None
    last_validated_pid: int | None = None
    supervisor: SupervisorMemory = field(default_factory=SupervisorMemory)

    def to_json(self) -> dict[str, object]:
        return {
            "lastCheckAtMs": self.last_check_at_ms,
            "lastResult": None if self.last_result is None else self.last_result.value,
            "lastError": self.last_error,
            "consecutiveFailures": self.consecutive_failures,
            "nextCheckAtMs": self.next_check_at_ms,
            "quarantine": dict(self.quarantine),
            "restartsAtMs": list(self.restarts_at_ms),
            "lastValidatedDigest": self.last_validated_digest,
            "lastValidatedDigestKind": self.last_validated_digest_kind,
            "lastValidatedPid": self.last_validated_pid,
            "supervisor": self.supervisor.to_json(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> UpdaterState:
        result = get_lenient(obj, "lastResult", str, None)
        try:
            last_result = None if result is None else CycleResult(result)
        except ValueError:
            last_result = None
        quarantine = get_lenient(obj, "quarantine", dict, {})
        restarts = get_lenient(obj, "restartsAtMs", list, [])
        return cls(
            last_check_at_ms=get_lenient(obj, "lastCheckAtMs", int, None),
            last_result=last_result,
            last_error=get_lenient(obj, "lastError", str, None),
            consecutive_failures=max(get_lenient(obj, "consecutiveFailures", int, 0), 0),
            next_check_at_ms=get_lenient(obj, "nextCheckAtMs", int, None),
            quarantine={k: v for k, v in quarantine.items() if has_type(v, int)},
            restarts_at_ms=[v for v in restarts if has_type(v, int)],
            last_validated_digest=get_lenient(obj, "lastValidatedDigest", str, None),
            last_validated_digest_kind=get_lenient(obj, "lastValidatedDigestKind", str, None),
            last_validated_pid=get_lenient(obj, "lastValidatedPid", int, None),
            supervisor=SupervisorMemory.from_json(obj.get("supervisor")),
        )


def load_state(path: str) -> UpdaterState:
    """The saved state, or a fresh one when the file is missing, unsafe or damaged."""
    try:
        raw = read_state_file(path, STATE_LIMIT)
        value = json.loads(raw.decode("utf-8")) if raw else {}
    except (OSError, UnicodeDecodeError, ValueError):
        # The state is advisory (schedule hints, loop breakers); starting afresh is
        # safe, and the next save repairs the file.
        return UpdaterState()
    return UpdaterState.from_json(value) if isinstance(value, dict) else UpdaterState()


def save_state(path: str, state: UpdaterState) -> str | None:
    """Write the state atomically; return the failure text instead of raising.

    A state file that cannot be written must not stop the updater; the caller logs it.
    """
    data = json.dumps(state.to_json(), separators=(",", ":"), ensure_ascii=False)
    try:
        write_atomic(path, f"{path}.tmp", data.encode("utf-8"), durable=False)
    except OSError as exc:
        return f"failed to write updater state {path}: {describe_exception(exc)}"
    return None
