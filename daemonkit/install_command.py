"""install: choose the channel, run it, report the release (SPEC §2.13)."""

from __future__ import annotations

import sys

from daemonkit import __version__
from daemonkit.environment import child_environment, working_directory
from daemonkit.errors import InstallError, ProbeError
from daemonkit.install import install_npm, install_script, read_link
from daemonkit.managed import managed_bin_path, versions_equal
from daemonkit.output import InstallOutput, InstallStatus
from daemonkit.paths import Layout
from daemonkit.pidfile import Running, active_state
from daemonkit.probe import probe
from daemonkit.settings import load_settings
from daemonkit.updater_control import dedicated_update_refusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import NoReturn

    from daemonkit.paths import DaemonPaths

__all__ = ["run_install"]


def run_install(
    paths: DaemonPaths,
    environ: Mapping[str, str],
    channel: str | None,
    version: str | None,
    warn: Callable[[str], None],
    usage_error: Callable[[str], NoReturn],
) -> InstallOutput:
    settings = load_settings(paths.settings)
    if paths.layout is Layout.DEDICATED:
        # An install would land in packages/standalone, which this home does not run
        # from: the kit installs nothing in Rust's layout (SPEC §16).
        raise InstallError(
            f"this CODEX_HOME runs {managed_bin_path(paths)}; " + dedicated_update_refusal(paths)
        )
    chosen = channel or settings.channel
    if chosen == "script" and version is not None:
        usage_error("the script channel cannot install a specific version; use --channel npm")
    env = child_environment(environ, paths.codex_home, remote_control=None)
    # Installer output is progress for a person: it goes to stderr, never stdout.
    if chosen == "npm":
        result = install_npm(paths, env, version, sys.stderr)
    else:
        result = install_script(
            paths, env, settings.install_script_url, working_directory(environ), sys.stderr
        )
    _warn_if_running_other_version(paths, result.version, warn)
    return InstallOutput(
        status=InstallStatus.INSTALLED if result.changed else InstallStatus.ALREADY_INSTALLED,
        channel=chosen,
        managed_codex_path=managed_bin_path(paths),
        managed_codex_version=result.version,
        release_path=read_link(paths.current),
        previous_release_path=read_link(paths.previous),
        cli_version=__version__,
    )


def _warn_if_running_other_version(
    paths: DaemonPaths, installed: str, warn: Callable[[str], None]
) -> None:
    if not isinstance(active_state(paths.app_server), Running):
        return
    try:
        running = probe(paths.socket).app_server_version
    except ProbeError:
        return
    if not versions_equal(running, installed):
        warn(f"the running app server still uses {running}; run codex-daemon restart to switch")
