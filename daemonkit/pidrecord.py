"""Pid records: the JSON schema shared with the Rust daemon, parsed and written (pure).

A record is compact JSON without a trailing newline, keys in this order (SPEC §4.2)::

    {"pid":4804,"processStartTime":"Tue Nov 24 03:00:41 2026",
     "processIdentity":{"bootId":"<uuid>","startTicks":123456},
     "executableIdentity":{"digest":[32 ints],"path_digest":[32 ints]}}

Seed records carry only ``pid`` and ``processStartTime``; they are "legacy" records
and are matched by start time (SPEC §4.3).
"""

from __future__ import annotations

import json

from daemonkit.errors import PidRecordError
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ExecutableIdentity",
    "LinuxIdentity",
    "MacIdentity",
    "PidRecord",
    "parse_pid_record",
]

MAX_PID = 2**32 - 1


class LinuxIdentity(Value):
    __slots__ = ("boot_id", "start_ticks")

    def __init__(self, *, boot_id: str, start_ticks: int) -> None:
        self.boot_id: Final = boot_id
        self.start_ticks: Final = start_ticks


class MacIdentity(Value):
    """macOS identity (best effort); ``boot_id`` and ``unique_id`` are absent in legacy form."""

    __slots__ = ("boot_id", "start_microseconds", "start_seconds", "unique_id")

    def __init__(
        self,
        *,
        boot_id: str | None,
        unique_id: int | None,
        start_seconds: int,
        start_microseconds: int,
    ) -> None:
        self.boot_id: Final = boot_id
        self.unique_id: Final = unique_id
        self.start_seconds: Final = start_seconds
        self.start_microseconds: Final = start_microseconds


class ExecutableIdentity(Value):
    __slots__ = ("digest", "path_digest")

    def __init__(self, *, digest: tuple[int, ...], path_digest: tuple[int, ...]) -> None:
        self.digest: Final = digest
        self.path_digest: Final = path_digest


class PidRecord(Value):
    __slots__ = ("executable", "identity", "pid", "process_start_time")

    def __init__(
        self,
        *,
        pid: int,
        process_start_time: str,
        identity: LinuxIdentity | MacIdentity | None = None,
        executable: ExecutableIdentity | None = None,
    ) -> None:
        self.pid: Final = pid
        self.process_start_time: Final = process_start_time
        self.identity: Final = identity
        self.executable: Final = executable

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "processStartTime": self.process_start_time}
        match self.identity:
            case LinuxIdentity(boot_id=boot_id, start_ticks=ticks):
                out["processIdentity"] = {"bootId": boot_id, "startTicks": ticks}
            case MacIdentity() as mac:
                ident: dict[str, object] = {}
                if mac.boot_id is not None:
                    ident["bootId"] = mac.boot_id
                if mac.unique_id is not None:
                    ident["uniqueId"] = mac.unique_id
                ident["startSeconds"] = mac.start_seconds
                ident["startMicroseconds"] = mac.start_microseconds
                out["processIdentity"] = ident
            case None:
                pass
        if self.executable is not None:
            out["executableIdentity"] = {
                "digest": list(self.executable.digest),
                "path_digest": list(self.executable.path_digest),
            }
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode("ascii")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_error(key: str, expected: str) -> PidRecordError:
    return PidRecordError(f"invalid type for '{key}': expected {expected}")


def _parse_identity(value: object) -> LinuxIdentity | MacIdentity:
    if not isinstance(value, dict):
        raise _field_error("processIdentity", "an object")
    if "startTicks" in value or ("bootId" in value and "startSeconds" not in value):
        boot_id, ticks = value.get("bootId"), value.get("startTicks")
        if not isinstance(boot_id, str):
            raise _field_error("processIdentity.bootId", "a string")
        if not _is_int(ticks) or not isinstance(ticks, int) or ticks < 0:
            raise _field_error("processIdentity.startTicks", "a non-negative integer")
        return LinuxIdentity(boot_id=boot_id, start_ticks=ticks)
    seconds, micros = value.get("startSeconds"), value.get("startMicroseconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _field_error("processIdentity.startSeconds", "an integer")
    if not isinstance(micros, int) or isinstance(micros, bool):
        raise _field_error("processIdentity.startMicroseconds", "an integer")
    boot, unique = value.get("bootId"), value.get("uniqueId")
    if boot is not None and not isinstance(boot, str):
        raise _field_error("processIdentity.bootId", "a string")
    if unique is not None and (not isinstance(unique, int) or isinstance(unique, bool)):
        raise _field_error("processIdentity.uniqueId", "an integer")
    return MacIdentity(
        boot_id=boot, unique_id=unique, start_seconds=seconds, start_microseconds=micros
    )


def _parse_digest(value: object, key: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) != 32
        or not all(_is_int(b) and 0 <= b <= 255 for b in value)
    ):
        raise _field_error(f"executableIdentity.{key}", "an array of 32 bytes")
    return tuple(value)


def parse_pid_record(raw: bytes) -> PidRecord:
    """Parse a record's bytes; raise ``PidRecordError`` naming what is wrong.

    Unknown keys are ignored, so records from newer writers stay readable.
    """
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PidRecordError(str(exc)) from None
    if not isinstance(value, dict):
        raise PidRecordError("expected a JSON object")
    pid = value.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid <= MAX_PID:
        raise _field_error("pid", "an unsigned 32-bit integer")
    start = value.get("processStartTime")
    if not isinstance(start, str):
        raise _field_error("processStartTime", "a string")
    identity = None
    if value.get("processIdentity") is not None:
        identity = _parse_identity(value["processIdentity"])
    executable = None
    exe = value.get("executableIdentity")
    if exe is not None:
        if not isinstance(exe, dict):
            raise _field_error("executableIdentity", "an object")
        executable = ExecutableIdentity(
            digest=_parse_digest(exe.get("digest"), "digest"),
            path_digest=_parse_digest(exe.get("path_digest"), "path_digest"),
        )
    return PidRecord(pid=pid, process_start_time=start, identity=identity, executable=executable)
