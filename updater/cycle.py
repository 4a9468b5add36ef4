"""One update cycle: install, choose modes, try-restart, validate, roll back (SPEC §8.4-§8.7).

A cycle, scheduled or requested::

    settings -> [scheduled: restart cap] -> current supported? -> install (channel)
      -> [scheduled: quarantined release? undo flip, deferred]
      -> Vm = <bin> --version (sh), Dm = digest(<bin>) -> modes (decisions)
      -> try-restart until not Busy (50 ms, SIGTERM aborts) -> outcome
         Restart: stop, spawn, validate (ready and version == Vm)
                  failed -> quarantine, current := previous, spawn previous

Every effect on the app-server happens while this process holds ``daemon.lock``; the
``CycleReport`` carries the lock out so the reply and a re-exec happen before it is
released (SPEC §8.8). Processes, sockets and the clock are reached only through
``updater.ports`` (the updater runs with ``REAL_EFFECTS``), so every branch above runs in
tests/unit/test_cycle.py without them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemonkit.decisions import (
    QUARANTINE_S,
    RESTART_WINDOW_S,
    RestartDecision,
    RestartMode,
    RestartOutcome,
    UpdaterRefreshMode,
    active_quarantine,
    is_quarantined,
    recent_restarts,
    restart_cap_reached,
    restart_decision,
    should_reexec_updater,
    update_modes_for_identities,
)
from daemonkit.digest import digest_kind, file_digest, prepare_cache
from daemonkit.environment import child_environment
from daemonkit.errors import (
    DaemonError,
    ManagedCodexError,
    NotReadyError,
    ProbeError,
    UnmanagedServerError,
    UpdaterError,
    VerificationError,
)
from daemonkit.hooks import time_scale
from daemonkit.install import flip_symlink, read_link
from daemonkit.intent import DesiredState, read_desired_state
from daemonkit.locks import open_lock_file, try_lock
from daemonkit.managed import (
    canonical_bin,
    ensure_managed_bin,
    managed_bin_path,
    versions_equal,
)
from daemonkit.pidfile import Absent, PidState, Running, active_state
from daemonkit.probe import AppServerInfo, probe
from daemonkit.settings import Settings, load_settings
from updater.binary import read_version_with_sh
from updater.install import ShutdownRequestedError, install_release
from updater.log import error_text
from updater.ports import CycleEffects, DaemonControl, Shutdown
from updater.report import CycleReport, LockHold, UpdateOutput, UpdateStatus
from updater.state import CycleResult, UpdaterState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemonkit.paths import DaemonPaths
    from updater.log import EventLog, Stage

__all__ = ["REAL_EFFECTS", "Cycle", "Shutdown", "ShutdownRequestedError", "run_cycle"]

BUSY_RETRY_S = 0.05
UNSUPPORTED_MESSAGE = (
    "This command requires a daemon package selected from its managed releases directory."
)


@dataclass(slots=True, kw_only=True)
class _Attempt:
    outcome: RestartOutcome
    lock: LockHold | None = None
    error: BaseException | None = None
    pid: int | None = None  # the app-server this attempt spawned and validated
    digest: str | None = None  # the digest of the binary it runs


def now_ms() -> int:
    return int(time.time() * 1000)


# What the updater runs a cycle with; unit tests replace each of them.
REAL_EFFECTS = CycleEffects(
    install=install_release,
    read_version=read_version_with_sh,
    probe=probe,
    server_state=active_state,
    now_ms=now_ms,
    prepare_start=prepare_cache,
)


def _reference_digest(state: UpdaterState, record: PidState, kind: str) -> str | None:
    """The digest of the binary the running server was started from, if known."""
    if not isinstance(record, Running):
        return None
    executable = record.record.executable
    if kind == "blake3" and executable is not None:
        return bytes(executable.digest).hex()
    if (
        state.last_validated_digest is not None
        and state.last_validated_digest_kind == kind
        and state.last_validated_pid == record.record.pid
    ):
        return state.last_validated_digest
    return None


def _release_has_binary(release: str) -> bool:
    return any(
        os.path.isfile(os.path.join(release, *parts)) for parts in (("codex",), ("bin", "codex"))
    )


# -- the cycle -------------------------------------------------------------------------------


class Cycle:
    """One cycle's context; ``run`` is the whole of SPEC §8.4."""

    def __init__(
        self,
        *,
        paths: DaemonPaths,
        environ: Mapping[str, str],
        daemon: DaemonControl,
        log: EventLog,
        shutdown: Shutdown,
        state: UpdaterState,
        requested: bool,
        effects: CycleEffects = REAL_EFFECTS,
    ) -> None:
        self.paths = paths
        self.environ = environ
        self.daemon = daemon
        self.log = log
        self.shutdown = shutdown
        self.state = state
        self.requested = requested
        self.effects = effects
        self.scale = time_scale()
        self.env = child_environment(environ, paths.codex_home, remote_control=None)

    def run(self) -> CycleReport:
        started = time.monotonic()
        stage: Stage = "requested_update" if self.requested else "scheduled_update"
        now = self.effects.now_ms()
        self.state.last_check_at_ms = now
        # Expired loop-breaker entries are dropped, so the state file stays small.
        self.state.quarantine = active_quarantine(self.state.quarantine, now)
        self.state.restarts_at_ms = recent_restarts(
            self.state.restarts_at_ms, now, self._restart_window_ms()
        )
        try:
            report = self._run()
        except (DaemonError, OSError) as exc:
            if isinstance(exc, VerificationError):
                # A release that cannot even report its version is not tried again
                # by scheduled cycles for a day (SPEC §8.10).
                self._quarantine(exc.release)
            self.log.stage(stage, started, exc)
            self._record(CycleResult.FAILED, exc)
            return CycleReport(error=exc)
        self.log.stage(stage, started, report.error)
        return report

    def _restart_window_ms(self) -> int:
        return int(RESTART_WINDOW_S * self.scale * 1000)

    def _record(self, result: CycleResult, error: BaseException | None = None) -> None:
        self.state.last_result = result
        self.state.last_error = None if error is None else error_text(error)
        if result in (CycleResult.FAILED, CycleResult.ROLLED_BACK):
            self.state.consecutive_failures += 1
        elif result not in (CycleResult.DEFERRED, CycleResult.NOT_READY):
            self.state.consecutive_failures = 0

    def _defer(self, reason: str, **details: object) -> CycleReport:
        self.log.event("deferred", reason=reason, **details)
        self._record(CycleResult.DEFERRED)
        return CycleReport()

    def _run(self) -> CycleReport:
        settings = load_settings(self.paths.settings)
        if not self.requested and restart_cap_reached(
            self.state.restarts_at_ms, self.effects.now_ms(), self._restart_window_ms()
        ):
            return self._defer("restartCap")
        before = read_link(self.paths.current)
        if os.path.lexists(self.paths.current) and (
            before is None or os.path.dirname(before) != os.path.normpath(self.paths.releases)
        ):
            return self._unsupported()
        previous_before = read_link(self.paths.previous)
        result = self.effects.install(
            self.paths, settings, self.env, self.environ, self.log, self.shutdown
        )
        release = result.release
        if not self.requested and is_quarantined(
            self.state.quarantine, os.path.basename(release), self.effects.now_ms()
        ):
            if result.changed:
                self._undo_flip(before, previous_before)
            return self._defer("quarantined", release=release)
        bin_path = ensure_managed_bin(self.paths)
        canonical = canonical_bin(bin_path)
        installed = self.effects.read_version(canonical, self.env)
        kind = digest_kind()
        digest = file_digest(canonical, kind)
        record = self.effects.server_state(self.paths.app_server)
        mode, refresh = update_modes_for_identities(
            _reference_digest(self.state, record, kind), digest
        )
        attempt = self._try_restart_until_done(mode, installed, canonical, release)
        if attempt.outcome is RestartOutcome.RESTARTED:
            self.state.last_validated_digest = digest
            self.state.last_validated_digest_kind = kind
            self.state.last_validated_pid = attempt.pid
        elif attempt.outcome is RestartOutcome.ROLLED_BACK:
            self.state.last_validated_digest = attempt.digest
            self.state.last_validated_digest_kind = kind
            self.state.last_validated_pid = attempt.pid
        return self._report(attempt, refresh, installed, changed=result.changed)

    def _unsupported(self) -> CycleReport:
        error = UpdaterError(UNSUPPORTED_MESSAGE)
        self.log.warn_line(f"{UNSUPPORTED_MESSAGE} ({self.paths.current})")
        self._record(CycleResult.FAILED, error)
        bin_path = managed_bin_path(self.paths)
        installed: str | None
        try:
            installed = self.effects.read_version(bin_path, self.env)
        except ManagedCodexError:
            installed = None  # informational only, as in every output
        return CycleReport(
            output=UpdateOutput(
                status=UpdateStatus.UNSUPPORTED,
                managed_codex_path=bin_path,
                installed_version=installed,
                running_version=self._running_version(),
                message=UNSUPPORTED_MESSAGE,
            )
        )

    def _undo_flip(self, before: str | None, previous_before: str | None) -> None:
        """Put ``current`` and ``previous`` back as they were before the install."""
        if before is not None:
            flip_symlink(self.paths.current, before)
        if previous_before is not None:
            flip_symlink(self.paths.previous, previous_before)
        elif os.path.islink(self.paths.previous):
            os.unlink(self.paths.previous)

    def _running_version(self) -> str | None:
        try:
            return self.effects.probe(self.paths.socket).app_server_version
        except ProbeError:
            return None

    # -- try-restart (SPEC §8.6) -------------------------------------------------------------

    def _try_restart_until_done(
        self, mode: RestartMode, installed: str, canonical: str, release: str
    ) -> _Attempt:
        announced = False
        while True:
            attempt = self._try_restart(mode, installed, canonical, release)
            if attempt.outcome is not RestartOutcome.BUSY:
                return attempt
            if not announced:
                self.log.event("deferred", reason="busy", lock=self.paths.operation_lock)
                announced = True
            if self.shutdown.wait(BUSY_RETRY_S):
                raise ShutdownRequestedError

    def _try_restart(
        self, mode: RestartMode, installed: str, canonical: str, release: str
    ) -> _Attempt:
        path = self.paths.operation_lock
        fd = open_lock_file(path, f"failed to open daemon operation lock {path}")
        if not try_lock(fd):
            os.close(fd)
            return _Attempt(outcome=RestartOutcome.BUSY)
        lock = LockHold(fd)
        try:
            attempt = self._decide_and_act(mode, installed, canonical, release)
        except BaseException:
            lock.release()
            raise
        attempt.lock = lock
        return attempt

    def _decide_and_act(
        self, mode: RestartMode, installed: str, canonical: str, release: str
    ) -> _Attempt:
        settings = load_settings(self.paths.settings)
        if read_desired_state(self.paths.desired_state) is DesiredState.STOPPED:
            # A user stop is final until the user starts again (SPEC §3.8).
            return _Attempt(outcome=RestartOutcome.NOT_RUNNING)
        if self.effects.server_state(self.paths.app_server) is not Absent.MISSING:
            info: AppServerInfo | None
            try:
                info = self.effects.probe(self.paths.socket)
            except ProbeError:
                info = None
            managed = installed if info is not None else None
            match restart_decision(mode, info, managed):
                case RestartDecision.NOT_READY:
                    return _Attempt(outcome=RestartOutcome.NOT_READY)
                case RestartDecision.ALREADY_CURRENT:
                    return _Attempt(outcome=RestartOutcome.ALREADY_CURRENT)
                case RestartDecision.RESTART:
                    return self._restart(settings, installed, canonical, release)
        if self._running_version() is not None:
            raise UnmanagedServerError
        return _Attempt(outcome=RestartOutcome.NOT_RUNNING)

    def _count_restart(self) -> None:
        if not self.requested:
            self.state.restarts_at_ms.append(self.effects.now_ms())

    def _restart(
        self, settings: Settings, installed: str, canonical: str, release: str
    ) -> _Attempt:
        # Before the old server goes: the new binary's version and identity, which the
        # spawn needs, are looked up in the cache instead of computed in the gap.
        self.effects.prepare_start(canonical, self.paths.binary_cache, installed)
        started = time.monotonic()
        self._count_restart()
        try:
            self.daemon.stop_app_server(settings.shutdown_grace_s)
            pid, info = self.daemon.spawn_and_wait(settings, canonical)
            self.log.event("process_spawned", pid=pid, path=canonical)
            if not versions_equal(info.app_server_version, installed):
                # It answered, so it gets the effective grace (SPEC §8.7).
                self.daemon.stop_app_server(settings.shutdown_grace_s)
                raise NotReadyError(
                    f"app server reported version {info.app_server_version}, expected {installed}"
                )
        except (DaemonError, OSError) as exc:
            self.log.stage("restart", started, exc)
            return self._roll_back(settings, installed, release, exc)
        self.log.stage("restart", started)
        return _Attempt(outcome=RestartOutcome.RESTARTED, pid=pid)

    def _quarantine(self, release: str) -> None:
        until = self.effects.now_ms() + int(QUARANTINE_S * self.scale * 1000)
        self.state.quarantine[os.path.basename(release)] = until
        self.log.event("quarantined", release=release, untilMs=until)

    def _roll_back(
        self, settings: Settings, installed: str, release: str, cause: BaseException
    ) -> _Attempt:
        """SPEC §8.7: quarantine, flip back to ``previous``, start it; still under the lock."""
        started = time.monotonic()
        self._quarantine(release)
        previous = read_link(self.paths.previous)
        if previous is None or previous == release or not _release_has_binary(previous):
            self.log.stage("rollback", started, cause)
            return _Attempt(outcome=RestartOutcome.FAILED, error=cause)
        self._count_restart()
        try:
            # The failed instance may still hold its record if a stop step failed.
            self.daemon.stop_app_server(settings.shutdown_grace_s)
            flip_symlink(self.paths.current, previous)
            canonical = canonical_bin(ensure_managed_bin(self.paths))
            pid, _ = self.daemon.spawn_and_wait(settings, canonical)
            self.log.event("process_spawned", pid=pid, path=canonical)
            digest = file_digest(canonical, digest_kind())
        except (DaemonError, OSError) as exc:
            self.log.stage("rollback", started, exc)
            failed = UpdaterError(f"rollback to {previous} failed; the app server is not running")
            failed.__cause__ = exc
            return _Attempt(outcome=RestartOutcome.FAILED, error=failed)
        self.log.stage("rollback", started)
        error = UpdaterError(
            f"updated app server {installed} did not become ready; rolled back to {previous}"
        )
        error.__cause__ = cause
        return _Attempt(outcome=RestartOutcome.ROLLED_BACK, error=error, pid=pid, digest=digest)

    # -- results -----------------------------------------------------------------------------

    def _report(
        self, attempt: _Attempt, refresh: UpdaterRefreshMode, installed: str, *, changed: bool
    ) -> CycleReport:
        outcome = attempt.outcome
        report = CycleReport(
            lock=attempt.lock, reexec=should_reexec_updater(refresh, outcome), error=attempt.error
        )
        match outcome:
            case RestartOutcome.ROLLED_BACK:
                self._record(CycleResult.ROLLED_BACK, attempt.error)
                return report
            case RestartOutcome.FAILED:
                self._record(CycleResult.FAILED, attempt.error)
                return report
            case RestartOutcome.RESTARTED:
                self._record(CycleResult.UPDATED)
                message = (
                    f"installed Codex {installed} and restarted the app server onto it"
                    if changed
                    else f"restarted the app server onto Codex {installed}"
                )
            case RestartOutcome.NOT_RUNNING:
                self._record(CycleResult.NOT_RUNNING)
                message = f"the app server is not running; Codex {installed} is installed"
            case RestartOutcome.NOT_READY:
                self._record(CycleResult.NOT_READY)
                message = f"the app server is not ready; Codex {installed} is installed"
            case RestartOutcome.ALREADY_CURRENT:
                self._record(CycleResult.ALREADY_CURRENT if changed else CycleResult.NO_UPDATE)
                message = f"the app server already runs Codex {installed}"
            case RestartOutcome.BUSY:
                raise AssertionError("Busy is retried, never reported")
        if changed and outcome is not RestartOutcome.RESTARTED:
            message = f"installed Codex {installed}; {message}"
        status = (
            UpdateStatus.UPDATED
            if changed or outcome is RestartOutcome.RESTARTED
            else UpdateStatus.NO_UPDATE
        )
        report.output = UpdateOutput(
            status=status,
            managed_codex_path=managed_bin_path(self.paths),
            installed_version=installed,
            running_version=self._running_version(),
            message=message,
        )
        return report


def run_cycle(
    *,
    paths: DaemonPaths,
    environ: Mapping[str, str],
    daemon: DaemonControl,
    log: EventLog,
    shutdown: Shutdown,
    state: UpdaterState,
    requested: bool,
    effects: CycleEffects = REAL_EFFECTS,
) -> CycleReport:
    """Run one cycle; mutates ``state``; raises ``ShutdownRequestedError`` on SIGTERM."""
    return Cycle(
        paths=paths,
        environ=environ,
        daemon=daemon,
        log=log,
        shutdown=shutdown,
        state=state,
        requested=requested,
        effects=effects,
    ).run()
