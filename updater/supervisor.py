"""Keep the app-server running: watch its pidfd, restart it when it dies (SPEC §14).

The updater's loop asks this class for the descriptors and the deadline to wait on,
and hands it every wake-up::

    idle --record names a live server--> watching (pidfd in the loop's select)
    watching --pidfd readable--> take daemon.lock --> re-check --> restart now
                                                               \\-> back off (timer)
                                                               \\-> gave up
    watching --health check fails 3 times--> stop it (grace) --> as an exit ("hung")

Every restart happens under ``daemon.lock`` after re-reading the record, the desired
state and the settings, so a user command that holds the lock decides first, a user
or Rust ``stop`` (which removes the record) is never undone, and a record that a
command replaced is watched instead of restarted. The decisions themselves are in
``updater.supervision``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from daemonkit.backend import ProcessHandle
from daemonkit.errors import DaemonError, SettingsError
from daemonkit.hooks import time_scale
from daemonkit.intent import DesiredState, read_intent
from daemonkit.locks import open_lock_file, try_lock
from daemonkit.managed import canonical_bin, ensure_managed_bin
from daemonkit.pidfile import Absent, Running, read_pid_state, remove_record_if_unchanged
from daemonkit.procinfo import inspect_process, record_matches
from daemonkit.settings import Settings, load_settings
from updater.install import ShutdownRequestedError
from updater.report import LockHold
from updater.supervision import (
    HUNG_AFTER_FAILED_PROBES,
    ExitVerdict,
    LastExit,
    SupervisorState,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemonkit.lifecycle import Daemon
    from daemonkit.paths import DaemonPaths
    from daemonkit.pidrecord import PidRecord
    from updater.cycle import Shutdown
    from updater.log import EventLog
    from updater.state import UpdaterState

__all__ = ["Supervisor"]

BUSY_RETRY_S = 0.05
OPERATION_LOCK_EXTRA_S = 75.0
POLL_WITHOUT_PIDFD_S = 1.0
# User commands whose desiredState write means "run it, and forget that we gave up".
_USER_STARTS = ("start", "restart", "bootstrap")


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Watch:
    """The recorded server we wait on, pinned by a pidfd where the kernel has them."""

    def __init__(self, record: PidRecord, raw: bytes, handle: ProcessHandle) -> None:
        self.record = record
        self.raw = raw
        self.handle = handle

    def close(self) -> None:
        self.handle.close()


class _Pending:
    """A restart due at ``at`` (monotonic), valid only while the home still looks as it
    did when it was decided: the stale record's bytes, or no record at all."""

    def __init__(self, at: float, stale_raw: bytes | None) -> None:
        self.at = at
        self.stale_raw = stale_raw


class Supervisor:
    def __init__(
        self,
        *,
        paths: DaemonPaths,
        daemon: Daemon,
        log: EventLog,
        shutdown: Shutdown,
        state: UpdaterState,
        save: Callable[[], None],
    ) -> None:
        self.paths = paths
        self.daemon = daemon
        self.log = log
        self.shutdown = shutdown
        self.memory = state.supervisor
        self.save = save
        self.scale = time_scale()
        self.watch: _Watch | None = None
        self.pending: _Pending | None = None
        self.failed_probes = 0
        self.next_probe_at: float | None = None
        self.unmanaged_logged = False

    # -- what the loop waits on ------------------------------------------------------------

    def fds(self) -> list[int]:
        if self.watch is None:
            return []
        fd = self.watch.handle.fileno()
        return [] if fd is None else [fd]

    def deadline(self) -> float | None:
        """The next moment this supervisor must run without a descriptor waking it."""
        moments = [self.next_probe_at]
        if self.pending is not None:
            moments.append(self.pending.at)
        if self.watch is not None and self.watch.handle.fileno() is None:
            moments.append(time.monotonic() + POLL_WITHOUT_PIDFD_S)
        return min((m for m in moments if m is not None), default=None)

    def is_idle(self) -> bool:
        """No restart waiting out its backoff and no failed health probe being counted:
        nothing that a re-exec of the updater would forget (SPEC §14.7)."""
        return self.pending is None and self.failed_probes == 0

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    # -- wake-ups ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """At every wake-up: honour a new user start, and watch what the record names now."""
        intent = read_intent(self.paths.desired_state)
        if (
            intent is not None
            and intent.state is DesiredState.RUNNING
            and intent.changed_by in _USER_STARTS
            and self.memory.note_user_start(intent.changed_at_ms)
        ):
            self.pending = None
            self.save()
        if self.watch is not None:
            current = read_pid_state(self.paths.app_server, may_write=False)
            if isinstance(current, Running) and current.raw == self.watch.raw:
                return
            self.close()
        self._arm()

    def on_wake(self, readable: list[int]) -> None:
        """Handle an exit, a due restart or a due health check; raises
        ``ShutdownRequestedError`` if SIGTERM arrives while waiting for the lock."""
        watch = self.watch
        fd = None if watch is None else watch.handle.fileno()
        if watch is not None and (fd is None or fd in readable) and watch.handle.has_exited():
            self.close()
            self._after_exit(watch.record, watch.raw, reason="exited")
            return
        now = time.monotonic()
        if self.pending is not None and now >= self.pending.at:
            pending, self.pending = self.pending, None
            self._restart_pending(pending)
            return
        if self.next_probe_at is not None and now >= self.next_probe_at:
            self._health_check()

    # -- watching ------------------------------------------------------------------------------

    def _settings(self) -> Settings | None:
        try:
            return load_settings(self.paths.settings)
        except (SettingsError, OSError) as exc:
            self.log.warn_line(f"supervisor: {exc}")
            return None

    def _arm(self) -> None:
        """Watch the process the app-server record names, if it is alive and ours."""
        state = read_pid_state(self.paths.app_server, may_write=False)
        if not isinstance(state, Running):
            self.next_probe_at = None
            return
        record = state.record
        handle = ProcessHandle.bind(record.pid)
        if handle is None or not record_matches(record, inspect_process(record.pid)):
            # Dead before we looked: an exit we did not see happen is an exit all the same.
            if handle is not None:
                handle.close()
            if self.pending is None and not self.memory.gave_up:
                self._after_exit(record, state.raw, reason="exited")
            return
        self.watch = _Watch(record, state.raw, handle)
        self.unmanaged_logged = False
        if self.memory.state is not SupervisorState.GAVE_UP:
            self.memory.note_ready(_now_ms())
        self._schedule_probe(reset=True)

    def _schedule_probe(self, *, reset: bool) -> None:
        if reset:
            self.failed_probes = 0
        settings = self._settings()
        interval = 0 if settings is None else settings.health_check_interval_s
        if interval <= 0 or self.watch is None:
            self.next_probe_at = None
            return
        self.next_probe_at = time.monotonic() + interval * self.scale

    # -- exits and restarts --------------------------------------------------------------------

    def _lock(self, settings: Settings | None) -> LockHold:
        """``daemon.lock``, waiting while a command holds it (it decides first)."""
        path = self.paths.operation_lock
        grace = 60 if settings is None else settings.shutdown_grace_s
        deadline = time.monotonic() + grace + OPERATION_LOCK_EXTRA_S
        while True:
            fd = open_lock_file(path, f"failed to open daemon operation lock {path}")
            if try_lock(fd):
                return LockHold(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise DaemonError(f"timed out waiting for daemon operation lock {path}")
            if self.shutdown.wait(BUSY_RETRY_S):
                raise ShutdownRequestedError

    def _may_restart(self, settings: Settings | None) -> bool:
        if settings is None or not settings.restart_on_exit or self.memory.gave_up:
            return False
        return self._desired_state() is not DesiredState.STOPPED

    def _desired_state(self) -> DesiredState | None:
        intent = read_intent(self.paths.desired_state)
        return None if intent is None else intent.state

    def _after_exit(self, record: PidRecord, raw: bytes, *, reason: str) -> None:
        """SPEC §14.3: the watched process died while its record still named it."""
        settings = self._settings()
        try:
            lock = self._lock(settings)
        except DaemonError as exc:
            self.log.warn_line(f"supervisor: {exc}")
            return
        try:
            settings = self._settings()
            current = read_pid_state(self.paths.app_server)
            if not (isinstance(current, Running) and current.raw == raw):
                return  # a command stopped or replaced it: watch whatever is there now
            if record_matches(record, inspect_process(record.pid)):
                return  # alive after all (a zombie's pidfd reads too early never happens)
            if not self._may_restart(settings):
                remove_record_if_unchanged(self.paths.app_server, raw)
                return
            assert settings is not None
            exit_ = LastExit(at_ms=_now_ms(), pid=record.pid, reason=reason)
            self.log.event("unexpected_exit", pid=record.pid, reason=reason)
            self._decide(settings, exit_, stale_raw=raw)
        finally:
            lock.release()
            self.refresh()

    def _decide(self, settings: Settings, exit_: LastExit, *, stale_raw: bytes | None) -> None:
        """Count the exit; restart now, later, or never. The caller holds the lock."""
        verdict = self.memory.note_exit(exit_, scale=self.scale)
        self.save()
        match verdict:
            case ExitVerdict.GIVE_UP:
                self.log.event(
                    "gave_up",
                    exits=len(self.memory.exits_at_ms),
                    windowSeconds=int(300 * self.scale),
                )
                if stale_raw is not None:
                    remove_record_if_unchanged(self.paths.app_server, stale_raw)
            case ExitVerdict.BACK_OFF:
                delay = self.memory.backoff_s(scale=self.scale)
                self.pending = _Pending(time.monotonic() + delay, stale_raw)
            case ExitVerdict.RESTART_NOW:
                self._restart(settings, stale_raw)

    def _restart_pending(self, pending: _Pending) -> None:
        settings = self._settings()
        lock = self._lock(settings)
        try:
            settings = self._settings()
            current = read_pid_state(self.paths.app_server)
            unchanged = (
                current is Absent.MISSING
                if pending.stale_raw is None
                else isinstance(current, Running) and current.raw == pending.stale_raw
            )
            if not unchanged or not self._may_restart(settings):
                return
            assert settings is not None
            self._restart(settings, pending.stale_raw)
        finally:
            lock.release()
            self.refresh()

    def _restart(self, settings: Settings, stale_raw: bytes | None) -> None:
        """Start the server exactly as ``start`` does (SPEC §2.5 step 6), under the lock."""
        started = time.monotonic()
        self.memory.state = SupervisorState.RESTARTING
        if stale_raw is not None:
            remove_record_if_unchanged(self.paths.app_server, stale_raw)
        if self.daemon.probe_ok() is not None:
            # Someone else's server answers on the socket: never a second server.
            if not self.unmanaged_logged:
                self.log.warn_line(
                    "supervisor: app server is running but is not managed by "
                    "codex app-server daemon; not restarting"
                )
                self.unmanaged_logged = True
            self.memory.state = SupervisorState.WATCHING
            self.save()
            return
        try:
            canonical = canonical_bin(ensure_managed_bin(self.paths))
            pid, _ = self.daemon.spawn_and_wait(settings, canonical)
        except (DaemonError, OSError) as exc:
            self.log.stage("supervised_restart", started, exc)
            # A restart whose readiness fails counts as an exit (SPEC §14.5).
            failed = LastExit(at_ms=_now_ms(), pid=0, reason="not ready")
            self._decide(settings, failed, stale_raw=None)
            return
        self.memory.note_restart()
        self.memory.note_ready(_now_ms())
        self.save()
        self.log.event("process_spawned", pid=pid, path=canonical)
        self.log.stage("supervised_restart", started)

    # -- health check (SPEC §14.6) --------------------------------------------------------------

    def _health_check(self) -> None:
        watch = self.watch
        if watch is None:
            self.next_probe_at = None
            return
        if self.daemon.probe_ok() is not None:
            self._schedule_probe(reset=True)
            return
        if watch.handle.has_exited():
            return  # the pidfd wakes us for that
        self.failed_probes += 1
        self.log.event("health_check_failed", pid=watch.record.pid, consecutive=self.failed_probes)
        if self.failed_probes < HUNG_AFTER_FAILED_PROBES:
            self._schedule_probe(reset=False)
            return
        self._restart_hung(watch)

    def _restart_hung(self, watch: _Watch) -> None:
        settings = self._settings()
        lock = self._lock(settings)
        try:
            settings = self._settings()
            current = read_pid_state(self.paths.app_server)
            if not (isinstance(current, Running) and current.raw == watch.raw):
                return
            if not self._may_restart(settings):
                return
            assert settings is not None
            self.close()
            self.log.event("unexpected_exit", pid=watch.record.pid, reason="hung")
            self.daemon.stop_app_server(settings.shutdown_grace_s)
            exit_ = LastExit(at_ms=_now_ms(), pid=watch.record.pid, reason="hung")
            self._decide(settings, exit_, stale_raw=None)
        finally:
            lock.release()
            self.refresh()
