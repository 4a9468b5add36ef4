"""The updater's event log: JSON lines on stderr in Codex 0.169.0's shapes (SPEC §8.11).

Two shapes, one object per line::

    {"timestampMs":…,"processPid":…,"stage":"installer_run","outcome":"failed","elapsedMs":…,
     "failure":{"kind":"other","os_code":null,"message":"…"}}
    {"timestampMs":…,"processPid":…,"event":"quarantined","details":{…}}

When the updater runs detached, stderr is ``app-server-updater.stderr.log``; the log is
rotated to ``.previous`` once it grows past 1 MiB (SPEC §4.9).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Literal

from daemonkit.errors import describe_exception, render_error
from daemonkit.logfiles import open_fresh_log

__all__ = ["EventLog", "Stage", "error_text"]

ROTATE_BYTES = 1 << 20
Stage = Literal[
    "installer_fetch",
    "installer_run",
    "npm_install",
    "verify",
    "scheduled_update",
    "requested_update",
    "restart",
    "rollback",
    "reexec",
    "supervised_restart",
]
Event = Literal[
    "process_spawned",
    "shutdown_requested",
    "shutdown_forced",
    "quarantined",
    "deferred",
    "unexpected_exit",
    "health_check_failed",
    "gave_up",
    "self_upgrade",
    "rust_update_loop_exited",
]


def error_text(exc: BaseException) -> str:
    """The rendered error chain without the leading ``Error: `` (SPEC §8.3's Err text)."""
    return render_error(exc).removeprefix("Error: ")


def _os_code(exc: BaseException) -> int | None:
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, OSError) and link.errno is not None:
            return link.errno
        link = link.__cause__
    return None


class EventLog:
    """Writes event lines to fd 2 and rotates the updater log it points at."""

    def __init__(self, log_path: str | None, previous_path: str | None) -> None:
        self._log_path = log_path
        self._previous_path = previous_path

    def stage(self, name: Stage, started: float, failure: BaseException | None = None) -> None:
        """Log a finished stage; ``started`` is its ``time.monotonic()`` start."""
        failure_json: dict[str, object] | None = None
        if failure is not None:
            failure_json = {
                "kind": "other",
                "os_code": _os_code(failure),
                "message": error_text(failure),
            }
        self._write(
            {
                "timestampMs": int(time.time() * 1000),
                "processPid": os.getpid(),
                "stage": name,
                "outcome": "succeeded" if failure is None else "failed",
                "elapsedMs": max(0, int((time.monotonic() - started) * 1000)),
                "failure": failure_json,
            }
        )

    def event(self, name: Event, **details: object) -> None:
        self._write(
            {
                "timestampMs": int(time.time() * 1000),
                "processPid": os.getpid(),
                "event": name,
                "details": details,
            }
        )

    def warn_line(self, text: str) -> None:
        """A plain ``warning:`` line, as the kit prints warnings everywhere else."""
        self._write_text(f"warning: {text}\n")

    def _write(self, obj: dict[str, object]) -> None:
        self._write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")

    def _write_text(self, text: str) -> None:
        self._rotate_if_large()
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            # A full disk or a closed stderr must never stop updates; the state file
            # still records every cycle's result.
            pass

    def _rotate_if_large(self) -> None:
        if self._log_path is None or self._previous_path is None:
            return
        try:
            info = os.fstat(2)
            if info.st_size <= ROTATE_BYTES:
                return
            on_disk = os.lstat(self._log_path)
        except OSError:
            return
        if (on_disk.st_dev, on_disk.st_ino) != (info.st_dev, info.st_ino):
            return  # stderr is not our log (a terminal, systemd's journal): leave it
        try:
            sys.stderr.flush()
            fd = open_fresh_log(self._log_path, self._previous_path)
        except OSError as exc:
            sys.stderr.write(
                f"warning: failed to rotate {self._log_path}: {describe_exception(exc)}\n"
            )
            return
        try:
            os.dup2(fd, 2)
        finally:
            os.close(fd)
