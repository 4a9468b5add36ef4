"""What one update cycle produces: the ``update`` reply and the lock it carries out.

The reply is one JSON value (SPEC §8.3): ``{"Ok": <UpdateOutput>}`` or ``{"Err": text}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CycleReport", "LockHold", "UpdateOutput", "UpdateStatus"]


class UpdateStatus(StrEnum):
    UPDATED = "updated"
    NO_UPDATE = "noUpdate"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateOutput:
    """The reply to an ``update`` request (SPEC §2.3), in upstream key order."""

    status: UpdateStatus
    managed_codex_path: str
    installed_version: str | None
    running_version: str | None
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "managedCodexPath": self.managed_codex_path,
            "installedVersion": self.installed_version,
            "runningVersion": self.running_version,
            "message": self.message,
        }


class LockHold:
    """``daemon.lock`` held by this process; closing the descriptor releases it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(slots=True, kw_only=True)
class CycleReport:
    output: UpdateOutput | None = None  # the Ok reply
    error: BaseException | None = None  # the Err reply
    reexec: bool = False
    lock: LockHold | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
