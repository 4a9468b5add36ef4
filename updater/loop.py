"""The updater's main loop: registration, schedule, requests, supervision, SIGTERM
(SPEC §8.1-§8.3, §8.9, §14).

States of the process::

    registering --record names us / we published ours--> serving
    registering --another updater is active--> exit 0
    serving --select(self-pipe, request socket, server's pidfd,
                     timeout = next cycle / restart / health check)--> serving
    serving --SIGTERM / updates and supervision both off / --once done--> exit
                                                        (record, socket removed)
    serving --validated restart with a changed binary--> re-exec (same pid, record kept)
    serving --the kit on disk changed and held still, while idle--> re-exec (the same)

The only wake-ups are SIGTERM, a connection, the server's exit and the deadlines of
the next cycle (only with auto-update on), a due restart, the health check and the
self-upgrade check (at least every 10 minutes, SPEC §14.7): no other periodic timers
while idle.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING

from daemonkit.decisions import BACKOFF_CAP_S, backoff_delay_s
from daemonkit.errors import DaemonError, PidFileError, SettingsError
from daemonkit.files import ensure_state_dir
from daemonkit.hooks import time_scale
from daemonkit.lifecycle import Daemon
from daemonkit.paths import Layout
from daemonkit.pidfile import (
    Absent,
    Running,
    read_pid_state,
    remove_record_if_unchanged,
    reserve_pid_file,
    wait_for_record,
)
from daemonkit.pidrecord import PidRecord
from daemonkit.procinfo import inspect_process, record_matches
from daemonkit.settings import Settings, load_settings
from daemonkit.updater_control import dedicated_update_refusal
from updater.cycle import ShutdownRequestedError, run_cycle
from updater.log import EventLog, error_text
from updater.reexec import consume_reexec_marker, reexec
from updater.requests import (
    BindOutcome,
    Request,
    RequestServer,
    bind_request_socket,
    encode_err,
    encode_ok,
    send_reply,
)
from updater.rust_loop import RustUpdateLoop
from updater.selfupgrade import (
    SELF_CHECK_S,
    SelfUpgrade,
    find_unloadable,
    kit_package_dirs,
    take_fingerprint,
    upgrade_details,
)
from updater.state import UpdaterState, load_state, save_state
from updater.supervisor import Supervisor

if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from types import FrameType

    from daemonkit.paths import DaemonPaths
    from updater.report import CycleReport

__all__ = ["SelfPipe", "run_updater"]

INITIAL_DELAY_S = 300.0
ONCE_IDLE_EXIT_S = 60.0


class SelfPipe:
    """SIGTERM's self-pipe: the handler writes one byte, the loop selects on it.

    The byte is never drained: once SIGTERM arrived, every later wait returns at once.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def install(self) -> None:
        # SIGINT too, so a foreground run stopped with Ctrl-C cleans up the same way.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        # Only the write: no logging, no locks, nothing that could re-enter.
        try:
            os.write(self._write, b"T")
        except OSError:
            pass  # the pipe is full: a byte is already waiting

    def fileno(self) -> int:
        return self._read

    def wait(self, timeout_s: float) -> bool:
        readable, _, _ = select.select([self._read], [], [], max(timeout_s, 0.0))
        return bool(readable)

    def requested(self) -> bool:
        return self.wait(0.0)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- registration (SPEC §8.1) ------------------------------------------------------------------


def _own_record() -> PidRecord:
    snapshot = inspect_process(os.getpid())
    if snapshot is None:  # pragma: no cover - /proc/self is always readable on Linux
        raise PidFileError("failed to read start time for the updater's own process")
    return PidRecord(
        pid=snapshot.pid, process_start_time=snapshot.lstart, identity=snapshot.identity
    )


def _names_us(record: PidRecord, own: PidRecord) -> bool:
    return record.pid == own.pid and record.identity in (None, own.identity)


def _another_updater(pid: int) -> int:
    sys.stderr.write(f"another updater is running (pid {pid})\n")
    sys.stderr.flush()
    return 0


def register(paths: DaemonPaths, shutdown: SelfPipe) -> int | None:
    """Make sure the updater record names this process; an exit code if we must not run."""
    own = _own_record()
    while True:
        # The launcher publishes our record right after the spawn.
        state = wait_for_record(paths.updater, shutdown.wait)
        match state:
            case Absent.STARTING:  # SIGTERM arrived while we waited
                return 0
            case Running(record=record, raw=raw):
                if _names_us(record, own):
                    return None
                if record_matches(record, inspect_process(record.pid), kind=paths.updater.kind):
                    return _another_updater(record.pid)
                remove_record_if_unchanged(paths.updater, raw)
            case Absent.MISSING:
                # Self-registration (systemd, a foreground run): lead our own group first,
                # so a stopper's group signal reaches our installer children too.
                if os.getsid(0) != os.getpid():
                    os.setpgid(0, 0)
                own = _own_record()
                ensure_state_dir(paths.state_dir)
                reservation = reserve_pid_file(paths.updater)
                if isinstance(reservation, Running):
                    return _another_updater(reservation.record.pid)
                reservation.publish(own)
                return None


def unregister(paths: DaemonPaths) -> None:
    """Remove our record if it still names this process."""
    try:
        state = read_pid_state(paths.updater)
        if isinstance(state, Running) and state.record.pid == os.getpid():
            remove_record_if_unchanged(paths.updater, state.raw)
    except (DaemonError, OSError) as exc:
        sys.stderr.write(f"warning: failed to remove the updater record: {exc}\n")


# -- the loop ----------------------------------------------------------------------------------


class Updater:
    def __init__(
        self,
        paths: DaemonPaths,
        environ: Mapping[str, str],
        log: EventLog,
        shutdown: SelfPipe,
        *,
        once: bool,
    ) -> None:
        self.paths = paths
        self.environ = environ
        self.log = log
        self.shutdown = shutdown
        self.once = once
        self.scale = time_scale()
        # A long-lived process: linger and the session may change between spawns.
        self.daemon = Daemon(paths, environ, log.warn_line, remember_placement=False)
        self.state: UpdaterState = load_state(paths.updater_state)
        self.server: RequestServer | None = None
        self.next_cycle_at: float | None = 0.0  # monotonic; None: no scheduled cycles
        # A one-shot updater answers one request; it does not supervise.
        self.supervisor = (
            None
            if once
            else Supervisor(
                paths=paths,
                daemon=self.daemon,
                log=log,
                shutdown=shutdown,
                state=self.state,
                save=self.save,
            )
        )
        # The code this image runs, taken once registered; a one-shot updater exits
        # instead of re-executing (SPEC §8.8), so it does not look.
        self.package_dirs = kit_package_dirs()
        # The dedicated layout is Rust's to update: its own loop does it, as our child.
        self.rust_loop = (
            RustUpdateLoop(paths, environ, log, self.scale)
            if paths.layout is Layout.DEDICATED and not once
            else None
        )
        self.upgrade = (
            None
            if once
            else SelfUpgrade(
                lambda: take_fingerprint(self.package_dirs), period_s=SELF_CHECK_S * self.scale
            )
        )

    def bind(self) -> int | None:
        """Bind the request socket; an exit code if another updater owns it."""
        try:
            bound = bind_request_socket(self.paths.kit_updater_socket, self.log)
        except OSError as exc:
            self.log.warn_line(
                f"failed to bind updater request socket "
                f"{self.paths.kit_updater_socket}: {error_text(exc)}"
            )
            return 1 if self.once else None
        if bound is BindOutcome.OTHER_UPDATER:
            sys.stderr.write(
                f"another updater is running (socket {self.paths.kit_updater_socket})\n"
            )
            return 0
        if bound is BindOutcome.NOT_SERVED:
            self.log.warn_line(
                f"not serving update requests: {self.paths.kit_updater_socket} is not ours"
            )
            return 1 if self.once else None
        self.server = bound
        return None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.supervisor is not None:
            self.supervisor.close()
        if self.rust_loop is not None:
            self.rust_loop.stop()

    def save(self) -> None:
        failure = save_state(self.paths.updater_state, self.state)
        if failure is not None:
            self.log.warn_line(failure)

    def _schedule(self, delay_s: float) -> None:
        self.next_cycle_at = time.monotonic() + delay_s
        self.state.next_check_at_ms = _now_ms() + int(delay_s * 1000)
        self.save()

    def _interval_delay_s(self, settings: Settings | None) -> float:
        minutes = (settings or Settings()).update_interval_minutes
        return backoff_delay_s(
            minutes * 60.0 * self.scale,
            self.state.consecutive_failures,
            BACKOFF_CAP_S * self.scale,
        )

    def run(self, reexec_at_ms: int | None) -> int:
        if self.once:
            self.next_cycle_at = time.monotonic() + ONCE_IDLE_EXIT_S
        elif reexec_at_ms is not None and self.state.next_check_at_ms is not None:
            # A re-executed image resumes the schedule instead of waiting again.
            self._schedule(max(0.0, (self.state.next_check_at_ms - _now_ms()) / 1000))
        else:
            self._schedule(INITIAL_DELAY_S * self.scale)
        while True:
            if not self.once:
                self._upgrade_if_changed()
                done = self._follow_settings()
                if done is not None:
                    return done
            try:
                done = self._wait_and_serve()
            except ShutdownRequestedError:  # the supervisor was waiting for the lock
                self.log.event("shutdown_requested", signal="SIGTERM")
                return 0
            if done is not None:
                return done

    def _follow_settings(self) -> int | None:
        """At every wake-up: run only for what the settings still ask (SPEC §14.1).

        Updates off stops the schedule, not the process, while supervision is on; with
        both off the updater has nothing to do and exits.
        """
        try:
            settings = load_settings(self.paths.settings)
        except (SettingsError, OSError):
            return None  # the cycle and the supervisor report it; keep what we do
        if not settings.wants_updater:
            return 0
        if self.rust_loop is not None:
            self.next_cycle_at = None
            self.rust_loop.want(settings.auto_update_enabled)
        elif not settings.auto_update_enabled:
            self.next_cycle_at = None
        elif self.next_cycle_at is None:
            self._schedule(self._interval_delay_s(settings))
        if self.supervisor is not None:
            self.supervisor.refresh()
        return None

    def _wait_and_serve(self) -> int | None:
        watched: list[int] = [self.shutdown.fileno()]
        if self.server is not None:
            watched.append(self.server.fileno())
        supervisor = self.supervisor
        deadlines = [self.next_cycle_at]
        if self.upgrade is not None:
            deadlines.append(self.upgrade.deadline())
        if supervisor is not None:
            watched += supervisor.fds()
            deadlines.append(supervisor.deadline())
        if self.rust_loop is not None:
            watched += self.rust_loop.fds()
            deadlines.append(self.rust_loop.deadline())
        due = min((d for d in deadlines if d is not None), default=None)
        timeout = None if due is None else max(0.0, due - time.monotonic())
        readable, _, _ = select.select(watched, [], [], timeout)
        if self.shutdown.fileno() in readable:
            self.log.event("shutdown_requested", signal="SIGTERM")
            return 0
        if self.server is not None and self.server.fileno() in readable:
            return self._serve_request(self.server)
        if supervisor is not None:
            supervisor.on_wake(readable)
        if self.rust_loop is not None:
            self.rust_loop.on_wake()
        if self.next_cycle_at is None or time.monotonic() < self.next_cycle_at:
            return None
        if self.once:
            return 0  # no request within the idle time
        return self._scheduled_cycle()

    def _cycle(self, *, requested: bool) -> CycleReport:
        return run_cycle(
            paths=self.paths,
            environ=self.environ,
            daemon=self.daemon,
            log=self.log,
            shutdown=self.shutdown,
            state=self.state,
            requested=requested,
        )

    def _scheduled_cycle(self) -> int | None:
        settings: Settings | None
        try:
            settings = load_settings(self.paths.settings)
        except (SettingsError, OSError):
            # The cycle loads them again and reports the failure; the schedule goes on
            # with the default interval.
            settings = None
        if settings is not None and not settings.auto_update_enabled:
            self.next_cycle_at = None
            return 0 if not settings.wants_updater else None
        try:
            report = self._cycle(requested=False)
        except ShutdownRequestedError:
            self.log.event("shutdown_requested", signal="SIGTERM")
            return 0
        self._schedule(self._interval_delay_s(settings))
        return self._finish(report)

    def _serve_request(self, server: RequestServer) -> int | None:
        accepted = server.accept()
        if accepted is None:
            return None
        conn, request = accepted
        if request is Request.WATCH:
            conn.close()  # the next turn of the loop re-reads the record
            return None
        if request is Request.UNKNOWN:
            send_reply(conn, encode_err("unknown updater request"))
            return None
        return self._answer_update(conn)

    def _answer_update(self, conn: socket.socket) -> int | None:
        if self.paths.layout is Layout.DEDICATED:
            # Reached only through our private socket: Rust's loop answers on the
            # request socket everybody else uses.
            send_reply(conn, encode_err(dedicated_update_refusal(self.paths)))
            return None
        try:
            report = self._cycle(requested=True)
        except ShutdownRequestedError:
            conn.close()
            self.log.event("shutdown_requested", signal="SIGTERM")
            return 0
        self._reply(conn, report)
        if self.once:
            report.release()
            self._serve_queued()
            return 0
        return self._finish(report)

    def _reply(self, conn: socket.socket, report: CycleReport) -> None:
        self.save()
        if report.error is not None:
            send_reply(conn, encode_err(error_text(report.error)))
        elif report.output is not None:
            send_reply(conn, encode_ok(report.output.to_json()))
        else:
            conn.close()  # pragma: no cover - requested cycles always report

    def _serve_queued(self) -> None:
        """Answer every client already queued before a one-shot updater exits.

        Closing the listener would reset their connections with their request sent.
        """
        server = self.server
        while server is not None and select.select([server.fileno()], [], [], 0)[0]:
            accepted = server.accept()
            if accepted is None:
                continue
            conn, request = accepted
            if request is Request.WATCH:
                conn.close()
                continue
            if request is Request.UNKNOWN:
                send_reply(conn, encode_err("unknown updater request"))
                continue
            try:
                report = self._cycle(requested=True)
            except ShutdownRequestedError:
                conn.close()
                return
            self._reply(conn, report)
            report.release()

    def _finish(self, report: CycleReport) -> int | None:
        """Re-exec if the cycle says so (still holding daemon.lock), else release it."""
        if not report.reexec or self.shutdown.requested():
            report.release()
            return 0 if self.shutdown.requested() else None
        error = self._exec_new_image()
        # Only a failed exec gets here; keep serving from this image (SPEC §8.8).
        report.release()
        self._keep_serving(error)
        return None

    def _upgrade_if_changed(self) -> None:
        """Re-exec onto the kit on disk once it changed and held still (SPEC §14.7).

        Called at the top of the loop, where no cycle or restart is in progress. A
        restart waiting out its backoff, or failed health probes being counted, would be
        forgotten by the new image: the exec waits until the supervisor is idle again.
        Returns only if there was nothing to do or the exec failed.
        """
        upgrade = self.upgrade
        if upgrade is None:
            return
        changed = upgrade.check()
        if changed is None or (self.supervisor is not None and not self.supervisor.is_idle()):
            return
        if self.shutdown.requested():
            return  # the exec would drop the SIGTERM; the next wait sees it and exits
        problem = find_unloadable(self.package_dirs)
        if problem is not None:
            upgrade.refuse(changed)
            self.log.warn_line(f"not re-executing onto the changed kit: {problem}")
            return
        self.log.event("self_upgrade", **upgrade_details(upgrade.running, changed))
        error = self._exec_new_image()
        upgrade.refuse(changed)
        self._keep_serving(error)

    def _exec_new_image(self) -> OSError:
        """Save the state, close the request socket and the watch, and exec (SPEC §8.8);
        returns only the exec's error."""
        self.save()
        self.close()
        return reexec()

    def _keep_serving(self, error: OSError) -> None:
        """After a failed exec: log it and serve again from this image (SPEC §8.8); the
        loop's next turn watches the server again."""
        self.log.stage("reexec", time.monotonic(), error)
        self.log.warn_line(f"failed to re-execute updater {sys.executable}")
        self.bind()


def run_updater(paths: DaemonPaths, environ: Mapping[str, str], *, once: bool) -> int:
    """Register, serve and update until told to stop; the process's exit code."""
    reexec_at_ms = consume_reexec_marker()
    reexec_started = time.monotonic()
    log = EventLog(paths.updater.log, paths.updater.previous_log)
    shutdown = SelfPipe()
    shutdown.install()
    code = register(paths, shutdown)
    if code is not None:
        return code
    if paths.kit_dir != paths.state_dir:
        ensure_state_dir(paths.kit_dir)
    updater = Updater(paths, environ, log, shutdown, once=once)
    try:
        if reexec_at_ms is not None:
            # The exec happened; its duration is measured from the old image's clock.
            elapsed_s = max(0.0, (_now_ms() - reexec_at_ms) / 1000)
            log.stage("reexec", reexec_started - elapsed_s)
        code = updater.bind()
        if code is not None:
            return code
        return updater.run(reexec_at_ms)
    finally:
        updater.close()
        unregister(paths)
