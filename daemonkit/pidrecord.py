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

from daemonkit.errors import JsonFieldError, PidRecordError
from daemonkit.jsonget import get_object, get_optional, get_required, has_type
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


def _is_u32(number: int) -> bool:
    return 0 <= number <= MAX_PID


def _is_non_negative(number: int) -> bool:
    return number >= 0


def _is_digest(value: list[object]) -> bool:
    return len(value) == 32 and all(has_type(b, int) and 0 <= b <= 255 for b in value)


def _parse_identity(value: dict[str, object]) -> LinuxIdentity | MacIdentity:
    at = "processIdentity"
    if "startTicks" in value or ("bootId" in value and "startSeconds" not in value):
        boot_id = get_required(value, "bootId", str, path=at)
        ticks = get_required(
            value,
            "startTicks",
            int,
            path=at,
            expected="a non-negative integer",
            valid=_is_non_negative,
        )
        return LinuxIdentity(boot_id=boot_id, start_ticks=ticks)
    seconds = get_required(value, "startSeconds", int, path=at)
    micros = get_required(value, "startMicroseconds", int, path=at)
    boot = get_optional(value, "bootId", str, path=at)
    unique = get_optional(value, "uniqueId", int, path=at)
    return MacIdentity(
        boot_id=boot, unique_id=unique, start_seconds=seconds, start_microseconds=micros
    )


def _parse_digest(exe: dict[str, object], key: str) -> tuple[int, ...]:
    value = get_required(
        exe, key, list, path="executableIdentity", expected="an array of 32 bytes", valid=_is_digest
    )
    return tuple(value)


def _parse_fields(value: dict[str, object]) -> PidRecord:
    pid = get_required(value, "pid", int, expected="an unsigned 32-bit integer", valid=_is_u32)
    start = get_required(value, "processStartTime", str)
    ident = get_object(value, "processIdentity")
    identity = None if ident is None else _parse_identity(ident)
    exe = get_object(value, "executableIdentity")
    executable = None
    if exe is not None:
        executable = ExecutableIdentity(
            digest=_parse_digest(exe, "digest"), path_digest=_parse_digest(exe, "path_digest")
        )
    return PidRecord(pid=pid, process_start_time=start, identity=identity, executable=executable)


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
    try:
        return _parse_fields(value)
    except JsonFieldError as exc:
        # A record's field errors quote the key: the wording stop and status have shown.
        raise PidRecordError(f"invalid type for '{exc.key}': expected {exc.expected}") from None
