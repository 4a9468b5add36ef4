"""The pid backend's process operations: spawn-and-record, and identity-bound stop.

``spawn_recorded`` is SPEC §4.6 (reserve, spawn, publish, with interrupts deferred so
a dropped SSH session cannot orphan an unrecorded server); ``stop_recorded`` is §4.8
(bind by pidfd, verify identity, SIGTERM, wait, SIGKILL at grace, remove the record).
"""

from __future__ import annotations

import os
import select
import signal
import time
from contextlib import contextmanager

from daemonkit.errors import SpawnError, StopError
from daemonkit.files import ensure_state_dir
from daemonkit.hooks import crash_point
from daemonkit.launcher import spawn_detached
from daemonkit.logfiles import open_fresh_log
from daemonkit.pidfile import (
    Running,
    remove_record_if_unchanged,
    reserve_pid_file,
    wait_for_record,
    write_record,
)
from daemonkit.pidrecord import PidRecord
from daemonkit.procinfo import inspect_process, record_matches, snapshot_identity
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Final

    from daemonkit.paths import PidPaths
    from daemonkit.placement import ScopeCommand

__all__ = [
    "ProcessHandle",
    "deferred_interrupts",
    "spawn_recorded",
    "stop_recorded",
]

STOP_TIMEOUT_EXTRA_S = 10.0
POLL_WITHOUT_PIDFD_S = 0.05
_DEFERRED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class ProcessHandle:
    """A process we spawned or verified, pinned by a pidfd where the kernel has them.

    A pidfd refers to one process for its whole life, so a signal sent through it
    can never reach a process that later reused the pid.
    """

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self._pidfd = pidfd

    @classmethod
    def bind(cls, pid: int) -> ProcessHandle | None:
        """Open a pidfd for ``pid``; None if the process is already gone."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except (OSError, AttributeError):
            # No pidfd support (old kernel, macOS): identity is re-checked before
            # every signal instead (SPEC §4.8 step 3).
            return cls(pid, None)
        return cls(pid, pidfd)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def fileno(self) -> int | None:
        """The pidfd to wait on (readable once the process exited), if there is one."""
        return self._pidfd

    def signal(self, signum: int) -> None:
        """Send ``signum``; a process that already exited counts as success."""
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def has_exited(self) -> bool:
        """True once the process exited; a zombie counts as exited."""
        return self.wait_exit(0.0)

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to exit; True if it did."""
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], max(timeout_s, 0.0))
            return bool(readable)
        deadline = time.monotonic() + timeout_s
        while True:
            if inspect_process(self.pid) is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(POLL_WITHOUT_PIDFD_S, remaining))


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Block SIGINT/SIGTERM/SIGHUP; they are delivered when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class SpawnRequest(Value):
    __slots__ = ("argv", "cwd", "env", "paths", "scope", "state_dir", "what")

    def __init__(
        self,
        *,
        paths: PidPaths,
        state_dir: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        what: str,
        scope: ScopeCommand | None = None,
    ) -> None:
        self.paths: Final = paths
        self.state_dir: Final = state_dir
        self.argv: Final = argv
        self.env: Final = env
        self.cwd: Final = cwd
        self.what: Final = what  # "app-server" or "updater", as error texts name it
        self.scope: Final = scope  # the transient scope to exec into (SPEC §15.2), if any


def spawn_recorded(request: SpawnRequest) -> ProcessHandle | Running:
    """Reserve the record, spawn, and publish; or return the record already active.

    The launched process publishes its own record just before exec (SPEC §4.6 steps
    5-6 run there), while this process holds the reservation lock for it: a CLI
    killed at any point after the spawn leaves a recorded server, never an orphan.
    """
    paths = request.paths
    ensure_state_dir(request.state_dir)
    reservation = reserve_pid_file(paths)
    if isinstance(reservation, Running):
        return reservation
    crash_point("after-reserve")
    with deferred_interrupts():
        try:
            log_fd = open_fresh_log(paths.log, paths.previous_log)
            try:
                spawned = spawn_detached(
                    request.argv,
                    request.env,
                    stderr_fd=log_fd,
                    cwd=request.cwd,
                    what=request.what,
                    before_exec=lambda pid, ticks: _record_self(request, pid, ticks),
                    wrap_exec=None if request.scope is None else request.scope.wrap,
                )
            finally:
                os.close(log_fd)
        except BaseException:
            # The record names a process that never exec'd (or none): ours to remove.
            reservation.abandon()
            raise
        crash_point("after-spawn")
        handle = ProcessHandle.bind(spawned.pid)
        reservation.release()
        crash_point("after-publish")
    return handle if handle is not None else ProcessHandle(spawned.pid, None)


def _record_self(request: SpawnRequest, pid: int, ticks: int) -> None:
    """Runs in the launched process before exec: publish its own pid record."""
    try:
        snapshot = snapshot_identity(pid, ticks)
    except OSError as exc:
        raise SpawnError(
            f"failed to record pid-managed {request.what} process {pid} startup"
        ) from exc
    record = PidRecord(pid=pid, process_start_time=snapshot.lstart, identity=snapshot.identity)
    write_record(request.paths, record)


def stop_recorded(paths: PidPaths, grace_s: float, *, group: bool, what: str) -> bool:
    """Stop the process a record names (SPEC §4.8); False if no record was active.

    ``group`` stops the whole process group (the updater and its installer child).
    Raises ``StopError`` if signalling fails or the process outlives grace + 10 s.
    """
    while True:
        state = wait_for_record(paths)
        if not isinstance(state, Running):
            return False
        record = state.record
        if not record_matches(record, inspect_process(record.pid), kind=paths.kind):
            remove_record_if_unchanged(paths, state.raw)
            continue
        handle = ProcessHandle.bind(record.pid)
        if handle is None or not record_matches(
            record, inspect_process(record.pid), kind=paths.kind
        ):
            # Gone between the check and the bind: the record is stale now.
            if handle is not None:
                handle.close()
            remove_record_if_unchanged(paths, state.raw)
            continue
        try:
            _terminate(handle, record, grace_s, group=group, what=what)
        finally:
            handle.close()
        remove_record_if_unchanged(paths, state.raw)
        return True


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # members we may not signal are not ours to kill
    return True


def _terminate(
    handle: ProcessHandle, record: PidRecord, grace_s: float, *, group: bool, what: str
) -> None:
    pid = record.pid
    leads_group = group and _is_group_leader(pid)
    try:
        if leads_group:
            os.killpg(pid, signal.SIGTERM)
        else:
            handle.signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    except OSError as exc:
        raise StopError(f"failed to terminate pid-managed {what} {pid}") from exc
    crash_point("after-sigterm")
    started = time.monotonic()
    deadline = started + grace_s
    killed = False
    while not handle.wait_exit(deadline - time.monotonic()):
        if killed:
            raise StopError(f"timed out waiting for pid-managed {what} {pid} to stop")
        _force_kill(handle, pid, leads_group=leads_group, what=what)
        killed = True
        deadline = started + grace_s + STOP_TIMEOUT_EXTRA_S
    if leads_group and _group_has_members(pid):
        # The leader is gone but its group lives on (an installer child): a pgid
        # cannot be recycled while members exist, and we verified the leader above.
        _force_kill(handle, pid, leads_group=True, what=what)


def _force_kill(handle: ProcessHandle, pid: int, *, leads_group: bool, what: str) -> None:
    try:
        if leads_group:
            os.killpg(pid, signal.SIGKILL)
        else:
            handle.signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    except OSError as exc:
        if leads_group:
            raise StopError(f"failed to force terminate pid-managed {what} group {pid}") from exc
        raise StopError(f"failed to terminate pid-managed {what} {pid}") from exc
