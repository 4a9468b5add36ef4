"""The pid backend's files: reading record states, reserving, publishing and removing.

A record's life (SPEC §4.4-§4.6), under its reservation flock ``R.lock``::

    Missing --reserve (O_CREAT|O_EXCL, empty)--> Starting --publish (tmp + rename)--> Running
    Starting --abandon (unlink)--> Missing
    Running(stale) --remove if bytes unchanged, under the lock--> Missing

A record is never deleted on the strength of a read made without the lock, and
never when its bytes changed since they were read.
"""

from __future__ import annotations

import os
import time
from enum import Enum, auto

from daemonkit.errors import LockTimeoutError, PidFileError, PidRecordError, os_errors_as
from daemonkit.files import AtomicWriteError, read_state_file, write_atomic
from daemonkit.locks import acquire_lock, is_locked_elsewhere, open_lock_file, try_lock
from daemonkit.pidrecord import ExecutableIdentity, PidRecord, parse_pid_record
from daemonkit.procinfo import ProcessSnapshot, inspect_process, record_matches
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

    from daemonkit.paths import PidPaths

__all__ = [
    "Absent",
    "PidState",
    "Reservation",
    "Running",
    "active_state",
    "is_starting_or_running",
    "read_pid_state",
    "remove_record_if_unchanged",
    "reserve_pid_file",
    "wait_for_record",
    "write_record",
]

PID_LOCK_TIMEOUT_S = 10.0
STARTING_WAIT_S = 10.0
STARTING_POLL_S = 0.05
RECORD_LIMIT = 64 * 1024


class Absent(Enum):
    MISSING = auto()
    STARTING = auto()


class Running(Value):
    __slots__ = ("raw", "record")

    def __init__(self, *, record: PidRecord, raw: bytes) -> None:
        self.record: Final = record
        self.raw: Final = raw


PidState = Absent | Running


def _parse(paths: PidPaths, raw: bytes) -> Running:
    try:
        return Running(record=parse_pid_record(raw), raw=raw)
    except PidRecordError as exc:
        raise PidRecordError(f"invalid pid file contents in {paths.record}") from exc


def _read_raw(paths: PidPaths) -> bytes | None:
    with os_errors_as(PidFileError, f"failed to read pid file {paths.record}"):
        return read_state_file(paths.record, RECORD_LIMIT)


def _unlink_record(paths: PidPaths) -> None:
    try:
        os.unlink(paths.record)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise PidFileError(f"failed to remove pid file {paths.record}") from exc


def read_pid_state(paths: PidPaths, *, may_write: bool = True) -> PidState:
    """Read a record's state without holding its reservation lock (SPEC §4.4).

    With ``may_write=False`` (status) nothing is created or removed: an absent lock
    file counts as free and an empty reservation whose lock is free reads as Missing.
    """
    raw = _read_raw(paths)
    if raw is None:
        if is_locked_elsewhere(paths.lock, create=may_write):
            return Absent.STARTING
        return Absent.MISSING
    if raw.strip():
        return _parse(paths, raw)
    # An empty record is a reservation: Starting while its owner holds the lock.
    if not may_write:
        return Absent.STARTING if is_locked_elsewhere(paths.lock, create=False) else Absent.MISSING
    fd = open_lock_file(paths.lock, f"failed to open pid lock {paths.lock}")
    try:
        if not try_lock(fd, f"failed to lock pid lock {paths.lock}"):
            return Absent.STARTING
        return _read_locked(paths)
    finally:
        os.close(fd)


def _read_locked(paths: PidPaths) -> PidState:
    """Read a record while holding its reservation lock; Starting cannot be seen."""
    raw = _read_raw(paths)
    if raw is None:
        return Absent.MISSING
    if not raw.strip():
        # A reservation whose owner died before publishing: debris, ours to remove.
        _unlink_record(paths)
        return Absent.MISSING
    return _parse(paths, raw)


def _take_pid_lock(paths: PidPaths) -> int:
    fd = open_lock_file(paths.lock, f"failed to open pid lock {paths.lock}")
    try:
        acquire_lock(
            fd,
            time.monotonic() + PID_LOCK_TIMEOUT_S,
            lambda: LockTimeoutError(f"timed out waiting for pid lock {paths.lock}"),
            f"failed to lock pid lock {paths.lock}",
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_record_if_unchanged(paths: PidPaths, raw: bytes) -> PidState:
    """Under the reservation lock, unlink the record if it still holds ``raw``.

    Returns Missing when removed (or already gone), else the state now on disk.
    """
    fd = _take_pid_lock(paths)
    try:
        current = _read_raw(paths)
        if current is None:
            return Absent.MISSING
        if current == raw:
            _unlink_record(paths)
            return Absent.MISSING
        return _read_locked(paths)
    finally:
        os.close(fd)


def add_executable_identity(paths: PidPaths, pid: int, identity: ExecutableIdentity) -> None:
    """Under the reservation lock, add ``executableIdentity`` to the record of ``pid``.

    Only while the record still names that live process and has no identity of its
    binary yet (SPEC §4.2): a record replaced in the meantime is left alone.
    """
    fd = _take_pid_lock(paths)
    try:
        state = _read_locked(paths)
        if not isinstance(state, Running):
            return
        record = state.record
        if record.pid != pid or record.executable is not None:
            return
        if not record_matches(record, inspect_process(pid), kind=paths.kind):
            return
        write_record(paths, record.replace(executable=identity))
    finally:
        os.close(fd)


def _promote_legacy(paths: PidPaths, state: Running, snapshot: ProcessSnapshot) -> Running:
    """Rewrite a matching seed-era record with ``processIdentity`` (SPEC §4.3).

    Only under the reservation lock, only if the file is byte-identical to what was
    matched, and only if the process's identity is the same before and after.
    """
    fd = _take_pid_lock(paths)
    try:
        if _read_raw(paths) != state.raw:
            return state
        now = inspect_process(state.record.pid)
        if now is None or now.identity != snapshot.identity:
            return state
        promoted = state.record.replace(identity=snapshot.identity)
        raw = promoted.to_bytes()
        try:
            write_atomic(paths.record, paths.tmp, raw, durable=False)
        except OSError:
            return state  # promotion is an improvement, never a reason to fail
        return Running(record=promoted, raw=raw)
    finally:
        os.close(fd)


def _check_running(paths: PidPaths, state: Running) -> Running | None:
    """The state if its record names a live matching process (promoted if legacy)."""
    snapshot = inspect_process(state.record.pid)
    if not record_matches(state.record, snapshot, kind=paths.kind):
        return None
    assert snapshot is not None
    if state.record.identity is None:
        return _promote_legacy(paths, state, snapshot)
    return state


def active_state(paths: PidPaths) -> PidState:
    """Return Starting, an active Running, or Missing after removing a stale record.

    This is the seed's ``is_starting_or_running`` (SPEC §4.5).
    """
    state = read_pid_state(paths)
    while True:
        match state:
            case Absent.MISSING | Absent.STARTING:
                return state
            case Running(raw=raw):
                active = _check_running(paths, state)
                if active is not None:
                    return active
                state = remove_record_if_unchanged(paths, raw)


def is_starting_or_running(paths: PidPaths) -> bool:
    """True while a reservation is Starting or the record names a live process."""
    return active_state(paths) is not Absent.MISSING


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def wait_for_record(paths: PidPaths, pause: Callable[[float], bool] = _sleep) -> PidState:
    """Wait while a reservation is Starting, up to 10 s (SPEC §4.8 step 1, §8.1).

    ``pause`` waits between two reads; when it returns True (the caller was told to
    shut down meanwhile) the wait ends early and Starting is returned.
    """
    deadline = time.monotonic() + STARTING_WAIT_S
    state = read_pid_state(paths)
    while state is Absent.STARTING:
        if time.monotonic() >= deadline:
            raise PidFileError(
                f"timed out waiting for pid reservation in {paths.record} to finish initializing"
            )
        if pause(STARTING_POLL_S):
            return state
        state = read_pid_state(paths)
    return state


def write_record(paths: PidPaths, record: PidRecord) -> None:
    """Write ``R.tmp`` and rename it onto ``R`` (SPEC §4.6 step 6).

    The caller holds the reservation lock (or is the process its holder launched).
    """
    try:
        write_atomic(paths.record, paths.tmp, record.to_bytes(), durable=False)
    except AtomicWriteError as exc:
        if exc.step == "temp":
            raise PidFileError(f"failed to write pid temp file {paths.tmp}") from exc
        raise PidFileError(f"failed to publish pid file {paths.record}") from exc


class Reservation:
    """An empty record created with O_EXCL, held under the reservation lock.

    The owner spawns the process, then ``publish``es its record or ``abandon``s the
    reservation; either ends the reservation and releases the lock.
    """

    def __init__(self, paths: PidPaths, lock_fd: int) -> None:
        self.paths = paths
        self._lock_fd: int | None = lock_fd

    def publish(self, record: PidRecord) -> None:
        """Atomically replace the reservation with ``record`` and release the lock."""
        try:
            write_record(self.paths, record)
        finally:
            self.release()

    def abandon(self) -> None:
        """Remove the empty reservation after a failed spawn."""
        try:
            _unlink_record(self.paths)
        finally:
            self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def reserve_pid_file(paths: PidPaths) -> Reservation | Running:
    """Reserve the record for a new process, or return the active record that owns it.

    SPEC §4.6 steps 2-3: under the reservation lock, create the empty record with
    O_CREAT|O_EXCL; an existing stale record is removed and the creation retried.
    """
    fd = _take_pid_lock(paths)
    try:
        while True:
            try:
                created = os.open(
                    paths.record,
                    os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
            except FileExistsError:
                state = _read_locked(paths)
                if isinstance(state, Running):
                    snapshot = inspect_process(state.record.pid)
                    if record_matches(state.record, snapshot, kind=paths.kind):
                        os.close(fd)
                        return state
                    _unlink_record(paths)
                continue
            except OSError as exc:
                raise PidFileError(f"failed to reserve pid file {paths.record}") from exc
            try:
                os.fchmod(created, 0o600)
            finally:
                os.close(created)
            return Reservation(paths, fd)
    except BaseException:
        os.close(fd)
        raise
