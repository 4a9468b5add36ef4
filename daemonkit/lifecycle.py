"""start, restart, stop, version, adopt, and the app-server's steps (SPEC §2.4-§2.8, §14.12).

``Daemon`` owns the operation lock and the steps that change the managed app-server:
stop it, spawn it and wait until it is ready, record the desired state, keep the
updater beside it. Its five commands here compose those steps, and so do the commands
that also change settings (remote.py) and the updater's supervisor and update cycle;
effects that are not the app-server's are composed where their commands live
(persistence.py, install_command.py, update_client.py). Each command takes the lock
where the spec says so, then follows the spec's numbered steps; what it decides is
decided by small functions it calls, and its output is printed by the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from daemonkit import __version__
from daemonkit.backend import ProcessHandle, SpawnRequest, spawn_recorded, stop_recorded
from daemonkit.binarycache import cached_codex_version
from daemonkit.environment import child_environment
from daemonkit.errors import (
    DaemonError,
    NotReadyError,
    ProbeError,
    UnmanagedServerError,
    describe_chain,
)
from daemonkit.files import ensure_state_dir
from daemonkit.intent import DesiredState, write_desired_state
from daemonkit.locks import operation_lock
from daemonkit.managed import (
    canonical_bin,
    ensure_managed_bin,
    managed_bin_path,
    normalize_version,
)
from daemonkit.output import LifecycleOutput, LifecycleStatus
from daemonkit.pidfile import Running, add_executable_identity, is_starting_or_running
from daemonkit.settings import Settings, load_settings, load_settings_leniently
from daemonkit.updater_control import (
    foreign_updater_pid,
    is_updater_active,
    notify_updater,
    spawn_updater,
    stop_updater,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from daemonkit.paths import DaemonPaths
    from daemonkit.pidrecord import ExecutableIdentity
    from daemonkit.placement import Placer, ScopeCommand
    from daemonkit.probe import AppServerInfo

__all__ = ["Daemon", "app_server_argv", "speaks_managed_daemon_argv"]

OPERATION_LOCK_EXTRA_S = 75.0
FAILED_START_GRACE_S = 2.0
Warn = Callable[[str], None]


# Codex 0.169 is the first release whose app-server takes the managed-daemon flags; it
# still accepts the seed's `--enable remote_control` but then leaves remote control off.
MANAGED_DAEMON_ARGV_SINCE = (0, 169)


def speaks_managed_daemon_argv(codex_version: str | None) -> bool:
    """Whether a binary reporting ``codex_version`` takes 0.169.0's argv (SPEC §4.7).

    Only the release's leading numbers decide, so pre-releases of 0.169 count as 0.169.
    An unknown or unparsable version gets the current form: every release since 0.169
    needs it, and the seed form would silently leave remote control off.
    """
    if codex_version is None:
        return True
    numbers: list[int] = []
    for part in normalize_version(codex_version).split(".")[:2]:
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            return True
        numbers.append(int(digits))
    return tuple(numbers) >= MANAGED_DAEMON_ARGV_SINCE


def app_server_argv(
    canonical: str, *, remote_control: bool, codex_version: str | None
) -> list[str]:
    """The app-server's argv: exactly what 0.169.0's Rust daemon spawns, or the seed's
    for older binaries (SPEC §4.7). ``--managed-daemon`` lets the server save and
    recover its threads across restarts."""
    if not speaks_managed_daemon_argv(codex_version):
        if remote_control:
            return [canonical, "--enable", "remote_control", "app-server", "--listen", "unix://"]
        return [canonical, "app-server", "--listen", "unix://"]
    flags = ["--remote-control"] if remote_control else []
    return [
        canonical,
        "app-server",
        *flags,
        "--listen",
        "unix://",
        "--analytics-default-enabled",
        "--managed-daemon",
    ]


class Daemon:
    """One CODEX_HOME's app-server, managed through the pid backend.

    ``remember_placement`` keeps one placement decision (SPEC §15.2) for the life of
    the object, as a CLI command wants (one decision, one warning, for the server and
    the updater it spawns); the long-lived updater decides afresh at every spawn.
    """

    def __init__(
        self,
        paths: DaemonPaths,
        environ: Mapping[str, str],
        warn: Warn,
        *,
        remember_placement: bool = True,
    ) -> None:
        self.paths = paths
        self.environ = environ
        self.warn = warn
        self._remember_placement = remember_placement
        self._placer: Placer | None = None

    # -- shared procedures (SPEC §2.4) ---------------------------------------------

    def managed(self) -> bool:
        """SPEC §2.4 managed?: the app-server record is Starting, or Running and active."""
        return is_starting_or_running(self.paths.app_server)

    def effective_grace_s(self, *, report: bool = False) -> int:
        """The lenient shutdownGraceSeconds (SPEC §3.6).

        Only ``stop`` reports what was wrong (``report=True``); strict commands load
        the file again under the lock and fail with the problem as their error.
        """
        settings, warnings = load_settings_leniently(self.paths.settings)
        if report:
            for line in warnings:
                self.warn(line)
        return settings.shutdown_grace_s

    def lock(self, grace_s: float) -> AbstractContextManager[int]:
        if self.paths.kit_dir != self.paths.state_dir:
            # Where this command's binary cache goes (SPEC §16); made before the
            # lock, whose wait may be long, so a failure costs nothing.
            ensure_state_dir(self.paths.kit_dir)
        return operation_lock(
            self.paths.state_dir, self.paths.operation_lock, grace_s + OPERATION_LOCK_EXTRA_S
        )

    def probe_ok(self) -> AppServerInfo | None:
        from daemonkit.probe import probe  # noqa: PLC0415 - see _wait_until_ready

        try:
            return probe(self.paths.socket)
        except ProbeError:
            return None

    def _wait_until_ready(
        self, process: ProcessHandle | None, bin_used: str, log_path: str
    ) -> AppServerInfo:
        # The probe's socket and hashlib imports are a sixth of a stop's time; only the
        # paths that talk to the server load them.
        from daemonkit.readiness import wait_until_ready  # noqa: PLC0415

        return wait_until_ready(
            self.paths.socket,
            process=process,
            bin_used=bin_used,
            log_path=log_path,
            env=self.version_env(),
        )

    def check_unmanaged(self) -> bool:
        managed = self.managed()
        if not managed and self.probe_ok() is not None:
            raise UnmanagedServerError
        return managed

    def place_spawn(
        self, what: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> ScopeCommand | None:
        """SPEC §15.2: the transient scope to spawn ``argv`` into, or None to stay put."""
        if self._placer is None:
            from daemonkit.placement import Placer  # noqa: PLC0415 - spawn paths only

            self._placer = Placer(
                self.environ, self.paths.codex_home, self.warn, remember=self._remember_placement
            )
        return self._placer(what, argv, env)

    def write_intent(self, state: DesiredState, command: str) -> None:
        write_desired_state(self.paths.desired_state, state, command)

    def _output(
        self,
        status: LifecycleStatus,
        *,
        managed: bool,
        pid: int | None = None,
        info: AppServerInfo | None = None,
    ) -> LifecycleOutput:
        bin_path = managed_bin_path(self.paths)
        return LifecycleOutput(
            status=status,
            managed=managed,
            pid=pid,
            managed_codex_path=bin_path,
            managed_codex_version=self.managed_version(bin_path),
            socket_path=self.paths.socket,
            cli_version=__version__,
            app_server_version=None if info is None else info.app_server_version,
        )

    def managed_version(self, bin_path: str) -> str | None:
        return cached_codex_version(
            bin_path, self.version_env(), self.paths.binary_cache, may_write=True
        )

    def version_env(self) -> dict[str, str]:
        return child_environment(self.environ, self.paths.codex_home, remote_control=None)

    def stop_app_server(self, grace_s: float) -> bool:
        return stop_recorded(self.paths.app_server, grace_s, group=False, what="app server")

    def spawn_and_wait(self, settings: Settings, bin_path: str) -> tuple[int, AppServerInfo]:
        """Spawn the app-server from ``bin_path`` and wait until it answers.

        A failed start leaves nothing behind: the process is stopped and its record
        removed before the error propagates (SPEC §6.4).
        """
        canonical = canonical_bin(bin_path)
        argv = app_server_argv(
            canonical,
            remote_control=settings.remote_control_enabled,
            codex_version=self.managed_version(canonical),
        )
        env = child_environment(
            self.environ,
            self.paths.codex_home,
            remote_control=settings.remote_control_enabled,
        )
        request = SpawnRequest(
            paths=self.paths.app_server,
            state_dir=self.paths.state_dir,
            argv=argv,
            env=env,
            # Not the caller's directory: Codex treats its cwd as a project. The state
            # directory is the one Rust's daemon gives the server where it picks one
            # (0.169.0 on Windows); on Unix 0.169.0 leaves it at the CLI's cwd.
            cwd=self.paths.state_dir,
            what="app-server",
            scope=self.place_spawn("app-server", argv, env),
        )
        from daemonkit.digest import IdentityInBackground  # noqa: PLC0415 - spawns only

        spawned = spawn_recorded(request)
        if isinstance(spawned, Running):
            # Another command won the reservation race; wait for its server instead.
            info = self._wait_until_ready(None, canonical, request.paths.log)
            return spawned.record.pid, info
        # Started after the fork and joined before returning: this process never
        # forks (the launcher, the updater's installer) while the thread runs.
        identity = IdentityInBackground(canonical, self.paths.binary_cache)
        try:
            info = self._wait_until_ready(spawned, canonical, request.paths.log)
        except NotReadyError:
            self._clean_up_failed_start(spawned)
            raise
        finally:
            spawned.close()
            executable = identity.result()
        self._record_identity(spawned.pid, executable)
        return spawned.pid, info

    def _record_identity(self, pid: int, executable: ExecutableIdentity | None) -> None:
        """Add the binary's executableIdentity to the server's record (SPEC §4.2).

        The key is optional: without blake3 there is none, and a failure to write it
        leaves the record as the server published it, with a warning.
        """
        if executable is None:
            return
        try:
            add_executable_identity(self.paths.app_server, pid, executable)
        except DaemonError as exc:
            self.warn(f"failed to record the executable identity: {describe_chain(exc)}")

    def ensure_updater(self, settings: Settings) -> None:
        """SPEC §2.4, §14.1: an updater runs exactly when auto-update or supervision is
        on; one that already runs is told to watch the server this command started.

        A failure here never fails the command that started the server.
        """
        try:
            active = is_updater_active(self.paths)
            if active and settings.restart_on_exit:
                active = not self._replace_foreign_updater(settings)
            if settings.wants_updater and not active:
                spawn_updater(self.paths, self.environ, once=False, place=self.place_spawn)
            elif settings.wants_updater:
                notify_updater(self.paths)
            elif active:
                stop_updater(self.paths, settings.shutdown_grace_s)
        except DaemonError as exc:
            self.warn(
                f"failed to ensure managed updater after app-server start: {describe_chain(exc)}"
            )

    def _replace_foreign_updater(self, settings: Settings) -> bool:
        """Stop a Rust updater that holds the record, so that the kit's, which
        supervises, takes its place (SPEC §16: a Rust ``bootstrap`` replaces the
        kit's). In the dedicated layout the kit's updater runs Rust's update loop
        itself, so updates go on as before. True if it stopped one."""
        pid = foreign_updater_pid(self.paths)
        if pid is None:
            return False
        self.warn(
            f"replacing the Codex daemon's updater (pid {pid}), which does not supervise, "
            "with the kit's"
        )
        stop_updater(self.paths, settings.shutdown_grace_s)
        return True

    def _clean_up_failed_start(self, spawned: ProcessHandle) -> None:
        try:
            self.stop_app_server(FAILED_START_GRACE_S)
        except OSError as exc:
            self.warn(
                f"failed to stop app-server process {spawned.pid} after a failed start: {exc}"
            )

    # -- commands ------------------------------------------------------------------

    def start(self) -> LifecycleOutput:
        """SPEC §2.5."""
        with self.lock(self.effective_grace_s()):
            settings = load_settings(self.paths.settings)
            self.write_intent(DesiredState.RUNNING, "start")
            info = self.probe_ok()
            if info is not None:
                managed = self.managed()
                if managed:
                    self.ensure_updater(settings)
                return self._output(LifecycleStatus.ALREADY_RUNNING, managed=managed, info=info)
            if self.managed():
                bin_path = managed_bin_path(self.paths)
                info = self._wait_until_ready(None, bin_path, self.paths.app_server.log)
                self.ensure_updater(settings)
                return self._output(LifecycleStatus.ALREADY_RUNNING, managed=True, info=info)
            bin_path = ensure_managed_bin(self.paths)
            pid, info = self.spawn_and_wait(settings, bin_path)
            self.ensure_updater(settings)
            return self._output(LifecycleStatus.STARTED, managed=True, pid=pid, info=info)

    def restart(self) -> LifecycleOutput:
        """SPEC §2.6."""
        grace_s = self.effective_grace_s()
        with self.lock(grace_s):
            settings = load_settings(self.paths.settings)
            self.write_intent(DesiredState.RUNNING, "restart")
            managed = self.check_unmanaged()
            bin_path = ensure_managed_bin(self.paths)
            if managed:
                self.stop_app_server(settings.shutdown_grace_s)
            pid, info = self.spawn_and_wait(settings, bin_path)
            self.ensure_updater(settings)
            return self._output(LifecycleStatus.RESTARTED, managed=True, pid=pid, info=info)

    def stop(self) -> LifecycleOutput:
        """SPEC §2.7: lenient settings, so a broken settings file never blocks a stop."""
        grace_s = self.effective_grace_s(report=True)
        with self.lock(grace_s):
            self.write_intent(DesiredState.STOPPED, "stop")
            if self.stop_app_server(grace_s):
                return self._output(LifecycleStatus.STOPPED, managed=True)
            if self.probe_ok() is not None:
                raise UnmanagedServerError
            return self._output(LifecycleStatus.NOT_RUNNING, managed=False)

    def version(self) -> LifecycleOutput:
        """SPEC §2.8: no lock; a probe failure is the command's error."""
        from daemonkit.probe import probe  # noqa: PLC0415 - see _wait_until_ready

        load_settings(self.paths.settings)
        info = probe(self.paths.socket)
        return self._output(LifecycleStatus.RUNNING, managed=self.managed(), info=info)

    def adopt(self) -> LifecycleOutput:
        """SPEC §14.12: record the unmanaged server that answers on the socket, so that
        every command, and the supervisor, manage it from now on."""
        from daemonkit.adopt import find_listener, record_listener  # noqa: PLC0415 - see probe_ok

        with self.lock(self.effective_grace_s()):
            settings = load_settings(self.paths.settings)
            if not self.managed():
                sock = self.paths.socket
                listener = find_listener(sock)
                if listener is None:
                    return self._output(LifecycleStatus.NOT_RUNNING, managed=False)
                # Adopting says "keep this one running", as start does (SPEC §3.8).
                self.write_intent(DesiredState.RUNNING, "adopt")
                if record_listener(self.paths.app_server, listener, sock):
                    self.ensure_updater(settings)  # the supervisor watches it at once
                    return self._output(
                        LifecycleStatus.ADOPTED, managed=True, pid=listener.pid, info=listener.info
                    )
            # Managed already, as start's step 5 finds it (SPEC §2.5).
            bin_path = managed_bin_path(self.paths)
            info = self._wait_until_ready(None, bin_path, self.paths.app_server.log)
            self.write_intent(DesiredState.RUNNING, "adopt")
            self.ensure_updater(settings)
            return self._output(LifecycleStatus.ALREADY_RUNNING, managed=True, info=info)
