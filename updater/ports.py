"""What an update cycle needs from outside its own files: the seam of ``updater.cycle``.

The cycle's decisions (SPEC §8.4-§8.10) read and flip symlinks and take ``daemon.lock``
itself; everything that starts a process, opens a socket or reads the clock goes
through these types. The updater passes the real implementations
(``updater.cycle.REAL_EFFECTS`` and ``daemonkit.lifecycle.Daemon``); unit tests pass
small fakes, so every branch of a cycle runs without processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from daemonkit.install import InstallResult
    from daemonkit.paths import DaemonPaths, PidPaths
    from daemonkit.pidfile import PidState
    from daemonkit.probe import AppServerInfo
    from daemonkit.settings import Settings
    from updater.log import EventLog

__all__ = ["CycleEffects", "DaemonControl", "Shutdown"]


class Shutdown(Protocol):
    """The SIGTERM self-pipe, as the cycle needs it."""

    def fileno(self) -> int: ...

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True once SIGTERM arrived."""
        ...


class DaemonControl(Protocol):
    """The part of ``daemonkit.lifecycle.Daemon`` a cycle drives: stop and spawn."""

    def stop_app_server(self, grace_s: float) -> bool: ...

    def spawn_and_wait(self, settings: Settings, bin_path: str) -> tuple[int, AppServerInfo]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleEffects:
    """The cycle's other effects, one callable each, in the shapes of the real ones."""

    # updater.install.install_release: the channel install, abortable by SIGTERM.
    install: Callable[
        [DaemonPaths, Settings, Mapping[str, str], Mapping[str, str], EventLog, Shutdown],
        InstallResult,
    ]
    # updater.binary.read_version_with_sh: ``<bin> --version``.
    read_version: Callable[[str, Mapping[str, str]], str]
    # daemonkit.probe.probe: the initialize handshake on the app-server socket.
    probe: Callable[[str], AppServerInfo]
    # daemonkit.pidfile.active_state: the app-server's record, stale ones removed.
    server_state: Callable[[PidPaths], PidState]
    # Wall-clock milliseconds: quarantine and the restart cap are kept in them.
    now_ms: Callable[[], int]
    # daemonkit.digest.prepare_cache (binary, cache path, its version): what the
    # restart's spawn would otherwise compute while clients wait.
    prepare_start: Callable[[str, str, str], None]
