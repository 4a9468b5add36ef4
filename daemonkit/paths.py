"""Every path the kit uses, derived from CODEX_HOME without touching the file system."""

from __future__ import annotations

import os
import pwd
from enum import Enum, auto

from daemonkit.errors import HomeError
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

__all__ = ["DaemonPaths", "PidPaths", "ProcessKind", "passwd_home", "resolve_codex_home"]

STATE_DIR_NAME = "app-server-daemon"
SOCKET_RELATIVE = ("app-server-control", "app-server-control.sock")


def resolve_codex_home(flag: str | None, environ: Mapping[str, str]) -> str:
    """Return the absolute CODEX_HOME: the flag, else $CODEX_HOME, else $HOME/.codex.

    Symlinks are deliberately not resolved: resolving lengthens socket paths
    (macOS /var -> /private/var) past the sun_path limit (SPEC §2.1).
    """
    home = flag or environ.get("CODEX_HOME") or None
    if home is None:
        user_home = environ.get("HOME") or passwd_home()
        if not user_home:
            raise HomeError("failed to resolve CODEX_HOME")
        home = os.path.join(user_home, ".codex")
    if os.path.isabs(home):
        return home
    # Joined, not normalised: collapsing "link/.." textually would name a different
    # directory than the kernel does.
    try:
        return os.path.join(os.getcwd(), home)
    except OSError as exc:  # the current directory was removed under us
        raise HomeError("failed to resolve CODEX_HOME") from exc


def passwd_home() -> str | None:
    """The home directory the password database gives the caller, if any."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir or None
    except KeyError:
        return None


class ProcessKind(Enum):
    """The kind of process a pid record names.

    A legacy record (no ``processIdentity``) matches only a process of its kind: a
    start time to the second is no identity (SPEC §4.3).
    """

    APP_SERVER = auto()
    UPDATER = auto()


class PidPaths(Value):
    """The files that belong to one managed process (SPEC §4.1), and its kind."""

    __slots__ = ("kind", "lock", "log", "previous_log", "record", "tmp")

    def __init__(
        self, *, kind: ProcessKind, record: str, lock: str, tmp: str, log: str, previous_log: str
    ) -> None:
        self.kind: Final = kind
        self.record: Final = record
        self.lock: Final = lock
        self.tmp: Final = tmp
        self.log: Final = log
        self.previous_log: Final = previous_log

    @classmethod
    def for_stem(cls, state_dir: str, stem: str, kind: ProcessKind) -> PidPaths:
        record = os.path.join(state_dir, f"{stem}.pid")
        log = os.path.join(state_dir, f"{stem}.stderr.log")
        return cls(
            kind=kind,
            record=record,
            lock=f"{record}.lock",
            tmp=f"{record}.tmp",
            log=log,
            previous_log=f"{log}.previous",
        )


class DaemonPaths(Value):
    """The state layout of one CODEX_HOME (SPEC §3.1)."""

    __slots__ = (
        "app_server",
        "codex_home",
        "current",
        "desired_state",
        "install_lock",
        "operation_lock",
        "package_root",
        "previous",
        "releases",
        "rust_dedicated_pid",
        "settings",
        "settings_tmp",
        "socket",
        "state_dir",
        "updater",
        "updater_socket",
        "updater_state",
        "version_cache",
    )

    def __init__(self, codex_home: str) -> None:
        state_dir = os.path.join(codex_home, STATE_DIR_NAME)
        package_root = os.path.join(codex_home, "packages", "standalone")
        self.codex_home: Final = codex_home
        self.state_dir: Final = state_dir
        self.socket: Final = os.path.join(codex_home, *SOCKET_RELATIVE)
        self.operation_lock: Final = os.path.join(state_dir, "daemon.lock")
        self.settings: Final = os.path.join(state_dir, "settings.json")
        self.settings_tmp: Final = os.path.join(state_dir, "settings.tmp")
        self.desired_state: Final = os.path.join(state_dir, "desired-state.json")
        self.updater_state: Final = os.path.join(state_dir, "app-server-updater.state.json")
        self.updater_socket: Final = os.path.join(state_dir, "app-server-updater.sock")
        self.version_cache: Final = os.path.join(state_dir, "managed-codex-version.json")
        self.app_server: Final = PidPaths.for_stem(state_dir, "app-server", ProcessKind.APP_SERVER)
        self.updater: Final = PidPaths.for_stem(
            state_dir, "app-server-updater", ProcessKind.UPDATER
        )
        self.package_root: Final = package_root
        self.releases: Final = os.path.join(package_root, "releases")
        self.current: Final = os.path.join(package_root, "current")
        self.previous: Final = os.path.join(package_root, "previous")
        self.install_lock: Final = os.path.join(package_root, "install.lock")
        self.rust_dedicated_pid: Final = os.path.join(state_dir, "daemon.pid")

    @property
    def managed_bin_candidates(self) -> tuple[str, str]:
        """`current/codex`, then the tarball layout `current/bin/codex` (SPEC §7.1)."""
        return (
            os.path.join(self.current, "codex"),
            os.path.join(self.current, "bin", "codex"),
        )
