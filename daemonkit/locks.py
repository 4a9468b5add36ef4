"""flock-based locks: the operation lock, pid reservation locks and the install lock.

Lock files are opened O_NOFOLLOW|O_CLOEXEC (never inherited by a spawned process) and
never deleted: deleting a flocked file lets two processes hold "the" lock on two
different inodes (SPEC §3.2, §5).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager

from daemonkit.errors import DaemonError, LockError, LockTimeoutError, os_errors_as
from daemonkit.files import ensure_state_dir, open_state_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "acquire_lock",
    "held_lock",
    "is_locked_elsewhere",
    "open_lock_file",
    "operation_lock",
    "try_lock",
]

FIRST_RETRY_S = 0.005
MAX_RETRY_S = 0.05


def open_lock_file(path: str, failure: str) -> int:
    """Open (creating, 0600) the lock file at ``path``; ``failure`` names the error."""
    with os_errors_as(LockError, failure):
        return open_state_file(path, os.O_RDWR | os.O_CREAT)


def try_lock(fd: int, failure: str = "failed to lock daemon operation") -> bool:
    """Take an exclusive flock without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise LockError(failure) from exc
    return True


def acquire_lock(
    fd: int,
    deadline: float,
    on_timeout: Callable[[], DaemonError],
    failure: str = "failed to lock daemon operation",
) -> None:
    """Retry ``try_lock`` with a backoff from 5 ms to 50 ms until ``deadline``."""
    delay = FIRST_RETRY_S
    while not try_lock(fd, failure):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise on_timeout()
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_RETRY_S)


@contextmanager
def held_lock(
    path: str, timeout_s: float, timeout_message: str, open_failure: str
) -> Iterator[int]:
    """Hold the flock of ``path`` for the ``with`` block; closing the fd releases it."""
    fd = open_lock_file(path, open_failure)
    try:
        acquire_lock(fd, time.monotonic() + timeout_s, lambda: LockTimeoutError(timeout_message))
        yield fd
    finally:
        os.close(fd)


@contextmanager
def operation_lock(state_dir: str, path: str, timeout_s: float) -> Iterator[int]:
    """Hold ``daemon.lock`` for a whole lifecycle command (SPEC §5)."""
    ensure_state_dir(state_dir)
    with held_lock(
        path,
        timeout_s,
        f"timed out waiting for daemon operation lock {path}",
        f"failed to open daemon operation lock {path}",
    ) as fd:
        yield fd


def is_locked_elsewhere(path: str, *, create: bool) -> bool:
    """True if another process holds the flock of ``path`` right now.

    With ``create=False`` (readers that must not write, such as ``status``) an
    absent lock file counts as free.
    """
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = open_state_file(path, flags)
    except FileNotFoundError:
        return False
    try:
        held = not try_lock(fd)
    finally:
        os.close(fd)
    return held
