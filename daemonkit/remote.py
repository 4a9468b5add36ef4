"""bootstrap, enable-remote-control and disable-remote-control (SPEC §2.9, §2.10)."""

from __future__ import annotations

from daemonkit import __version__
from daemonkit.errors import ProbeError, RpcError, describe_chain
from daemonkit.intent import DesiredState
from daemonkit.managed import ensure_managed_bin
from daemonkit.output import BootstrapOutput, RemoteControlOutput, RemoteControlStatus
from daemonkit.readiness import wait_until_ready
from daemonkit.rpc import set_remote_control
from daemonkit.settings import load_settings, update_settings
from daemonkit.updater_control import is_updater_active, notify_updater, stop_updater

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemonkit.lifecycle import Daemon

__all__ = ["bootstrap", "set_remote_control_mode"]


def bootstrap(daemon: Daemon, *, remote_control: bool) -> BootstrapOutput:
    """SPEC §2.9, in 0.169.0's order: the updater stops first, so no install can flip
    `current` while the server is being replaced."""
    paths = daemon.paths
    with daemon.lock(daemon.effective_grace_s()):
        bin_path = ensure_managed_bin(paths)
        settings = load_settings(paths.settings).replace(remote_control_enabled=remote_control)
        managed = daemon.check_unmanaged()
        update_settings(
            paths.settings, paths.settings_tmp, {"remoteControlEnabled": remote_control}
        )
        daemon.write_intent(DesiredState.RUNNING, "bootstrap")
        if is_updater_active(paths):
            stop_updater(paths, settings.shutdown_grace_s)
        if managed:
            daemon.stop_app_server(settings.shutdown_grace_s)
        _, info = daemon.spawn_and_wait(settings, bin_path)
        # The updater was stopped above: this starts it again if it is wanted.
        daemon.ensure_updater(settings)
        return BootstrapOutput(
            # Updates happen only if they are on and an updater runs to do them; since
            # supervision, an updater may run with updates off (SPEC §14.1).
            auto_update_enabled=settings.auto_update_enabled and is_updater_active(paths),
            remote_control_enabled=remote_control,
            managed_codex_path=bin_path,
            managed_codex_version=daemon.managed_version(bin_path),
            socket_path=paths.socket,
            cli_version=__version__,
            app_server_version=info.app_server_version,
        )


def set_remote_control_mode(daemon: Daemon, *, enable: bool) -> RemoteControlOutput:
    """SPEC §2.10: persist the mode; restart a managed server onto it, or re-assert it."""
    paths = daemon.paths
    with daemon.lock(daemon.effective_grace_s()):
        settings = load_settings(paths.settings)
        managed = daemon.check_unmanaged()
        version: str | None = None
        if settings.remote_control_enabled == enable:
            if managed:
                info = wait_until_ready(
                    paths.socket,
                    process=None,
                    bin_used=ensure_managed_bin(paths),
                    log_path=paths.app_server.log,
                    env=daemon.version_env(),
                )
                version = info.app_server_version
                try:
                    set_remote_control(paths.socket, enable=enable)
                except (RpcError, ProbeError) as exc:
                    # The setting is already what the user asked for; a live server
                    # that will not confirm it is worth a warning, not a failure.
                    daemon.warn(describe_chain(exc))
            status = (
                RemoteControlStatus.ALREADY_ENABLED
                if enable
                else RemoteControlStatus.ALREADY_DISABLED
            )
        else:
            update_settings(paths.settings, paths.settings_tmp, {"remoteControlEnabled": enable})
            if managed:
                bin_path = ensure_managed_bin(paths)
                daemon.stop_app_server(settings.shutdown_grace_s)
                _, info = daemon.spawn_and_wait(
                    settings.replace(remote_control_enabled=enable), bin_path
                )
                version = info.app_server_version
                notify_updater(paths)
            status = RemoteControlStatus.ENABLED if enable else RemoteControlStatus.DISABLED
        return RemoteControlOutput(
            status=status,
            app_server_version=version,
            remote_control_enabled=enable,
            socket_path=paths.socket,
            cli_version=__version__,
        )
