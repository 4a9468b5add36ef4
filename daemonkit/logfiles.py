"""Rotation of the stderr logs the kit's detached processes write (SPEC §4.9).

Each spawn starts its process on a fresh log, and the updater starts a fresh one once
its log grows too large; both keep the one before as ``.previous``.
"""

from __future__ import annotations

import os

from daemonkit.errors import SpawnError, os_errors_as
from daemonkit.files import open_state_file, refuse_unless_ours

__all__ = ["open_fresh_log"]


def open_fresh_log(log: str, previous: str) -> int:
    """Rotate ``log`` to ``previous`` and create it anew, 0600 (SPEC §4.9).

    Refuses (``UnsafeFileError``) a log that is a symlink, not a regular file or not
    ours, and another user's file at ``previous``; other failures are ``SpawnError``.
    """
    try:
        info = os.lstat(log)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise SpawnError(f"failed to rotate stderr log {log}") from exc
    if info is not None:
        refuse_unless_ours(log, info)
        _refuse_foreign_previous(previous)
        try:
            os.rename(log, previous)
        except OSError as exc:
            raise SpawnError(f"failed to rotate stderr log {log}") from exc
    with os_errors_as(SpawnError, f"failed to open stderr log {log}"):
        return open_state_file(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)


def _refuse_foreign_previous(previous: str) -> None:
    try:
        info = os.lstat(previous)
    except OSError:
        # Nothing there, or nothing lstat can see: the rename reports what is wrong.
        return
    refuse_unless_ours(previous, info, replacing=True)
